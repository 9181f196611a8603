"""E-mail copies of notifications, sent by the worker (never in a request,
never inside a database transaction).

Each run lists the unsent notifications (admin.list_unsent_notifications),
sends one e-mail each, then marks it sent (admin.mark_notification_emailed).
A crash between sending and marking sends that e-mail again on the next run:
at least once, never lost. With SMTP_URL unset (development) the e-mail is
printed to the log instead.

    SMTP_URL=smtp://user:password@smtp.example.com:587   (STARTTLS when offered)
    SMTP_URL=smtps://user:password@smtp.example.com:465  (TLS from the start)
    MAIL_FROM="bs-market <no-reply@example.com>"
"""
from __future__ import annotations

import logging
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

from .. import db

log = logging.getLogger("bs-market.notifications")

BATCH = 50
SUBJECTS = {
    "kyc": "Verificação de identidade",
    "security": "Segurança da sua conta",
    "deposit": "Depósito",
    "withdrawal": "Saque",
    "p2p": "Negociação P2P",
    "market": "Compra e venda",
}


def _setting(app, name: str, default: str = "") -> str:
    return app.config.get(name) or os.environ.get(name) or default


def build_message(app, row: dict) -> EmailMessage:
    from ..auth.mail import mail_domain
    base = _setting(app, "APP_URL", "http://127.0.0.1:8000").rstrip("/")
    msg = EmailMessage()
    msg["From"] = _setting(app, "MAIL_FROM", "bs-market <no-reply@bs-market.local>")
    msg["To"] = row["email"]
    msg["Subject"] = f"bs-market: {SUBJECTS.get(row['kind'].split('.')[0], 'Aviso')}"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<notification-{row['notification_id']}@{mail_domain(app)}>"  # a resend is the same message
    # every e-mail of ours shows the customer's anti-phishing code at the top
    body = ([f"Código anti-phishing: {row['anti_phishing_code']}", ""] if row.get("anti_phishing_code") else
            [f"Dica: defina um código anti-phishing em {base}/account/security e ele aparecerá no topo de todo e-mail nosso.", ""])
    body += [f"Olá, {row['display_name']}.", "", row["message"], ""]
    if row.get("link"):
        link = row["link"] if row["link"].startswith("http") else base + row["link"]
        body += [f"Veja em: {link}", ""]
    body += ["Você recebe este e-mail porque tem uma conta na bs-market.",
             f"Todas as notificações: {base}/notifications"]
    msg.set_content("\n".join(body))
    return msg


class Mailer:
    """One SMTP connection per run (or the log, when SMTP_URL is unset)."""

    def __init__(self, url: str, timeout: float = 10):
        self.url = url
        self.timeout = timeout
        self.smtp = None

    def __enter__(self):
        if self.url:
            parts = urlsplit(self.url)
            if parts.scheme == "smtps":
                self.smtp = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=self.timeout,
                                             context=ssl.create_default_context())
            elif parts.scheme == "smtp":
                self.smtp = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=self.timeout)
                self.smtp.ehlo()
                if self.smtp.has_extn("starttls"):
                    self.smtp.starttls(context=ssl.create_default_context())
                    self.smtp.ehlo()
            else:
                raise ValueError(f"SMTP_URL must start with smtp:// or smtps://, not {parts.scheme}://")
            if parts.username:
                self.smtp.login(unquote(parts.username), unquote(parts.password or ""))
        return self

    def send(self, msg: EmailMessage):
        if self.smtp is None:
            log.info("e-mail (SMTP_URL not set, printed instead of sent)\nFrom: %s\nTo: %s\nSubject: %s\n\n%s",
                     msg["From"], msg["To"], msg["Subject"], msg.get_content())
        else:
            self.smtp.send_message(msg)

    def __exit__(self, *exc):
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except smtplib.SMTPException:
                pass


def send_notification_emails(app) -> int:
    """Send the e-mail copy of every unsent notification; returns how many were sent."""
    rows = db.worker_call(app, "admin.list_unsent_notifications", max_rows=BATCH)
    if not rows:
        return 0
    sent = 0
    with Mailer(_setting(app, "SMTP_URL")) as mailer:
        for row in rows:
            mailer.send(build_message(app, row))
            db.worker_call(app, "admin.mark_notification_emailed", notification_id=row["notification_id"])
            sent += 1
    log.info("sent %d notification e-mails", sent)
    return sent


JOBS = [(send_notification_emails, 30)]
