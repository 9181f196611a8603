"""The Binance emulator's wallet: coin/network config, virtual sub-accounts with deposit
addresses, sub-account deposit history, universal transfers (sweeps) and withdrawals.

Registered on the app of `sandbox.binance` (same signature, timestamp, recvWindow
and weight rules as the Spot endpoints; errors in `{"code": .., "msg": ..}`):

  GET  /sapi/v1/capital/config/getall          coins BTC, ETH, USDT with networkList; free = master balance
  POST /sapi/v1/sub-account/virtualSubAccount  subAccountString → {"email"}
  GET  /sapi/v1/sub-account/list               email?, page, limit → {"subAccounts": [...]}
  GET  /sapi/v1/capital/deposit/subAddress     email, coin, network? → {address, coin, tag, url}
  GET  /sapi/v1/capital/deposit/subHisrec      email, coin?, status?, startTime?, endTime?, limit?, offset?, txId?
  POST /sapi/v1/sub-account/universalTransfer  fromEmail?, toEmail?, fromAccountType, toAccountType,
                                               clientTranId?, asset, amount → {tranId, clientTranId}
  GET  /sapi/v1/sub-account/universalTransfer  fromEmail? | toEmail?, clientTranId?, startTime?, endTime?,
                                               page?, limit? → {"result": [...], "totalCount": n}
  POST /sapi/v1/capital/withdraw/apply         coin, network?, address, addressTag?, amount,
                                               withdrawOrderId?, ... → {"id"}
  GET  /sapi/v1/capital/withdraw/history       coin?, withdrawOrderId?, status?, offset?, limit?,
                                               idList?, startTime?, endTime?

Behaviour taken from Binance's docs (developers.binance.com, wallet and sub_account pages):
field names and shapes above; deposit status 0 pending / 6 credited but cannot withdraw /
7 wrong deposit / 1 success; withdraw status 0 email sent, 1 cancelled, 2 awaiting approval,
3 rejected, 4 processing, 5 failure, 6 completed; `network` omitted → the coin's default
network; `clientTranId` "cannot be repeated"; universalTransfer history without
fromEmail/toEmail lists transfers *from the master*, at most 7 days, fromEmail and toEmail
not together; withdraw history by withdrawOrderId defaults to the last 7 days (90 otherwise);
an addressTag on a network without tags is -4106.

Choices of this emulator (UNVERIFIED against the live API; see ERRORS for the codes):
- The error codes and texts of the wallet rejections other than -4106 and -1102/-1100.
- A repeated withdrawOrderId or clientTranId is refused (nothing is created or moved twice).
- withdraw/apply debits `amount` from the master at once; the fee comes out of it, so the
  history shows `amount` = requested - fee and `transactionFee` = fee. Rejected (3), failed (5)
  or cancelled (1) withdrawals give the whole requested amount back to the master.
- Deposit addresses are derived from (email, chain), so they are stable across restarts;
  ETH and BSC share one EVM address per sub-account (like one key on both chains).
- A deposit sent through a coin/network pair Binance does not list (e.g. ETH over BSC, BTC
  over BSC) to a sub-account's address is recorded with status 7 ("Wrong Deposit") and is
  never credited; confirming it is refused. A suspended network still records deposits.
- Status 6 credits the sub-account's *locked* balance, status 1 its free balance; only free
  balance can be swept.

Sandbox controls (no signature, no weight), JSON or an HTML form (then 303 back to the page):
  GET  /_sandbox/wallet                 HTML page for a person
  GET  /_sandbox/wallet/state           everything as JSON
  POST /_sandbox/wallet/send            {coin, network, address, amount, memo?, txId?, confirmations?}
  POST /_sandbox/wallet/confirm         {id | txId, confirmations? | status?: 6|1}  (default: fully)
  POST /_sandbox/wallet/duplicate       {kind: "deposit"|"withdrawal", id}  the row shows twice more
  POST /_sandbox/wallet/withdrawal      {id | withdrawOrderId, status: 6|5|3|2|4|1, info?, txId?}
  POST /_sandbox/wallet/next_withdraw   {mode: "timeout"|"error500", delay_seconds?, create?, status?, count?}
  POST /_sandbox/wallet/network         {coin, network, depositEnable?, withdrawEnable?}
  POST /_sandbox/wallet/balance         {coin, free, email?}  set the master's (or a sub's) free balance
"""
from __future__ import annotations

import hashlib
import html
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from flask import current_app, redirect

from webapp import chain
from sandbox.binance import ApiError, _int_param, _params, fmt, verify_signature
from sandbox.server import FaultQueue, Routes, control_body, from_form, state_proxy

DAY_MS = 86_400_000
MASTER = ""  # the master account, where an email is expected

COINS = {"BTC": "Bitcoin", "ETH": "Ethereum", "USDT": "TetherUS"}

#: chain family of each network: which address a sub-account has there.
FAMILY = {"BTC": "btc", "ETH": "evm", "BSC": "evm", "TRX": "tron"}

