"""The notification centre, the unread badge in the nav, and the e-mail copies the worker sends."""
from __future__ import annotations

import logging
import socket
import threading

from webapp.notifications.tasks import send_notification_emails


def notify(owner, user_id, message, kind="kyc.approved", link="/kyc"):
    owner.execute("select core.notify(%s, %s, %s, %s)", (user_id, kind, message, link))


def test_centre_badge_and_mark_all_read(client, forms, demo, login, owner):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    notify(owner, alice, "Seu depósito de R$ 50,00 foi creditado.", "deposit.completed", "/wallet")
    notify(owner, alice, "Documentos aprovados.")
    notify(owner, bob, "Mensagem só do Bob.")
    login("alice@example.com")
    page = client.get("/wallet").get_data(as_text=True)
    assert 'data-testid="unread-count">2<' in page
    centre = client.get("/notifications").get_data(as_text=True)
    assert "R$ 50,00 foi creditado" in centre and "Documentos aprovados" in centre
    assert "Mensagem só do Bob" not in centre
    assert forms.post("/notifications/read", {}, form_url="/notifications").status_code == 302
    assert 'data-testid="unread-count"' not in client.get("/wallet").get_data(as_text=True)
    assert owner.execute("select count(*) as n from core.notifications where user_id = %s and read_at is null",
                         (bob,)).fetchone()["n"] == 1


def test_mark_read_needs_csrf_and_login(client, demo, login):
    assert client.get("/notifications").status_code == 302
    login("alice@example.com")
    assert client.post("/notifications/read").status_code == 400


def test_emails_are_logged_in_development_and_sent_once(app, demo, owner, caplog):
    notify(owner, demo["alice@example.com"], "Documentos aprovados: nível 2.")
    app.config.pop("SMTP_URL", None)
    app.config["APP_URL"] = "http://127.0.0.1:8000"
    with caplog.at_level(logging.INFO, logger="bs-market.notifications"), app.app_context():
        assert send_notification_emails(app) == 1
        assert send_notification_emails(app) == 0
    text = caplog.text
    assert "To: alice@example.com" in text and "Subject: bs-market: Verificação de identidade" in text
    assert "Documentos aprovados: nível 2." in text and "http://127.0.0.1:8000/kyc" in text
    assert owner.execute("select count(*) as n from core.notifications where emailed_at is null").fetchone()["n"] == 0


class TinySMTP(threading.Thread):
    """A minimal SMTP server on loopback: enough of RFC 5321 for smtplib, keeps what it receives."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.messages: list[dict] = []

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as rfile:
                conn.sendall(b"220 tiny ESMTP\r\n")
                current = {"rcpt": []}
                while line := rfile.readline():
                    command = line.decode().strip()
                    upper = command.upper()
                    if upper.startswith(("EHLO", "HELO")):
                        conn.sendall(b"250 tiny\r\n")
                    elif upper.startswith("MAIL FROM"):
                        current = {"from": command[10:], "rcpt": []}
                        conn.sendall(b"250 ok\r\n")
                    elif upper.startswith("RCPT TO"):
                        current["rcpt"].append(command[8:])
                        conn.sendall(b"250 ok\r\n")
                    elif upper == "DATA":
                        conn.sendall(b"354 go\r\n")
                        body = []
                        while (data := rfile.readline()) not in (b".\r\n", b""):
                            body.append(data)
                        current["data"] = b"".join(body).decode()
                        self.messages.append(current)
                        conn.sendall(b"250 queued\r\n")
                    elif upper == "QUIT":
                        conn.sendall(b"221 bye\r\n")
                        break
                    else:
                        conn.sendall(b"250 ok\r\n")

    def stop(self):
        self.sock.close()


def test_emails_go_through_smtp_when_configured(app, demo, owner):
    server = TinySMTP()
    server.start()
    try:
        notify(owner, demo["alice@example.com"], "Saque concluído.", "withdrawal.completed", "/withdrawals")
        notify(owner, demo["bob@example.com"], "Nova mensagem na negociação.", "p2p.message", "/p2p/trades/1")
        app.config["SMTP_URL"] = f"smtp://127.0.0.1:{server.port}"
        app.config["MAIL_FROM"] = "bs-market <no-reply@example.com>"
        with app.app_context():
            assert send_notification_emails(app) == 2
            assert send_notification_emails(app) == 0
    finally:
        server.stop()
    assert [m["rcpt"] for m in server.messages] == [["<alice@example.com>"], ["<bob@example.com>"]]
    first = server.messages[0]["data"]
    assert "Subject: bs-market: Saque" in first and "/withdrawals" in first
