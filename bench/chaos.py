"""`make chaos`: the whole exchange hammered while things die halfway (issue 15 part 1).

    make chaos                                       # = python -m bench.chaos
    CHAOS_OPS=20000 CHAOS_WORKERS=8 CHAOS_SEED=7 python -m bench.chaos

What runs (docs/RELIABILITY.md explains it, and what it cannot do):

- a throwaway PostgreSQL cluster (devserver.cluster.Cluster in a temp dir, migrated), the Mercado Pago and
  Binance emulators (sandbox/, real subprocesses over HTTP), the web (gunicorn, as the Procfile runs
  it: it receives the emulator's signed webhooks) and the worker (`flask --app wsgi worker`, a real process);
- CHAOS_WORKERS client threads (32), each with its own connections, draw CHAOS_OPS operations (1,000,000) in
  all from a random generator seeded by CHAOS_SEED and their number: transfers (BRL and BTC), wallet reads,
  PIX deposits (api.create_deposit, the charge asked of the emulator as the web does, paid at the emulator,
  which posts the signed webhook to the web; the worker fetches and credits), PIX withdrawals (paid out by
  the worker), market orders (quote + execute: the worker places them on the Binance emulator), P2P offers
  and trades through every transition (open, paid, released, cancelled, expired, balance-settled, disputed
  and resolved both ways), and offers closed. Most calls are the api.*/admin.* SQL functions as
  exchange_app; a lost connection is retried with the same idempotency key;
- a fault injector (its own seed) that, every ~CHAOS_FAULT_EVERY seconds, picks one of: terminate random
  backends of the app and worker roles; SIGKILL the worker mid-payout (payouts made to hang first, so one is
  in flight) and restart it; payouts answering 500 after acting / timing out / rejecting; the Mercado Pago
  API answering 503 or too slowly; Binance orders answering 500 after filling / timing out / rejecting /
  filling late; webhooks lost for a while; webhooks duplicated and delivered out of order (random delays);
- at the end: faults off, the worker runs until nothing is pending, and the invariants are checked: the
  books (zero-sum per currency, cached = computed, nothing negative, held = open holds, admin.check_books)
  and every provider-side effect matched by exactly one ledger effect (approved payment <-> one deposit
  entry, approved payout <-> one completed withdrawal, filled Binance order <-> one settled market order).

Exit status 0 only with zero violations. bench.chaos.run() is what tests/test_chaos.py calls with a few
thousand operations.
"""
from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal as D
from pathlib import Path

import psycopg
import pyotp
import requests
from psycopg.rows import dict_row

from webapp import migrate
from webapp.config import role_url
from devserver.cluster import PROJECT, Cluster

DB = "chaos"
WEBHOOK_SECRET = "chaos-webhook-secret"
MP_TOKEN = "TEST-chaos-token"
BINANCE_KEY, BINANCE_SECRET = "chaos-key", "chaos-secret"
ADMIN_TOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"   # test data only
LOST_CONNECTION = (psycopg.OperationalError, psycopg.InterfaceError)
RETRY_SQLSTATES = {"40001", "40P01"}

# Operation mix (weights). The provider-bound ones are rare: the worker pays out about two PIX a second.
MIX = {
    "transfer": 34, "wallet": 6, "p2p": 52, "market": 3.5, "deposit": 1.6, "deposit_pay": 1.6,
    "withdrawal": 1.3,
}
# P2P trade paths, chosen when a trade is opened.
P2P_PATHS = {"release": 40, "cancel": 14, "expire": 10, "balance": 14, "dispute_release": 8,
             "dispute_refund": 8, "paid_then_cancel_refused": 6}


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all bound at once (one at a time, the system may hand out the same
    port twice, and two emulators would then share it)."""
    import socket
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_http(url: str, timeout: float = 30):
    """Wait until `url` answers 200 (another server on the port would answer something else)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def call(conn, function: str, **kwargs) -> list[dict]:
    args = ", ".join(f"{k} => %({k})s" for k in kwargs)
    return conn.execute(f"select * from {function}({args})", kwargs).fetchall()


