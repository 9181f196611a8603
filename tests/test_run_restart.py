"""Issue 20: a second `make run` keeps working.

The real `python -m devserver.run` (gunicorn with 2 workers, the worker, the Mercado Pago
and Binance emulators as subprocesses) on free ports, with its runtime directory
(BSM_LOCAL_DIR) in a temp folder and DATABASE_URL on a fresh database of the test
cluster (so the private cluster of `make run` itself is not started: that part is
the dev cluster's own and untouched here). Twice: each run credits a deposit and
completes a PIX-confirmed P2P trade paid through the emulator's signed webhook;
after SIGINT no process of the run is left and no port is listening.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from tests.conftest import free_port, url_for_db

PROJECT = Path(__file__).resolve().parent.parent
PASSWORD = "demo-pass-2026"
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')
IDEM = re.compile(r'name="idempotency_key" type="hidden" value="([^"]+)"')

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find leftover processes")


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_with(marker: str) -> list[int]:
    """Pids whose environment carries `marker` (every process a run started does)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except (OSError, PermissionError):
            pass
    return found


class Browser:
    def __init__(self, base: str, email: str):
        self.base = base
        self.s = requests.Session()
        r = self.post("/login", {"email": email, "password": PASSWORD})
        assert r.status_code == 302, r.text[:500]

    def post(self, path: str, data: dict, form_path: str | None = None):
        html = self.s.get(self.base + (form_path or path), timeout=10).text
        payload = dict(data)
        m = CSRF.search(html)
        if m:
            payload.setdefault("csrf_token", m.group(1) or m.group(2))
        m = IDEM.search(html)
        if m:
            payload.setdefault("idempotency_key", m.group(1))
        return self.s.post(self.base + path, data=payload, allow_redirects=False, timeout=20)


class Run:
    """One `python -m devserver.run`."""

    def __init__(self, env: dict, log: Path):
        self.env, self.log = env, log
        # Its own session, like a terminal's foreground job: `stop(group=True)` is Ctrl-C.
        self.proc = subprocess.Popen([sys.executable, "-m", "devserver.run"], cwd=PROJECT, env=env,
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{env['PORT']}"
        self.mp = f"http://127.0.0.1:{env['MP_SANDBOX_PORT']}"

        def up():
            assert self.proc.poll() is None, log.read_text()[-3000:]
            try:
                return (requests.get(self.base + "/login", timeout=2).status_code == 200
                        and requests.get(self.mp + "/_sandbox/state", timeout=2).status_code == 200)
            except requests.RequestException:
                return False
        wait_until(up, 90, "make run to serve")

    def stop(self, group: bool = False) -> float:
        """kill -INT <pid> of `make run`, or (group) SIGINT to its whole process group: Ctrl-C."""
        started = time.monotonic()
        if group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=40)
        return time.monotonic() - started


@pytest.fixture
def run_env(admin_url, tmp_path):
    name = f"bsm_run_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name}")
        conn.execute(f"create database {name}")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MERCADO_PAGO_", "BINANCE_", "INTER_", "PIX_"))}
    env.update({
        "DATABASE_URL": url_for_db(admin_url, name), "PORT": str(free_port()),
        "MP_SANDBOX_PORT": str(free_port()), "BINANCE_SANDBOX_PORT": str(free_port()),
        "MAIL_SANDBOX_PORT": str(free_port()), "MAIL_SMTP_PORT": str(free_port()),
        "BSM_LOCAL_DIR": str(tmp_path / "local"), "PYTHONUNBUFFERED": "1",
    })
    env.pop("APP_URL", None)
    env.pop("SMTP_URL", None)
    env.pop("SECRET_KEY", None)
    # a database of ours is seeded only once marked as a development one
    from webapp import migrate
    migrate.upgrade(env["DATABASE_URL"], log=lambda *_: None)
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("update core.settings set value = 'development' where name = 'environment'")
    yield env
    for pid in processes_with(env["BSM_LOCAL_DIR"]):     # never leave a run behind, even on failure
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")


def deposit_and_pay(run: Run, db, amount: str) -> str:
    alice = Browser(run.base, "alice@example.com")
    r = alice.post("/deposits", {"amount": amount})
    assert r.status_code == 302, r.text[:2000]
    dep = int(re.search(r"/deposits/(\d+)$", r.headers["Location"]).group(1))
    row = db.execute("select * from core.pix_charges where id = %s", (dep,)).fetchone()
    assert row["status"] == "PENDING" and row["provider_payment_id"], row
    paid = requests.post(f"{run.mp}/_sandbox/payments/{row['provider_payment_id']}/pay", json={}, timeout=10)
    assert paid.status_code == 200, paid.text
    wait_until(lambda: db.execute("select status from core.pix_charges where id = %s", (dep,))
               .fetchone()["status"] == "PAID", 30, "the webhook to credit the deposit")
    return row["provider_payment_id"]


