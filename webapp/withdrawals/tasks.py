"""Worker jobs of the BRL rails, PIX-out side (collected by webapp/jobs.py).

- process_withdrawals: claim PENDING withdrawals (FOR UPDATE SKIP LOCKED,
  committed as PROCESSING) and send their payouts;
- recheck_withdrawals: PROCESSING withdrawals older than withdrawal_recheck_seconds
  are looked up at the provider (or recovered with the same idempotency key).
"""
from __future__ import annotations

import logging

from .. import db
from ..errors import DomainError
from ..providers import pix_provider_name
from . import service

log = logging.getLogger("bs-market.withdrawals")


def process_withdrawals(app, max_rows: int = 10) -> dict:
    provider = pix_provider_name(app.config)
    done: dict[str, int] = {}
    rows = db.worker_call(app, "admin.claim_withdrawals", provider=provider, max_rows=max_rows)
    for row in rows:
        try:
            outcome = service.send(app, provider, row)
        except DomainError as exc:
            log.error("withdrawal %s: %r", row["withdrawal_id"], exc)
            outcome = "error"
        done[outcome] = done.get(outcome, 0) + 1
    if done:
        log.info("withdrawals sent: %s", done)
    return done


def recheck_withdrawals(app, max_rows: int = 20) -> dict:
    done: dict[str, int] = {}
    for row in db.worker_call(app, "admin.withdrawals_to_recheck", max_rows=max_rows):
        try:
            outcome = service.recheck(app, row)
        except DomainError as exc:
            log.error("withdrawal %s: %r", row["withdrawal_id"], exc)
            outcome = "error"
        done[outcome] = done.get(outcome, 0) + 1
    if done:
        log.info("withdrawals rechecked: %s", done)
    return done


JOBS = [(process_withdrawals, 5), (recheck_withdrawals, 30)]