EVM_REGEX = "^(0x)[0-9A-Fa-f]{40}$"
NETWORKS: dict[tuple[str, str], dict] = {
    ("BTC", "BTC"): {
        "name": "Bitcoin", "isDefault": True, "withdrawFee": "0.00002", "withdrawMin": "0.0001",
        "withdrawMax": "7500", "withdrawIntegerMultiple": "0.00000001", "minConfirm": 1, "unLockConfirm": 2,
        "addressRegex": "^[13][a-km-zA-HJ-NP-Z1-9]{25,34}$|^(bc1)[0-9A-Za-z]{39,59}$",
        "depositDust": "0.000006", "estimatedArrivalTime": 60,
        "url": "https://www.blockchain.com/explorer/addresses/btc/"},
    ("ETH", "ETH"): {
        "name": "Ethereum (ERC20)", "isDefault": True, "withdrawFee": "0.0008", "withdrawMin": "0.0016",
        "withdrawMax": "10000000000", "withdrawIntegerMultiple": "0.00000001", "minConfirm": 6,
        "unLockConfirm": 64, "addressRegex": EVM_REGEX, "depositDust": "0.000001",
        "estimatedArrivalTime": 5, "url": "https://etherscan.io/address/"},
    ("USDT", "TRX"): {
        "name": "Tron (TRC20)", "isDefault": False, "withdrawFee": "1", "withdrawMin": "10",
        "withdrawMax": "10000000000", "withdrawIntegerMultiple": "0.000001", "minConfirm": 1,
        "unLockConfirm": 0, "addressRegex": "^T[1-9A-HJ-NP-Za-km-z]{33}$", "depositDust": "0.01",
        "estimatedArrivalTime": 2, "contractAddress": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        "url": "https://tronscan.org/#/address/"},
    ("USDT", "ETH"): {
        "name": "Ethereum (ERC20)", "isDefault": True, "withdrawFee": "3", "withdrawMin": "6",
        "withdrawMax": "10000000000", "withdrawIntegerMultiple": "0.000001", "minConfirm": 6,
        "unLockConfirm": 64, "addressRegex": EVM_REGEX, "depositDust": "0.01", "estimatedArrivalTime": 5,
        "contractAddress": "0xdac17f958d2ee523a2206206994597c13d831ec7", "url": "https://etherscan.io/address/"},
    ("USDT", "BSC"): {
        "name": "BNB Smart Chain (BEP20)", "isDefault": False, "withdrawFee": "0.3", "withdrawMin": "0.6",
        "withdrawMax": "10000000000", "withdrawIntegerMultiple": "0.00000001", "minConfirm": 15,
        "unLockConfirm": 0, "addressRegex": EVM_REGEX, "depositDust": "0.01", "estimatedArrivalTime": 1,
        "contractAddress": "0x55d398326f99059ff775485246999027b3197955", "url": "https://bscscan.com/address/"},
}

DEFAULT_MASTER_BALANCES = {"BTC": "2", "ETH": "50", "USDT": "100000"}

# code, message. -4106, -1102 and -1100 are Binance's documented ones; the others are this
# emulator's choice (UNVERIFIED): clients must branch on "rejected", not on these numbers.
ERRORS = {
    "network": (-4018, "Network is not supported for this coin."),
    "coin": (-4003, "This coin is not supported."),
    "tag": (-4106, "Tag is not supported for this network."),
    "withdraw_suspended": (-4019, "Withdrawals are suspended for this network."),
    "address": (-4021, "The withdrawal address is not valid for this network."),
    "below_min": (-4022, "The withdrawal amount must be at least {min} {coin}."),
    "above_max": (-4023, "The withdrawal amount must be at most {max} {coin}."),
    "multiple": (-4024, "The withdrawal amount must be a multiple of {step}."),
    "balance": (-4026, "User has insufficient balance"),
    "duplicate_withdraw": (-4035, "Duplicate withdrawOrderId."),
    "no_sub": (-12001, "Sub-account does not exist."),
    "sub_exists": (-12002, "Sub-account already exists."),
    "transfer_balance": (-3041, "Balance is not enough"),
    "duplicate_transfer": (-9000, "Duplicate clientTranId."),
    "account_type": (-9001, "Only SPOT to SPOT transfers are supported by the sandbox."),
}

SUB_ACCOUNT_STRING_RE = re.compile(r"^[A-Za-z0-9_]{1,32}$")  # UNVERIFIED charset/length
ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _err(kind: str, **fmt_args) -> ApiError:
    code, msg = ERRORS[kind]
    return ApiError(code, msg.format(**fmt_args))


