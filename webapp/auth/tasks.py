"""The worker's mail job: sends the outbox (core.mail_outbox) through SMTP_URL.

Each run claims the due rows (admin.claim_mail: leased for two minutes, so a
run that dies is retried), builds each message (mail.build: a link mail gets
its token here), sends it outside any transaction, then records the outcome
(admin.record_mail_outcome: sent, or retried with back-off, failed after
mail_max_attempts). A crash between sending and recording sends the message
again with the same Message-ID: at least once, never lost.
"""
from __future__ import annotations

import logging
import smtplib

from .. import db
from ..notifications.tasks import Mailer
from . import mail

log = logging.getLogger("bs-market.mail")

BATCH = 20


def send_account_mail(app) -> int:
    """Send the due e-mails of the outbox; returns how many were sent."""
    rows = db.worker_call(app, "admin.claim_mail", max_rows=BATCH)
    if not rows:
        return 0
    sent = 0
    done: set[int] = set()

    def record(row, ok: bool, error: str | None = None):
        db.worker_call(app, "admin.record_mail_outcome", mail_id=row["mail_id"], sent=ok, error=error)
        done.add(row["mail_id"])

    try:
        with Mailer(mail.setting(app, "SMTP_URL")) as mailer:
            for row in rows:
                msg = mail.build(app, row)
                if msg is None:            # its link was replaced meanwhile: cancelled, not sent
                    done.add(row["mail_id"])
                    continue
                try:
                    mailer.send(msg)
                except (smtplib.SMTPException, OSError) as exc:
                    log.warning("mail %s to %s not sent: %s", row["mail_id"], row["recipient"], exc)
                    record(row, False, f"{type(exc).__name__}: {exc}")
                    continue
                record(row, True)
                sent += 1
    except (smtplib.SMTPException, OSError) as exc:  # the server could not be reached at all
        log.warning("SMTP unavailable: %s", exc)
        for row in rows:
            if row["mail_id"] not in done:
                record(row, False, f"{type(exc).__name__}: {exc}")
    if sent:
        log.info("sent %d account e-mails", sent)
    return sent


JOBS = [(send_account_mail, 3)]
