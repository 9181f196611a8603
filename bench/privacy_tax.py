"""How long the tax statement and the data export take for a customer with a long history.

    python -m bench.privacy_tax                   # 5000 movements
    python -m bench.privacy_tax --movements 20000

Starts a throwaway cluster (devserver.cluster.Cluster on a free port, destroyed at the end), migrates
it, funds two customers through admin.adjust_balance and moves BTC between them with api.transfer
(every transfer is a movement of both customers' tax ledger: half in, half out, so the average cost
is recomputed at each). Then times, as exchange_app, each function a page calls (best of 5):
api.tax_positions, api.tax_movements and api.tax_monthly_sales (the /tax page runs all three),
api.export_my_data_sections (the download of /account/privacy), api.closure_check.
"""
from __future__ import annotations

import argparse
import socket
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from webapp import migrate
from webapp.config import role_url
from devserver.cluster import Cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def best_of(conn, query: str, args: tuple, rounds: int = 5) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        rows = len(conn.execute(query, args).fetchall())
        times.append(time.perf_counter() - start)
    return min(times) * 1000, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movements", type=int, default=5000, help="transfers between the two customers")
    args = parser.parse_args()
    cluster = Cluster(base=Path(tempfile.mkdtemp(prefix="bsm-bench-tax-")) / "pg", port=free_port())
    cluster.start()
    try:
        admin_url = cluster.url("postgres")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("create database bench_tax")
        url = admin_url.rsplit("/", 1)[0] + "/bench_tax"
        migrate.upgrade(url, log=lambda *_: None)
        with psycopg.connect(url, autocommit=True) as owner, \
                psycopg.connect(role_url(url, "exchange_app"), autocommit=True) as app:
            ids = [app.execute("select api.register_user(%s, %s, %s)", (f"c{i}@example.com", "x" * 40, f"C {i}"))
                   .fetchone()[0] for i in (1, 2)]
            for user_id in ids:
                owner.execute("select core.post_adjustment(null, %s, 'BTC', 10, 'bench', %s)", (user_id, f"b{user_id}"))
            start = time.perf_counter()
            with app.transaction():
                for i in range(args.movements):
                    sender, recipient = (ids[0], 2) if i % 2 == 0 else (ids[1], 1)
                    app.execute("select * from api.transfer(%s, %s, 'BTC', 0.00012345, %s)",
                                (sender, f"c{recipient}@example.com", str(uuid.uuid4())))
            print(f"{args.movements} transfers in {time.perf_counter() - start:.1f} s")
            year = owner.execute("select extract(year from now() at time zone 'America/Sao_Paulo')::int").fetchone()[0]
            for name, query, call_args in (
                    ("api.tax_positions", "select * from api.tax_positions(%s, %s)", (ids[0], year)),
                    ("api.tax_movements", "select * from api.tax_movements(%s, %s)", (ids[0], year)),
                    ("api.tax_monthly_sales", "select * from api.tax_monthly_sales(%s, %s)", (ids[0], year)),
                    ("api.export_my_data_sections", "select * from api.export_my_data_sections(%s, 'json')", (ids[0],)),
                    ("api.closure_check", "select * from api.closure_check(%s)", (ids[0],))):
                ms, rows = best_of(app, query, call_args)
                print(f"{name:30} {ms:8.1f} ms  ({rows} rows)")
            assert owner.execute("select count(*) from admin.check_books()").fetchone()[0] == 0
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
