"""Growth, database side: the statement, trade open and the offer book at 10 k and 1 M journal entries.

    python -m bench.growth                                   # 10 k / 1 k offers vs 1 M / 100 k offers
    python -m bench.growth --entries 200000 --offers 20000 --calls 100
    python -m bench.growth --plans                           # and the whole plans

Starts a throwaway cluster (devserver.cluster.Cluster on a free port, destroyed at the end) with two
databases, each migrated and seeded as bench.http does (the same functions: bench.http.seed,
load_history, load_offers, and its price poller, so trades can open): 16 customers, 16 makers with a
SELL BTC offer each, one open trade per customer; then the small one gets --small-entries journal
entries and --small-offers offers, the large one --entries and --offers. The calls behind the pages
whose growth issue 15 asks about, with the web's arguments, rotating over the 16 customers:

- statement: api.get_statement(customer, 'BRL', page 1, 25 rows) (/wallet/statement), and with 10
  rows (a full page on both databases: on the small one a customer has only ~20 postings);
- trade open: api.open_p2p_trade(customer, a bench maker's offer, 'PIX', fresh key, R$ 50,00)
  (POST /p2p/offers/<id>/trade), rolled back, so every call finds the same database;
- offer book: api.list_p2p_offers(customer, 'SELL') (/p2p, 50 rows).

For each database it prints, once per call, the plan of every statement run inside the function
(auto_explain: ANALYZE, BUFFERS, nested statements; as the owner, who may load it): those that
touched 10 buffers or more and the total. Then it times the calls as exchange_app, the two databases
taking turns --rounds times (so the load of the shared cores falls on both alike): inside the database
(clock_timestamp around each call in a DO block, the median; this decides "flat within ±25 %") and
from the client (one call per round trip, median and p90).
"""
from __future__ import annotations

import argparse
import shutil
import re
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bench.http import PricePoller, counts, load_history, load_offers, seed
from devserver.cluster import Cluster
from webapp import migrate
from webapp.config import role_url

