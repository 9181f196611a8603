"""Web throughput: wrk against gunicorn as the Procfile runs it, next to a bare Flask hello.

    make bench-http                              # = python -m bench.http (about 9 minutes)
    python -m bench.http --no-growth             # only the small database (about 3 minutes)
    python -m bench.http --seconds 5 --repeat 3 --entries 200000 --offers 20000

One run (docs/PERFORMANCE.md, "Web performance", explains the numbers):

1. starts a dedicated cluster in `.local/bench-http` (the `make run` settings, port BENCH_HTTP_PORT,
   default 54349), creates `bench_http` migrated with webapp.migrate.upgrade, and seeds, through the
   api/admin functions: N customers (one per wrk connection: KYC level 2 with their own CPF, funded
   with BRL through admin.adjust_balance), N recipients, N makers each with a SELL BTC offer (PIX),
   one open trade per customer; then a history of --small-entries journal entries
   (load_history: balanced transfers among ~1000 customers, the bench customers included) and
   --small-offers P2P offers (so the book shows a full page on both databases);
2. starts the exchange with the Procfile's `web:` command, unchanged (its gunicorn settings come
   from gunicorn.conf.py), and the bare hello app (bench/hello.py) with the same command and
   `wsgi:app` replaced by `bench.hello:app`;
3. logs every customer in through /login (real form, real CSRF), keeps its session cookie and a
   CSRF token of its session, and writes one wrk Lua script per target: each wrk thread has one
   connection and one customer (-t N -c N), so no two connections lock the same customer's rows;
   POSTs carry the customer's CSRF token and a fresh idempotency key each;
4. runs wrk (--connections, --seconds, after a 2 s warm-up) on each target in turn, in --repeat
   rounds; every response's status is checked (200 for pages, 302 for a money action done):
   a refused request fails the run instead of counting;
5. loads the growth data (--entries journal entries in total, --offers P2P offers), measures
   again, and prints the growth of the statement, trade open and offer book latency;
6. measures the storage of a two-posting transfer (pg_relation_size of every table and index of
   core, before and after N transfers through api.transfer) and checks the books.

The withdrawal form is rate-limited per IP (10 per minute); wrk comes from one address, so the
bench raises RATELIMIT_WITHDRAWAL for its gunicorn: Flask-Limiter still counts every request.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import requests
from werkzeug.security import generate_password_hash

from webapp import migrate
from webapp.config import role_url
from devserver.cluster import PROJECT, Cluster, default_base

DB = "bench_http"
PASSWORD = "bench-http-pass-2026"
USER_AGENT = "bench-http"
TARGET_MONEY = 0.50   # money actions: req/s >= this fraction of the bare hello's
TARGET_PAGE = 0.25    # rendered pages
TARGET_P99_MS = 50.0
GROWTH_TOLERANCE = 0.25

# name, kind, method, expected status; path/body per customer (see scripts())
TARGETS = [
    ("hello", "baseline", "GET", 200),
    ("healthz", "health", "GET", 200),
    ("wallet", "page", "GET", 200),
    ("statement", "page", "GET", 200),
    ("offer_book", "page", "GET", 200),
    ("trade_page", "page", "GET", 200),
    ("transfer", "money", "POST", 302),
    ("trade_open", "money", "POST", 302),
    ("withdrawal", "money", "POST", 302),
]
GROWTH_TARGETS = ("statement", "trade_open", "offer_book")


def log(*args):
    print(*args, flush=True)


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ---------------------------------------------------------------------------
# Parsing and ratios (unit-tested in tests/test_bench_http.py)
# ---------------------------------------------------------------------------

RESULT = re.compile(r"^BENCH requests=(\d+) duration_us=(\d+) ok=(\d+) bad=(\d+) p50_us=([\d.]+) p99_us=([\d.]+)"
                    r" mean_us=([\d.]+) errors=(\d+)$", re.M)


def parse_wrk(output: str) -> dict:
    """The line our Lua `done()` prints: requests, seconds, ok/bad statuses, p50/p99 in ms."""
    match = RESULT.search(output)
    if not match:
        raise ValueError(f"no BENCH line in wrk output:\n{output[-2000:]}")
    requests_, duration, ok, bad, p50, p99, mean, errors = match.groups()
    seconds = int(duration) / 1e6
    return {"requests": int(requests_), "seconds": seconds, "ok": int(ok), "bad": int(bad),
            "errors": int(errors), "rps": int(ok) / seconds if seconds else 0.0,
            "p50_ms": float(p50) / 1000, "p99_ms": float(p99) / 1000, "mean_ms": float(mean) / 1000}


def median_result(runs: list[dict]) -> dict:
    """Medians of several rounds of one target (req/s and latencies each on their own)."""
    keys = [k for k in ("rps", "p50_ms", "p99_ms", "mean_ms", "web_cpu_ms", "db_cpu_ms") if k in runs[0]]
    return {key: statistics.median(r[key] for r in runs) for key in keys} | {
        "rounds": [round(r["rps"]) for r in runs]}


def verdicts(results: dict[str, dict], kinds: dict[str, str]) -> dict[str, dict]:
    """Ratio to the bare hello and whether each target meets its goals."""
    hello = results["hello"]["rps"]
    out = {}
    for name, result in results.items():
        ratio = result["rps"] / hello if hello else 0.0
        goal = {"money": TARGET_MONEY, "page": TARGET_PAGE}.get(kinds[name])
        out[name] = {"ratio": ratio, "goal": goal,
                     "ratio_ok": goal is None or ratio >= goal,
                     "p99_ok": result["p99_ms"] < TARGET_P99_MS}
    return out


def growth(small: dict, large: dict, names=GROWTH_TARGETS) -> dict[str, dict]:
    """Latency change from the small database to the large one (mean latency at the same load)."""
    out = {}
    for name in names:
        before, after = small[name]["mean_ms"], large[name]["mean_ms"]
        change = after / before - 1 if before else float("inf")
        out[name] = {"small_ms": before, "large_ms": after, "change": change,
                     "ok": abs(change) <= GROWTH_TOLERANCE}
    return out


# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------

def cpf(n: int) -> str:
    """A CPF with valid check digits, made from a number."""
    base = [int(d) for d in f"{(n * 7919 + 123456789) % 10 ** 9:09d}"]
    if len(set(base)) == 1:
        base[0] = (base[0] + 1) % 10
    for length in (9, 10):
        total = sum(d * w for d, w in zip(base, range(length + 1, 1, -1)))
        digit = (total * 10) % 11
        base.append(0 if digit == 10 else digit)
    return "".join(map(str, base))


def recreate_database(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {DB} with (force)")
        conn.execute(f"create database {DB}")
    return admin_url.rsplit("/", 1)[0] + f"/{DB}"


PRICES = json.dumps({"BTCBRL": "300000.00", "ETHBRL": "15000.00", "USDTBRL": "5.00"})


class PricePoller:
    """Fresh index prices every few seconds, as the worker's poller records them (trading stops on stale ones)."""

    def __init__(self, url: str, every: float = 5):
        self.url, self.every = role_url(url, "exchange_worker"), every
        self.stop_event = threading.Event()
        self.record()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def record(self):
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("select admin.record_prices(%s)", (PRICES,))

    def _run(self):
        while not self.stop_event.wait(self.every):
            try:
                self.record()
            except psycopg.Error as exc:
                log(f"price poller: {exc}")

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=10)


