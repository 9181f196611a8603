"""The P2P offer book at 100 k offers and 100 k finished trades: the makers' reputation by counter.

    python -m bench.p2p_book                          # 100 000 offers, 100 000 trades, 1 000 makers
    python -m bench.p2p_book --offers 10000 --trades 10000

Starts a throwaway cluster (devserver.cluster.Cluster on a free port, destroyed at the end), migrates
it, and fills it in bulk as the owner (generate_series: the state machine would take hours): makers
with fixed-price BUY offers for BTC, and COMPLETED trades between the makers and takers (the counters
of core.p2p_reputation are then rebuilt with the backfill of migrations/0020_comments.sql, and
admin.check_books must agree with them). Then runs the offer book, api.list_p2p_offers (50 rows),
with auto_explain (ANALYZE, BUFFERS, nested statements) and prints the plan of the query inside it
and the best of 5 timings: first as it is (the reputation is one row of core.p2p_reputation per
maker), then with core.p2p_user_stats put back as it was before the counters (the scan of each
maker's trades and ratings, OLD_USER_STATS below).
"""
from __future__ import annotations

import argparse
import re
import socket
import tempfile
import time
from pathlib import Path

import psycopg

from devserver.cluster import Cluster
from webapp import migrate

ROOT = Path(__file__).resolve().parent.parent