def p2p_pix_confirmed(run: Run, db) -> str:
    bob, alice = Browser(run.base, "bob@example.com"), Browser(run.base, "alice@example.com")
    offer = {"side": "SELL", "crypto": "BTC", "price_type": "fixed", "fixed_price": "300.000,00",
             "total_amount": "0,01", "min_brl": "100", "max_brl": "3.000,00", "payment_methods": ["PIX_CONFIRMED"],
             "payment_window_minutes": "", "payment_details": "PIX: bob@example.com (Bob Oliveira)",
             "terms": "PIX confirmado.", "min_counterparty_kyc": "0", "min_counterparty_trades": "0",
             "expires_in_days": "7"}
    r = bob.post("/p2p/offers/new", offer)
    assert r.status_code == 302, r.text[:2000]
    offer_id = db.execute("select id from core.p2p_offers order by id desc limit 1").fetchone()["id"]
    r = alice.post(f"/p2p/offers/{offer_id}", {"brl_amount": "150,00", "payment_method": "PIX_CONFIRMED"})
    assert r.status_code == 302, r.text[:2000]
    trade_id = int(re.search(r"/p2p/trades/(\d+)$", r.headers["Location"]).group(1))
    charge = wait_until(lambda: db.execute("select * from core.pix_charges where reference = %s and "
                                           "provider_payment_id is not null", (f"p2p-{trade_id}",)).fetchone(),
                        30, "the P2P charge")
    cpf = db.execute("select k.cpf from core.kyc_profiles k join core.users u on u.id = k.user_id "
                     "where u.email = 'alice@example.com'").fetchone()["cpf"]
    paid = requests.post(f"{run.mp}/_sandbox/payments/{charge['provider_payment_id']}/pay",
                         json={"payer_cpf": cpf}, timeout=10)
    assert paid.status_code == 200, paid.text
    wait_until(lambda: db.execute("select status from core.p2p_trades where id = %s", (trade_id,))
               .fetchone()["status"] == "COMPLETED", 30, "the PIX-confirmed trade to complete")
    return charge["provider_payment_id"]


def assert_all_gone(env: dict):
    ports = [int(env[k]) for k in ("PORT", "MP_SANDBOX_PORT", "BINANCE_SANDBOX_PORT", "MAIL_SANDBOX_PORT",
                                   "MAIL_SMTP_PORT")]
    wait_until(lambda: not processes_with(env["BSM_LOCAL_DIR"]), 10, "every process of the run to end")
    assert [p for p in ports if listening(p)] == []


def test_second_make_run_keeps_working(run_env, tmp_path):
    log = tmp_path / "run.log"
    db = psycopg.connect(run_env["DATABASE_URL"], autocommit=True, row_factory=dict_row)
    try:
        first = Run(run_env, log)
        ids = [deposit_and_pay(first, db, "25,00"), p2p_pix_confirmed(first, db)]
        stopped_in = first.stop()
        print(f"first run stopped in {stopped_in:.1f}s")
        assert stopped_in < 20 and first.proc.returncode == 0
        assert_all_gone(run_env)

        second = Run(run_env, log)
        ids += [deposit_and_pay(second, db, "26,00"), p2p_pix_confirmed(second, db)]
        assert len(set(ids)) == 4, ids           # the emulator never handed out an id twice
        assert (Path(run_env["BSM_LOCAL_DIR"]) / "run" / "gunicorn.ctl").exists()   # not in $HOME
        assert second.stop(group=True) < 20
        assert second.proc.returncode == 0
        assert_all_gone(run_env)

        local = Path(run_env["BSM_LOCAL_DIR"])
        assert (local / "sandbox" / "mercadopago-ids.json").exists() and (local / "secret_key").exists()
        assert not (local / "run" / "gunicorn.ctl").exists()     # gunicorn removed its socket on the way out
        credited = db.execute("select count(*) as n, sum(amount) as total from core.pix_charges "
                              "where purpose = 'deposit' and status = 'PAID'").fetchone()
        assert credited["n"] == 2 and credited["total"] == Decimal("51.00")
    finally:
        db.close()
        print(log.read_text()[-4000:] if log.exists() else "")
