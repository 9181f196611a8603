"""Transfers per second straight to PostgreSQL and through PgBouncer (transaction mode).

    python -m bench.pgbouncer                     # 8 and 64 clients, 3 rounds; numbers in docs/SCALING.md
    python -m bench.pgbouncer --clients 8,64,200 --seconds 10 --repeat 3
    python -m bench.pgbouncer --clients 8 --connect   # also a new connection per transfer (pgbench -C)

The ledger database of `make bench` (bench/ledger.py: 1000 funded customers, the same one-call
transfer script) on its own cluster (BENCH_PGBOUNCER_PORT, default 54385), and a PgBouncer
(devserver/pgbouncer.py, pool of 8 server connections per database and role) in front of it. Each
round runs pgbench at each client count direct, then through the bouncer, back to back; the
query protocol is `-M extended` in both (what psycopg with prepare_threshold=None does: no named
prepared statements, which transaction mode cannot keep).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import ledger
from webapp.config import role_url
from devserver.cluster import Cluster, default_base, pg_bindir
from devserver.pgbouncer import Bouncer, binary


RECONNECTING = re.compile(r"tps = ([0-9.]+) \(including reconnection times\)")


def pgbench(url: str, clients: int, seconds: int, extra: list[str]) -> float:
    cmd = [str(pg_bindir() / "pgbench"), "-M", "extended", "-c", str(clients), "-j", str(min(clients, 2)),
           "-T", str(seconds), *extra, *ledger.server_args(url)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    out = result.stdout + result.stderr
    match = ledger.TPS.search(out) or RECONNECTING.search(out)
    if result.returncode != 0 or not match or "aborted" in out:
        raise SystemExit(f"pgbench failed ({' '.join(cmd)}):\n{out}")
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--clients", default="8,64")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--connect", action="store_true",
                        help="also a new connection per transaction (pgbench -C), where a pooler saves the backend start")
    args = parser.parse_args(argv)
    if not binary():
        raise SystemExit("pgbouncer is not installed (apt-get install -y pgbouncer)")
    clients = [int(c) for c in args.clients.split(",")]
    cluster = Cluster(base=default_base().parent / "bench-pgbouncer", port=int(os.environ.get("BENCH_PGBOUNCER_PORT", "54385")))
    cluster.start()
    bouncer = None
    try:
        ledger.log(f"preparing {ledger.LEDGER_DB} ({args.customers} customers) on port {cluster.port}")
        url, offset = ledger.prepare_ledger(cluster.url("postgres"), args.customers)
        app_url = role_url(url, "exchange_app")
        bouncer = Bouncer(cluster.base.parent / "bench-pgbouncer-conf", cluster.port + 1, "127.0.0.1", cluster.port,
                          pool_size=args.pool_size).start()
        results: dict[tuple[str, int], list[float]] = {}
        with tempfile.TemporaryDirectory(prefix="bsm-bench-") as tmp:
            script = Path(tmp) / "transfer.sql"
            script.write_text(ledger.TRANSFER_SCRIPT)
            extra = ledger.ledger_args(args.customers, offset, script)
            modes = [("", [])] + ([(" -C", ["-C"])] if args.connect else [])
            for rep in range(1, args.repeat + 1):
                ledger.checkpoint(cluster.url("postgres"))
                for n in clients:
                    for mode, flags in modes:
                        for name, target in (("direct", app_url), ("pgbouncer", bouncer.url(app_url))):
                            pgbench(target, n, 2, extra + flags)   # warm-up
                            tps = pgbench(target, n, args.seconds, extra + flags)
                            results.setdefault((name + mode, n), []).append(tps)
                            ledger.log(f"[{rep}/{args.repeat}] {n:>3} clients {name + mode:<12} {tps:8.0f} transfers/s")
        ledger.log("\nclients  direct (median, min-max)     pgbouncer (median, min-max)   pgbouncer/direct")
        for mode, _ in modes:
            for n in clients:
                d, b = results[("direct" + mode, n)], results[("pgbouncer" + mode, n)]
                ledger.log(f"{n:>7}{mode:<3} {statistics.median(d):7.0f} ({min(d):.0f}-{max(d):.0f})"
                           f"{'':>12}{statistics.median(b):7.0f} ({min(b):.0f}-{max(b):.0f})"
                           f"{'':>12}{statistics.median(b) / statistics.median(d):.2f}")
        ledger.check_books(url)
    finally:
        if bouncer:
            bouncer.stop()
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