class Stack:
    """The cluster, the emulators, the web and the worker, started for one run."""

    def __init__(self, workdir: Path, log=print):
        self.workdir = workdir
        self.log = log
        self.cluster = Cluster(base=workdir / "pg", port=free_port())
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.ports = dict(zip(("mp", "binance", "web"), free_ports(3)))
        self.mp = f"http://127.0.0.1:{self.ports['mp']}"
        self.binance = f"http://127.0.0.1:{self.ports['binance']}"
        self.web = f"http://127.0.0.1:{self.ports['web']}"

    def start(self):
        self.cluster.start()
        with open(self.cluster.datadir / "postgresql.conf", "a") as fh:
            fh.write("max_connections = 300\n")
        self.cluster.stop()
        self.cluster.start()
        self.cluster.ensure_database(DB)
        self.url = self.cluster.url(DB)
        migrate.upgrade(self.url, log=lambda *_: None)
        self.env = dict(os.environ, DATABASE_URL=self.url, SECRET_KEY="chaos-secret-key",
                        APP_URL=self.web, MERCADO_PAGO_BASE_URL=self.mp, BINANCE_BASE_URL=self.binance,
                        MERCADO_PAGO_ACCESS_TOKEN=MP_TOKEN, MERCADO_PAGO_WEBHOOK_SECRET=WEBHOOK_SECRET,
                        BINANCE_API_KEY=BINANCE_KEY, BINANCE_SECRET_KEY=BINANCE_SECRET,
                        PIX_PROVIDER="mercadopago", PIX_PROVIDER_TIMEOUT="4", DB_POOL_MAX="8",
                        UPLOAD_DIR=str(self.workdir / "uploads"), PYTHONUNBUFFERED="1")
        py = sys.executable
        self._spawn("mp", [py, "-m", "sandbox.mercadopago", "--port", str(self.ports["mp"]),
                           "--access-token", MP_TOKEN, "--webhook-secret", WEBHOOK_SECRET,
                           "--retry-intervals", "1,2,4,8", "--timeout-sleep", "6", "--expire-every", "0",
                           "--state-dir", str(self.workdir / "sandbox")])
        self._spawn("binance", [py, "-m", "sandbox.binance", "--port", str(self.ports["binance"]),
                                "--api-key", BINANCE_KEY, "--secret-key", BINANCE_SECRET,
                                "--weight-limit", "1000000"])
        self._spawn("web", [py, "-m", "gunicorn", "--workers", "2", "--threads", "4", "--bind",
                            f"127.0.0.1:{self.ports['web']}", "--graceful-timeout", "5", "wsgi:app"])
        wait_http(self.mp + "/_sandbox/payouts/mode")
        wait_http(self.binance + "/api/v3/ping")
        wait_http(self.web + "/healthz")
        self.start_worker()

    def _spawn(self, name: str, cmd: list[str]):
        out = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(cmd, env=self.env, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def start_worker(self):
        self._spawn("worker", [sys.executable, "-m", "flask", "--app", "wsgi", "worker"])

    def kill_worker(self, sig=signal.SIGKILL):
        proc = self.procs.get("worker")
        if proc and proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=30)

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.cluster.destroy()

    # the emulators' control endpoints
    def mp_control(self, path: str, **body):
        return requests.post(self.mp + path, json=body, timeout=10).json()

    def binance_control(self, path: str, **body):
        return requests.post(self.binance + path, json=body, timeout=10).json()


# --------------------------------------------------------------------------- the world

def setup_world(stack: Stack, users: int, admins: int) -> dict:
    """Customers (KYC 2, generous limits, funded with journaled adjustments) and one admin (2FA on) per
    client thread; settings shortened so the reconcilers act within seconds instead of minutes."""
    with psycopg.connect(stack.url, autocommit=True, row_factory=dict_row) as owner:
        for name, value in (("withdrawal_recheck_seconds", "8"), ("deposit_reconcile_after_minutes", "1"),
                            ("withdrawal_approval_threshold_brl", "1000000.00"),
                            ("market_order_lost_seconds", "20"), ("withdrawal_destination_cooloff_hours", "0")):
            owner.execute("update core.settings set value = %s where name = %s", (value, name))
        owner.execute("update core.kyc_limits set daily_deposit_brl = 1e12, daily_withdrawal_brl = 1e12, "
                      "daily_market_brl = 1e12, daily_p2p_brl = 1e12, per_trade_max_brl = 1e12")
        created = []
        for i in range(users + admins):
            email = f"chaos{i}@example.com" if i < users else f"chaos-admin{i - users}@example.com"
            uid = owner.execute("select api.register_user(%s, %s, %s) as id",
                                (email, "x" * 40, f"Chaos {i}")).fetchone()["id"]
            created.append((uid, email))
        ids = [u for u, _ in created]
        customers, admin_ids = ids[:users], ids[users:]
        owner.execute("update core.users set kyc_level = 2 where id = any(%s)", (customers,))
        owner.execute("select core.mark_email_verified(u) from unnest(%s::bigint[]) u", (ids,))
        owner.execute("update core.users set role = 'admin' where id = any(%s)", (admin_ids,))
        for a in admin_ids:
            owner.execute("insert into core.user_totp (user_id, secret, confirmed_at) values (%s, %s, now())",
                          (a, ADMIN_TOTP))
        owner.execute("update core.users set twofactor_on = true where id = any(%s)", (admin_ids,))
        funder = admin_ids[0]
        for uid in customers:
            for currency, amount in (("BRL", "1000000.00"), ("BTC", "20"), ("ETH", "200"), ("USDT", "100000")):
                owner.execute("select * from core.post_adjustment(%s, %s, %s, %s, %s, %s)",
                              (funder, uid, currency, D(amount), "Saldo inicial do chaos", f"seed-{uid}-{currency}"))
        emails = dict(created)
    with psycopg.connect(role_url(stack.url, "exchange_app"), autocommit=True) as app:
        for uid in customers:   # each customer's PIX key for withdrawals, saved (usable at once: cool-off 0)
            call(app, "api.add_withdrawal_destination", user_id=uid, key_type="EMAIL",
                 pix_key=f"saque{uid}@example.com", label="chaos")
    return {"customers": customers, "admins": admin_ids, "emails": emails}


# --------------------------------------------------------------------------- one client thread