TOLERANCE = 0.25
CALLS = {
    "statement": "select * from api.get_statement(%(user)s, 'BRL', 1, 25)",
    # (a full page on both databases: on the small one a customer has 17-25 postings)
    "statement_10": "select * from api.get_statement(%(user)s, 'BRL', 1, 10)",
    "trade_open": "select * from api.open_p2p_trade(%(user)s, %(offer)s, 'PIX', %(key)s, brl_amount => 50.00)",
    "offer_book": "select * from api.list_p2p_offers(%(user)s, 'SELL')",
}
ROLLED_BACK = {"trade_open"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def arguments(people: dict, i: int) -> dict:
    customer = people["customers"][i % len(people["customers"])]
    return {"user": customer["id"], "offer": customer["offer"], "key": f"growth-{uuid.uuid4()}"}


def run(conn, name: str, args: dict) -> int:
    if name in ROLLED_BACK:
        with conn.transaction(force_rollback=True):
            return len(conn.execute(CALLS[name], args).fetchall())
    return len(conn.execute(CALLS[name], args).fetchall())


def time_calls(app, people: dict, name: str, calls: int) -> list[float]:
    times = []
    for i in range(calls):
        args = arguments(people, i)
        start = time.perf_counter()
        run(app, name, args)
        times.append((time.perf_counter() - start) * 1000)
    return times


SERVER_LOOP = """
do $$
declare
  v_customers bigint[] := '%(users)s';
  v_offers bigint[] := '%(offers)s';
  v_times float8[] := '{}';
  v_start timestamptz;
begin
  for i in 1 .. %(calls)s loop
    v_start := clock_timestamp();
    perform * from %(call)s;
    v_times := v_times || extract(epoch from clock_timestamp() - v_start)::float8 * 1000;
  end loop;
  raise notice '%%', array_to_string(v_times, ' ');
end
$$"""
SERVER_CALLS = {
    "statement": "api.get_statement(v_customers[1 + i % 16], 'BRL', 1, 25)",
    "statement_10": "api.get_statement(v_customers[1 + i % 16], 'BRL', 1, 10)",
    "trade_open": "api.open_p2p_trade(v_customers[1 + i % 16], v_offers[1 + i % 16], 'PIX', "
                  "'growth-' || gen_random_uuid(), brl_amount => 50.00)",
    "offer_book": "api.list_p2p_offers(v_customers[1 + i % 16], 'SELL')",
}


def server_times(conn, people: dict, name: str, calls: int) -> list[float]:
    """Per-call times measured inside the database (clock_timestamp around each call in a DO block,
    as exchange_app; the trades opened are rolled back): no client, no round trip, no scheduling of
    the client process on the shared cores."""
    notices: list[str] = []

    def handler(diag):
        notices.append(diag.message_primary or "")
    conn.add_notice_handler(handler)
    users = "{" + ",".join(str(c["id"]) for c in people["customers"]) + "}"
    offers = "{" + ",".join(str(c["offer"]) for c in people["customers"]) + "}"
    body = SERVER_LOOP % {"users": users, "offers": offers, "calls": calls, "call": SERVER_CALLS[name]}
    with conn.transaction(force_rollback=True):
        conn.execute(body)
    conn.remove_notice_handler(handler)
    return [float(x) for x in notices[-1].split()]


def timings(dbs: dict[str, tuple[str, dict]], calls: int, rounds: int) -> dict[str, dict[str, dict]]:
    """Median and p90 per database and call: the databases take turns, `rounds` times, so that the
    machine's load (shared cores) falls on both alike."""
    conns = {label: psycopg.connect(role_url(url, "exchange_app"), autocommit=True) for label, (url, _) in dbs.items()}
    try:
        times = {label: {name: [] for name in CALLS} for label in dbs}
        inside = {label: {name: [] for name in CALLS} for label in dbs}
        rows = {label: {} for label in dbs}
        for label, (_, people) in dbs.items():
            for name in CALLS:
                for i in range(20):
                    rows[label][name] = run(conns[label], name, arguments(people, i))
        for _ in range(rounds):
            for name in CALLS:
                for label, (_, people) in dbs.items():
                    times[label][name] += time_calls(conns[label], people, name, max(1, calls // rounds))
                    inside[label][name] += server_times(conns[label], people, name, max(1, calls // rounds))
        out = {}
        for label in dbs:
            out[label] = {}
            for name in CALLS:
                t = sorted(times[label][name])
                out[label][name] = {"median_ms": statistics.median(t), "p90_ms": t[int(len(t) * 0.9) - 1],
                                    "rows": rows[label][name],
                                    "inside_ms": statistics.median(inside[label][name])}
        return out
    finally:
        for conn in conns.values():
            conn.close()


def plans(url: str, people: dict, verbose: bool) -> None:
    """The auto_explain plans of the statements inside each call (the call itself left out): every
    statement that touched 10 buffers or more, and the total over all of them."""
    found: dict[str, list[str]] = {}
    with psycopg.connect(url, autocommit=True) as owner:
        notices: list[str] = []
        owner.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        owner.execute("load 'auto_explain'")
        for setting, value in (("log_min_duration", "0"), ("log_analyze", "on"), ("log_buffers", "on"),
                               ("log_nested_statements", "on"), ("log_timing", "on"), ("log_level", "notice")):
            owner.execute(f"set auto_explain.{setting} = {value}")
        for name in CALLS:
            run(owner, name, arguments(people, 0))   # warm
            notices.clear()
            run(owner, name, arguments(people, 1))
            found[name] = [p for p in notices if not re.search(r"Query Text: select \* from api\.", p)]
        owner.execute("set auto_explain.log_min_duration = -1")
    for name, statements in found.items():
        total = 0
        shown = []
        for plan in statements:
            lines = plan.splitlines()
            text = " ".join(lines[lines.index(next(x for x in lines if "Query Text:" in x)):][:3]) \
                if any("Query Text:" in x for x in lines) else "?"
            text = re.sub(r"\s+", " ", text.split("Query Text:", 1)[-1]).strip()[:80]
            top = next((line for line in lines if "(cost=" in line), "")
            buffers = next((line.strip() for line in lines if "Buffers:" in line), "")
            hits = sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", buffers))
            total += hits
            actual = re.search(r"actual time=[\d.]+\.\.([\d.]+) rows=(\d+)", top)
            if hits >= 10 or verbose:
                shown.append(f"    {float(actual.group(1)) if actual else 0:8.3f} ms {hits:6} buffers  {text}")
                if verbose:
                    shown.extend("        " + line for line in lines)
        print(f"  {name}: {len(statements)} statements inside, {total} shared buffers in all")
        print("\n".join(shown))


def describe(url: str, label: str) -> None:
    sizes = counts(url)
    print(f"\n== {label}: {sizes['entries']:,} entries, {sizes['postings']:,} postings, "
          f"{sizes['offers']:,} offers ({sizes['active_offers']:,} active)", flush=True)


def build(cluster: Cluster, name: str, entries: int, offers: int) -> tuple[str, dict, PricePoller]:
    admin_url = cluster.url("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    migrate.upgrade(url, log=lambda *_: None)
    poller = PricePoller(url)
    people = seed(url, 16)
    load_history(url, entries)
    load_offers(url, offers)
    return url, people, poller


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-entries", type=int, default=10_000)
    parser.add_argument("--small-offers", type=int, default=1_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--offers", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=300, help="timed calls per function and database")
    parser.add_argument("--rounds", type=int, default=5, help="turns the two databases take")
    parser.add_argument("--plans", action="store_true", help="print the whole plans")
    args = parser.parse_args(argv)
    cluster = Cluster(base=Path(tempfile.mkdtemp(prefix="bsm-bench-growth-")) / "pg", port=free_port())
    cluster.start()
    pollers = []
    try:
        start = time.time()
        small_url, small_people, poller = build(cluster, "growth_small", args.small_entries, args.small_offers)
        pollers.append(poller)
        large_url, large_people, poller = build(cluster, "growth_large", args.entries, args.offers)
        pollers.append(poller)
        print(f"(built in {time.time() - start:.0f} s)")
        for label, url, people in (("small", small_url, small_people), ("large", large_url, large_people)):
            describe(url, label)
            plans(url, people, args.plans)
        result = timings({"small": (small_url, small_people), "large": (large_url, large_people)},
                         args.calls, args.rounds)
        print(f"\ntimed calls as exchange_app ({args.calls} per call and database, {args.rounds} rounds taking turns)")
        flat = True
        print("  in the database (median of the per-call times measured inside a DO block):")
        for name in CALLS:
            small, large = result["small"][name]["inside_ms"], result["large"][name]["inside_ms"]
            change = large / small - 1
            flat &= abs(change) <= TOLERANCE
            print(f"  {name:<12} {small:6.3f} -> {large:6.3f} ms  {change:+4.0%}"
                  f"   {'flat (within ±25 %)' if abs(change) <= TOLERANCE else 'NOT flat'}")
        print("  from the client (psycopg over loopback, one call per round trip):")
        for name in CALLS:
            small, large = result["small"][name], result["large"][name]
            change = large["median_ms"] / small["median_ms"] - 1
            print(f"  {name:<12} median {small['median_ms']:6.2f} -> {large['median_ms']:6.2f} ms  {change:+4.0%}"
                  f"   p90 {small['p90_ms']:6.2f} -> {large['p90_ms']:6.2f} ms   rows {small['rows']} / {large['rows']}"
                  f"   {'flat (within ±25 %)' if abs(change) <= TOLERANCE else 'NOT flat'}")
        for url in (small_url, large_url):
            with psycopg.connect(url, autocommit=True) as conn:
                failures = conn.execute("select * from admin.check_books()").fetchall()
            print(f"books ({url.rsplit('/', 1)[1]}): {'balanced' if not failures else failures}")
        return 0 if flat and not failures else 1
    finally:
        for poller in pollers:
            poller.stop()
        cluster.destroy()
        shutil.rmtree(cluster.base.parent, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
