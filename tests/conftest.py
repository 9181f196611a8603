"""Test fixtures: a throwaway PostgreSQL cluster, databases cloned from a migrated template.

- `pg` (session): a private cluster in a temp directory on a free port, destroyed at the end.
- `db_url` (per test): the owner URL of a fresh database cloned from the template.
- `owner`: an autocommit connection as the owner (SQL-level tests, planting corruption);
  `web` / `worker`: the same as exchange_app / exchange_worker; `priced`: fresh index prices.
- `app`, `client`: the Flask app on that database, CSRF on; `forms` posts forms with their token.
- `books(conn)`: assert the books balance (zero-sum, cached = computed, nothing negative, holds).
- `pgbouncer` (session, autouse): when the `pgbouncer` binary is installed (CI installs it), a
  PgBouncer in transaction mode in front of the test cluster; every test app built with
  `webapp.create_app` has its web, worker and audit pools routed through it (the worker's leader
  lock stays direct: webapp/jobs.py leader_url). TEST_PGBOUNCER=0 turns it off.
"""
from __future__ import annotations

import itertools
import os
import re
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

import webapp
from devserver import pgbouncer as pgbouncer_module
from devserver.cluster import Cluster
from webapp import migrate

TEMPLATE = "bsm_template"
_counter = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg():
    if os.environ.get("TEST_DATABASE_ADMIN_URL"):
        yield None  # an existing server (owner URL of its `postgres` database)
        return
    base = Path(tempfile.mkdtemp(prefix="bsm-test-")) / "pg"
    for attempt in range(3):  # the free port may be taken by someone else meanwhile
        cluster = Cluster(base=base, port=free_port())
        try:
            cluster.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
    yield cluster
    cluster.destroy()


# The session's PgBouncer, once started: {"port": …, "target_port": …}.
BOUNCER: dict = {}
POOLED_URLS = ("APP_DATABASE_URL", "WORKER_DATABASE_URL", "AUDIT_DATABASE_URL")


def through_pgbouncer(config: dict | None) -> dict | None:
    """The test app's pools through the session's PgBouncer (URLs of the test cluster only)."""
    if not config or not BOUNCER:
        return config
    from psycopg.conninfo import conninfo_to_dict
    config = dict(config)
    for key in POOLED_URLS:
        url = config.get(key)
        if url and conninfo_to_dict(url).get("port") == str(BOUNCER["target_port"]):
            config[key] = pgbouncer_module.via(url, BOUNCER["port"])
    return config


_create_app = webapp.create_app


def _create_app_through_pgbouncer(test_config: dict | None = None):
    return _create_app(through_pgbouncer(test_config))


# Patched before any test module imports it (`from webapp import create_app`);
# once, even when a test module imports this file again as tests.conftest.
if not getattr(webapp.create_app, "through_pgbouncer", False):
    _create_app_through_pgbouncer.through_pgbouncer = True
    webapp.create_app = _create_app_through_pgbouncer


