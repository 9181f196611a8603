"""Storage per two-posting transfer: bytes that api.transfer adds to core, relation by relation.

    python -m bench.storage                      # 5 runs of 5 000 transfers each
    python -m bench.storage --runs 1 --transfers 2000
    python -m bench.storage --url postgresql://…/db   # an existing migrated database (left as is)

Starts a throwaway cluster (devserver.cluster.Cluster on a free port, destroyed at the end), migrates
a database with webapp.migrate.upgrade, registers two verified customers and funds the sender through
admin.adjust_balance, then --history journal entries (bench.http.load_history, as the web bench's
small database has: balanced transfers among 1 000 customers). Each run: a checkpoint, pg_relation_size of every table, index and TOAST
relation of core (TOAST relations and partitions counted under their parent table), N calls of
api.transfer(…, 'BRL', 0.01, key) as exchange_app, each with a fresh idempotency key of the web's
shape (str(uuid4()), as webapp/wallet/views.py issues them; --key-prefix 'storage-' gives the keys
bench.http used), then the sizes again. Prints the bytes per
transfer of every relation that grew and the total, per run and the median over the runs.
The target (issue 15 part 4) is at most 800 B per two-posting transfer, indexes included.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import uuid
from pathlib import Path

import psycopg

from bench.http import load_history
from devserver.cluster import Cluster
from webapp import migrate
from webapp.config import role_url

TARGET_BYTES = 800

# Every relation of core (and the TOAST relations of core's tables), named by what it belongs
# to: a partition's rows count under its partitioned table, a TOAST table and its index under
# the table they serve ("core.postings (toast)"), an index of a partition under the parent index.
SIZES = """
with rel as (
  select c.oid, c.relkind, c.relname, n.nspname,
         coalesce(pi.inhparent, c.oid) as top       -- a partition (or partition index) -> its parent
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  left join pg_inherits pi on pi.inhrelid = c.oid
  where n.nspname = 'core' and c.relkind in ('r', 'i')
)
select t.relname as name,
       case when r.relkind = 'i' then 'index' else 'table' end as kind,
       sum(pg_relation_size(r.oid))
         + sum(case when r.relkind = 'r' then coalesce(pg_relation_size(c.reltoastrelid), 0)
                      + coalesce((select sum(pg_relation_size(i.indexrelid)) from pg_index i
                                  where i.indrelid = c.reltoastrelid), 0) else 0 end) as bytes
from rel r
join pg_class c on c.oid = r.oid
join pg_class t on t.oid = r.top
group by 1, 2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sizes(conn) -> dict[tuple[str, str], int]:
    return {(name, kind): int(b) for name, kind, b in conn.execute(SIZES)}


