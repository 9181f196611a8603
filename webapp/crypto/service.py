"""Binance wallet calls between the SQL steps of sql/crypto.sql (worker only).

Every function takes the app, asks the database what is due (one committed
transaction as exchange_worker), calls Binance outside any transaction with
*our* id (sub-account string bsm<user>, clientTranId csw-<id>, withdrawOrderId
cwd-<id>) and records what Binance said. A crash or an unknown outcome leaves
a row the next run looks up by that id; a withdrawal is never sent twice.
"""
from __future__ import annotations

import logging
from decimal import Decimal

import requests
from psycopg.types.json import Jsonb

from .. import currencies, db
from ..chain import validate_address
from ..errors import DomainError
from ..providers.binance import (
    BinanceAuthError, BinanceClient, BinanceError, BinanceRejected, NetworkConfig, SubDeposit,
)

log = logging.getLogger("bs-market.crypto")

SUB_EXISTS = -12002


def client(app) -> BinanceClient:
    from ..market.service import binance_client
    return binance_client(app)


def _plain(value: Decimal) -> str:
    return format(value, "f")


def _count(done: dict, key: str) -> None:
    done[key] = done.get(key, 0) + 1


# --------------------------------------------------------------------------- config and balances

def network_json(net: NetworkConfig) -> dict:
    return {"coin": net.coin, "network": net.network, "name": net.name, "is_default": net.is_default,
            "deposit_enable": net.deposit_enable, "withdraw_enable": net.withdraw_enable,
            "withdraw_fee": _plain(net.withdraw_fee), "withdraw_min": _plain(net.withdraw_min),
            "withdraw_max": _plain(net.withdraw_max), "withdraw_multiple": _plain(net.withdraw_integer_multiple),
            "min_confirm": net.min_confirm, "unlock_confirm": net.unlock_confirm,
            "address_regex": net.address_regex, "memo_regex": net.memo_regex, "needs_memo": net.withdraw_tag}


def refresh_config(app) -> dict:
    """capital/config/getall → the networks we list, and a snapshot of the master's balances."""
    configs = client(app).coin_configs(tuple(currencies.codes("crypto", app=app)))
    networks = [network_json(n) for cfg in configs.values() for n in cfg.networks.values()]
    balances = [{"coin": c.coin, "free": _plain(c.free), "locked": _plain(c.locked),
                 "withdrawing": _plain(c.withdrawing)} for c in configs.values()]
    refreshed = db.worker_call(app, "admin.record_crypto_networks", networks=Jsonb(networks))[0]
    snapshots = db.worker_call(app, "admin.record_binance_balances", balances=Jsonb(balances))[0]
    return {"networks": next(iter(refreshed.values())), "balances": next(iter(snapshots.values()))}


# --------------------------------------------------------------------------- sub-accounts and addresses

def _find_sub_account(binance: BinanceClient, sub_account_string: str) -> str | None:
    """The email of a virtual sub-account created from this string (after an unknown outcome)."""
    prefix = f"{sub_account_string.lower()}_virtual@"
    for page in range(1, 51):
        emails = binance.sub_account_emails(page=page, limit=200)
        found = next((e for e in emails if e.startswith(prefix)), None)
        if found or len(emails) < 200:
            return found
    return None


def create_sub_accounts(app, max_rows: int = 10) -> dict:
    binance = client(app)
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.crypto_sub_accounts_to_create", max_rows=max_rows):
        text = row["sub_account_string"]
        email = error = None
        try:
            if row["attempts"] > 1:  # an earlier try may have created it
                email = _find_sub_account(binance, text)
            if email is None:
                email = binance.create_virtual_sub_account(text)
        except BinanceRejected as exc:
            if exc.code == SUB_EXISTS:
                email = _find_sub_account(binance, text)
            error = f"{exc.code}: {exc.msg}"
        except (BinanceError, requests.RequestException) as exc:
            error = str(exc)
        db.worker_call(app, "admin.record_crypto_sub_account", user_id=row["user_id"], email=email, error=error)
        _count(done, "ready" if email else "error")
    return done


def fetch_addresses(app, max_rows: int = 20) -> dict:
    binance = client(app)
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.crypto_addresses_to_fetch", max_rows=max_rows):
        try:
            got = binance.deposit_address(row["email"], row["coin"], row["network"])
            validate_address(row["coin"], row["network"], got.address, got.tag or None)
        except (BinanceError, requests.RequestException, ValueError) as exc:
            log.error("deposit address %s (%s %s): %r", row["address_id"], row["coin"], row["network"], exc)
            _count(done, "error")
            continue
        db.worker_call(app, "admin.record_crypto_deposit_address", address_id=row["address_id"], address=got.address,
                       memo=got.tag or "")
        _count(done, "fetched")
    return done


def provision(app) -> dict:
    """Sub-accounts, then the addresses that were waiting for them."""
    return {"sub_accounts": create_sub_accounts(app), "addresses": fetch_addresses(app)}


# --------------------------------------------------------------------------- deposits and sweeps

def deposit_json(dep: SubDeposit) -> dict:
    return {"id": dep.id, "coin": dep.coin, "network": dep.network, "amount": _plain(dep.amount),
            "status": dep.status, "address": dep.address, "memo": dep.address_tag, "tx_id": dep.tx_id,
            "confirmations": dep.confirmations, "required_confirmations": dep.required_confirmations}