class Client(threading.Thread):
    """One of the concurrent workers: its own connections, its own random generator."""

    def __init__(self, number: int, seed: int, ops: int, stack: Stack, world: dict, flask_app, stats, stop):
        super().__init__(name=f"chaos-{number}", daemon=True)
        self.number = number
        self.rng = random.Random(f"{seed}:{number}")
        self.ops = ops
        self.stack, self.world, self.flask_app, self.stats, self.stop_event = stack, world, flask_app, stats, stop
        self.customers = world["customers"]
        # depositors only deposit: a PIX-credited customer's exits are rightly restricted for a while
        self.depositors = [c for i, c in enumerate(self.customers) if i % 8 == 0]
        self.traders = [c for i, c in enumerate(self.customers) if i % 8 != 0]
        self.admin = world["admins"][number]
        self.offers: list[dict] = []          # my open offers
        self.trades: list[dict] = []          # my trades in flight, each with its path and next step
        self.deposits: list[tuple] = []       # (user, deposit id) waiting to be paid
        self.app = self.owner = self.worker = None
        self.counts = collections.Counter()
        self.refused = collections.Counter()
        self.unexpected: list[str] = []
        self.samples: dict[str, str] = {}   # one message per refusal kind, for the report
        self.retries = 0

    # -- connections that may be killed under us
    def _connect(self):
        for conn in (self.app, self.owner, self.worker):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
        url = self.stack.url
        self.app = psycopg.connect(role_url(url, "exchange_app"), autocommit=True, row_factory=dict_row,
                                   application_name=f"chaos-{self.number}")
        self.worker = psycopg.connect(role_url(url, "exchange_worker"), autocommit=True, row_factory=dict_row,
                                      application_name=f"chaos-{self.number}-w")
        self.owner = psycopg.connect(url, autocommit=True, row_factory=dict_row,
                                     application_name=f"chaos-{self.number}-clock")

    def sql(self, kind: str, function: str, role: str = "app", **kwargs):
        """One api/admin call, counted; a lost connection or a deadlock is retried with the same arguments
        (same idempotency key). Returns rows, or None when refused with a BSxxx error."""
        for attempt in range(30):
            conn = getattr(self, role)
            try:
                rows = call(conn, function, **kwargs)
                self.counts[kind] += 1
                return rows
            except LOST_CONNECTION:
                self.retries += 1
                time.sleep(0.05 * (attempt + 1))
                try:
                    self._connect()
                except psycopg.Error:
                    time.sleep(0.5)
            except psycopg.Error as exc:
                code = exc.sqlstate or ""
                if code in RETRY_SQLSTATES:
                    self.retries += 1
                    continue
                self.counts[kind] += 1
                if code.startswith("BS"):
                    self.refused[f"{kind}:{code}"] += 1
                    self.samples.setdefault(f"{kind}:{code}", (exc.diag.message_primary or "")[:160])
                    return None
                if code == "57P01":   # terminated while running: the connection is gone, retry
                    self.retries += 1
                    self._connect()
                    continue
                self.unexpected.append(f"{function}: {code} {exc}"[:300])
                return None
        self.unexpected.append(f"{function}: gave up after 30 lost connections")
        return None

    def clock(self, statement: str, *args):
        """Move a deadline as time would (the owner's connection): retried on a lost connection."""
        for _ in range(30):
            try:
                self.owner.execute(statement, args)
                return
            except LOST_CONNECTION:
                time.sleep(0.1)
                self._connect()
            except psycopg.Error as exc:
                if exc.sqlstate == "57P01":
                    self._connect()
                    continue
                raise

    def key(self) -> str:
        return f"chaos-{self.number}-{self.rng.getrandbits(64):016x}"

    def pick(self, pool, but=None):
        while True:
            choice = self.rng.choice(pool)
            if choice != but:
                return choice

    def run(self):
        try:
            self._connect()
            kinds, weights = zip(*MIX.items())
            for _ in range(self.ops):
                if self.stop_event.is_set():
                    break
                getattr(self, "op_" + self.rng.choices(kinds, weights)[0])()
                self.stats["done"] += 1
        except Exception as exc:  # noqa: BLE001  (a crash of the harness is reported, not hidden)
            import traceback
            self.unexpected.append("client crashed: " + "".join(traceback.format_exception(exc))[-1500:])

    # -- ledger
    def op_transfer(self):
        sender = self.pick(self.traders)
        to = self.pick(self.customers, but=sender)
        if self.rng.random() < 0.7:
            currency, amount = "BRL", D(self.rng.randint(1, 50000)) / 100
        else:
            currency, amount = "BTC", D(self.rng.randint(1, 100000)) / 10 ** 8
        self.sql("transfer", "api.transfer", user_id=sender, recipient_email=self.world["emails"][to],
                 currency=currency, amount=amount, idempotency_key=self.key())

    def op_wallet(self):
        self.sql("wallet", "api.get_wallet", user_id=self.pick(self.customers))

    # -- PIX in: create, charge at the provider as the web does, pay at the emulator (webhook over HTTP)
    def op_deposit(self):
        from webapp.deposits import service
        from webapp.providers.base import ProviderError
        user = self.rng.choice(self.depositors)
        rows = self.sql("deposit", "api.create_deposit", user_id=user, amount=D(self.rng.randint(1000, 200000)) / 100,
                        provider="mercadopago", idempotency_key=self.key())
        if not rows:
            return
        row = rows[0]
        if row["status"] == "PENDING" and not row["provider_payment_id"]:
            with self.flask_app.app_context():
                try:
                    service.request_charge(self.flask_app, charge_id=row["deposit_id"], reference=row["reference"],
                                           amount=row["charge_amount"], expires_at=row["expires_at"],
                                           payer_email=row["payer_email"], payer_cpf=row["payer_cpf"],
                                           description=row["description"], provider=row["charge_provider"])
                except ProviderError as exc:
                    service.note_error(self.flask_app, row["deposit_id"], exc)   # the worker attaches it later
                    self.refused["deposit_charge:provider_error"] += 1
                except Exception as exc:  # noqa: BLE001
                    if isinstance(exc, LOST_CONNECTION) or "terminat" in str(exc):
                        self.refused["deposit_charge:connection_lost"] += 1
                    else:
                        from webapp.errors import DomainError
                        if not isinstance(exc, DomainError):
                            self.unexpected.append(f"request_charge: {exc!r}"[:300])
        self.deposits.append((user, row["deposit_id"]))

    def op_deposit_pay(self):
        if not self.deposits:
            return self.op_deposit()
        user, deposit_id = self.deposits[0]
        rows = self.sql("deposit_pay", "api.get_deposit", user_id=user, deposit_id=deposit_id)
        if not rows:
            self.deposits.pop(0)
            return
        charge = rows[0]
        qr = charge.get("qr_code")
        if not charge["has_charge"] or (charge["status"] == "PENDING" and not qr):
            if len(self.deposits) > 20:        # its charge never came: leave it to the reconcilers
                self.deposits.pop(0)
            else:
                self.deposits.append(self.deposits.pop(0))
            return
        self.deposits.pop(0)
        if charge["status"] != "PENDING" or self.rng.random() < 0.1:
            return                               # never paid: stays pending, no provider effect
        try:   # the payer's bank pays the "copia e cola"; the emulator posts the signed webhook to the web
            r = requests.post(f"{self.stack.mp}/_sandbox/pix/pay", json={"qr_code": qr}, timeout=15)
            self.counts["deposit_paid_at_provider"] += r.status_code == 200
        except requests.Timeout:
            # the payer's side of the harness gave up on an overloaded emulator: the payment may or may
            # not have been made; the matching at the end decides (not a product error)
            self.refused["deposit_pay:payer_timeout"] += 1
        except requests.RequestException as exc:
            self.unexpected.append(f"pay {deposit_id}: {exc!r}"[:200])

    # -- PIX out
    def op_withdrawal(self):
        user = self.pick(self.traders)
        rows = self.sql("withdrawal", "api.create_withdrawal", user_id=user, amount=D(self.rng.randint(1000, 50000)) / 100,
                        key_type="EMAIL", pix_key=f"saque{user}@example.com", idempotency_key=self.key())
        if rows and self.rng.random() < 0.15:
            self.sql("withdrawal_cancel", "api.cancel_withdrawal", user_id=user, withdrawal_id=rows[0]["withdrawal_id"])

    # -- market desk
    def op_market(self):
        user = self.pick(self.traders)
        side = self.rng.choice(("buy", "sell"))
        crypto = self.rng.choice(("BTC", "ETH", "USDT"))
        if side == "buy":
            amount = D(self.rng.randint(2000, 100000)) / 100           # BRL to spend
        else:
            amount = {"BTC": D("0.0005"), "ETH": D("0.01"), "USDT": D("20")}[crypto] * self.rng.randint(1, 10)
        rows = self.sql("market_quote", "api.create_quote", user_id=user, side=side, crypto=crypto, amount=amount)
        if rows:
            self.sql("market_execute", "api.execute_quote", user_id=user, quote_id=rows[0]["quote_id"],
                     idempotency_key=self.key())

    # -- P2P
    def op_p2p(self):
        ready = [t for t in self.trades if t["due"] <= time.monotonic()]
        if ready and self.rng.random() < 0.75:
            return self.advance(self.rng.choice(ready))
        if len(self.offers) < 3 or self.rng.random() < 0.05:
            return self.new_offer()
        if self.rng.random() < 0.03:
            offer = self.offers.pop(self.rng.randrange(len(self.offers)))
            self.sql("p2p_offer_close", "api.set_p2p_offer_status", user_id=offer["maker"], offer_id=offer["id"],
                     action="cancel")
            return
        self.open_trade()

    def new_offer(self):
        maker = self.pick(self.traders)
        side = self.rng.choice(("SELL", "SELL", "BUY"))
        rows = self.sql("p2p_offer_create", "api.create_p2p_offer", user_id=maker, side=side, crypto="BTC",
                        price_type="floating", premium_percent=D(self.rng.randint(-20, 20)) / 10,
                        total_amount=D(self.rng.randint(1, 20)) / 100, min_brl=D("50.00"), max_brl=D("20000.00"),
                        payment_methods=["PIX", "TED", "BALANCE"], idempotency_key=self.key(),
                        payment_details="PIX: chaos@example.com")
        if rows:
            self.offers.append({"id": rows[0]["offer_id"], "maker": maker, "side": side})

    def open_trade(self):
        if not self.offers:
            return self.new_offer()
        offer = self.rng.choice(self.offers)
        taker = self.pick(self.traders, but=offer["maker"])
        paths, weights = zip(*P2P_PATHS.items())
        path = self.rng.choices(paths, weights)[0]
        rows = self.sql("p2p_trade_open", "api.open_p2p_trade", user_id=taker, offer_id=offer["id"],
                        payment_method="BALANCE" if path == "balance" else self.rng.choice(("PIX", "TED")),
                        idempotency_key=self.key(), brl_amount=D(self.rng.randint(5000, 300000)) / 100,
                        payment_details=f"PIX: chaos{taker}@example.com")
        if not rows:
            if self.rng.random() < 0.3:     # an offer used up or refused: forget it sometimes
                self.offers.remove(offer)
            return
        trade_id, status = rows[0]["trade_id"], rows[0]["status"]
        if status != "OPEN":
            return                          # balance method: settled at once
        buyer, seller = (taker, offer["maker"]) if offer["side"] == "SELL" else (offer["maker"], taker)
        self.trades.append({"id": trade_id, "path": path, "step": 0, "buyer": buyer, "seller": seller,
                            "due": time.monotonic() + self.rng.uniform(0, 2)})

    def advance(self, t: dict):
        """One step of the trade's path; a refusal ends the trade's tracking (the state is checked at the end
        by the books, not by us)."""
        path, step = t["path"], t["step"]
        t["step"] += 1
        t["due"] = time.monotonic() + self.rng.uniform(0, 1.5)
        done = False
        if path in ("release", "dispute_release", "dispute_refund", "paid_then_cancel_refused") and step == 0:
            ok = self.sql("p2p_mark_paid", "api.mark_p2p_trade_paid", user_id=t["buyer"], trade_id=t["id"])
            done = ok is None
        elif path == "release":
            self.sql("p2p_release", "api.release_p2p_trade", user_id=t["seller"], trade_id=t["id"])
            done = True
        elif path == "paid_then_cancel_refused":
            # a paid trade cannot be cancelled by the buyer... (refused, BSS01) then the seller releases
            if step == 1:
                self.sql("p2p_cancel_after_paid", "api.cancel_p2p_trade", user_id=t["buyer"], trade_id=t["id"])
            else:
                self.sql("p2p_release", "api.release_p2p_trade", user_id=t["seller"], trade_id=t["id"])
                done = True
        elif path == "cancel":
            self.sql("p2p_cancel", "api.cancel_p2p_trade", user_id=t["buyer"], trade_id=t["id"])
            done = True
        elif path == "expire":
            if step == 0:
                self.clock("update core.p2p_trades set payment_deadline = now() - interval '1 second' "
                           "where id = %s and status = 'OPEN'", t["id"])
                self.counts["p2p_deadline_passed"] += 1
            else:
                self.sql("p2p_expire_sweep", "admin.expire_p2p_trades", role="worker", max_rows=50)
                done = True
        elif path.startswith("dispute"):
            if step == 1:
                self.clock("update core.p2p_trades set paid_at = now() - interval '2 hours' "
                           "where id = %s and status = 'PAID'", t["id"])
                opener = self.rng.choice((t["buyer"], t["seller"]))
                done = self.sql("p2p_dispute_open", "api.open_p2p_dispute", user_id=opener, trade_id=t["id"],
                                reason="Pagamento feito e a cripto não foi liberada.") is None
            else:
                self.resolve(t, "release" if path == "dispute_release" else "refund")
                done = True
        if done:
            self.trades.remove(t)

    def resolve(self, t: dict, outcome: str):
        kwargs = dict(admin_id=self.admin, trade_id=t["id"], outcome=outcome, note="Resolvido pelo chaos.")
        if outcome == "release":
            kwargs["totp_code"] = self.admin_code()
        else:
            kwargs["at_fault"] = "buyer"
        self.sql(f"p2p_dispute_{outcome}", "admin.resolve_p2p_dispute", **kwargs)

    def admin_code(self) -> str:
        """A code the database accepts now: the time step made unused first (each thread has its own admin)."""
        self.clock("update core.user_totp set last_used_step = null where user_id = %s", self.admin)
        return pyotp.TOTP(ADMIN_TOTP).now()