def prepare(url: str) -> tuple[int, str]:
    """Two verified customers, the sender funded: (sender id, recipient e-mail)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        found = conn.execute("""select s.id, r.email from core.users s, core.users r
                                where s.email = 'u1@bench-http.test' and r.email = 'u2@bench-http.test'""").fetchone()
        if found:
            return found
        ids = []
        # bench.http's names: its load_history funds and moves money among the u* customers too
        for who in ("admin", "u1", "u2"):
            ids.append(conn.execute("select api.register_user(%s, repeat('x', 40), %s)",
                                    (f"{who}@bench-http.test", f"Bench {who}")).fetchone()[0])
        admin, sender, recipient = ids
        conn.execute("update core.users set role = 'admin' where id = %s", (admin,))
        conn.execute("insert into core.user_totp (user_id, secret, confirmed_at) values (%s, %s, now())",
                     (admin, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
        for uid in (sender, recipient):
            conn.execute("select core.mark_email_verified(%s)", (uid,))
        for uid in (sender, recipient):   # both: load_history moves money among all of them
            conn.execute("select admin.adjust_balance(%s, %s, 'BRL', 1000000.00, 'Saldo do benchmark', %s)",
                         (admin, uid, f"bench-storage-{uid}"))
        return sender, "u2@bench-http.test"


def measure(url: str, sender: int, recipient: str, n: int, key_prefix: str = "") -> dict:
    """One run: the growth of every core relation over n transfers."""
    with psycopg.connect(url, autocommit=True) as owner, \
            psycopg.connect(role_url(url, "exchange_app"), autocommit=True) as app:
        owner.execute("checkpoint")
        before = sizes(owner)
        postings_before = owner.execute("select count(*) from core.postings").fetchone()[0]
        for _ in range(n):
            app.execute("select * from api.transfer(%s, %s, 'BRL', 0.01, %s)",
                        (sender, recipient, f"{key_prefix}{uuid.uuid4()}"), prepare=True)
        owner.execute("checkpoint")
        after = sizes(owner)
        postings = owner.execute("select count(*) from core.postings").fetchone()[0] - postings_before
    grown = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    grown = {key: delta for key, delta in grown.items() if delta}
    return {"transfers": n, "postings": postings, "relations": grown, "bytes": sum(grown.values()),
            "per_transfer": sum(grown.values()) / n}


def report(runs: list[dict]) -> None:
    names = sorted({key for run in runs for key in run["relations"]},
                   key=lambda k: (-statistics.median(r["relations"].get(k, 0) for r in runs), k))
    print(f"\n{'relation':<48} {'kind':<6}" + "".join(f" {'run ' + str(i + 1):>8}" for i in range(len(runs)))
          + f" {'median':>8}   (bytes per transfer)")
    for key in names:
        per = [run["relations"].get(key, 0) / run["transfers"] for run in runs]
        print(f"{key[0]:<48} {key[1]:<6}" + "".join(f" {p:8.1f}" for p in per) + f" {statistics.median(per):8.1f}")
    totals = [run["per_transfer"] for run in runs]
    print(f"{'total':<55}" + "".join(f" {t:8.1f}" for t in totals) + f" {statistics.median(totals):8.1f}")
    postings = {run["postings"] / run["transfers"] for run in runs}
    verdict = "met" if statistics.median(totals) <= TARGET_BYTES else "NOT met"
    print(f"postings per transfer: {', '.join(f'{p:g}' for p in sorted(postings))}; "
          f"target <= {TARGET_BYTES} B per two-posting transfer: {verdict} "
          f"(range {min(totals):.0f}-{max(totals):.0f} B)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--transfers", type=int, default=5000)
    parser.add_argument("--history", type=int, default=10_000, help="journal entries loaded first")
    parser.add_argument("--key-prefix", default="", help="prepended to each idempotency key")
    parser.add_argument("--url", help="an existing migrated database (owner URL) instead of a throwaway cluster")
    args = parser.parse_args(argv)
    cluster = None
    url = args.url
    if not url:
        cluster = Cluster(base=Path(tempfile.mkdtemp(prefix="bsm-bench-storage-")) / "pg", port=free_port())
        cluster.start()
    try:
        if cluster:
            admin_url = cluster.url("postgres")
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute("create database bench_storage")
            url = admin_url.rsplit("/", 1)[0] + "/bench_storage"
            migrate.upgrade(url, log=lambda *_: None)
        sender, recipient = prepare(url)
        if args.history:
            load_history(url, args.history)
        measure(url, sender, recipient, 200)   # warm-up: first pages of every relation allocated
        runs = []
        for i in range(args.runs):
            runs.append(measure(url, sender, recipient, args.transfers, args.key_prefix))
            print(f"run {i + 1}: {runs[-1]['per_transfer']:.1f} B per transfer", flush=True)
        report(runs)
        with psycopg.connect(url, autocommit=True) as conn:
            failures = conn.execute("select * from admin.check_books()").fetchall()
        print(f"books: {'balanced' if not failures else failures}")
        return 1 if failures else 0
    finally:
        if cluster:
            cluster.destroy()
            shutil.rmtree(cluster.base.parent, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