def _missing(name: str) -> ApiError:
    return ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _utc(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _amount(raw: str | None, name: str = "amount") -> Decimal:
    if raw in (None, ""):
        raise _missing(name)
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value <= 0 or value.as_tuple().exponent < -20:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


# --------------------------------------------------------------------------- records

@dataclass
class SubAccount:
    email: str
    create_ms: int
    free: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class Deposit:
    id: str
    email: str
    coin: str
    network: str
    amount: Decimal
    address: str
    address_tag: str
    tx_id: str
    insert_ms: int
    status: int = 0
    confirmations: int = 0

    def json(self, wallet: "WalletState") -> dict:
        net = wallet.networks.get((self.coin, self.network))
        need = max(1, int(net["minConfirm"])) if net else 1
        unlock = int(net["unLockConfirm"]) if net else 0
        return {"id": self.id, "amount": fmt(self.amount), "coin": self.coin, "network": self.network,
                "status": self.status, "address": self.address, "addressTag": self.address_tag,
                "txId": self.tx_id, "insertTime": self.insert_ms, "transferType": 0,
                "confirmTimes": f"{min(self.confirmations, need)}/{need}", "unlockConfirm": unlock,
                "walletType": 0}


@dataclass
class Transfer:
    tran_id: int
    client_tran_id: str
    from_email: str
    to_email: str
    asset: str
    amount: Decimal
    create_ms: int

    def json(self, master_email: str) -> dict:
        return {"tranId": self.tran_id, "fromEmail": self.from_email or master_email,
                "toEmail": self.to_email or master_email, "asset": self.asset, "amount": fmt(self.amount),
                "createTimeStamp": self.create_ms, "fromAccountType": "SPOT", "toAccountType": "SPOT",
                "status": "SUCCESS", "clientTranId": self.client_tran_id}


@dataclass
class Withdrawal:
    id: str
    withdraw_order_id: str
    coin: str
    network: str
    address: str
    address_tag: str
    amount: Decimal  # requested, debited from the master
    fee: Decimal
    apply_ms: int
    status: int = 4
    tx_id: str = ""
    info: str = ""
    complete_ms: int | None = None
    confirm_no: int = 0

    def json(self) -> dict:
        out = {"id": self.id, "amount": fmt(self.amount - self.fee), "transactionFee": fmt(self.fee),
               "coin": self.coin, "status": self.status, "address": self.address, "txId": self.tx_id,
               "applyTime": _utc(self.apply_ms), "network": self.network, "transferType": 0,
               "info": self.info, "confirmNo": self.confirm_no, "walletType": 0, "txKey": ""}
        if self.address_tag:
            out["addressTag"] = self.address_tag
        if self.withdraw_order_id:
            out["withdrawOrderId"] = self.withdraw_order_id  # "not returned when not set"
        if self.complete_ms is not None:
            out["completeTime"] = _utc(self.complete_ms)
        return out


# --------------------------------------------------------------------------- state

class WalletState:
    """Lives on `SandboxState.wallet`; guarded by the SandboxState lock."""

    def __init__(self, sandbox, config: dict):
        self.sandbox = sandbox
        self.lock = sandbox.lock
        key = str(config.get("api_key") or "sandbox-key")
        digest = hashlib.sha256(key.encode()).digest()
        self.email_domain = "".join(chr(97 + b % 26) for b in digest[:6]) + "noemail.com"
        self.master_email = str(config.get("master_email") or f"master@{self.email_domain}")
        self.networks = {k: dict(v, depositEnable=True, withdrawEnable=True) for k, v in NETWORKS.items()}
        balances = {**DEFAULT_MASTER_BALANCES, **(config.get("master_balances") or {})}
        self.master_free = {coin: Decimal(str(balances.get(coin, "0"))) for coin in COINS}
        self.subs: dict[str, SubAccount] = {}
        self.deposits: dict[str, Deposit] = {}
        self.transfers: dict[int, Transfer] = {}
        self.withdrawals: dict[str, Withdrawal] = {}
        self.dup_deposits: list[str] = []
        self.dup_withdrawals: list[str] = []
        self.next_withdraw = FaultQueue(self.lock)  # /_sandbox/wallet/next_withdraw

    # ---- helpers

    def now_ms(self) -> int:
        return self.sandbox.now_ms()

    def network(self, coin: str | None, network: str | None) -> tuple[str, dict]:
        if not coin:
            raise _missing("coin")
        if coin not in COINS:
            raise _err("coin")
        if not network:
            network = next(n for (c, n), v in self.networks.items() if c == coin and v["isDefault"])
        spec = self.networks.get((coin, network))
        if spec is None:
            raise _err("network")
        return network, spec

    def sub(self, email: str | None) -> SubAccount:
        if not email:
            raise _missing("email")
        sub = self.subs.get(email)
        if sub is None:
            raise _err("no_sub")
        return sub

    @staticmethod
    def address_for(email: str, family: str) -> str:
        raw = hashlib.sha256(f"bs-market-sandbox|{email}|{family}".encode()).digest()[:20]
        if family == "btc":
            return chain.btc_p2wpkh_address(raw)
        if family == "evm":
            return chain.evm_address(raw)
        return chain.tron_address(raw)

    def owner_of(self, family: str, address: str) -> SubAccount | None:
        folded = address.lower() if family in ("btc", "evm") else address
        for sub in self.subs.values():
            mine = self.address_for(sub.email, family)
            if (mine.lower() if family in ("btc", "evm") else mine) == folded:
                return sub
        return None

    def _tx_id(self, family: str, seed: str) -> str:
        digest = hashlib.sha256(f"tx|{seed}".encode()).hexdigest()
        return "0x" + digest if family == "evm" else digest

    # ---- deposits

    def send(self, coin: str, network: str, address: str, amount: Decimal, memo: str = "",
             tx_id: str | None = None) -> Deposit:
        family = FAMILY.get(network)
        if family is None:
            raise ValueError(f"unknown network {network!r}; one of {sorted(FAMILY)}")
        with self.lock:
            owner = self.owner_of(family, address.strip())
            if owner is None:
                raise LookupError("no sub-account owns this address on that chain")
            dep_id = str(self.sandbox.next_id())
            dep = Deposit(id=dep_id, email=owner.email, coin=coin, network=network, amount=amount,
                          address=address.strip(), address_tag=memo or "",
                          tx_id=tx_id or self._tx_id(family, dep_id), insert_ms=self.now_ms())
            if (coin, network) not in self.networks:
                dep.status = 7  # Wrong Deposit: recorded, never credited
            self.deposits[dep_id] = dep
            return dep

    def find_deposit(self, dep_id: str | None, tx_id: str | None) -> Deposit | None:
        with self.lock:
            if dep_id:
                return self.deposits.get(str(dep_id))
            return next((d for d in self.deposits.values() if d.tx_id == tx_id), None)

    def confirm(self, dep: Deposit, confirmations: int | None = None, status: int | None = None) -> Deposit:
        with self.lock:
            if dep.status == 7:
                raise ValueError("a wrong deposit (status 7) is never credited")
            net = self.networks[(dep.coin, dep.network)]
            need = max(1, int(net["minConfirm"]))
            unlock = max(need, int(net["unLockConfirm"]))
            if status is not None:
                if status not in (0, 1, 6):
                    raise ValueError("status must be 0, 6 or 1")
                new_status = status
                dep.confirmations = {0: 0, 6: need, 1: unlock}[status]
            else:
                dep.confirmations = unlock if confirmations is None else max(dep.confirmations, int(confirmations))
                new_status = 1 if dep.confirmations >= unlock else 6 if dep.confirmations >= need else 0
            rank = {0: 0, 6: 1, 1: 2}  # a deposit only moves forward: pending → locked → success
            if rank[new_status] < rank[dep.status]:
                raise ValueError(f"deposit is already at status {dep.status}")
            sub = self.subs[dep.email]
            old = dep.status
            if old == 6:
                sub.locked[dep.coin] = sub.locked.get(dep.coin, Decimal(0)) - dep.amount
            if new_status == 6:
                sub.locked[dep.coin] = sub.locked.get(dep.coin, Decimal(0)) + dep.amount
            if new_status == 1 and old != 1:
                sub.free[dep.coin] = sub.free.get(dep.coin, Decimal(0)) + dep.amount
            dep.status = new_status
            return dep

    # ---- withdrawals

    def settle_withdrawal(self, wd: Withdrawal, status: int, info: str = "", tx_id: str | None = None) -> None:
        with self.lock:
            if wd.status in (1, 3, 5, 6):
                raise ValueError(f"withdrawal is final (status {wd.status})")
            if status not in (1, 2, 3, 4, 5, 6):
                raise ValueError("status must be one of 1, 2, 3, 4, 5, 6")
            wd.status = status
            if info:
                wd.info = info
            if status == 6:
                wd.tx_id = tx_id or self._tx_id(FAMILY[wd.network], wd.id)
                wd.complete_ms = self.now_ms()
                wd.confirm_no = max(1, int(self.networks[(wd.coin, wd.network)]["minConfirm"]))
            elif status in (1, 3, 5):
                self.master_free[wd.coin] += wd.amount  # nothing left Binance: give it back
                wd.info = wd.info or {1: "Cancelled", 3: "Rejected by the sandbox",
                                      5: "The withdrawal failed on chain (sandbox)"}[status]

    def withdrawing(self, coin: str) -> Decimal:
        return sum((w.amount for w in self.withdrawals.values() if w.coin == coin and w.status in (0, 2, 4)),
                   Decimal(0))

    def state_json(self) -> dict:
        with self.lock:
            return {
                "master": {"email": self.master_email, "free": {c: fmt(v) for c, v in self.master_free.items()}},
                "subAccounts": [{"email": s.email, "free": {c: fmt(v) for c, v in s.free.items()},
                                 "locked": {c: fmt(v) for c, v in s.locked.items()},
                                 "addresses": {f: self.address_for(s.email, f) for f in ("btc", "evm", "tron")}}
                                for s in self.subs.values()],
                "deposits": [{**d.json(self), "email": d.email} for d in self.deposits.values()],
                "transfers": [t.json(self.master_email) for t in self.transfers.values()],
                "withdrawals": [{**w.json(), "requested": fmt(w.amount)} for w in self.withdrawals.values()],
                "networks": [{"coin": c, "network": n, "depositEnable": v["depositEnable"],
                              "withdrawEnable": v["withdrawEnable"]} for (c, n), v in self.networks.items()],
                "next_withdraw": list(self.next_withdraw),
            }


def _network_json(coin: str, network: str, spec: dict) -> dict:
    out = {"network": network, "coin": coin, "withdrawIntegerMultiple": spec["withdrawIntegerMultiple"],
           "isDefault": spec["isDefault"], "depositEnable": spec["depositEnable"],
           "withdrawEnable": spec["withdrawEnable"], "depositDesc": "", "withdrawDesc": "",
           "specialTips": "", "specialWithdrawTips": "", "name": spec["name"], "resetAddressStatus": False,
           "addressRegex": spec["addressRegex"], "memoRegex": "", "withdrawFee": spec["withdrawFee"],
           "withdrawMin": spec["withdrawMin"], "withdrawMax": spec["withdrawMax"],
           "withdrawInternalMin": "0.00000001", "depositDust": spec["depositDust"],
           "minConfirm": spec["minConfirm"], "unLockConfirm": spec["unLockConfirm"], "sameAddress": False,
           "withdrawTag": False, "estimatedArrivalTime": spec["estimatedArrivalTime"], "busy": False,
           "contractAddressUrl": spec["url"], "contractAddress": spec.get("contractAddress", "")}
    if not spec["depositEnable"]:
        out["depositDesc"] = "Deposits are suspended on this network (sandbox)."
    if not spec["withdrawEnable"]:
        out["withdrawDesc"] = "Withdrawals are suspended on this network (sandbox)."
    return out


def _time_window(params: dict, now: int, default_days: int, max_days: int) -> tuple[int, int]:
    start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
    if start is None and end is None:
        end, start = now, now - default_days * DAY_MS
    elif start is None:
        start = end - default_days * DAY_MS
    elif end is None:
        end = min(now, start + max_days * DAY_MS)
    if end - start > max_days * DAY_MS:
        raise ApiError(-1127, f"More than {max_days} days between startTime and endTime.")
    return start, end


# --------------------------------------------------------------------------- routes

# Small functions on the shared server library (sandbox/server.py), installed on the app of
# sandbox.binance; `state` is this request's emulator.

routes = Routes()
state = state_proxy()


def wallet() -> WalletState:
    return state.wallet  # replaced by /_sandbox/reset


@routes.get("/sapi/v1/capital/config/getall")
def capital_config():
    verify_signature()
    w = wallet()
    with w.lock:
        rows = []
        for coin, name in COINS.items():
            nets = [_network_json(c, n, v) for (c, n), v in w.networks.items() if c == coin]
            rows.append({"coin": coin, "depositAllEnable": any(n["depositEnable"] for n in nets),
                         "withdrawAllEnable": any(n["withdrawEnable"] for n in nets), "name": name,
                         "free": fmt(w.master_free[coin]), "locked": "0", "freeze": "0",
                         "withdrawing": fmt(w.withdrawing(coin)), "ipoing": "0", "ipoable": "0",
                         "storage": "0", "isLegalMoney": False, "trading": True, "networkList": nets})
    return current_app.json.response(rows)


@routes.post("/sapi/v1/sub-account/virtualSubAccount")
def create_virtual_sub_account():
    verify_signature()
    text = _params().get("subAccountString")
    if not text:
        raise _missing("subAccountString")
    if not SUB_ACCOUNT_STRING_RE.match(text):
        raise ApiError(-1100, "Illegal characters found in parameter 'subAccountString'.")
    w = wallet()
    email = f"{text.lower()}_virtual@{w.email_domain}"
    with w.lock:
        if email in w.subs:
            raise _err("sub_exists")
        w.subs[email] = SubAccount(email=email, create_ms=w.now_ms())
    return {"email": email}


@routes.get("/sapi/v1/sub-account/list")
def list_sub_accounts():
    verify_signature()
    params = _params()
    page, limit = _int_param(params, "page", 1), _int_param(params, "limit", 1)
    w = wallet()
    with w.lock:
        subs = [s for s in w.subs.values() if not params.get("email") or s.email == params["email"]]
    limit = max(1, min(limit or 1, 200))
    rows = subs[(max(1, page) - 1) * limit:][:limit]
    return {"subAccounts": [{"email": s.email, "isFreeze": False, "createTime": s.create_ms,
                             "isManagedSubAccount": False, "isAssetManagementSubAccount": False}
                            for s in rows]}


@routes.get("/sapi/v1/capital/deposit/subAddress")
def sub_deposit_address():
    verify_signature()
    params = _params()
    w = wallet()
    sub = w.sub(params.get("email"))
    coin = params.get("coin")
    network, spec = w.network(coin, params.get("network"))
    address = w.address_for(sub.email, FAMILY[network])
    return {"address": address, "coin": coin, "tag": "", "url": spec["url"] + address}


@routes.get("/sapi/v1/capital/deposit/subHisrec")
def sub_deposit_history():
    verify_signature()
    params = _params()
    w = wallet()
    sub = w.sub(params.get("email"))
    status = _int_param(params, "status")
    start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
    limit, offset = _int_param(params, "limit", 500), _int_param(params, "offset", 0)
    with w.lock:
        rows = [d for d in w.deposits.values() if d.email == sub.email]
        rows += [w.deposits[i] for i in w.dup_deposits if w.deposits[i].email == sub.email]
        rows = [d for d in rows
                if (not params.get("coin") or d.coin == params["coin"])
                and (status is None or d.status == status)
                and (not params.get("txId") or d.tx_id == params["txId"])
                and (start is None or d.insert_ms >= start) and (end is None or d.insert_ms <= end)]
        rows.sort(key=lambda d: d.insert_ms, reverse=True)
        out = [d.json(w) for d in rows[offset:offset + max(1, min(limit, 500))]]
    return current_app.json.response(out)


@routes.post("/sapi/v1/sub-account/universalTransfer")
def universal_transfer():
    verify_signature()
    params = _params()
    w = wallet()
    from_email, to_email = params.get("fromEmail") or MASTER, params.get("toEmail") or MASTER
    for name in ("fromAccountType", "toAccountType", "asset"):
        if not params.get(name):
            raise _missing(name)
    if params.get("fromAccountType") != "SPOT" or params.get("toAccountType") != "SPOT":
        raise _err("account_type")
    if not from_email and not to_email:
        raise ApiError(-1102, "Param 'fromEmail' or 'toEmail' must be sent, but both were empty/null!")
    asset = params["asset"]
    if asset not in COINS:
        raise _err("coin")
    amount = _amount(params.get("amount"))
    client_id = params.get("clientTranId") or ""
    if client_id and not ORDER_ID_RE.match(client_id):
        raise ApiError(-1100, "Illegal characters found in parameter 'clientTranId'.")
    with w.lock:
        src = w.sub(from_email) if from_email else None
        dst = w.sub(to_email) if to_email else None
        if client_id and any(t.client_tran_id == client_id for t in w.transfers.values()):
            raise _err("duplicate_transfer")
        have = src.free.get(asset, Decimal(0)) if src else w.master_free[asset]
        if have < amount:
            raise _err("transfer_balance")
        if src:
            src.free[asset] = have - amount
        else:
            w.master_free[asset] = have - amount
        if dst:
            dst.free[asset] = dst.free.get(asset, Decimal(0)) + amount
        else:
            w.master_free[asset] += amount
        t = Transfer(tran_id=state.next_id(), client_tran_id=client_id, from_email=from_email,
                     to_email=to_email, asset=asset, amount=amount, create_ms=w.now_ms())
        w.transfers[t.tran_id] = t
    return {"tranId": t.tran_id, "clientTranId": client_id}


@routes.get("/sapi/v1/sub-account/universalTransfer")
def universal_transfer_history():
    verify_signature()
    params = _params()
    w = wallet()
    if params.get("fromEmail") and params.get("toEmail"):
        raise ApiError(-1102, "Only one of 'fromEmail' and 'toEmail' may be sent.")
    start, end = _time_window(params, w.now_ms(), 7, 7)
    page, limit = max(1, _int_param(params, "page", 1)), max(1, min(_int_param(params, "limit", 500), 500))
    with w.lock:
        if params.get("toEmail"):
            rows = [t for t in w.transfers.values() if t.to_email == params["toEmail"]]
        else:  # fromEmail given, or neither: transfers from that account (default: the master)
            rows = [t for t in w.transfers.values() if t.from_email == (params.get("fromEmail") or MASTER)]
        rows = [t for t in rows if start <= t.create_ms <= end
                and (not params.get("clientTranId") or t.client_tran_id == params["clientTranId"])]
        rows.sort(key=lambda t: t.create_ms, reverse=True)
        result = [t.json(w.master_email) for t in rows[(page - 1) * limit:][:limit]]
    return {"result": result, "totalCount": len(rows)}


@routes.post("/sapi/v1/capital/withdraw/apply")
def withdraw_apply():
    verify_signature()
    params = _params()
    w = wallet()
    coin = params.get("coin")
    if not coin:
        raise _missing("coin")
    address = params.get("address")
    if not address:
        raise _missing("address")
    order_id = params.get("withdrawOrderId") or ""
    if order_id and not ORDER_ID_RE.match(order_id):
        raise ApiError(-1100, "Illegal characters found in parameter 'withdrawOrderId'.")
    with w.lock:
        if order_id and any(x.withdraw_order_id == order_id for x in w.withdrawals.values()):
            raise _err("duplicate_withdraw")
    network, spec = w.network(coin, params.get("network"))
    if params.get("addressTag"):
        raise _err("tag")  # none of our networks has withdrawTag=true
    if not spec["withdrawEnable"]:
        raise _err("withdraw_suspended")
    if not re.match(spec["addressRegex"], address):
        raise _err("address")
    amount = _amount(params.get("amount"))
    lo, hi, step = (Decimal(spec[k]) for k in ("withdrawMin", "withdrawMax", "withdrawIntegerMultiple"))
    if amount < lo:
        raise _err("below_min", min=spec["withdrawMin"], coin=coin)
    if amount > hi:
        raise _err("above_max", max=spec["withdrawMax"], coin=coin)
    if amount % step != 0:
        raise _err("multiple", step=spec["withdrawIntegerMultiple"])
    mode = None
    with w.lock:
        if order_id and any(x.withdraw_order_id == order_id for x in w.withdrawals.values()):
            raise _err("duplicate_withdraw")  # a concurrent twin got in first
        if w.master_free[coin] < amount:
            raise _err("balance")
        mode = w.next_withdraw.take() or {"mode": "ok"}
        create = mode["mode"] != "error500" or mode.get("create", False)
        if create:
            n = state.next_id()
            wd_id = f"{n:016x}" + hashlib.sha256(f"wd|{n}".encode()).hexdigest()[:16]
            w.master_free[coin] -= amount
            w.withdrawals[wd_id] = Withdrawal(
                id=wd_id, withdraw_order_id=order_id, coin=coin, network=network, address=address,
                address_tag="", amount=amount, fee=Decimal(spec["withdrawFee"]), apply_ms=w.now_ms(),
                status=int(mode.get("initial_status", 4)))
    if mode["mode"] == "timeout":
        time.sleep(float(mode.get("delay_seconds", 12)))  # created; the answer comes too late
    elif mode["mode"] == "error500":
        raise ApiError(-1007, "Timeout waiting for response from backend server. Send status unknown; "
                              "execution status unknown.", int(mode.get("status", 500)))
    return {"id": wd_id}


@routes.get("/sapi/v1/capital/withdraw/history")
def withdraw_history():
    verify_signature()
    params = _params()
    w = wallet()
    order_id = params.get("withdrawOrderId")
    start, end = _time_window(params, w.now_ms(), 7 if order_id else 90, 7 if order_id else 90)
    status = _int_param(params, "status")
    offset, limit = _int_param(params, "offset", 0), max(1, min(_int_param(params, "limit", 1000), 1000))
    ids = set(filter(None, (params.get("idList") or "").split(",")))
    if len(ids) > 45:
        raise ApiError(-1100, "Too many ids in 'idList' (at most 45).")
    with w.lock:
        rows = list(w.withdrawals.values()) + [w.withdrawals[i] for i in w.dup_withdrawals]
        rows = [x for x in rows
                if (not params.get("coin") or x.coin == params["coin"])
                and (not order_id or x.withdraw_order_id == order_id)
                and (status is None or x.status == status)
                and (not ids or x.id in ids)
                and start <= x.apply_ms <= end]
        rows.sort(key=lambda x: x.apply_ms, reverse=True)
        out = [x.json() for x in rows[offset:offset + limit]]
    return current_app.json.response(out)


# --------------------------------------------------------------------------- controls

def answer(payload, status: int = 200):
    if from_form():
        if status >= 400:
            return current_app.response_class(f"<p>{html.escape(str(payload))}</p><p><a href='/_sandbox/wallet'>"
                                      "back</a></p>", status=status, mimetype="text/html")
        return redirect("/_sandbox/wallet", code=303)
    resp = current_app.json.response(payload)
    resp.status_code = status
    return resp


def bad(msg: str, status: int = 400):
    return answer({"error": msg}, status)


def flag(value) -> bool:
    return value in (True, "true", "1", 1, "on", "yes")


@routes.get("/_sandbox/wallet/state")
def wallet_state():
    return wallet().state_json()


@routes.post("/_sandbox/wallet/send")
def wallet_send():
    data = control_body()
    try:
        amount = Decimal(str(data.get("amount")))
        if not amount.is_finite() or amount <= 0:
            raise InvalidOperation
    except InvalidOperation:
        return bad("amount must be a positive number")
    coin, network = str(data.get("coin", "")).upper(), str(data.get("network", "")).upper()
    if coin not in COINS:
        return bad(f"coin must be one of {sorted(COINS)}")
    try:
        dep = wallet().send(coin, network, str(data.get("address", "")), amount,
                            str(data.get("memo") or ""), data.get("txId"))
    except ValueError as exc:
        return bad(str(exc))
    except LookupError as exc:
        return bad(str(exc), 404)
    if data.get("confirmations") not in (None, "") and dep.status != 7:
        wallet().confirm(dep, confirmations=int(data["confirmations"]))
    return answer({**dep.json(wallet()), "email": dep.email})


@routes.post("/_sandbox/wallet/confirm")
def wallet_confirm():
    data = control_body()
    w = wallet()
    dep = w.find_deposit(data.get("id"), data.get("txId"))
    if dep is None:
        return bad("unknown deposit", 404)
    try:
        w.confirm(dep, confirmations=int(data["confirmations"]) if data.get("confirmations") not in (None, "")
                  else None, status=int(data["status"]) if data.get("status") not in (None, "") else None)
    except ValueError as exc:
        return bad(str(exc), 409)
    return answer({**dep.json(w), "email": dep.email})


@routes.post("/_sandbox/wallet/duplicate")
def wallet_duplicate():
    data = control_body()
    w = wallet()
    kind, row_id = data.get("kind", "deposit"), str(data.get("id", ""))
    with w.lock:
        if kind == "deposit" and row_id in w.deposits:
            w.dup_deposits.append(row_id)
        elif kind == "withdrawal" and row_id in w.withdrawals:
            w.dup_withdrawals.append(row_id)
        else:
            return bad("unknown kind or id", 404)
    return answer({"duplicated": kind, "id": row_id})


@routes.post("/_sandbox/wallet/withdrawal")
def wallet_withdrawal():
    data = control_body()
    w = wallet()
    with w.lock:
        wd = w.withdrawals.get(str(data.get("id", ""))) or next(
            (x for x in w.withdrawals.values()
             if data.get("withdrawOrderId") and x.withdraw_order_id == data["withdrawOrderId"]), None)
    if wd is None:
        return bad("unknown withdrawal", 404)
    try:
        w.settle_withdrawal(wd, int(data.get("status", 6)), str(data.get("info") or ""), data.get("txId"))
    except ValueError as exc:
        return bad(str(exc), 409)
    return answer({**wd.json(), "requested": fmt(wd.amount)})


@routes.post("/_sandbox/wallet/next_withdraw")
def wallet_next_withdraw():
    data = control_body()
    mode = data.get("mode", "timeout")
    if mode not in ("timeout", "error500", "ok"):
        return bad("mode must be timeout, error500 or ok")
    entry = {"mode": mode, "create": flag(data.get("create", False)),
             "delay_seconds": float(data.get("delay_seconds", 12)), "status": int(data.get("status", 500)),
             "initial_status": int(data.get("initial_status", 4))}
    return answer({"queued": wallet().next_withdraw.push(entry, int(data.get("count", 1)))})


@routes.post("/_sandbox/wallet/network")
def wallet_network():
    data = control_body()
    w = wallet()
    key = (str(data.get("coin", "")).upper(), str(data.get("network", "")).upper())
    if key not in w.networks:
        return bad("unknown coin/network")
    with w.lock:
        for name in ("depositEnable", "withdrawEnable"):
            if name in data:
                w.networks[key][name] = flag(data[name])
        spec = w.networks[key]
    return answer({"coin": key[0], "network": key[1], "depositEnable": spec["depositEnable"],
                   "withdrawEnable": spec["withdrawEnable"]})


@routes.post("/_sandbox/wallet/balance")
def wallet_balance():
    data = control_body()
    w = wallet()
    coin = str(data.get("coin", "")).upper()
    try:
        free = Decimal(str(data.get("free")))
    except InvalidOperation:
        return bad("free must be a number")
    if coin not in COINS or free < 0:
        return bad("unknown coin or negative balance")
    with w.lock:
        if data.get("email"):
            if data["email"] not in w.subs:
                return bad("unknown sub-account", 404)
            w.subs[data["email"]].free[coin] = free
        else:
            w.master_free[coin] = free
    return answer({"coin": coin, "free": fmt(free), "email": data.get("email") or w.master_email})


@routes.get("/_sandbox/wallet")
def wallet_page():
    s = wallet().state_json()
    e = html.escape

    def form(action: str, fields: dict, label: str) -> str:
        hidden = "".join(f"<input type=hidden name='{e(k)}' value='{e(str(v))}'>" for k, v in fields.items())
        return f"<form method=post action='/_sandbox/wallet/{action}' style='display:inline'>{hidden}" \
               f"<button>{e(label)}</button></form>"

    subs = "".join(
        f"<tr><td>{e(x['email'])}</td><td><code>{e(x['addresses']['btc'])}</code><br>"
        f"<code>{e(x['addresses']['evm'])}</code><br><code>{e(x['addresses']['tron'])}</code></td>"
        f"<td>{e(str(x['free']))}</td><td>{e(str(x['locked']))}</td></tr>" for x in s["subAccounts"])
    deps = "".join(
        f"<tr><td>{e(d['id'])}</td><td>{e(d['email'])}</td><td>{e(d['amount'])} {e(d['coin'])}/{e(d['network'])}"
        f"</td><td>{d['status']}</td><td>{e(d['confirmTimes'])}</td><td><code>{e(d['txId'][:18])}…</code></td>"
        f"<td>{form('confirm', {'id': d['id'], 'status': 6}, 'status 6')}"
        f"{form('confirm', {'id': d['id']}, 'confirm')}"
        f"{form('duplicate', {'kind': 'deposit', 'id': d['id']}, 'duplicate')}</td></tr>"
        for d in s["deposits"])
    wds = "".join(
        f"<tr><td>{e(x['id'][:12])}…</td><td>{e(x.get('withdrawOrderId', ''))}</td>"
        f"<td>{e(x['requested'])} {e(x['coin'])}/{e(x['network'])}</td><td><code>{e(x['address'])}</code></td>"
        f"<td>{x['status']}</td><td>{e(x['info'])}</td>"
        f"<td>{form('withdrawal', {'id': x['id'], 'status': 6}, 'complete')}"
        f"{form('withdrawal', {'id': x['id'], 'status': 5}, 'fail')}"
        f"{form('withdrawal', {'id': x['id'], 'status': 3}, 'reject')}"
        f"{form('duplicate', {'kind': 'withdrawal', 'id': x['id']}, 'duplicate')}</td></tr>"
        for x in s["withdrawals"])
    nets = "".join(
        f"<tr><td>{e(n['coin'])}/{e(n['network'])}</td><td>{n['depositEnable']}</td><td>{n['withdrawEnable']}</td>"
        f"<td>{form('network', {'coin': n['coin'], 'network': n['network'], 'depositEnable': not n['depositEnable']}, 'toggle deposits')}"
        f"{form('network', {'coin': n['coin'], 'network': n['network'], 'withdrawEnable': not n['withdrawEnable']}, 'toggle withdrawals')}"
        f"</td></tr>" for n in s["networks"])
    page = f"""<!doctype html><html><head><meta charset=utf-8><title>Binance sandbox wallet</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:.3em .5em;font-size:.9em;vertical-align:top}}</style></head><body>
<h1>Binance sandbox: wallet</h1>
<p>Master {e(s['master']['email'])}: {e(str(s['master']['free']))}</p>
<h2>Send an on-chain deposit</h2>
<form method=post action='/_sandbox/wallet/send'>
coin <select name=coin><option>USDT<option>BTC<option>ETH</select>
network <select name=network><option>TRX<option>ETH<option>BSC<option>BTC</select>
address <input name=address size=60> amount <input name=amount size=10> memo <input name=memo size=8>
confirmations <input name=confirmations size=3> <button>send</button></form>
<h2>Sub-accounts</h2><table><tr><th>email</th><th>addresses (BTC, EVM, TRON)</th><th>free</th><th>locked</th></tr>{subs}</table>
<h2>Deposits</h2><table><tr><th>id</th><th>email</th><th>amount</th><th>status</th><th>conf.</th><th>txId</th><th></th></tr>{deps}</table>
<h2>Withdrawals</h2>
<p>{form('next_withdraw', {'mode': 'timeout', 'create': 'true'}, 'next withdraw/apply: time out after creating')}
{form('next_withdraw', {'mode': 'error500'}, 'next withdraw/apply: HTTP 500 (not created)')}
{form('next_withdraw', {'mode': 'error500', 'create': 'true'}, 'next withdraw/apply: HTTP 500 (created)')}</p>
<table><tr><th>id</th><th>withdrawOrderId</th><th>requested</th><th>address</th><th>status</th><th>info</th><th></th></tr>{wds}</table>
<h2>Networks</h2><table><tr><th>coin/network</th><th>deposits</th><th>withdrawals</th><th></th></tr>{nets}</table>
</body></html>"""
    return current_app.response_class(page, mimetype="text/html")


__all__ = ["COINS", "ERRORS", "FAMILY", "NETWORKS", "WalletState", "routes"]
