"""A transfer between customers on two clusters, by two-phase commit through dblink, against a local one.

    python -m bench.two_phase                 # 300 of each, one client; numbers in docs/SCALING.md
    python -m bench.two_phase --transfers 1000

The Citus path of DESIGN.md §7 shards customers over nodes; a transfer between two customers on
two nodes is then a distributed transaction: the debit on the sender's node, the credit on the
recipient's, both PREPAREd, then both COMMIT PREPARED (Citus does exactly this between its
nodes). This lab does it by hand on two plain PostgreSQL 15 clusters, from a coordinator session
on cluster A that reaches both through dblink:

- each leg is a real, balanced ledger entry on its own cluster: `admin.adjust_balance` (debit the
  sender against the adjustments account on A, credit the recipient against it on B; on a real
  port each node would book against an interchange account that the nodes settle between them),
  with an idempotency key derived from the transfer;
- `cross_shard_transfer` returns only when both are committed, and a failure on either side before
  the commit decision rolls both back (ROLLBACK, or ROLLBACK PREPARED for a side already
  prepared): tests/sql/test_two_phase_transfer.py.

What it measures (one client, sequential, each cluster fsyncing as `make run`'s does): a local
`api.transfer` on A; the same two adjustment legs as one local transaction on A; and the
cross-cluster two-phase transfer.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

COORDINATOR_SQL = """
do $two_phase$
declare
  v_gid text := %(gid)s;
  v_a_prepared boolean := false;
begin
  -- One connection per shard for the coordinator's session (Citus, too,
  -- keeps its connections to the nodes): opened by the first transfer.
  if not coalesce('shard_a' = any(dblink_get_connections()), false) then
    perform dblink_connect('shard_a', %(a)s);
  end if;
  if not coalesce('shard_b' = any(dblink_get_connections()), false) then
    perform dblink_connect('shard_b', %(b)s);
  end if;
  begin
    perform dblink_exec('shard_a', 'begin');
    perform dblink_exec('shard_b', 'begin');
    perform * from dblink('shard_a', format(
      'select entry_id from admin.adjust_balance(%%s, %%s, %%L, %%s, %%L, %%L)',
      %(admin_a)s, %(sender)s, %(currency)s, -%(amount)s::numeric, 'transferência entre nós (2PC) ' || v_gid, v_gid || ':debit'))
      as t (entry_id bigint);
    perform dblink_exec('shard_a', format('prepare transaction %%L', v_gid || ':a'));
    v_a_prepared := true;
    perform * from dblink('shard_b', format(
      'select entry_id from admin.adjust_balance(%%s, %%s, %%L, %%s, %%L, %%L)',
      %(admin_b)s, %(recipient)s, %(currency)s, %(amount)s::numeric, 'transferência entre nós (2PC) ' || v_gid, v_gid || ':credit'))
      as t (entry_id bigint);
    perform dblink_exec('shard_b', format('prepare transaction %%L', v_gid || ':b'));
  exception when others then
    -- Before the decision: roll back whatever each side has (a prepared
    -- transaction, an open one, or nothing), then report the failure.
    if v_a_prepared then
      perform dblink_exec('shard_a', format('rollback prepared %%L', v_gid || ':a'));
    else
      perform dblink_exec('shard_a', 'rollback', false);
    end if;
    perform dblink_exec('shard_b', 'rollback', false);
    raise;
  end;
  -- The decision: both prepared, so both commit (a coordinator that dies
  -- here leaves both prepared; recovery commits them, since both are).
  perform dblink_exec('shard_a', format('commit prepared %%L', v_gid || ':a'));
  perform dblink_exec('shard_b', format('commit prepared %%L', v_gid || ':b'));
end
$two_phase$
"""


def cross_shard_transfer(coordinator, shard_a: str, shard_b: str, admin_a: int, admin_b: int, sender: int,
                         recipient: int, currency: str, amount: Decimal, gid: str | None = None) -> str:
    """Debit `sender` on shard A, credit `recipient` on shard B, atomically (2PC via dblink).
    `coordinator` is an autocommit connection on a database with the dblink extension; shard_a and
    shard_b are libpq conninfo strings of a role that may call admin.adjust_balance. The dblink
    connections stay open for the coordinator's session (the next transfer reuses them)."""
    gid = gid or f"xfer-{uuid.uuid4().hex[:20]}"
    params = {"gid": gid, "a": shard_a, "b": shard_b, "admin_a": admin_a, "admin_b": admin_b, "sender": sender,
              "recipient": recipient, "currency": currency, "amount": amount}
    # server-side formatting of the literal parameters (a DO block takes no bind parameters)
    with psycopg.ClientCursor(coordinator) as cur:
        cur.execute(COORDINATOR_SQL, params)
    return gid