@pytest.fixture(scope="session", autouse=True)
def pgbouncer(pg):
    """A PgBouncer (transaction mode) in front of the test cluster, when the binary is installed."""
    if pg is None or os.environ.get("TEST_PGBOUNCER", "1") == "0" or not pgbouncer_module.binary():
        yield None
        return
    # Idle server connections close within seconds: every test has its own
    # database, so pools of finished tests must not pile up to max_connections.
    bouncer = pgbouncer_module.Bouncer(pg.base.parent / "pgbouncer", free_port(), "127.0.0.1", pg.port,
                                       server_idle_timeout=3)
    bouncer.start()
    BOUNCER.update(port=bouncer.port, target_port=pg.port)
    yield bouncer
    BOUNCER.clear()
    bouncer.stop()
    import shutil
    shutil.rmtree(bouncer.base, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_url(pg):
    return os.environ.get("TEST_DATABASE_ADMIN_URL") or pg.url("postgres")


def url_for_db(admin_url: str, dbname: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{dbname}"


@pytest.fixture(scope="session")
def template_url(admin_url):
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {TEMPLATE}")
        conn.execute(f"create database {TEMPLATE}")
    url = url_for_db(admin_url, TEMPLATE)
    migrate.upgrade(url, log=lambda *_: None)
    return url


def create_database(admin_url: str, template_url: str) -> str:
    name = f"bsm_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name} template {TEMPLATE}")
    return url_for_db(admin_url, name)


@pytest.fixture
def db_url(admin_url, template_url):
    return create_database(admin_url, template_url)


@pytest.fixture
def owner(db_url):
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def books(conn) -> None:
    """The books balance: zero-sum per currency, cached = computed, nothing negative, holds match."""
    with psycopg.ClientCursor(conn) as cur:
        cur.row_factory = dict_row
        bad_totals = cur.execute("select * from reporting.trial_balance where total <> 0 or cached_total <> 0").fetchall()
        mismatches = cur.execute("select * from reporting.balance_mismatches").fetchall()
        negative = cur.execute("select * from reporting.user_balances where available < 0 or locked < 0").fetchall()
        held = cur.execute("select * from reporting.held_mismatches").fetchall()
        failures = cur.execute("select * from admin.check_books()").fetchall()
    assert bad_totals == [], bad_totals
    assert mismatches == [], mismatches
    assert negative == [], negative
    assert held == [], held
    assert failures == [], failures


# Frozen index prices for SQL-level scenarios (the worker's own admin.record_prices).
PRICES = {"BTCBRL": "300000.00", "ETHBRL": "15000.00", "USDTBRL": "5.00"}


@pytest.fixture
def web(db_url):
    """A connection as exchange_app: what the web may call."""
    from webapp.config import role_url
    with psycopg.connect(role_url(db_url, "exchange_app"), autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def worker(db_url):
    """A connection as exchange_worker: what only the worker may book."""
    from webapp.config import role_url
    with psycopg.connect(role_url(db_url, "exchange_worker"), autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def priced(worker):
    """Fresh index prices (PRICES), recorded as the price poller does."""
    import json
    worker.execute("select admin.record_prices(%s)", (json.dumps(PRICES),))


@pytest.fixture
def app(db_url):
    from webapp import create_app
    from webapp.config import role_url
    app = create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": db_url,
        "APP_DATABASE_URL": role_url(db_url, "exchange_app"),
        "AUDIT_DATABASE_URL": role_url(db_url, "exchange_auditor"),
        "WORKER_DATABASE_URL": role_url(db_url, "exchange_worker"),
        "RATELIMIT_ENABLED": True,
        "DB_POOL_MAX": 4,
    })
    yield app
    from webapp import db
    db.close_pools(app)


@pytest.fixture
def client(app):
    return app.test_client()


CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


class Forms:
    """Post a form the way a browser does: GET the page, send its CSRF token back."""

    def __init__(self, client):
        self.client = client

    def token(self, url: str) -> str:
        page = self.client.get(url)
        match = CSRF.search(page.get_data(as_text=True))
        assert match, f"no CSRF token on {url}"
        return match.group(1) or match.group(2)

    def post(self, url: str, data: dict, form_url: str | None = None, **kwargs):
        html = self.client.get(form_url or url).get_data(as_text=True)
        payload = dict(data)
        match = CSRF.search(html)
        if match:
            payload.setdefault("csrf_token", match.group(1) or match.group(2))
        hidden = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', html)
        if hidden:
            payload.setdefault("idempotency_key", hidden.group(1))
        return self.client.post(url, data=payload, **kwargs)


@pytest.fixture
def forms(client):
    return Forms(client)


DEMO_PASSWORD = "demo-pass-2026"
# The demo admin's TOTP secret in tests (admins must have 2FA): test data only.
ADMIN_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def enable_totp(conn, user_id: int, secret: str = ADMIN_TOTP_SECRET) -> str:
    """Turn 2FA on for a user directly (as the owner), with a known secret."""
    conn.execute("""insert into core.user_totp (user_id, secret, confirmed_at) values (%s, %s, now())
                    on conflict (user_id) do update set secret = excluded.secret, confirmed_at = now(),
                                                        last_used_step = null, failed_attempts = 0, locked_until = null""",
                 (user_id, secret))
    return secret


def totp_code(conn, user_id: int) -> str:
    """A code the database accepts now for a user with 2FA on: the time step
    is made unused first, so tests can act several times within 30 seconds."""
    import pyotp
    row = conn.execute("update core.user_totp set last_used_step = null where user_id = %s returning secret",
                       (user_id,)).fetchone()
    secret = row["secret"] if isinstance(row, dict) else row[0]
    return pyotp.TOTP(secret).now()


@pytest.fixture
def demo(owner):
    """The demo data of DESIGN.md §6 (on a database marked development); returns {email: user_id}.
    The demo admin has 2FA on (ADMIN_TOTP_SECRET), as every admin must."""
    from werkzeug.security import generate_password_hash
    owner.execute("update core.settings set value = 'development' where name = 'environment'")
    owner.execute("select * from core.seed_demo(%s)", (generate_password_hash(DEMO_PASSWORD, method="pbkdf2:sha256:1000"),))
    users = {r["email"]: r["id"] for r in owner.execute("select id, email from core.users")}
    enable_totp(owner, users["admin@example.com"])
    return users


@pytest.fixture
def login(forms, db_url):
    """Log in through the forms; a user with 2FA on gets a fresh code typed on the second step."""
    def do(email: str, password: str = DEMO_PASSWORD):
        response = forms.post("/login", {"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        if response.headers["Location"].endswith("/login/2fa"):
            with psycopg.connect(db_url, autocommit=True) as conn:
                user_id = conn.execute("select id from core.users where email = %s", (email,)).fetchone()[0]
                code = totp_code(conn, user_id)
            response = forms.post("/login/2fa", {"totp_code": code})
            assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        return response
    return do


@pytest.fixture
def mail_sink(app):
    """A real SMTP sink (sandbox/mail.py, aiosmtpd) on a free port; the app's SMTP_URL points at it.
    `mail_sink.deliver()` runs the worker's mail job once, as the worker process would."""
    from webapp.auth.tasks import send_account_mail
    from sandbox.mail import MailSink
    sink = MailSink(smtp_port=free_port()).start()
    app.config["SMTP_URL"] = sink.url
    app.config.setdefault("APP_URL", "http://localhost")

    def deliver() -> int:
        with app.app_context():
            return send_account_mail(app)
    sink.deliver = deliver
    yield sink
    sink.stop()
