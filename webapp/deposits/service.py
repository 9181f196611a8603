"""PIX charges: the provider calls between the SQL steps (sql/deposits.sql).

1. an api/admin function records the charge (PENDING), commit;
2. `request_charge` asks the provider to create it, with an idempotency key
   derived from our reference (dep-<id> / p2p-<trade id>), and records the
   provider's id and QR code (admin.attach_pix_charge);
3. `confirm` reports what the provider's API says about a payment to
   admin.confirm_pix_charge, the only place a PIX payment is booked.

Used by the deposit views, the worker jobs and — through
`create_charge_for_p2p_trade` — the P2P views. The steps a view shares with a
job take `worker`: a view records as the web's role (`db.call`), a job as
exchange_worker (`db.worker_call`). No transaction is ever open while a
provider is called: each db call is its own transaction.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from .. import db
from ..errors import DomainError
from ..providers import get_pix_provider, pix_provider_name
from ..providers.base import (
    CHARGE_APPROVED, CHARGE_PENDING, CHARGE_REFUNDED, Charge, NotFound,
    ProviderError,
)

log = logging.getLogger("bs-market.deposits")

BRAZIL = ZoneInfo("America/Sao_Paulo")
OUR_REFERENCE = re.compile(r"^(dep|p2p)-[0-9]+$")
# Mercado Pago refuses a PIX charge that expires in less than 30 minutes.
MP_MIN_EXPIRY = timedelta(minutes=31)


def notification_url(app, provider: str) -> str | None:
    """Where Mercado Pago posts this charge's notifications (Inter uses the webhook registered for our key)."""
    base = (app.config.get("APP_URL") or "").rstrip("/")
    if provider == "mercadopago" and base:
        return f"{base}/webhooks/mercadopago?source_news=webhooks"
    return None


def definite(exc: ProviderError) -> bool:
    """A refusal that a retry with the same request would get again."""
    return not (exc.retryable or exc.outcome_unknown) and exc.status not in (409, 423)


def request_charge(app, *, charge_id: int, reference: str, amount: Decimal, expires_at: datetime,
                   payer_email: str, payer_cpf: str | None, description: str, provider: str,
                   worker: bool = False) -> Charge:
    """Create the provider charge of one of our rows (or get it back: same reference, same
    idempotency key) and record it. Raises ProviderError when the provider call fails."""
    client = get_pix_provider(app, provider)
    charge = client.create_pix_charge(reference, amount, payer_email, payer_cpf,
                                      expires_at.astimezone(BRAZIL), description,
                                      notification_url=notification_url(app, provider))
    try:
        attach(app, charge_id, provider, charge, worker=worker)
    except DomainError as exc:
        if exc.hint == "provider_id_reused":
            # The provider handed back a payment id another charge holds (e.g. a
            # sandbox restarted on old data): never book it; this charge fails.
            log.error("ALERT pix: %s", exc.message)
            reason = "o provedor devolveu um identificador de pagamento já usado; faça um novo depósito"
            if worker:
                db.worker_call(app, "admin.fail_pix_charge", charge_id=charge_id, reason=reason)
            else:
                db.call("admin.fail_pix_charge", charge_id=charge_id, reason=reason)
        raise
    return charge


def attach(app, charge_id: int, provider: str, charge: Charge, worker: bool = False) -> None:
    recorded = dict(charge_id=charge_id, provider=provider, provider_payment_id=charge.provider_id,
                    qr_code=charge.qr_code, qr_code_base64=charge.qr_code_base64)
    if worker:
        db.worker_call(app, "admin.attach_pix_charge", **recorded)
    else:
        db.call("admin.attach_pix_charge", **recorded)


def note_error(app, charge_id: int, exc: Exception, worker: bool = False) -> None:
    try:
        if worker:
            db.worker_call(app, "admin.note_pix_charge_error", charge_id=charge_id, error=str(exc))
        else:
            db.call("admin.note_pix_charge_error", charge_id=charge_id, error=str(exc))
    except Exception:  # noqa: BLE001  (recording the error must not hide it)
        log.exception("could not record the error of charge %s", charge_id)


def customer_reason(exc: ProviderError) -> str:
    return f"o provedor PIX recusou a cobrança ({exc.message})"[:500]


def confirm(app, provider: str, charge: Charge) -> dict:
    """Report a charge as the provider's API shows it; returns admin.confirm_pix_charge's row."""
    paid = charge.paid_amount
    if paid is None and charge.status == CHARGE_APPROVED:
        paid = charge.amount
    status = charge.status
    if status == CHARGE_APPROVED and charge.refunded_amount:
        status = CHARGE_REFUNDED   # part of it went back to the payer: that part is clawed back
    rows = db.worker_call(app, "admin.confirm_pix_charge", reference=charge.reference, provider=provider,
                          provider_payment_id=charge.provider_id, status=status, paid_amount=paid,
                          payer_cpf=charge.payer_cpf, end_to_end_id=charge.end_to_end_id,
                          refunded_amount=charge.refunded_amount)
    row = rows[0]
    log.info("pix charge %s (%s %s): %s%s", charge.reference, provider, charge.provider_id, row["outcome"],
             " (replayed)" if row["replayed"] else "")
    if row["outcome"] == "other_payment":
        log.error("ALERT pix: %s payment %s carries our reference %s but is not the charge's payment",
                  provider, charge.provider_id, charge.reference)
    return row