def seed(url: str, n: int) -> dict:
    """Customers, recipients, makers with one SELL offer each, one open trade per customer."""
    password_hash = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
    people = {"customers": [], "recipients": [], "makers": []}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        admin = conn.execute("select api.register_user('admin@bench-http.test', %s, 'Bench admin')",
                             (password_hash,)).fetchone()[0]
        conn.execute("update core.users set role = 'admin' where id = %s", (admin,))
        conn.execute("insert into core.user_totp (user_id, secret, confirmed_at) values (%s, %s, now())",
                     (admin, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
        # The bench's limits, in the table a DBA edits: 16 customers moving money for minutes.
        conn.execute("""update core.kyc_limits set daily_deposit_brl = 1e12, daily_withdrawal_brl = 1e12,
                        daily_market_brl = 1e12, daily_p2p_brl = 1e12, per_trade_max_brl = 1e9""")
        serial = 0
        for group, prefix in (("customers", "u"), ("recipients", "r"), ("makers", "m")):
            for i in range(1, n + 1):
                serial += 1
                email = f"{prefix}{i}@bench-http.test"
                uid = conn.execute("select api.register_user(%s, %s, %s)",
                                   (email, password_hash, f"Bench {prefix}{i}")).fetchone()[0]
                doc = cpf(serial)
                conn.execute("select api.submit_kyc_data(%s, %s, %s, date '1990-05-17', 'Rua do Teste, 1, São Paulo - SP')",
                             (uid, f"Cliente Bench {prefix.upper()}{i}", doc))
                conn.execute("update core.users set kyc_level = 2 where id = %s", (uid,))
                conn.execute("select core.mark_email_verified(%s)", (uid,))
                for currency, amount in (("BRL", "1000000000.00"), ("BTC", "1000")):
                    conn.execute("select admin.adjust_balance(%s, %s, %s, %s, 'Saldo do benchmark', %s)",
                                 (admin, uid, currency, amount, f"bench-{uid}-{currency}"))
                people[group].append({"id": uid, "email": email, "cpf": doc})
        for maker in people["makers"]:
            maker["offer"] = conn.execute(
                """select offer_id from api.create_p2p_offer(%s, 'SELL', 'BTC', 'fixed', 500, 10.00, 1000000.00,
                       array['PIX'], %s, fixed_price => 300000.00, payment_details => 'PIX chave CPF do vendedor')""",
                (maker["id"], f"bench-offer-{maker['id']}")).fetchone()[0]
        for customer, maker in zip(people["customers"], people["makers"]):
            customer["offer"] = maker["offer"]
            customer["trade"] = conn.execute(
                "select trade_id from api.open_p2p_trade(%s, %s, 'PIX', %s, brl_amount => 50.00)",
                (customer["id"], maker["offer"], f"bench-trade-{customer['id']}")).fetchone()[0]
        conn.execute("update core.notifications set read_at = now()")
        people["admin"] = admin
    return people


def load_history(url: str, total_entries: int, people: int = 1000, chunk: int = 250_000) -> int:
    """Journal entries up to `total_entries`: balanced two-posting BRL transfers of R$ 0,01 among
    `people` funded customers (the bench customers among them), written as the owner in bulk.

    The rows are what api.transfer writes (entry, two postings with the account's next version and
    the balance after, the cached balances moved in the same transaction); the postings trigger
    checks them as it checks any statement. Returns how many entries were added."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        have = conn.execute("select count(*) from core.entries").fetchone()[0]
        missing = total_entries - have
        if missing <= 0:
            return 0
        fillers = conn.execute("select count(*) from core.users where email like 'h%@bench-http.test'").fetchone()[0]
        if fillers < people:
            admin = conn.execute("select id from core.users where email = 'admin@bench-http.test'").fetchone()[0]
            with conn.transaction():
                conn.execute("""select api.register_user(format('h%%s@bench-http.test', g), repeat('x', 40), format('Histórico %%s', g))
                                from generate_series(%s::int, %s::int) g order by g""", (fillers + 1, people))
            conn.execute("""select admin.adjust_balance(%s, u.id, 'BRL', 1000000.00, 'Saldo do histórico', 'hist-' || u.id)
                            from core.users u where u.email like 'h%%@bench-http.test'
                              and not exists (select from core.entries e where e.reference = 'adjustment:hist-' || u.id)
                            order by u.id""", (admin,))
        have = conn.execute("select count(*) from core.entries").fetchone()[0]
        missing = total_entries - have
        added = 0
        while added < missing:
            size = min(chunk, missing - added)
            with conn.transaction():
                conn.execute("""create temp table part on commit drop as
                    select row_number() over (order by a.id) as i, a.id as account_id, a.user_id
                    from core.accounts a join core.users u on u.id = a.user_id
                    where a.currency = 'BRL' and a.purpose = 'available'
                      and (u.email like 'h%@bench-http.test' or u.email like 'u%@bench-http.test')""")
                k = conn.execute("select count(*) from part").fetchone()[0]
                conn.execute("""create temp table mv on commit drop as
                    select core.new_entry_id() as entry_id, f, 1 + (f - 1 + 1 + floor(random() * (%(k)s - 1))::int) %% %(k)s as t
                    from (select 1 + floor(random() * %(k)s)::int as f from generate_series(1, %(n)s::int)) g""",
                             {"k": k, "n": size})
                conn.execute("""insert into core.entries (id, kind, reference, description, user_id)
                    select m.entry_id, 'transfer', 'transfer:history-' || m.entry_id, null, p.user_id
                    from mv m join part p on p.i = m.f""")
                conn.execute("""create temp table legs on commit drop as
                    select m.entry_id, 1::smallint as leg, p.account_id, -0.01::numeric as amount from mv m join part p on p.i = m.f
                    union all
                    select m.entry_id, 2::smallint, p.account_id, 0.01 from mv m join part p on p.i = m.t""")
                conn.execute("""insert into core.postings (entry_id, leg, account_id, currency, amount, account_version, balance_after, user_id)
                    select l.entry_id, l.leg, l.account_id, 'BRL', l.amount,
                           a.version + row_number() over w, a.balance + sum(l.amount) over w, a.user_id
                    from legs l join core.accounts a on a.id = l.account_id
                    window w as (partition by l.account_id order by l.entry_id rows between unbounded preceding and current row)""")
                conn.execute("""update core.accounts a set balance = a.balance + d.net, version = a.version + d.n
                    from (select account_id, sum(amount) as net, count(*) as n from legs group by account_id) d
                    where a.id = d.account_id""")
            added += size
            log(f"  history: {have + added:,} entries")
        conn.execute("vacuum analyze")
    return added


def load_offers(url: str, total_offers: int) -> int:
    """P2P offers up to `total_offers`, through api.create_p2p_offer (SELL escrows the maker's BTC),
    half of each side, from the history customers, priced behind the bench makers' offers."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        have = conn.execute("select count(*) from core.p2p_offers").fetchone()[0]
        missing = total_offers - have
        if missing <= 0:
            return 0
        admin = conn.execute("select id from core.users where email = 'admin@bench-http.test'").fetchone()[0]
        makers = [r[0] for r in conn.execute("select id from core.users where email like 'h%@bench-http.test' order by id")]
        if not makers:
            raise SystemExit("load_history first: the offers' makers are the history customers")
        # KYC level 2 and BTC to escrow, through the same functions as the bench customers.
        for i, uid in enumerate(makers):
            if conn.execute("select kyc_level from core.users where id = %s", (uid,)).fetchone()[0] < 2:
                conn.execute("select api.submit_kyc_data(%s, %s, %s, date '1990-05-17', 'Rua do Teste, 2, São Paulo - SP')",
                             (uid, f"Histórico Bench {i}", cpf(100_000 + i)))
                conn.execute("update core.users set kyc_level = 2 where id = %s", (uid,))
                conn.execute("select admin.adjust_balance(%s, %s, 'BTC', 1000, 'Saldo do histórico', %s)",
                             (admin, uid, f"hist-btc-{uid}"))
        conn.execute("""select core.mark_email_verified(u.id) from core.users u
                        where u.email like 'h%%@bench-http.test' and u.email_verified_at is null""")
    # Two connections (the machine has two cores), each its own range of offers and its own
    # half of the makers (a batch holds its makers' account locks until it commits).
    first = have + 1
    half = missing // 2
    ranges = [(makers[0::2], first, first + half - 1), (makers[1::2], first + half, first + missing - 1)]
    threads = [threading.Thread(target=_offers_range, args=(url, part, lo, hi)) for part, lo, hi in ranges if hi >= lo]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(url, autocommit=True) as conn:
        done = conn.execute("select count(*) from core.p2p_offers").fetchone()[0] - have
        log(f"  offers: {have + done:,}")
        conn.execute("vacuum analyze")
    if done != missing:
        raise SystemExit(f"offers loader: {done} of {missing} offers created")
    return done


def _offers_range(url: str, makers: list[int], start: int, end: int, batch: int = 2000) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        done = 0
        while start + done <= end:
            lo, hi = start + done, min(start + done + batch - 1, end)
            with conn.transaction():
                conn.execute("""select api.create_p2p_offer(
                        (%(makers)s::bigint[])[1 + (g %% cardinality(%(makers)s::bigint[]))],
                        case when g %% 2 = 0 then 'SELL' else 'BUY' end, 'BTC', 'fixed', 0.01, 10.00, 1000.00,
                        array['PIX'], 'hist-offer-' || g,
                        fixed_price => case when g %% 2 = 0 then 300001.00 + g %% 5000 else 299999.00 - g %% 5000 end,
                        payment_details => 'PIX chave CPF')
                    from generate_series(%(start)s::int, %(end)s::int) g""",
                             {"makers": makers, "start": lo, "end": hi})
            done += hi - lo + 1


def counts(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        return {"entries": conn.execute("select count(*) from core.entries").fetchone()[0],
                "postings": conn.execute("select count(*) from core.postings").fetchone()[0],
                "offers": conn.execute("select count(*) from core.p2p_offers").fetchone()[0],
                "active_offers": conn.execute("select count(*) from core.p2p_offers where status = 'active'").fetchone()[0]}


def check_books(url: str) -> list:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("select * from admin.check_books()").fetchall()


def storage_per_transfer(url: str, customers: list[dict], n: int = 5000) -> dict:
    """Bytes that N two-posting api.transfer calls add to core's tables and indexes (TOAST included):
    bench.storage.measure, which also runs alone (python -m bench.storage) and per relation."""
    from bench.storage import measure
    return measure(url, customers[0]["id"], customers[1]["email"], n, key_prefix="storage-")


# ---------------------------------------------------------------------------
# Servers and sessions
# ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_web() -> str:
    for line in (PROJECT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit("Procfile has no web: line")


class Server:
    """One gunicorn, started with the Procfile's web command (app swapped for the hello)."""

    def __init__(self, name: str, command: str, port: int, env: dict, logdir: Path):
        self.name, self.port = name, port
        self.log = open(logdir / f"{name}.log", "w")
        env = dict(env, PORT=str(port))
        env["PATH"] = f"{PROJECT / '.venv' / 'bin'}:{env.get('PATH', '')}"
        self.proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=PROJECT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"

    def wait(self, path: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {self.log.name}")
            try:
                if requests.get(self.url + path, timeout=2).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise SystemExit(f"{self.name} did not answer on {self.url}{path}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def login(base: str, email: str) -> dict:
    """Log in through the form; returns the session cookie and a CSRF token of that session."""
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    token = CSRF.search(s.get(base + "/login").text).group(1)
    r = s.post(base + "/login", data={"csrf_token": token, "email": email, "password": PASSWORD},
               allow_redirects=False)
    if r.status_code != 302:
        raise SystemExit(f"login of {email} failed: {r.status_code} {r.text[:500]}")
    page = s.get(base + "/wallet")
    token = CSRF.search(page.text).group(1)
    cookie = "; ".join(f"{c.name}={c.value}" for c in s.cookies)
    return {"cookie": cookie, "csrf": token}


LUA = r"""-- generated by bench/http.py: one customer per wrk thread (each thread has one connection)
local users = %(users)s
local method = "%(method)s"
local expect = %(expect)d
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("idx", #threads)
end
function init(args)
  me = users[((idx - 1) %% #users) + 1]
  ok, bad, seq = 0, 0, 0
  wrk.headers["User-Agent"] = "%(agent)s"
  if me.cookie then wrk.headers["Cookie"] = me.cookie end
  if method == "POST" then wrk.headers["Content-Type"] = "application/x-www-form-urlencoded" end
end
function request()
  seq = seq + 1
  local body = nil
  if me.body then body = me.body .. "&idempotency_key=%(run)s-" .. idx .. "-" .. seq end
  return wrk.format(method, me.path, nil, body)
end
function response(status, headers, body)
  if status == expect then ok = ok + 1 else
    bad = bad + 1
    if bad <= 2 then io.stderr:write("unexpected " .. status .. " on " .. me.path .. ": " .. string.sub(body or "", 1, 300) .. "\n") end
  end
end
function done(summary, latency, requests)
  local okc, badc = 0, 0
  for _, t in ipairs(threads) do okc = okc + t:get("ok"); badc = badc + t:get("bad") end
  local e = summary.errors
  io.write(string.format("BENCH requests=%%d duration_us=%%d ok=%%d bad=%%d p50_us=%%.1f p99_us=%%.1f mean_us=%%.1f errors=%%d\n",
    summary.requests, summary.duration, okc, badc, latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid Lua string for our ASCII values


def lua_users(rows: list[dict]) -> str:
    items = []
    for row in rows:
        fields = ", ".join(f"{key} = {lua_string(value)}" for key, value in row.items())
        items.append("{ " + fields + " }")
    return "{\n  " + ",\n  ".join(items) + "\n}"


def target_rows(name: str, people: dict, sessions: list[dict]) -> list[dict]:
    rows = []
    for customer, recipient, session in zip(people["customers"], people["recipients"], sessions):
        base = {"cookie": session["cookie"]}
        csrf = session["csrf"]
        if name == "hello":
            rows.append({"path": "/"})
        elif name == "healthz":
            rows.append({"path": "/healthz"})
        elif name == "wallet":
            rows.append(base | {"path": "/wallet"})
        elif name == "statement":
            rows.append(base | {"path": "/wallet/BRL"})
        elif name == "offer_book":
            rows.append(base | {"path": "/p2p"})
        elif name == "trade_page":
            rows.append(base | {"path": f"/p2p/trades/{customer['trade']}"})
        elif name == "transfer":
            rows.append(base | {"path": "/wallet", "body": urlencode({
                "csrf_token": csrf, "recipient_email": recipient["email"], "currency": "BRL", "amount": "0.01",
                "totp_code": ""})})
        elif name == "trade_open":
            rows.append(base | {"path": f"/p2p/offers/{customer['offer']}", "body": urlencode({
                "csrf_token": csrf, "payment_method": "PIX", "brl_amount": "10.00", "payment_details": "",
                "totp_code": ""})})
        elif name == "withdrawal":
            rows.append(base | {"path": "/withdrawals", "body": urlencode({
                "csrf_token": csrf, "amount": "10.00", "key_type": "CPF", "pix_key": customer["cpf"],
                "totp_code": ""})})
        else:
            raise ValueError(name)
    return rows


def wrk(script: Path, url: str, connections: int, seconds: float) -> dict:
    cmd = ["wrk", "-t", str(connections), "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", "5s",
           "-s", str(script), url]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"wrk failed: {result.stdout}\n{result.stderr}")
    out = parse_wrk(result.stdout)
    out["stderr"] = result.stderr.strip()
    return out


def tree_cpu(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children, read from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pids, total = [root_pid], 0.0
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append((int(entry.name), fields))
    seen = set()
    while pids:
        pid = pids.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
        pids.extend(child for child, _ in children.get(pid, []))
    return total


CPU_ROOTS: dict[str, int] = {}   # "app", "hello", "db" -> root pid, filled by main()


def measure(names, scripts, urls, connections, seconds, repeat) -> dict[str, dict]:
    runs: dict[str, list] = {name: [] for name in names}
    for round_ in range(repeat):
        log(f"  round {round_ + 1}/{repeat} (load {load()})")
        for name in names:
            wrk(scripts[name], urls[name], connections, 2)   # warm-up
            server = "hello" if name == "hello" else "app"
            cpu0 = {k: tree_cpu(v) for k, v in CPU_ROOTS.items()}
            result = wrk(scripts[name], urls[name], connections, seconds)
            cpu = {k: tree_cpu(v) - cpu0[k] for k, v in CPU_ROOTS.items()}
            done = max(result["ok"], 1)
            result["web_cpu_ms"] = 1000 * cpu.get(server, 0) / done
            result["db_cpu_ms"] = 1000 * cpu.get("db", 0) / done
            if result["bad"]:
                raise SystemExit(f"{name}: {result['bad']} unexpected statuses\n{result['stderr']}")
            if result["errors"]:   # timeouts (5 s) on an overloaded machine: counted, shown, not hidden
                log(f"    {name}: {result['errors']} socket errors or timeouts")
            runs[name].append(result)
            log(f"    {name:<11} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms"
                f"  CPU per request: web {result['web_cpu_ms']:.2f} ms, database {result['db_cpu_ms']:.2f} ms")
    return {name: median_result(rs) for name, rs in runs.items()}


def profile(app: "Server", script: Path, url: str, connections: int, seconds: int, workdir: Path) -> None:
    """Sample every gunicorn worker with py-spy while wrk runs; print self and inclusive time by function."""
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not spy:
        raise SystemExit("py-spy not found: pip install py-spy (or set PY_SPY)")
    workers = subprocess.run(["pgrep", "-P", str(app.proc.pid)], capture_output=True, text=True).stdout.split()
    wrk(script, url, connections, 2)
    spies = [subprocess.Popen([spy, "record", "-p", pid, "-d", str(seconds), "-r", "200", "-f", "raw", "-o",
                               str(workdir / f"{pid}.txt"), "--nonblocking"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for pid in workers]
    result = wrk(script, url, connections, seconds)
    for p in spies:
        p.wait()
    log(f"  {result['rps']:.0f} req/s under py-spy")
    inclusive, own, total = {}, {}, 0
    for pid in workers:
        path = workdir / f"{pid}.txt"
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if not any("wsgi" in f or "flask" in f for f in frames):
                continue   # idle threads waiting in the selector
            n = int(count)
            total += n
            for frame in set(re.sub(r":\d+\)", ")", f) for f in frames):
                inclusive[frame] = inclusive.get(frame, 0) + n
            leaf = re.sub(r":\d+\)", ")", frames[-1])
            own[leaf] = own.get(leaf, 0) + n
    log(f"  {total} busy samples")
    log("  inclusive:")
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:60]:
        log(f"    {100 * n / total:5.1f}%  {frame}")
    log("  self:")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:30]:
        log(f"    {100 * n / total:5.1f}%  {frame}")


def report(title: str, results: dict, kinds: dict) -> None:
    judged = verdicts(results, kinds)
    log(f"\n{title}")
    log(f"  {'target':<11} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} {'web CPU':>8} {'db CPU':>7}  goal")
    for name, result in results.items():
        v = judged[name]
        goal = "" if v["goal"] is None else f">= {v['goal']:.2f} {'met' if v['ratio_ok'] else 'NOT met'}"
        p99 = "" if name == "hello" else f", p99 {'met' if v['p99_ok'] else 'NOT met'}"
        log(f"  {name:<11} {result['rps']:8.0f} {result['p50_ms']:7.1f} {result['p99_ms']:7.1f} {v['ratio']:6.2f}"
            f" {result.get('web_cpu_ms', 0):6.2f}ms {result.get('db_cpu_ms', 0):5.2f}ms  {goal}{p99}   rounds {result['rounds']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians are printed")
    parser.add_argument("--small-entries", type=int, default=10_000)
    parser.add_argument("--small-offers", type=int, default=1_000)
    parser.add_argument("--entries", type=int, default=1_000_000, help="journal entries for the growth run")
    parser.add_argument("--offers", type=int, default=100_000, help="P2P offers for the growth run")
    parser.add_argument("--no-growth", action="store_true")
    parser.add_argument("--only", help="comma-separated targets (hello is always measured)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--profile", metavar="TARGET",
                        help="py-spy (PY_SPY or on PATH) samples the app's workers during TARGET; prints the top frames")
    args = parser.parse_args(argv)

    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk (Debian/Ubuntu), then make bench-http")
    names = [t[0] for t in TARGETS]
    if args.only:
        wanted = set(args.only.split(",")) | {"hello"}
        names = [n for n in names if n in wanted]
    kinds = {t[0]: t[1] for t in TARGETS}
    started = time.time()

    cluster = Cluster(base=default_base().parent / "bench-http", port=int(os.environ.get("BENCH_HTTP_PORT", 54349)))
    log(f"cluster {cluster.datadir} port {cluster.port}")
    cluster.start()
    servers: list[Server] = []
    poller = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    try:
        url = recreate_database(cluster.url("postgres"))
        migrate.upgrade(url, log=lambda *_: None)
        poller = PricePoller(url)
        people = seed(url, args.connections)
        load_history(url, args.small_entries)
        # Enough offers that the book shows a full page (50) on the small database too:
        # the growth compares the same page, not 16 rows with 50.
        load_offers(url, args.small_offers)
        env = dict(os.environ, DATABASE_URL=url, SECRET_KEY=uuid.uuid4().hex,
                   RATELIMIT_WITHDRAWAL="1000000 per minute")
        for key in ("APP_DATABASE_URL", "AUDIT_DATABASE_URL", "WORKER_DATABASE_URL"):
            env.pop(key, None)
        command = procfile_web()
        if "wsgi:app" not in command:
            raise SystemExit(f"the Procfile's web command does not serve wsgi:app: {command}")
        log(f"web: {command}")
        app = Server("app", command, free_port(), env, workdir)
        hello = Server("hello", command.replace("wsgi:app", "bench.hello:app"), free_port(), env, workdir)
        servers += [app, hello]
        app.wait("/healthz")
        hello.wait("/")
        CPU_ROOTS.update(app=app.proc.pid, hello=hello.proc.pid,
                         db=int((cluster.datadir / "postmaster.pid").read_text().split()[0]))
        sessions = [login(app.url, c["email"]) for c in people["customers"]]
        run_id = uuid.uuid4().hex[:8]
        scripts, urls = {}, {}
        for name in names:
            method, expect = next((t[2], t[3]) for t in TARGETS if t[0] == name)
            path = workdir / f"{name}.lua"
            path.write_text(LUA % {"users": lua_users(target_rows(name, people, sessions)), "method": method,
                                   "expect": expect, "agent": USER_AGENT, "run": f"{name}-{run_id}"})
            scripts[name] = path
            urls[name] = hello.url if name == "hello" else app.url

        if args.profile:
            profile(app, scripts[args.profile], urls[args.profile], args.connections, args.seconds, workdir)
            return 0
        small_counts = counts(url)
        log(f"\nsmall database: {small_counts}")
        small = measure(names, scripts, urls, args.connections, args.seconds, args.repeat)
        report(f"{args.connections} connections, {args.seconds:g} s, small database "
               f"({small_counts['entries']:,} entries, {small_counts['offers']:,} offers)", small, kinds)

        if not args.no_growth:
            t0 = time.time()
            log(f"\nloading growth data ({args.entries:,} entries, {args.offers:,} offers)")
            load_history(url, args.entries)
            load_offers(url, args.offers)
            large_counts = counts(url)
            log(f"  loaded in {time.time() - t0:.0f} s: {large_counts}")
            for name in names:   # new trade ids etc. need no new scripts; run ids keep keys fresh
                scripts[name].write_text(scripts[name].read_text().replace(f"-{run_id}", f"-{run_id}g"))
            large = measure(names, scripts, urls, args.connections, args.seconds, args.repeat)
            report(f"{args.connections} connections, {args.seconds:g} s, large database "
                   f"({large_counts['entries']:,} entries, {large_counts['offers']:,} offers)", large, kinds)
            grown = growth(small, large, [n for n in GROWTH_TARGETS if n in names])
            log("\ngrowth (mean latency at the same load, small -> large database)")
            for name, g in grown.items():
                log(f"  {name:<11} {g['small_ms']:6.1f} -> {g['large_ms']:6.1f} ms  {g['change']:+.0%}  "
                    f"{'flat (within ±25 %)' if g['ok'] else 'NOT flat'}")

        storage = storage_per_transfer(url, people["customers"])
        log(f"\nstorage: {storage['bytes']:,} B for {storage['transfers']:,} transfers ({storage['postings']:,} postings):"
            f" {storage['per_transfer']:.0f} B per two-posting transfer (target <= 800 B)")
        failures = check_books(url)
        log(f"books: {'balanced' if not failures else failures}")
        log(f"load average at the end: {load()}; whole run {time.time() - started:.0f} s")
        return 1 if failures else 0
    finally:
        for server in servers:
            server.stop()
        if poller:
            poller.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