def poll_deposits(app, max_rows: int = 20) -> dict:
    binance = client(app)
    done: dict[str, int] = {}
    for account in db.worker_call(app, "admin.crypto_deposit_accounts_to_poll", max_rows=max_rows):
        try:
            history = binance.sub_deposit_history(account["email"], limit=500)
        except (BinanceError, requests.RequestException) as exc:
            log.warning("deposit history of %s: %r", account["email"], exc)
            _count(done, "error")
            continue
        if not history:
            continue
        try:
            rows = db.worker_call(app, "admin.record_crypto_deposits", user_id=account["user_id"],
                                  deposits=Jsonb([deposit_json(d) for d in history]))
        except DomainError as exc:  # one customer's odd row must not stop the others
            log.error("ALERT deposits of %s not recorded: %r", account["email"], exc)
            _count(done, "error")
            continue
        for row in rows:
            _count(done, "credited" if row["credited"] else row["status"].lower())
    return done


def sweep(app, max_rows: int = 20) -> dict:
    binance = client(app)
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.claim_crypto_sweeps", max_rows=max_rows):
        tran_id = error = None
        try:
            if row["resend"]:  # sent before without a recorded answer: look first
                found = binance.get_universal_transfer(row["client_tran_id"], from_email=row["email"])
                tran_id = found.tran_id if found else None
            if tran_id is None:
                tran_id = binance.sweep_to_master(row["email"], row["coin"], row["amount"], row["client_tran_id"]).tran_id
        except (BinanceError, requests.RequestException) as exc:
            log.warning("sweep %s: %r", row["client_tran_id"], exc)
            error = str(exc)
        db.worker_call(app, "admin.record_crypto_sweep", sweep_id=row["sweep_id"],
                       tran_id=str(tran_id) if tran_id is not None else None, error=error)
        _count(done, "done" if tran_id is not None else "unknown")
    return done


# --------------------------------------------------------------------------- withdrawals

def record(app, withdrawal_id: int, found, send_amount: Decimal | None = None) -> str:
    """Book what Binance's withdraw history says of one of ours."""
    if send_amount is not None and found.amount + found.transaction_fee != send_amount:
        # (the sandbox reports amount net of the fee; see the client's UNVERIFIED note)
        log.error("ALERT crypto withdrawal %s: Binance shows %s + fee %s, we sent %s", withdrawal_id, found.amount,
                  found.transaction_fee, send_amount)
    row = db.worker_call(app, "admin.record_crypto_withdrawal", withdrawal_id=withdrawal_id, binance_id=found.id,
                         binance_status=found.status, tx_id=found.tx_id or None, info=found.info or None)[0]
    return next(iter(row.values())).lower()


def send_withdrawals(app, max_rows: int = 10) -> dict:
    binance = client(app)
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.claim_crypto_withdrawals", max_rows=max_rows):
        wid = row["withdrawal_id"]
        try:
            binance_id = binance.withdraw(row["coin"], row["network"], row["address"], row["send_amount"],
                                          row["reference"], address_tag=row["memo"] or None)
        except BinanceAuthError as exc:  # our key, not the customer: look again later
            log.error("ALERT crypto withdrawal %s: Binance refused our credentials: %r", wid, exc)
            db.worker_call(app, "admin.record_crypto_withdrawal", withdrawal_id=wid, error=str(exc))
            _count(done, "unknown")
            continue
        except BinanceRejected as exc:
            log.warning("crypto withdrawal %s refused: %r", wid, exc)
            db.worker_call(app, "admin.fail_crypto_withdrawal", withdrawal_id=wid,
                           reason=f"recusado pela Binance: {exc.msg}"[:500])
            _count(done, "failed")
            continue
        except (BinanceError, requests.RequestException) as exc:
            # Timeout, 5xx, connection drop: it may exist. Never resend: the
            # recheck looks it up by withdrawOrderId.
            log.warning("crypto withdrawal %s: outcome unknown, will look it up: %r", wid, exc)
            db.worker_call(app, "admin.record_crypto_withdrawal", withdrawal_id=wid, error=str(exc)[:500])
            _count(done, "unknown")
            continue
        db.worker_call(app, "admin.record_crypto_withdrawal", withdrawal_id=wid, binance_id=binance_id)
        outcome = "processing"
        try:
            found = binance.get_withdrawal(row["reference"], coin=row["coin"])
            if found is not None:
                outcome = record(app, wid, found, row["send_amount"])
        except (BinanceError, requests.RequestException) as exc:
            log.info("crypto withdrawal %s: status not known yet: %r", wid, exc)
        _count(done, outcome)
    return done


def recheck_withdrawals(app, max_rows: int = 20) -> dict:
    binance = client(app)
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.crypto_withdrawals_to_recheck", max_rows=max_rows):
        wid = row["withdrawal_id"]
        try:
            found = binance.get_withdrawal(row["reference"], coin=row["coin"])
        except (BinanceError, requests.RequestException) as exc:
            log.warning("crypto withdrawal %s: lookup failed: %r", wid, exc)
            _count(done, "error")
            continue
        try:
            if found is not None:
                _count(done, record(app, wid, found, row["send_amount"]))
            elif row["binance_id"] is None and row["unseen_window_passed"]:
                db.worker_call(app, "admin.fail_crypto_withdrawal", withdrawal_id=wid,
                               reason="a Binance não recebeu o pedido de saque")
                _count(done, "failed")
            else:
                if row["binance_id"] is not None:
                    log.error("ALERT crypto withdrawal %s: Binance does not list %s", wid, row["binance_id"])
                db.worker_call(app, "admin.record_crypto_withdrawal", withdrawal_id=wid,
                               error="ainda não aparece no histórico da Binance")
                _count(done, "not_found")
        except DomainError as exc:
            log.error("crypto withdrawal %s: %r", wid, exc)
            _count(done, "error")
    return done