# --------------------------------------------------------------------------- the fault injector

class FaultInjector(threading.Thread):
    KINDS = {"terminate_backends": 30, "kill_worker_mid_payout": 12, "payout_5xx": 8, "payout_timeout": 6,
             "payout_reject": 6, "mp_api_5xx": 8, "mp_api_timeout": 5, "binance_5xx": 8, "binance_timeout": 5,
             "binance_reject": 4, "binance_delay": 4, "webhooks_dropped": 5, "webhooks_dup_out_of_order": 9}

    def __init__(self, seed: int, every: float, stack: Stack, stop: threading.Event, cycle: bool = False,
                 pace: float = 1.0):
        """cycle: every kind once per round, in a shuffled order (the short test sees each kind);
        pace scales how long each fault lasts."""
        super().__init__(name="chaos-faults", daemon=True)
        self.rng = random.Random(f"{seed}:faults")
        self.every, self.stack, self.stop_event, self.cycle, self.pace = every, stack, stop, cycle, pace
        self.rounds = 0
        self.counts = collections.Counter()
        self.notes = collections.Counter()
        self.errors: list[str] = []

    def run(self):
        kinds, weights = zip(*self.KINDS.items())
        with psycopg.connect(self.stack.url, autocommit=True) as owner:
            self.owner = owner
            plan: list[str] = []
            while not self.stop_event.wait(self.rng.expovariate(1 / self.every)):
                if self.cycle:
                    if not plan:
                        plan = self.rng.sample(kinds, len(kinds))
                    kind = plan.pop()
                else:
                    kind = self.rng.choices(kinds, weights)[0]
                try:
                    getattr(self, kind)()
                    self.counts[kind] += 1
                except Exception as exc:  # noqa: BLE001
                    self.errors.append(f"{kind}: {exc!r}"[:300])
                    self.stack.mp_control("/_sandbox/payouts/mode", mode="approve")
                    if self.stack.procs["worker"].poll() is not None:
                        self.stack.start_worker()
                if self.cycle and not plan:
                    self.rounds += 1

    def pause(self, low: float, high: float):
        # (not cut short by the end of the load: a fault always ends by restoring what it changed)
        time.sleep(self.rng.uniform(low, high) * self.pace)

    def terminate_backends(self):
        pids = [r[0] for r in self.owner.execute(
            "select pid from pg_stat_activity where usename in ('exchange_app', 'exchange_worker') "
            "and pid <> pg_backend_pid() order by pid")]
        victims = self.rng.sample(pids, min(len(pids), self.rng.randint(1, 4)))
        for pid in victims:
            self.owner.execute("select pg_terminate_backend(%s)", (pid,))
        self.notes["backends_terminated"] += len(victims)

    def kill_worker_mid_payout(self):
        # Payouts hang (answer after 6 s): a claimed withdrawal's payout is in flight when the worker dies.
        self.stack.mp_control("/_sandbox/payouts/mode", mode="timeout")
        self.pause(1, 6)
        in_flight = self.owner.execute("select count(*) from core.withdrawals where status = 'PROCESSING'").fetchone()[0]
        self.notes["withdrawals_processing_at_kill"] += in_flight
        self.notes["kills_with_payout_in_flight"] += in_flight > 0
        self.stack.kill_worker()
        self.stack.mp_control("/_sandbox/payouts/mode", mode="approve")
        self.pause(0.5, 3)
        self.stack.start_worker()

    def _payout_mode(self, mode: str):
        self.stack.mp_control("/_sandbox/payouts/mode", mode=mode)
        self.pause(3, 10)
        self.stack.mp_control("/_sandbox/payouts/mode", mode="approve")

    def payout_5xx(self):
        self._payout_mode("error500")     # the payout is made, the answer is a 500

    def payout_timeout(self):
        self._payout_mode("timeout")      # made, answered after the client gave up

    def payout_reject(self):
        self._payout_mode("reject")

    def mp_api_5xx(self):
        self.stack.mp_control("/_sandbox/faults", count=self.rng.randint(1, 6), status=self.rng.choice((500, 502, 503)))

    def mp_api_timeout(self):
        self.stack.mp_control("/_sandbox/faults", count=self.rng.randint(1, 3), sleep=6)

    def _binance(self, mode: str, **extra):
        self.stack.binance_control("/_sandbox/next_order", mode=mode, count=self.rng.randint(1, 4), **extra)

    def binance_5xx(self):
        self._binance("error500")

    def binance_timeout(self):
        self._binance("timeout")

    def binance_reject(self):
        self._binance("reject")

    def binance_delay(self):
        self._binance("delay")

    def webhooks_dropped(self):
        self.stack.mp_control("/_sandbox/webhooks/drop", drop=True)
        self.pause(2, 8)
        self.stack.mp_control("/_sandbox/webhooks/drop", drop=False)

    def webhooks_dup_out_of_order(self):
        self.stack.mp_control("/_sandbox/webhooks/chaos", delay_max=4, duplicates=self.rng.randint(1, 3))
        self.pause(5, 15)
        self.stack.mp_control("/_sandbox/webhooks/chaos", delay_max=0, duplicates=0)


