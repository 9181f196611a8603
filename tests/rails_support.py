"""Shared pieces of the BRL-rails tests (test_deposits, test_withdrawals,
test_webhooks, test_inter_rails): the app served over real HTTP on a free port
(so the emulators can deliver webhooks to it), and small helpers.

The emulators are the real ones (sandbox/*), started in threads.
"""
from __future__ import annotations

import threading
import time
import uuid

import requests
from werkzeug.serving import make_server

from webapp.providers.mercadopago import sign_webhook

TOKEN = "TEST-rails-token"
SECRET = "rails-webhook-secret"
PASSWORD = "demo-pass-2026"


class JobsThread:
    """Worker jobs run every 0.2 s in a thread, as the worker process would run them (a failing run is
    retried at the next tick: the test's own assertions say what went wrong)."""

    def __init__(self, app, jobs):
        self.app, self.jobs = app, jobs
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, name="test-worker", daemon=True)
        self.thread.start()

    def _work(self):
        while not self.stop.wait(0.2):
            with self.app.app_context():
                for job in self.jobs:
                    try:
                        job(self.app)
                    except Exception:  # noqa: BLE001
                        pass

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)


class LiveApp:
    """The Flask app on a werkzeug threaded server in a background thread, and
    (unless worker=False) the worker's job that books queued webhook deliveries."""

    def __init__(self, app, worker: bool = True):
        from webapp.deposits.tasks import process_notifications
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        app.config["APP_URL"] = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.worker = JobsThread(app, [process_notifications]) if worker else None

    def close(self):
        if self.worker:
            self.worker.close()
        self.server.shutdown()
        self.server.server_close()


def make_app(db_url: str, worker: bool = True, **extra):
    """The app as conftest builds it, plus the rails settings, served live (with the webhook worker)."""
    from webapp import create_app
    from webapp.config import role_url
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": db_url,
        "APP_DATABASE_URL": role_url(db_url, "exchange_app"),
        "AUDIT_DATABASE_URL": role_url(db_url, "exchange_auditor"),
        "WORKER_DATABASE_URL": role_url(db_url, "exchange_worker"),
        "RATELIMIT_ENABLED": True,
        "DB_POOL_MAX": 6,
        "MERCADO_PAGO_ACCESS_TOKEN": TOKEN,
        "MERCADO_PAGO_WEBHOOK_SECRET": SECRET,
        "PIX_PROVIDER": "mercadopago",
        "PIX_PROVIDER_TIMEOUT": 5,
    }
    config.update(extra)
    app = create_app(config)
    app.extensions["live"] = LiveApp(app, worker=worker)
    return app


def process(app) -> dict:
    """Run the worker's webhook job once: what it booked, by outcome."""
    from webapp.deposits.tasks import process_notifications
    with app.app_context():
        return process_notifications(app)


def close_app(app):
    app.extensions["live"].close()
    from webapp import db
    db.close_pools(app)


def mp_config(**extra) -> dict:
    config = {"ACCESS_TOKEN": TOKEN, "WEBHOOK_SECRET": SECRET, "WEBHOOK_RETRY_INTERVALS": [0.2, 0.5],
              "WEBHOOK_TIMEOUT": 5, "PAYOUT_TIMEOUT_SLEEP": 2.5}
    config.update(extra)
    return config


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def control(sandbox, path: str, **body) -> dict:
    r = requests.post(sandbox.url + path, json=body, timeout=10)
    assert r.status_code < 300, r.text
    return r.json()


def setting(owner, name: str, value) -> None:
    owner.execute("update core.settings set value = %s where name = %s", (str(value), name))


def charge(owner, deposit_id: int) -> dict:
    return owner.execute("select * from core.pix_charges where id = %s", (deposit_id,)).fetchone()


def deposit_entries(owner, reference: str) -> int:
    return owner.execute("select count(*) as n from core.entries where reference = %s and kind = 'deposit'",
                         (reference,)).fetchone()["n"]


def brl(owner, user_id: int, purpose: str = "available"):
    return owner.execute("select balance from core.accounts where user_id = %s and currency = 'BRL' and purpose = %s",
                         (user_id, purpose)).fetchone()["balance"]


def clearing(owner, provider: str = "mercadopago"):
    return owner.execute("select balance from core.accounts where user_id is null and currency = 'BRL' "
                         "and purpose = %s", (f"clearing_{provider}",)).fetchone()["balance"]


def signed_post(app_url: str, data_id: str, kind: str = "payment", secret: str = SECRET, ts: str | None = None,
                request_id: str | None = None):
    """A Mercado Pago notification as the real sender builds it (providers.md B.5)."""
    request_id = request_id or str(uuid.uuid4())
    ts = ts or str(int(time.time()))
    headers = {"Content-Type": "application/json", "x-request-id": request_id,
               "x-signature": sign_webhook(data_id, request_id, ts, secret)}
    body = {"id": 1, "live_mode": False, "type": kind, "action": "payment.updated", "api_version": "v1",
            "data": {"id": data_id}}
    return requests.post(f"{app_url}/webhooks/mercadopago?data.id={data_id}&type={kind}", json=body,
                         headers=headers, timeout=20)


def new_customer(owner, email: str, kyc_level: int = 0) -> int:
    from werkzeug.security import generate_password_hash
    user_id = owner.execute("select api.register_user(%s, %s, %s) as id",
                            (email, generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
                             email.split("@")[0].title())).fetchone()["id"]
    owner.execute("update core.users set kyc_level = %s where id = %s", (kyc_level, user_id))
    owner.execute("select core.mark_email_verified(%s)", (user_id,))  # (tests/test_accounts.py follows the real link)
    return user_id


def app_call(app, function: str, **kwargs):
    """A call as the web's role (exchange_app), as a view makes it."""
    from webapp import db
    with app.app_context():
        return db.call(function, **kwargs)


def worker_call(app, function: str, **kwargs):
    from webapp import db
    return db.worker_call(app, function, **kwargs)