# core.p2p_user_stats before the counters (sql/p2p/core.sql at commit ae262da).
OLD_USER_STATS = """
create or replace function core.p2p_user_stats(user_id bigint)
returns table (completed_trades bigint, faulted_trades bigint, completion_rate numeric,
               avg_release_seconds numeric, positive_ratings bigint, negative_ratings bigint)
language sql stable as $$
  select s.completed, s.faulted,
         case when s.completed + s.faulted > 0 then round(100.0 * s.completed / (s.completed + s.faulted), 1) end,
         s.avg_release,
         (select count(*) from core.p2p_ratings r where r.rated_id = p2p_user_stats.user_id and r.positive),
         (select count(*) from core.p2p_ratings r where r.rated_id = p2p_user_stats.user_id and not r.positive)
  from (
    select count(*) filter (where t.status = 'COMPLETED') as completed,
           -- a cancellation or refund counts only against the party at fault
           count(*) filter (where t.status in ('CANCELLED', 'REFUNDED') and t.fault_user_id = p2p_user_stats.user_id)
             as faulted,
           round(avg(extract(epoch from t.completed_at - t.paid_at))
                   filter (where t.status = 'COMPLETED' and t.seller_id = p2p_user_stats.user_id
                           and t.paid_at is not null and t.resolution is null)) as avg_release
    from core.p2p_trades t
    where t.buyer_id = p2p_user_stats.user_id or t.seller_id = p2p_user_stats.user_id
  ) s
$$;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(conn, makers: int, offers: int, trades: int) -> None:
    takers = makers
    conn.execute("""insert into core.users (email, password_hash, display_name, kyc_level)
                    select 'u' || i || '@example.com', repeat('x', 40), 'Cliente ' || i, 2
                    from generate_series(1, %s) i""", (makers + takers,))
    first = conn.execute("select min(id) from core.users where email like 'u%%@example.com'").fetchone()[0]
    conn.execute("""insert into core.p2p_offers (user_id, side, crypto, price_type, fixed_price, total_amount,
                      remaining_amount, min_brl, max_brl, payment_methods, payment_window_minutes, maker_fee_percent,
                      expires_at)
                    select %s + (i %% %s), 'BUY', 'BTC', 'fixed', 290000 + (i * 7919 %% 20000), 0.01, 0.01, 100, 3000,
                           array['PIX'], 30, 0.1, now() + interval '30 days'
                    from generate_series(1, %s) i""", (first, makers, offers))
    conn.execute("""insert into core.p2p_trades (offer_id, maker_id, taker_id, buyer_id, seller_id, crypto,
                      crypto_amount, price, brl_amount, seller_fee, buyer_fee, payment_method, payment_deadline, status,
                      paid_at, completed_at, created_at)
                    select o.id, o.user_id, %s + %s + (i %% %s), o.user_id, %s + %s + (i %% %s), 'BTC', 0.001, 300000,
                           300.00, 0.000001, 0.000001, 'PIX', now() - interval '1 day', 'COMPLETED',
                           now() - interval '1 day', now() - interval '1 day' + make_interval(secs => 60 + i %% 600),
                           now() - interval '1 day'
                    from generate_series(1, %s) i
                    join core.p2p_offers o on o.id = (select min(id) from core.p2p_offers) + (i %% %s)""",
                 (first, makers, takers, first, makers, takers, trades, offers))
    backfill = re.search(r"^insert into core\.p2p_reputation .*?;$",
                         (ROOT / "migrations" / "0020_comments.sql").read_text(), re.S | re.M).group(0)
    conn.execute("delete from core.p2p_reputation")
    conn.execute(backfill)
    conn.execute("vacuum analyze core.users")
    conn.execute("vacuum analyze core.p2p_offers")
    conn.execute("vacuum analyze core.p2p_trades")
    conn.execute("vacuum analyze core.p2p_reputation")


def measure(conn, viewer: int, label: str, verbose: bool = False) -> None:
    plans: list[str] = []
    conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    conn.execute("load 'auto_explain'")
    for name, value in (("log_min_duration", "0"), ("log_analyze", "on"), ("log_buffers", "on"),
                        ("log_nested_statements", "on"), ("log_timing", "on"), ("log_level", "notice")):
        conn.execute(f"set auto_explain.{name} = {value}")
    query = "select * from api.list_p2p_offers(%s, 'BUY', 'BTC')"
    conn.execute(query, (viewer,)).fetchall()   # warm the cache
    plans.clear()
    rows = conn.execute(query, (viewer,)).fetchall()
    inner = [p for p in plans if "list_p2p_offers" not in p.split("\n", 1)[0]] or plans
    conn.execute("set auto_explain.log_min_duration = -1")
    times = []
    for _ in range(5):
        start = time.perf_counter()
        conn.execute(query, (viewer,)).fetchall()
        times.append((time.perf_counter() - start) * 1000)
    plan = max(inner, key=len).splitlines()
    print(f"=== {label}: {len(rows)} offers, best of 5: {min(times):.1f} ms")
    # the whole query, then the nodes that read the reputation, each with its buffers
    top = next(i for i, line in enumerate(plan) if "(cost=" in line)
    keep = [i for i, line in enumerate(plan)
            if i == top or re.search(r"on (p2p_trades|p2p_ratings|p2p_reputation)\b", line)]
    for i in keep:
        print(plan[i].rstrip())
        if i + 1 < len(plan):
            follow = next((plan[j] for j in range(i + 1, min(i + 4, len(plan))) if "Buffers:" in plan[j]), None)
            if follow:
                print(follow.rstrip())
    if verbose:
        print("\n".join(plan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offers", type=int, default=100_000)
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--makers", type=int, default=1_000)
    parser.add_argument("--plans", action="store_true", help="print the whole plans")
    args = parser.parse_args()
    cluster = Cluster(base=Path(tempfile.mkdtemp(prefix="bsm-bench-p2p-")) / "pg", port=free_port())
    cluster.start()
    try:
        admin_url = cluster.url("postgres")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("create database bench_p2p")
        url = admin_url.rsplit("/", 1)[0] + "/bench_p2p"
        migrate.upgrade(url, log=lambda *_: None)
        with psycopg.connect(url, autocommit=True) as owner:
            start = time.perf_counter()
            fill(owner, args.makers, args.offers, args.trades)
            print(f"{args.offers} offers, {args.trades} trades, {args.makers} makers: filled in "
                  f"{time.perf_counter() - start:.1f} s")
            failures = owner.execute("select * from admin.check_books()").fetchall()
            assert failures == [], failures
            viewer = owner.execute("select max(id) from core.users").fetchone()[0]
            measure(owner, viewer, "reputation from core.p2p_reputation (counters)", args.plans)
            owner.execute(OLD_USER_STATS)
            measure(owner, viewer, "reputation by scanning the makers' trades (before)", args.plans)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