# --------------------------------------------------------------------------- the end: settle and check

def pending(owner) -> dict:
    """What the reconcilers still have to settle."""
    q = lambda sql: owner.execute(sql).fetchone()[0]  # noqa: E731
    return {
        "withdrawals": q("select count(*) from core.withdrawals where status in ('PENDING', 'PROCESSING')"),
        "market_orders": q("select count(*) from core.market_orders where status = 'EXECUTING'"),
        "notifications": q("select count(*) from core.provider_notifications where processed_at is null"),
        "charges_unattached": q("select count(*) from core.pix_charges where status = 'PENDING' "
                                "and provider_payment_id is null"),
    }


def provider_effects(stack: Stack, owner) -> dict:
    """Every provider-side effect matched by exactly one ledger effect, and no ledger effect without one."""
    state = requests.get(stack.mp + "/_sandbox/state", timeout=60).json()
    orders = requests.get(stack.binance + "/_sandbox/orders", timeout=60).json()
    out = collections.Counter()
    problems: list[str] = []

    entries = collections.Counter()
    for kind, ref, n in owner.execute("select kind, reference, count(*) from core.entries "
                                      "where kind in ('deposit', 'withdrawal') or kind like 'market_%%' "
                                      "group by kind, reference"):
        entries[(kind if not kind.startswith("market_") else "market", ref)] = n

    # PIX in: an approved payment <-> its charge PAID with one deposit entry; no credit without one.
    with owner.cursor(row_factory=dict_row) as cur:
        charges = {r["provider_payment_id"]: r for r in cur.execute(
            "select id, reference, status, provider_payment_id, amount, credited_amount from core.pix_charges "
            "where provider_payment_id is not null")}
        withdrawals = {r["reference"]: r for r in cur.execute(
            "select id, reference, status, amount from core.withdrawals")}
        market = {r["client_order_id"]: r for r in cur.execute(
            "select id, client_order_id, status, binance_order_id, executed_qty from core.market_orders")}
    approved = set()
    for p in state["payments"]:
        pid = str(p["id"])
        if p["status"] != "approved":
            out["payments_not_approved"] += 1
            continue
        approved.add(pid)
        out["payments_approved"] += 1
        c = charges.get(pid)
        n = entries.get(("deposit", c["reference"]), 0) if c else 0
        if c is None or c["status"] != "PAID" or n != 1:
            problems.append(f"payment {pid} approved at the provider: charge {c and c['reference']} "
                            f"{c and c['status']}, {n} deposit entries")
            out["deposits_lost" if n == 0 else "deposits_doubled"] += 1
    for pid, c in charges.items():
        if c["status"] == "PAID" and pid not in approved:
            problems.append(f"charge {c['reference']} PAID but payment {pid} not approved at the provider")
            out["deposits_without_payment"] += 1
    # PIX out: approved payouts per withdrawal reference <-> exactly one COMPLETED withdrawal entry.
    payouts = collections.Counter()
    for t in state["payouts"]:
        out[f"payouts_{t['status']}"] += 1
        if t["status"] == "approved":
            payouts[t["external_reference"]] += 1
    for ref, w in withdrawals.items():
        paid, n = payouts.get(ref, 0), entries.get(("withdrawal", ref), 0)
        if w["status"] == "COMPLETED":
            if paid != 1 or n != 1:
                problems.append(f"withdrawal {ref} COMPLETED: {paid} approved payouts, {n} entries")
                out["withdrawals_doubled" if paid > 1 else "withdrawals_unmatched"] += 1
        elif paid:
            problems.append(f"withdrawal {ref} {w['status']} but {paid} approved payouts (money left twice)")
            out["payouts_without_withdrawal"] += 1
    for ref in payouts:
        if ref not in withdrawals:
            problems.append(f"payout for unknown {ref}")
            out["payouts_unknown"] += 1
    # Market: filled Binance orders per clientOrderId <-> one COMPLETED market order, same id and quantity.
    filled = collections.defaultdict(list)
    for o in orders:
        out[f"binance_orders_{o['status'].lower()}"] += 1
        if o["status"] == "FILLED":
            filled[o["clientOrderId"]].append(o)
    for cid, m in market.items():
        fills, n = filled.get(cid, []), entries.get(("market", f"market:{cid}"), 0)
        if m["status"] == "COMPLETED":
            if len(fills) != 1 or n != 1 or fills[0]["orderId"] != m["binance_order_id"] \
                    or D(fills[0]["executedQty"]) != m["executed_qty"]:
                problems.append(f"market order {cid} COMPLETED: {len(fills)} fills at Binance, {n} entries")
                out["market_orders_unmatched"] += 1
        elif fills:
            problems.append(f"market order {cid} {m['status']} but filled {len(fills)}x at Binance")
            out["binance_fills_without_order"] += 1
    for cid in filled:
        if cid not in market:
            problems.append(f"Binance order {cid} not ours")
            out["binance_fills_unknown"] += 1
    return {"counts": dict(out), "problems": problems}


