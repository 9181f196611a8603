"""What one request costs inside the process: the app under Werkzeug's test client, no HTTP server.

    python -m bench.request_cost                         # every target, 300 requests each
    python -m bench.request_cost --only offer_book -n 500
    python -m bench.request_cost --profile offer_book    # cProfile of 200 requests: top functions
    python -m bench.request_cost --reuse                 # the database of the last run (no seeding)

The same database as `make bench-http` (bench/http.py's seed, 10 000 journal entries and 1 000 P2P
offers, in `.local/bench-cost` on port BENCH_COST_PORT, default 54412), the same targets, the same
customers logged in through /login. For each target it prints, per request (the least of five
batches, so the least disturbed by the other processes on the machine): the wall time, the
CPU time of this process (Flask, Jinja, WTForms, psycopg: the web's share), the CPU time of the
PostgreSQL cluster (its processes, read from /proc), the database calls made, and the Python function
calls made (cProfile over 20 more requests: deterministic, unlike time on a shared machine). CPU time of this
process is what counts on a shared machine: it does not include the time spent waiting for the
database or for the other processes on the cores.

docs/PERFORMANCE.md ("Request cost") uses it to see where the time goes and to measure each change.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl

import psycopg

from bench import http as bench_http
from devserver.cluster import Cluster, default_base
from webapp import migrate

TARGETS = [name for name, *_ in bench_http.TARGETS if name != "hello"]


def people_from(url: str, n: int) -> dict:
    """The seeded customers, recipients and their offers/trades (for --reuse)."""
    with psycopg.connect(url, autocommit=True) as conn:
        def group(prefix):
            return [{"id": r[0], "email": r[1], "cpf": r[2]} for r in conn.execute(
                """select u.id, u.email, k.cpf from core.users u left join core.kyc_profiles k on k.user_id = u.id
                   where u.email ~ %s order by u.id""", (f"^{prefix}[0-9]+@bench-http.test$",))][:n]
        people = {"customers": group("u"), "recipients": group("r"), "makers": group("m")}
        for customer in people["customers"]:
            customer["trade"], customer["offer"] = conn.execute(
                "select id, offer_id from core.p2p_trades where buyer_id = %s order by id limit 1",
                (customer["id"],)).fetchone()
    return people


def setup(reuse: bool, n: int) -> tuple[Cluster, str, dict]:
    base = Path(os.environ["BENCH_COST_DIR"]) if os.environ.get("BENCH_COST_DIR") else default_base().parent / "bench-cost"
    cluster = Cluster(base=base, port=int(os.environ.get("BENCH_COST_PORT", 54412)))
    cluster.start()
    url = cluster.url("postgres").rsplit("/", 1)[0] + f"/{bench_http.DB}"
    if reuse:
        return cluster, url, people_from(url, n)
    url = bench_http.recreate_database(cluster.url("postgres"))
    migrate.upgrade(url, log=lambda *_: None)
    bench_http.PricePoller(url).stop()
    people = bench_http.seed(url, n)
    bench_http.load_history(url, 10_000)
    bench_http.load_offers(url, 1_000)
    return cluster, url, people


def make_app(url: str):
    os.environ.update(DATABASE_URL=url, SECRET_KEY=uuid.uuid4().hex, RATELIMIT_WITHDRAWAL="1000000 per minute")
    for key in ("APP_DATABASE_URL", "AUDIT_DATABASE_URL", "WORKER_DATABASE_URL"):
        os.environ.pop(key, None)
    from webapp import create_app
    return create_app()


CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def login(app, email: str):
    client = app.test_client()
    token = CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
    r = client.post("/login", data={"csrf_token": token, "email": email, "password": bench_http.PASSWORD})
    assert r.status_code == 302, (email, r.status_code)
    token = CSRF.search(client.get("/wallet").get_data(as_text=True)).group(1)
    return client, token


class CallCounter:
    """Counts db.call_with while installed (the one way Python talks to SQL)."""

    def __init__(self):
        from webapp import db
        self.db, self.original, self.calls = db, db.call_with, 0

        def counting(*args, **kwargs):
            self.calls += 1
            return self.original(*args, **kwargs)
        db.call_with = counting

    def close(self):
        self.db.call_with = self.original


def requests_for(name: str, people: dict, sessions: list):
    """(client, method, path, form, expected status) for each customer, as bench/http.py sends them."""
    rows = bench_http.target_rows(name, people, [{"cookie": "", "csrf": token} for _, token in sessions])
    expect = next(t[3] for t in bench_http.TARGETS if t[0] == name)
    method = next(t[2] for t in bench_http.TARGETS if t[0] == name)
    return [(client, method, row["path"], dict(parse_qsl(row.get("body", ""), keep_blank_values=True)), expect)
            for (client, _), row in zip(sessions, rows)]


def run(name: str, batch: list, n: int, db_pid: int) -> dict:
    seq = 0

    def one(i):
        nonlocal seq
        client, method, path, form, expect = batch[i % len(batch)]
        if method == "POST":
            seq += 1
            form = dict(form, idempotency_key=f"cost-{name}-{uuid.uuid4().hex}-{seq}")
            r = client.post(path, data=form)
        else:
            r = client.get(path)
        if r.status_code != expect:
            raise SystemExit(f"{name}: {r.status_code} on {path}\n{r.get_data(as_text=True)[:800]}")
        return r

    for i in range(min(20, n)):   # warm-up: caches, pool connections
        one(i)
    counter = CallCounter()
    batches = []   # five batches: the least disturbed one is the cost (the machine is shared)
    size = max(1, n // 5)
    try:
        for b in range(5):
            db0 = bench_http.tree_cpu(db_pid)   # (reading /proc is not the request's CPU: outside)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for i in range(size):
                one(b * size + i)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            batches.append((cpu, wall, bench_http.tree_cpu(db_pid) - db0))
    finally:
        counter.close()
    cpu, wall, dbcpu = (min(values) for values in zip(*batches))
    # Python function calls per request: deterministic, whatever the machine is doing.
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(20):
        one(i)
    profiler.disable()
    py_calls = pstats.Stats(profiler).total_calls / 20
    return {"wall_ms": 1000 * wall / size, "cpu_ms": 1000 * cpu / size, "db_cpu_ms": 1000 * dbcpu / size,
            "calls": counter.calls / (5 * size), "py_calls": py_calls}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per target")
    parser.add_argument("--only", help="comma-separated targets")
    parser.add_argument("--profile", metavar="TARGET", help="cProfile TARGET's requests; print the top functions")
    parser.add_argument("--sort", default="tottime", help="pstats sort key for --profile (tottime, cumulative)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--reuse", action="store_true", help="the database of the last run, as it is")
    parser.add_argument("--customers", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args(argv)

    cluster, url, people = setup(args.reuse, max(args.customers, 2))
    db_pid = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    poller = bench_http.PricePoller(url)
    try:
        app = make_app(url)
        sessions = [login(app, c["email"]) for c in people["customers"][:args.customers]]
        names = args.only.split(",") if args.only else TARGETS
        if args.profile:
            batch = requests_for(args.profile, people, sessions)
            run(args.profile, batch, 20, db_pid)
            profiler = cProfile.Profile()
            profiler.enable()
            run(args.profile, batch, args.n if args.n != 300 else 200, db_pid)
            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
            return 0
        print(f"load average {bench_http.load()}; {args.n} requests per target, {len(sessions)} customers")
        print(f"  {'target':<11} {'wall ms':>8} {'web CPU':>8} {'db CPU':>7} {'calls':>6} {'py calls':>9}")
        for name in names:
            r = run(name, requests_for(name, people, sessions), args.n, db_pid)
            print(f"  {name:<11} {r['wall_ms']:8.2f} {r['cpu_ms']:8.2f} {r['db_cpu_ms']:7.2f} {r['calls']:6.1f}"
                  f" {r['py_calls']:9.0f}", flush=True)
        print(f"load average {bench_http.load()}")
        return 0
    finally:
        poller.stop()
        from webapp import db
        if "app" in locals():
            db.close_pools(app)
        if not args.keep:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
