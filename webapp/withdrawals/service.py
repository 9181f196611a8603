"""PIX payouts: the provider calls between the SQL steps of sql/withdrawals.sql.

The worker claims PENDING withdrawals (admin.claim_withdrawals → PROCESSING,
committed), then `send` pays each one with the idempotency key derived from
its reference (wd-<id>). A definite answer completes or fails it; anything
else (timeout, 5xx, still in flight) leaves it PROCESSING, and `recheck`
later looks the payout up by id — or, when the id was never learned, resends
the *same* request with the *same* key, which the provider answers with the
payout it already made. Nothing is ever resent under a new key.
"""
from __future__ import annotations

import logging
import re

from .. import db
from ..errors import DomainError
from ..providers import get_pix_provider
from ..providers.base import PAYOUT_COMPLETED, PAYOUT_FAILED, NotFound, Payout, ProviderError

log = logging.getLogger("bs-market.withdrawals")

OUR_REFERENCE = re.compile(r"^wd-([0-9]+)$")


def notification_url(app, provider: str) -> str | None:
    base = (app.config.get("APP_URL") or "").rstrip("/")
    return f"{base}/webhooks/mercadopago?source_news=webhooks" if provider == "mercadopago" and base else None


def settle(app, withdrawal_id: int, payout: Payout, client) -> str:
    """Record what the provider (`client`) says about a payout; returns completed | failed | pending.
    A failure is stored with the provider client's text for it (translated when shown)."""
    if payout.status == PAYOUT_COMPLETED:
        db.worker_call(app, "admin.complete_withdrawal", withdrawal_id=withdrawal_id,
                       provider_payout_id=payout.provider_id)
        return "completed"
    if payout.status == PAYOUT_FAILED:
        db.worker_call(app, "admin.fail_withdrawal", withdrawal_id=withdrawal_id,
                       reason=client.payout_failure_text(payout), provider_payout_id=payout.provider_id)
        return "failed"
    db.worker_call(app, "admin.record_withdrawal_payout", withdrawal_id=withdrawal_id,
                   provider_payout_id=payout.provider_id)
    return "pending"


def _unsure(app, withdrawal_id: int, exc: ProviderError) -> str:
    log.warning("withdrawal %s: outcome unknown, will look it up: %r", withdrawal_id, exc)
    db.worker_call(app, "admin.record_withdrawal_payout", withdrawal_id=withdrawal_id, error=str(exc))
    return "unknown"


def _refused(app, withdrawal_id: int, exc: ProviderError) -> str:
    log.warning("withdrawal %s refused: %r", withdrawal_id, exc)
    db.worker_call(app, "admin.fail_withdrawal", withdrawal_id=withdrawal_id,
                   reason=f"recusado pelo provedor PIX: {exc.message}"[:500])
    return "failed"


def _definite(exc: ProviderError) -> bool:
    return not (exc.retryable or exc.outcome_unknown) and exc.status not in (409, 423, 429)


def send(app, provider: str, row: dict) -> str:
    """Pay one claimed (PROCESSING) withdrawal."""
    client = get_pix_provider(app, provider)
    wid = row["withdrawal_id"]
    try:
        payout = client.send_pix_payout(row["reference"], row["amount"], row["key_type"], row["pix_key"],
                                        notification_url=notification_url(app, provider))
    except ProviderError as exc:
        return _refused(app, wid, exc) if _definite(exc) else _unsure(app, wid, exc)
    outcome = settle(app, wid, payout, client)
    if outcome == "pending" and payout.provider_id:
        # Often final a moment later (Inter answers "PROCESSADO" first): one quick look.
        try:
            outcome = settle(app, wid, client.get_payout(payout.provider_id), client)
        except ProviderError as exc:
            log.info("withdrawal %s: payout %s not final yet: %s", wid, payout.provider_id, exc)
    return outcome


def recheck(app, row: dict) -> str:
    """Look again at a withdrawal PROCESSING for too long (admin.withdrawals_to_recheck)."""
    client = get_pix_provider(app, row["provider"])
    wid = row["withdrawal_id"]
    try:
        if row["provider_payout_id"]:
            payout = client.get_payout(row["provider_payout_id"])
        else:
            # The id was never learned (timeout, 5xx, crash): the same request with
            # the same idempotency key returns the payout made the first time.
            payout = client.recover_payout(row["reference"], row["amount"], row["key_type"], row["pix_key"],
                                           notification_url=notification_url(app, row["provider"]))
    except NotFound as exc:
        log.error("ALERT withdrawal %s: %s does not know payout %s", wid, row["provider"], row["provider_payout_id"])
        db.worker_call(app, "admin.record_withdrawal_payout", withdrawal_id=wid, error=str(exc))
        return "unknown"
    except ProviderError as exc:
        if _definite(exc) and not row["provider_payout_id"]:
            return _refused(app, wid, exc)
        return _unsure(app, wid, exc)
    return settle(app, wid, payout, client)


def handle_notification(app, provider: str, payout_id: str) -> str:
    """A payout notification: fetch the payout from the API and settle our withdrawal."""
    client = get_pix_provider(app, provider)
    try:
        payout = client.get_payout(payout_id)
    except NotFound:
        log.warning("payout webhook: %s does not know payout %s; ignored", provider, payout_id)
        return "unknown_payout"
    match = OUR_REFERENCE.match(payout.reference or "")
    if not match:
        log.warning("payout webhook: payout %s has no reference of ours (%r); ignored", payout_id, payout.reference)
        return "not_ours"
    try:
        return settle(app, int(match.group(1)), payout, client)
    except DomainError as exc:
        if exc.code in ("BSN01", "BSS01"):
            log.warning("payout webhook: withdrawal %s: %s", match.group(1), exc.message)
            return "ignored"
        raise