def drain(flask_app, stop: threading.Event) -> list[threading.Thread]:
    """While settling, extra loops of the worker's own jobs (their claims are FOR UPDATE SKIP LOCKED, so
    they run safely beside the worker): at 1,000,000 operations the payouts, webhooks and charges queue
    faster than one worker's cadence (10 payouts every 5 s) drains them."""
    from webapp.deposits.tasks import attach_pending_charges, process_notifications, reconcile_charges
    from webapp.withdrawals.tasks import process_withdrawals, recheck_withdrawals
    jobs = [lambda a: process_withdrawals(a, max_rows=20)] * 3 + [process_notifications] * 3 + [
        lambda a: attach_pending_charges(a, max_rows=50, min_age_seconds=0), recheck_withdrawals, reconcile_charges]

    def loop(job):
        while not stop.wait(0.05):
            with flask_app.app_context():
                try:
                    job(flask_app)
                except Exception:  # noqa: BLE001  (as the worker does: the next run retries)
                    stop.wait(1)
    threads = [threading.Thread(target=loop, args=(job,), daemon=True, name="chaos-drain") for job in jobs]
    for t in threads:
        t.start()
    return threads


def books(owner) -> dict:
    """The books check of tests/conftest.py, counted instead of asserted."""
    q = lambda sql: owner.execute(sql).fetchall()  # noqa: E731
    return {
        "zero_sum": q("select * from reporting.trial_balance where total <> 0 or cached_total <> 0"),
        "cached_vs_computed": q("select * from reporting.balance_mismatches"),
        "negative": q("select * from reporting.user_balances where available < 0 or locked < 0"),
        "held_vs_open_holds": q("select * from reporting.held_mismatches"),
        "check_books": q("select * from admin.check_books()"),
    }