def handle_notification(app, provider: str, provider_payment_id: str) -> str:
    """A webhook said something happened to a payment: fetch it from the provider's API
    (never trust the notification body) and confirm it. Returns what happened.
    Raises ProviderError when the provider could not be asked (the webhook answers 5xx: retried)."""
    client = get_pix_provider(app, provider)
    try:
        charge = client.get_charge(provider_payment_id)
    except NotFound:
        log.warning("pix webhook: %s does not know payment %s; ignored", provider, provider_payment_id)
        return "unknown_payment"
    if not charge.reference or not OUR_REFERENCE.match(charge.reference):
        log.warning("pix webhook: %s payment %s has no reference of ours (%r); ignored",
                    provider, provider_payment_id, charge.reference)
        return "not_ours"
    try:
        return confirm(app, provider, charge)["outcome"]
    except DomainError as exc:
        if exc.code == "BSN01":
            log.warning("pix webhook: %s payment %s: %s; ignored", provider, provider_payment_id, exc.message)
            return "unknown_reference"
        raise


def _pick(found: list[Charge], payment_id: str | None) -> Charge | None:
    """The provider charge that is ours: the one recorded, else a paid one, else the newest."""
    if payment_id:
        for c in found:
            if c.provider_id == payment_id:
                return c
    for c in found:
        if c.status == CHARGE_APPROVED:
            return c
    return found[0] if found else None


def reconcile(app, row: dict) -> str:
    """Reconciler step for one PENDING charge (admin.pix_charges_to_reconcile): search the
    provider by our reference and settle what it shows, so a lost webhook loses no money."""
    client = get_pix_provider(app, row["charge_provider"])
    found = client.find_charges_by_reference(row["reference"])
    charge = _pick(found, row["provider_payment_id"])
    if charge is None:
        if row["expires_at"] < datetime.now(timezone.utc) - timedelta(minutes=2):
            db.worker_call(app, "admin.expire_pix_charge", charge_id=row["charge_id"],
                           reason="expirou: o provedor não tem cobrança com esta referência")
            return "expired"
        return "not_found"
    if not row["provider_payment_id"] and charge.status == CHARGE_PENDING:
        attach(app, row["charge_id"], row["charge_provider"], charge, worker=True)
    if not charge.reference:
        charge = dataclasses.replace(charge, reference=row["reference"])
    return confirm(app, row["charge_provider"], charge)["outcome"]


def retry_attach(app, row: dict) -> str:
    """Job step for a charge the first provider call left without a provider payment
    (admin.pix_charges_to_attach): find it at the provider, or create it now."""
    client = get_pix_provider(app, row["charge_provider"])
    try:
        found = client.find_charges_by_reference(row["reference"])
        if found:
            charge = _pick(found, None)
            attach(app, row["charge_id"], row["charge_provider"], charge, worker=True)
            if charge.status != CHARGE_PENDING:
                confirm(app, row["charge_provider"], charge)
            return "found"
        request_charge(app, charge_id=row["charge_id"], reference=row["reference"], amount=row["charge_amount"],
                       expires_at=row["expires_at"], payer_email=row["payer_email"], payer_cpf=row["payer_cpf"],
                       description=row["description"], provider=row["charge_provider"], worker=True)
        return "created"
    except ProviderError as exc:
        note_error(app, row["charge_id"], exc, worker=True)
        if definite(exc):
            db.worker_call(app, "admin.fail_pix_charge", charge_id=row["charge_id"], reason=customer_reason(exc))
            log.warning("pix charge %s refused by %s: %s", row["reference"], row["charge_provider"], exc)
            return "failed"
        log.warning("pix charge %s: %s still unavailable: %s", row["reference"], row["charge_provider"], exc)
        return "retry"


def create_charge_for_p2p_trade(app, trade_id: int, amount: Decimal, payer_email: str | None,
                                payer_cpf: str | None, expires_at: datetime, worker: bool = False) -> Charge:
    """The PIX charge a buyer pays for a PIX-confirmed P2P trade (reference p2p-<trade_id>).

    Records the charge row (admin.create_p2p_pix_charge, idempotent), asks the
    configured provider to create it (same reference → same idempotency key, so
    calling this again returns the same charge), then records it with
    admin.attach_pix_charge, which also calls admin.attach_p2p_pix_charge so the
    trade page shows the QR code. The payment, when it arrives, is handed to
    admin.confirm_p2p_pix_payment by admin.confirm_pix_charge.
    Mercado Pago needs at least 30 minutes of validity: an earlier expiry is
    pushed to that (a payment after the trade deadline is the P2P domain's case).
    Raises ProviderError (the charge row stays; the attach job retries it) or DomainError.
    """
    provider = pix_provider_name(app.config)
    if provider == "mercadopago":
        expires_at = max(expires_at, datetime.now(timezone.utc) + MP_MIN_EXPIRY)
    wanted = dict(trade_id=trade_id, amount=amount, provider=provider, expires_at=expires_at)
    if worker:
        row = db.worker_call(app, "admin.create_p2p_pix_charge", **wanted)[0]
    else:
        row = db.call("admin.create_p2p_pix_charge", **wanted)[0]
    client = get_pix_provider(app, row["charge_provider"])
    if row["provider_payment_id"]:
        return client.get_charge(row["provider_payment_id"])
    try:
        return request_charge(app, charge_id=row["charge_id"], reference=row["reference"], amount=row["charge_amount"],
                              expires_at=row["charge_expires_at"], payer_email=payer_email or row["payer_email"],
                              payer_cpf=payer_cpf or row["payer_cpf"], description=row["description"],
                              provider=row["charge_provider"], worker=worker)
    except ProviderError as exc:
        note_error(app, row["charge_id"], exc, worker=worker)
        raise
