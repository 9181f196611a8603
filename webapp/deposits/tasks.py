"""Worker jobs of the BRL rails, PIX-in side (collected by webapp/jobs.py).

- attach_pending_charges: charges whose first provider call failed get their
  provider charge now (found again by reference, or created with the same key);
- reconcile_charges: charges still pending after deposit_reconcile_after_minutes
  are looked up at the provider and confirmed or expired (a lost webhook loses no money);
- create_pending_p2p_charges: PIX-confirmed P2P trades that still have no charge
  (admin.pending_p2p_pix_charges) get one;
- process_notifications: webhook deliveries the web queued are fetched from the
  provider and booked (a deposit credited, a clawback, a payout settled);
- cancel_ended_trade_charges: the PIX charge of a P2P trade that ended is cancelled
  at the provider (a charge already paid is confirmed instead, which refunds it);
- make_refunds: PIX payments nobody may be credited with go back to their payer
  (refund with the idempotency key pix-refund-<id>);
- register_inter_webhook: when Banco Inter is the provider, (re)registers our webhook URL.
"""
from __future__ import annotations

import logging

from .. import db
from ..errors import DomainError
from ..providers import get_pix_provider, pix_provider_name
from ..providers.base import NotCancellable, ProviderError
from . import service

log = logging.getLogger("bs-market.deposits")


def attach_pending_charges(app, max_rows: int = 20, min_age_seconds: int = 15) -> dict:
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.pix_charges_to_attach", max_rows=max_rows, min_age_seconds=min_age_seconds):
        try:
            outcome = service.retry_attach(app, row)
        except DomainError as exc:
            log.error("charge %s: %r", row["reference"], exc)
            outcome = "error"
        done[outcome] = done.get(outcome, 0) + 1
    if done:
        log.info("pix charges attached: %s", done)
    return done


def reconcile_charges(app, max_rows: int = 50) -> dict:
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.pix_charges_to_reconcile", max_rows=max_rows):
        try:
            outcome = service.reconcile(app, row)
        except ProviderError as exc:
            log.warning("reconcile %s: %s", row["reference"], exc)
            outcome = "provider_error"
        except DomainError as exc:
            log.error("reconcile %s: %r", row["reference"], exc)
            outcome = "error"
        done[outcome] = done.get(outcome, 0) + 1
    if done:
        log.info("pix charges reconciled: %s", done)
    return done


def create_pending_p2p_charges(app, max_rows: int = 20) -> int:
    """Safety net for the P2P view: trades waiting for a PIX charge get one."""
    made = 0
    for row in db.worker_call(app, "admin.pending_p2p_pix_charges", max_rows=max_rows):
        try:
            service.create_charge_for_p2p_trade(app, row["trade_id"], row["brl_amount"], row["buyer_email"],
                                                row["buyer_cpf"], row["expires_at"], worker=True)
            made += 1
        except (ProviderError, DomainError) as exc:
            log.warning("p2p trade %s: PIX charge not created yet: %r", row["trade_id"], exc)
    return made


def process_notifications(app, max_rows: int = 50) -> dict:
    """Book what each queued webhook delivery names, as the provider's API shows it now."""
    from ..withdrawals import service as withdrawals
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.provider_notifications_due", max_rows=max_rows):
        try:
            if row["topic"] == "payment":
                outcome = service.handle_notification(app, row["provider"], row["resource_id"])
            else:
                outcome = withdrawals.handle_notification(app, row["provider"], row["resource_id"])
        except (ProviderError, DomainError) as exc:
            # kept pending: retried later (its next try was set when it was claimed)
            log.warning("notification %s %s %s: %r", row["provider"], row["topic"], row["resource_id"], exc)
            db.worker_call(app, "admin.finish_provider_notification", notification_id=row["notification_id"],
                           error=str(exc))
            outcome = "retry"
        else:
            db.worker_call(app, "admin.finish_provider_notification", notification_id=row["notification_id"],
                           outcome=outcome)
        done[outcome] = done.get(outcome, 0) + 1
    if done:
        log.info("provider notifications: %s", done)
    return done


def cancel_ended_trade_charges(app, max_rows: int = 20) -> dict:
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.pix_charges_to_cancel", max_rows=max_rows):
        outcome = "cancelled"
        try:
            if row["provider_payment_id"]:
                get_pix_provider(app, row["charge_provider"]).cancel_charge(row["provider_payment_id"])
            db.worker_call(app, "admin.cancel_pix_charge", charge_id=row["charge_id"],
                           reason="cancelada: a negociação terminou")
        except NotCancellable as exc:
            # paid meanwhile: book it (a trade no longer OPEN sends it to a refund)
            outcome = service.confirm(app, row["charge_provider"], exc.charge)["outcome"] if exc.charge else "paid"
        except (ProviderError, DomainError) as exc:
            log.warning("charge %s not cancelled yet: %r", row["reference"], exc)
            outcome = "retry"
        done[outcome] = done.get(outcome, 0) + 1
    if done:
        log.info("ended trades' PIX charges: %s", done)
    return done


def make_refunds(app, max_rows: int = 20) -> dict:
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.pix_refunds_due", max_rows=max_rows):
        client = get_pix_provider(app, row["provider"])
        try:
            refund = client.refund_charge(row["provider_payment_id"], row["amount"], f"pix-refund-{row['refund_id']}")
        except ProviderError as exc:
            status = db.worker_call(app, "admin.record_pix_refund", refund_id=row["refund_id"], error=str(exc),
                                    definite=service.definite(exc))[0]["record_pix_refund"]
            if status == "FAILED":
                log.error("ALERT pix refund %s of %s refused by %s: %s", row["refund_id"], row["provider_payment_id"],
                          row["provider"], exc)
        else:
            status = db.worker_call(app, "admin.record_pix_refund", refund_id=row["refund_id"],
                                    provider_refund_id=str(refund.id))[0]["record_pix_refund"]
        done[status] = done.get(status, 0) + 1
    if done:
        log.info("pix refunds: %s", done)
    return done


def register_inter_webhook(app) -> bool:
    if pix_provider_name(app.config) != "inter" or not app.config.get("APP_URL"):
        return False
    url = app.config["APP_URL"].rstrip("/") + "/webhooks/inter"
    try:
        get_pix_provider(app, "inter").register_webhook(url)
    except ProviderError as exc:
        log.warning("could not register the Banco Inter webhook %s: %s", url, exc)
        return False
    log.info("Banco Inter webhook registered: %s", url)
    return True


JOBS = [
    (process_notifications, 1),
    (cancel_ended_trade_charges, 10),
    (make_refunds, 30),
    (attach_pending_charges, 20),
    (reconcile_charges, 60),
    (create_pending_p2p_charges, 30),
    (register_inter_webhook, 3600),
]