def start_cluster(port: int, name: str):
    from devserver.cluster import Cluster
    cluster = Cluster(base=Path(tempfile.mkdtemp(prefix=f"bsm-{name}-")) / "pg", port=port)
    cluster.start()
    return cluster


def stop_cluster(cluster) -> None:
    """Stop and remove a cluster made by start_cluster (its temp folder too)."""
    import shutil
    cluster.destroy()
    shutil.rmtree(cluster.base.parent, ignore_errors=True)


def prepare_shard(cluster, dbname: str) -> tuple[str, dict]:
    """A migrated database with the demo customers (funded) and a demo admin with 2FA on."""
    from werkzeug.security import generate_password_hash
    from webapp import migrate
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    url = cluster.url(dbname)
    migrate.upgrade(url, log=lambda *_: None)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("update core.settings set value = 'development' where name = 'environment'")
        conn.execute("select * from core.seed_demo(%s)",
                     (generate_password_hash("demo-pass-2026", method="pbkdf2:sha256:1000"),))
        users = dict(conn.execute("select email, id from core.users").fetchall())
        conn.execute("insert into core.user_totp (user_id, secret, confirmed_at) values (%s, %s, now()) "
                     "on conflict (user_id) do nothing", (users["admin@example.com"], "JBSWY3DPEHPK3PXP"))
        conn.execute("create extension if not exists dblink")
    return url, users


def timed(label: str, n: int, step) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - started)
    total = sum(times)
    print(f"{label:<44} {n / total:8.1f} /s   median {statistics.median(times) * 1000:6.2f} ms   "
          f"p95 {sorted(times)[int(n * 0.95)] * 1000:6.2f} ms", flush=True)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from webapp.config import role_url
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=300)
    parser.add_argument("--port-a", type=int, default=54381)
    parser.add_argument("--port-b", type=int, default=54382)
    args = parser.parse_args(argv)
    a = start_cluster(args.port_a, "shard-a")
    b = start_cluster(args.port_b, "shard-b")
    try:
        url_a, users_a = prepare_shard(a, "shard_a")
        url_b, users_b = prepare_shard(b, "shard_b")
        alice, bob = users_a["alice@example.com"], users_b["bob@example.com"]
        admin_a, admin_b = users_a["admin@example.com"], users_b["admin@example.com"]
        amount = Decimal("0.01")
        run = uuid.uuid4().hex[:8]
        with psycopg.connect(role_url(url_a, "exchange_app"), autocommit=True, prepare_threshold=None) as app, \
             psycopg.connect(role_url(url_a, "exchange_admin"), autocommit=True, prepare_threshold=None) as adm, \
             psycopg.connect(url_a, autocommit=True) as coordinator:
            print(f"{args.transfers} each, one client, two clusters on this machine (ports {a.port}, {b.port})")
            local = timed("local api.transfer (cluster A)", args.transfers, lambda i: app.execute(
                "select * from api.transfer(%s, 'bob@example.com', 'BRL', %s, %s)", (alice, amount, f"{run}-l{i}")))

            def two_legs(i):
                with adm.transaction():
                    adm.execute("select * from admin.adjust_balance(%s, %s, 'BRL', %s, 'local two legs', %s)",
                                (admin_a, alice, -amount, f"{run}-d{i}"))
                    adm.execute("select * from admin.adjust_balance(%s, %s, 'BRL', %s, 'local two legs', %s)",
                                (admin_a, users_a["bob@example.com"], amount, f"{run}-c{i}"))
            legs = timed("the same two adjustment legs, one transaction", args.transfers, two_legs)
            shard_a, shard_b = role_url(url_a, "exchange_admin"), role_url(url_b, "exchange_admin")
            two_pc = timed("cross-cluster 2PC (dblink, PREPARE + COMMIT PREPARED)", args.transfers, lambda i:
                           cross_shard_transfer(coordinator, shard_a, shard_b, admin_a, admin_b, alice, bob, "BRL",
                                                amount, f"{run}-x{i}"))
            print(f"2PC / local api.transfer (median latency): {two_pc / local:.1f}x; "
                  f"2PC / local two legs: {two_pc / legs:.1f}x")
        for url in (url_a, url_b):
            with psycopg.connect(url, autocommit=True) as conn:
                failures = conn.execute("select * from admin.check_books()").fetchall()
                prepared = conn.execute("select count(*) from pg_prepared_xacts").fetchone()[0]
                assert failures == [] and prepared == 0, (failures, prepared)
        print("books balanced on both clusters, no prepared transaction left")
    finally:
        stop_cluster(a)
        stop_cluster(b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
