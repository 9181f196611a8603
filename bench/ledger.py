"""Ledger throughput: api.transfer per second, against plain pgbench, on a private cluster.

    make bench                                   # = python -m bench.ledger
    python -m bench.ledger --repeat 5            # more rounds of the ratio measurements
    python -m bench.ledger --single-fee-shard --psycopg   # also: one hot fee row; Python clients
    python -m bench.ledger --seconds 5 --clients 1,8 --customers 200

What it does (docs/PERFORMANCE.md explains the numbers):

1. starts a dedicated cluster in `.local/bench` (same settings as the `make run` cluster, its own
   port, BENCH_PORT, default 54339), or uses BENCH_DATABASE_ADMIN_URL (the owner URL of an existing
   server's `postgres` database);
2. creates `bench_ledger` (migrated with webapp.migrate.upgrade; N customers funded through
   admin.adjust_balance) and `bench_pgbench` (`pgbench -i`);
3. runs pgbench with a custom script as `exchange_app` over TCP: each transaction is one
   `select * from api.transfer(...)`, sender and recipient drawn at random among the customers,
   a fresh idempotency key; at 1, 2, 4, 8 and 16 clients. Next to it, the built-in
   `pgbench -N -M prepared -c 8 -j 2`, and the transfer with a fee (transfer_fee_percent = 0.1,
   fee revenue sharded over `fee_shards` accounts by core.fee_account) at 8 clients. The three
   8-client runs are measured back to back in `--repeat` rounds (each round starts with a
   CHECKPOINT; each run has a short warm-up), so their ratios share the machine's noise; the
   printed ratios are the medians, with the spread;
4. checks the books of bench_ledger (admin.check_books() empty, zero-sum per currency);
5. ends with the two ratio lines (targets: >= 0.60 and >= 0.50).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from webapp import migrate
from webapp.config import role_url
from devserver.cluster import Cluster, default_base, pg_bindir

LEDGER_DB = "bench_ledger"
PGBENCH_DB = "bench_pgbench"
FEE_PERCENT = "0.1"
WARM_UP = 2  # seconds before each measured run

# One transaction = one call. Amounts 10.00-100.00 BRL, so that a 0.1 % fee is
# at least one centavo and every transfer of the fee run pays one.
TRANSFER_SCRIPT = r"""\set a random(1, :n)
\set b 1 + (:a + random(0, :n - 2)) % :n
\set sender :a + :offset
\set cents random(1000, 10000)
select * from api.transfer(:sender, 'c' || :b::text || '@bench.test', 'BRL', :cents * 0.01, gen_random_uuid()::text);
"""


def log(*args):
    print(*args, flush=True)


def url_for_db(admin_url: str, dbname: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{dbname}"


def server_args(url: str) -> list[str]:
    """pgbench connection options for a URL (TCP, as its user)."""
    params = conninfo_to_dict(url)
    return ["-h", params.get("host", "127.0.0.1"), "-p", str(params.get("port", 5432)),
            "-U", params.get("user", "postgres"), params["dbname"]]


# ---------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------

def recreate_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")
        conn.execute(f"create database {name}")
    return url_for_db(admin_url, name)


def prepare_ledger(admin_url: str, customers: int) -> tuple[str, int]:
    """A migrated database with `customers` funded customers c1..cN@bench.test; returns (url, id offset)."""
    url = recreate_database(admin_url, LEDGER_DB)
    migrate.upgrade(url, log=lambda *_: None)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        admin = conn.execute("select api.register_user('admin@bench.test', repeat('x', 40), 'Bench admin')").fetchone()[0]
        conn.execute("update core.users set role = 'admin' where id = %s", (admin,))
        # admins must have 2FA on (core.assert_admin); the bench admin gets a throwaway secret
        conn.execute("insert into core.user_totp (user_id, secret, confirmed_at) values (%s, %s, now())",
                     (admin, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
        with conn.transaction():
            conn.execute("""select api.register_user(format('c%%s@bench.test', g), repeat('x', 40), format('Cliente %%s', g))
                            from generate_series(1, %s) g order by g""", (customers,))
            # (e-mail verification: the bench customers are ready to move money)
            conn.execute("select core.mark_email_verified(u.id) from core.users u where u.email like 'c%@bench.test'")
        offset = conn.execute("select min(id) - 1 from core.users where email like 'c%%@bench.test'").fetchone()[0]
        aligned = conn.execute("select count(*) from core.users where email = format('c%%s@bench.test', id - %s)",
                               (offset,)).fetchone()[0]
        if aligned != customers:
            raise SystemExit("customer ids are not contiguous; cannot map pgbench variables to e-mails")
        # Funded through real, journaled adjustments (never by writing balances).
        conn.execute("""select admin.adjust_balance(%s, u.id, 'BRL', 10000000.00, 'Saldo do benchmark', 'bench-' || u.id)
                        from core.users u where u.role = 'customer' order by u.id""", (admin,))
        conn.execute("vacuum analyze")
    return url, offset


def prepare_pgbench(admin_url: str) -> str:
    url = recreate_database(admin_url, PGBENCH_DB)
    subprocess.run([str(pg_bindir() / "pgbench"), "-i", "-q", *server_args(url)],
                   check=True, capture_output=True, text=True)
    return url


def checkpoint(admin_url: str):
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("checkpoint")


def set_setting(url: str, name: str, value: str):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("update core.settings set value = %s where name = %s", (value, name))


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------

TPS = re.compile(r"tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)")
PROCESSED = re.compile(r"number of transactions actually processed: (\d+)")


class Run:
    """One pgbench run: transactions per second, and WAL written per transaction."""

    def __init__(self, tps: float, transactions: int, wal_bytes: int):
        self.tps = tps
        self.wal_per_txn = wal_bytes / max(transactions, 1)


def wal_lsn(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]


def wal_since(admin_url: str, start: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return int(conn.execute("select pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (start,)).fetchone()[0])


def pgbench(url: str, clients: int, seconds: int, extra: list[str]) -> tuple[float, int]:
    """Run pgbench; returns (transactions per second, transactions). Fails loudly if any client aborted."""
    jobs = min(clients, 2)
    cmd = [str(pg_bindir() / "pgbench"), "-M", "prepared", "-c", str(clients), "-j", str(jobs),
           "-T", str(seconds), *extra, *server_args(url)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    out = result.stdout + result.stderr
    match = TPS.search(out)
    processed = PROCESSED.search(out)
    if result.returncode != 0 or not match or not processed or "aborted" in out:
        raise SystemExit(f"pgbench failed ({' '.join(cmd)}):\n{out}")
    return float(match.group(1)), int(processed.group(1))


def ledger_args(customers: int, offset: int, script: Path) -> list[str]:
    return ["-n", "-f", str(script), "-D", f"n={customers}", "-D", f"offset={offset}"]


def _psycopg_client(args) -> int:
    url, offset, customers, seconds, seed = args
    rnd = random.Random(seed)
    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        query = "select * from api.transfer(%s, %s, 'BRL', %s, %s)"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            a = rnd.randint(1, customers)
            b = 1 + (a + rnd.randint(0, customers - 2)) % customers
            cents = rnd.randint(1000, 10000)
            conn.execute(query, (a + offset, f"c{b}@bench.test", Decimal(cents).scaleb(-2),
                                 str(uuid.uuid4())), prepare=True)
            done += 1
    return done


def psycopg_run(url: str, offset: int, customers: int, clients: int, seconds: int) -> float:
    """The same transfer from Python: one process per client, each with its own connection."""
    app = role_url(url, "exchange_app")
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        counts = pool.map(_psycopg_client, [(app, offset, customers, seconds, i) for i in range(clients)])
    return sum(counts) / seconds


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def machine(admin_url: str) -> dict:
    info = {"nproc": os.cpu_count(), "python": platform.python_version()}
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory"] = f"{pages / 2**30:.1f} GiB"
    except (ValueError, OSError):
        info["memory"] = "?"
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or "?"
    with psycopg.connect(admin_url) as conn:
        info["postgres"] = conn.execute("show server_version").fetchone()[0]
        for name in ("shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_connections"):
            info[name] = conn.execute(f"show {name}").fetchone()[0]
    return info


def check_books(url: str):
    with psycopg.connect(url) as conn:
        failures = conn.execute("select check_name, detail from admin.check_books() limit 5").fetchall()
        totals = conn.execute("select currency, total, cached_total from reporting.trial_balance "
                              "where total <> 0 or cached_total <> 0").fetchall()
        entries = conn.execute("select count(*) from core.entries where kind = 'transfer'").fetchone()[0]
    if failures or totals:
        raise SystemExit(f"the books do not balance after the benchmark: {failures} {totals}")
    log(f"books: healthy after {entries} transfers (admin.check_books() empty, zero-sum per currency)")


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return ""
    return f" (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each point (default 10)")
    parser.add_argument("--clients", default="1,2,4,8,16", help="client counts of the transfer sweep")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the three 8-client runs (ratios; default 3)")
    parser.add_argument("--psycopg", action="store_true", help="also measure the 8-client transfer from Python processes")
    parser.add_argument("--single-fee-shard", action="store_true",
                        help="also measure the fee run with fee_shards = 1 (one hot fee row)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and leave the cluster running")
    args = parser.parse_args(argv)
    sweep = [int(c) for c in args.clients.split(",") if c.strip()]

    cluster = None
    started = False
    admin_url = os.environ.get("BENCH_DATABASE_ADMIN_URL")
    if not admin_url:
        cluster = Cluster(base=default_base().parent / "bench", port=int(os.environ.get("BENCH_PORT", "54339")))
        started = not cluster.running()
        log(f"starting the bench cluster in {cluster.datadir} (port {cluster.port})")
        cluster.start()
        admin_url = cluster.url("postgres")
    try:
        info = machine(admin_url)
        log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        log(f"preparing {LEDGER_DB} ({args.customers} customers) and {PGBENCH_DB} (pgbench -i)")
        ledger_url, offset = prepare_ledger(admin_url, args.customers)
        pgbench_url = prepare_pgbench(admin_url)

        with tempfile.TemporaryDirectory(prefix="bsm-bench-") as tmp:
            script = Path(tmp) / "transfer.sql"
            script.write_text(TRANSFER_SCRIPT)
            s = args.seconds
            app_url = role_url(ledger_url, "exchange_app")

            def run(kind: str, clients: int, warm_up: int = WARM_UP) -> Run:
                """A warm-up (caches, plans, the full-page images after a checkpoint), then the measured run."""
                url, extra = ((pgbench_url, ["-N"]) if kind == "pgbench"
                              else (app_url, ledger_args(args.customers, offset, script)))
                fee = kind == "fee"
                set_setting(ledger_url, "transfer_fee_percent", FEE_PERCENT if fee else "0")
                try:
                    if warm_up:
                        pgbench(url, clients, warm_up, extra)
                    start = wal_lsn(admin_url)
                    tps, transactions = pgbench(url, clients, s, extra)
                    return Run(tps, transactions, wal_since(admin_url, start))
                finally:
                    if fee:
                        set_setting(ledger_url, "transfer_fee_percent", "0")

            base, ledger8, fee8 = [], [], []
            for rep in range(1, args.repeat + 1):
                # each round starts from a checkpoint, so that no checkpoint
                # falls inside a measurement of one workload and not the other
                checkpoint(admin_url)
                base.append(run("pgbench", 8))
                ledger8.append(run("ledger", 8))
                fee8.append(run("fee", 8))
                log(f"[{rep}/{args.repeat}] 8 clients: pgbench -N {base[-1].tps:6.0f} tps | api.transfer "
                    f"{ledger8[-1].tps:6.0f} tps | with fee {fee8[-1].tps:6.0f} tps | ratios "
                    f"{ledger8[-1].tps / base[-1].tps:.2f} / {fee8[-1].tps / ledger8[-1].tps:.2f} | WAL/txn "
                    f"{base[-1].wal_per_txn:.0f} / {ledger8[-1].wal_per_txn:.0f} / {fee8[-1].wal_per_txn:.0f} B")

            results = {}
            checkpoint(admin_url)
            for clients in sweep:
                results[clients] = (statistics.median(r.tps for r in ledger8) if clients == 8
                                    else run("ledger", clients).tps)
            single_shard = None
            if args.single_fee_shard:
                set_setting(ledger_url, "fee_shards", "1")
                try:
                    single_shard = run("fee", 8).tps
                finally:
                    set_setting(ledger_url, "fee_shards", "16")
            python8 = psycopg_run(ledger_url, offset, args.customers, 8, s) if args.psycopg else None

        check_books(ledger_url)

        log("")
        log(f"{'scenario':<48} {'clients':>7} {'tps':>9}")
        for clients, tps in results.items():
            log(f"{'api.transfer (pgbench custom script)':<48} {clients:>7} {tps:>9.0f}")
        log(f"{'pgbench -N -M prepared (built-in, -j 2)':<48} {8:>7} {statistics.median(r.tps for r in base):>9.0f}")
        log(f"{'api.transfer + 0.1% fee, 16 fee shards':<48} {8:>7} {statistics.median(r.tps for r in fee8):>9.0f}")
        if single_shard is not None:
            log(f"{'api.transfer + 0.1% fee, 1 fee shard':<48} {8:>7} {single_shard:>9.0f}")
        if python8 is not None:
            log(f"{'api.transfer from psycopg (8 processes)':<48} {8:>7} {python8:>9.0f}")
        log(f"WAL per transaction: pgbench -N {statistics.median(r.wal_per_txn for r in base):.0f} B, "
            f"api.transfer {statistics.median(r.wal_per_txn for r in ledger8):.0f} B, "
            f"with fee {statistics.median(r.wal_per_txn for r in fee8):.0f} B")
        ratios = [l.tps / b.tps for l, b in zip(ledger8, base)]
        fee_ratios = [f.tps / l.tps for f, l in zip(fee8, ledger8)]
        log(f"ratio spread: ledger/pgbench{spread(ratios)}; hot-fee/uncontended{spread(fee_ratios)}")
        log(f"ledger/pgbench ratio at 8 clients: {statistics.median(ratios):.2f}")
        log(f"hot-fee/uncontended ratio: {statistics.median(fee_ratios):.2f}")
    finally:
        if not args.keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                for name in (LEDGER_DB, PGBENCH_DB):
                    conn.execute(f"drop database if exists {name} with (force)")
            if cluster is not None and started:
                cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
