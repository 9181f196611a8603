"""What a logged-in request costs in the database: the user loader's one call (api.session_user)
against the three calls a page made before server-side sessions (api.get_user, the unread badge,
the 2FA flag).

    python -m bench.sessions                 # private throwaway cluster, 3000 rounds
    python -m bench.sessions --rounds 10000

Each measurement is a client round trip as the web makes it (psycopg, a fresh transaction per call,
as exchange_app over TCP); the medians and p95 in microseconds are printed, and how many times
core.user_sessions was written (last_seen_at moves at most once per session_touch_minutes).
"""
from __future__ import annotations

import argparse
import hashlib
import secrets
import socket
import statistics
import tempfile
import time
from pathlib import Path

import psycopg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(conn, query: str, params: tuple, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(query, params).fetchall()
        out.append((time.perf_counter() - started) * 1e6)
    return out


def timed_many(conn, calls: list[tuple[str, tuple]], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        for query, params in calls:
            with conn.transaction():
                conn.execute(query, params).fetchall()
        out.append((time.perf_counter() - started) * 1e6)
    return out


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p95 = values[int(len(values) * 0.95) - 1]
    return f"{name:<46} median {statistics.median(values):7.0f} µs   p95 {p95:7.0f} µs"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args(argv)
    from webapp import migrate
    from webapp.config import role_url
    from devserver.cluster import Cluster
    cluster = Cluster(base=Path(tempfile.mkdtemp(prefix="bsm-bench-sessions-")) / "pg", port=free_port())
    cluster.start()
    try:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            conn.execute("create database bench_sessions")
        url = cluster.url("bench_sessions")
        migrate.upgrade(url, log=lambda *_: None)
        token = secrets.token_urlsafe(32)
        digest = hashlib.sha256(token.encode()).hexdigest()
        with psycopg.connect(url, autocommit=True) as owner:
            user = owner.execute("select api.register_user('bench@example.com', repeat('x', 40), 'Bench')").fetchone()[0]
            owner.execute("select core.mark_email_verified(%s)", (user,))
            owner.execute("select core.notify(%s, 'kyc.approved', 'Aviso', '/kyc') from generate_series(1, 20)", (user,))
            owner.execute("select api.start_session(%s, %s, '127.0.0.1', 'bench', 'Bench / Linux')", (user, digest))
        with psycopg.connect(role_url(url, "exchange_app")) as app:
            for _ in range(200):  # warm-up (plans, caches)
                app.execute("select * from api.session_user(%s)", (digest,)).fetchall()
                app.rollback()
            one = timed(app, "select * from api.session_user(%s)", (digest,), args.rounds)
            before = timed_many(app, [("select * from api.get_user(%s)", (user,)),
                                      ("select * from api.count_unread_notifications(%s)", (user,)),
                                      ("select * from api.get_twofactor(%s)", (user,))], args.rounds)
        with psycopg.connect(url, autocommit=True) as owner:
            writes = owner.execute("select n_tup_upd from pg_stat_user_tables where relid = 'core.user_sessions'::regclass"
                                   ).fetchone()[0]
        print(summary("api.session_user (the loader, 1 call)", one))
        print(summary("get_user + count_unread + get_twofactor (3)", before))
        print(f"core.user_sessions rows updated during {args.rounds + 200} loads: {writes}")
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