def run(ops: int = 1_000_000, workers: int = 32, seed: int = 2026, fault_every: float = 2.0,
        users: int = 256, settle_timeout: float = 900, fault_cycle: bool = False, fault_pace: float = 1.0,
        log=None) -> dict:
    log = log or (lambda line: print(line, flush=True))
    workdir = Path(tempfile.mkdtemp(prefix="bsm-chaos-"))
    stack = Stack(workdir, log)
    started = time.monotonic()
    try:
        stack.start()
        world = setup_world(stack, users=max(users, 16), admins=workers)
        from webapp import create_app
        flask_app = create_app({
            "SECRET_KEY": "chaos", "DATABASE_URL": stack.url,
            "APP_DATABASE_URL": role_url(stack.url, "exchange_app"),
            "WORKER_DATABASE_URL": role_url(stack.url, "exchange_worker"),
            "AUDIT_DATABASE_URL": role_url(stack.url, "exchange_auditor"),
            "MERCADO_PAGO_ACCESS_TOKEN": MP_TOKEN, "MERCADO_PAGO_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "MERCADO_PAGO_BASE_URL": stack.mp, "APP_URL": stack.web, "PIX_PROVIDER": "mercadopago",
            "PIX_PROVIDER_TIMEOUT": 4, "DB_POOL_MAX": 12})
        # prices and filters come from the worker's first polls
        with psycopg.connect(stack.url, autocommit=True) as owner:
            deadline = time.monotonic() + 60
            while owner.execute("select count(*) from core.prices where fetched_at > now() - interval '10 s'"
                                ).fetchone()[0] < 3 or not owner.execute(
                                "select count(*) from core.market_pairs where filters is not null").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker polled no prices")
                time.sleep(0.5)
        stop = threading.Event()
        stats = collections.Counter()
        per = [ops // workers + (1 if i < ops % workers else 0) for i in range(workers)]
        clients = [Client(i, seed, per[i], stack, world, flask_app, stats, stop) for i in range(workers)]
        injector = FaultInjector(seed, fault_every, stack, stop, cycle=fault_cycle, pace=fault_pace)
        load_started = time.monotonic()
        for c in clients:
            c.start()
        injector.start()
        last = 0
        while any(c.is_alive() for c in clients):
            time.sleep(1)
            now = time.monotonic()
            if now - last >= 30:
                last = now
                elapsed = now - load_started
                log(f"[chaos] {stats['done']:>9,} ops in {elapsed:6.0f} s ({stats['done'] / elapsed:6.0f}/s), "
                    f"faults {sum(injector.counts.values())}")
        load_seconds = time.monotonic() - load_started
        while fault_cycle and injector.rounds < 1 and injector.is_alive() and time.monotonic() - load_started < 300:
            time.sleep(0.5)                      # the short test: every kind of fault at least once
        stop.set()
        injector.join(timeout=30)
        # faults off, the worker up, and the reconcilers settle everything
        stack.mp_control("/_sandbox/payouts/mode", mode="approve")
        stack.mp_control("/_sandbox/webhooks/drop", drop=False)
        stack.mp_control("/_sandbox/webhooks/chaos", delay_max=0, duplicates=0)
        if stack.procs["worker"].poll() is not None:
            stack.start_worker()
        settle_started = time.monotonic()
        with psycopg.connect(stack.url, autocommit=True) as owner:
            # The reconcilers look at every pending charge from now on, and a restarted worker runs each
            # job at once: the settling takes seconds, not the reconcilers' minute-long cadences.
            owner.execute("update core.settings set value = '0' where name = 'deposit_reconcile_after_minutes'")
            restarted = time.monotonic()
            drained = threading.Event()
            drainers = drain(flask_app, drained)
            while True:
                if time.monotonic() - restarted > 20:
                    stack.kill_worker(signal.SIGTERM)
                    stack.start_worker()
                    restarted = time.monotonic()
                left = pending(owner)
                if not any(left.values()):
                    # and every payment approved at the provider is booked (lost webhooks: the reconciler)
                    check = provider_effects(stack, owner)
                    if not check["problems"]:
                        break
                if time.monotonic() - settle_started > settle_timeout:
                    break
                time.sleep(3)
            settle_seconds = time.monotonic() - settle_started
            drained.set()
            for t in drainers:
                t.join(timeout=60)
            stack.kill_worker()
            left = pending(owner)
            effects = provider_effects(stack, owner)
            ledger = books(owner)
            entries = owner.execute("select count(*) from core.entries").fetchone()[0]
            trades = dict(owner.execute("select status, count(*) from core.p2p_trades group by status").fetchall())
            outcomes = {
                "withdrawals": dict(owner.execute("select status, count(*) from core.withdrawals group by 1")),
                "deposits": dict(owner.execute("select status, count(*) from core.pix_charges group by 1")),
                "market_orders": dict(owner.execute(
                    "select status || coalesce(': ' || left(failure_reason, 60), ''), count(*) "
                    "from core.market_orders group by 1")),
            }
        counts = collections.Counter()
        refused = collections.Counter()
        unexpected = []
        samples = {}
        for c in clients:
            samples.update(c.samples)
            counts.update(c.counts)
            refused.update(c.refused)
            unexpected.extend(c.unexpected)
        violations = {name: len(rows) for name, rows in ledger.items()}
        violations["provider_effects"] = len(effects["problems"])
        violations["unexpected_errors"] = len(unexpected)
        violations["still_pending"] = sum(left.values())
        report = {
            "seed": seed, "ops_requested": ops, "workers": workers, "users": users,
            "ops_done": sum(c for k, c in counts.items() if k != "deposit_paid_at_provider"
                            and k != "p2p_deadline_passed"),
            "ops": dict(sorted(counts.items())), "refused": dict(sorted(refused.items())),
            "refusal_messages": dict(sorted(samples.items())),
            "retries_after_lost_connection": sum(c.retries for c in clients),
            "faults": dict(sorted(injector.counts.items())), "fault_notes": dict(injector.notes),
            "fault_errors": injector.errors[:20],
            "load_seconds": round(load_seconds, 1), "settle_seconds": round(settle_seconds, 1),
            "total_seconds": round(time.monotonic() - started, 1),
            "throughput_ops_per_s": round(sum(counts.values()) / load_seconds, 1),
            "journal_entries": entries, "p2p_trades": trades, "outcomes": outcomes, "provider": effects["counts"],
            "pending_left": left, "violations": violations,
            "violation_details": {k: [str(r) for r in v[:10]] for k, v in ledger.items() if v}
            | {"provider_effects": effects["problems"][:20], "unexpected_errors": unexpected[:20]},
        }
        return report
    finally:
        stack.stop()
        if not os.environ.get("CHAOS_KEEP"):
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    env = os.environ
    report = run(ops=int(env.get("CHAOS_OPS", 1_000_000)), workers=int(env.get("CHAOS_WORKERS", 32)),
                 seed=int(env.get("CHAOS_SEED", 2026)), fault_every=float(env.get("CHAOS_FAULT_EVERY", 2.0)),
                 users=int(env.get("CHAOS_USERS", 256)), settle_timeout=float(env.get("CHAOS_SETTLE_TIMEOUT", 900)))
    print(json.dumps(report, indent=2, default=str))
    total = sum(report["violations"].values())
    print(f"\nchaos: seed {report['seed']}, {report['ops_done']:,} ops by {report['workers']} workers in "
          f"{report['load_seconds']} s ({report['throughput_ops_per_s']}/s), "
          f"{sum(report['faults'].values())} faults, settled in {report['settle_seconds']} s: "
          f"{total} violations")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
