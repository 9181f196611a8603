"""Entries and postings partitioned by month (migration 0017, docs/SCALING.md): partitions made
ahead by admin.ensure_ledger_partitions (and the worker's job), history still append-only in every
partition, and the guarantees that unique indexes gave before kept by other means."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
import pytest

from tests.conftest import books

from .test_ledger import account, adjust, capture, expect, one, place_hold, transfer


def month(offset: int = 0) -> str:
    now = datetime.now(timezone.utc)
    y, m = divmod(now.month - 1 + offset, 12)
    return f"{now.year + y:04d}_{m + 1:02d}"


def partitions(conn, table: str) -> list[str]:
    return [r["relname"] for r in conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = %s::regclass order by 1", (f"core.{table}",))]


@pytest.fixture
def people(owner, demo):
    return {"alice": demo["alice@example.com"], "bob": demo["bob@example.com"], "admin": demo["admin@example.com"]}


def test_this_month_and_three_ahead_exist_and_the_function_is_idempotent(owner, worker, web):
    for table in ("entries", "postings"):
        assert {f"{table}_{month(i)}" for i in range(4)} <= set(partitions(owner, table))
    rows = worker.execute("select * from admin.ensure_ledger_partitions(months_ahead => 5)").fetchall()
    assert [r["month"] for r in rows] == [month(i).replace("_", "-") for i in range(6)]
    assert [r["created"] for r in rows] == [False] * 4 + [True] * 2
    assert not any(r["created"] for r in worker.execute("select * from admin.ensure_ledger_partitions(5)"))
    expect("BSV01", worker, "select * from admin.ensure_ledger_partitions(-1)")
    expect("BSV01", worker, "select * from admin.ensure_ledger_partitions(100)")
    # the web's role cannot create tables through it
    expect("42501", web, "select * from admin.ensure_ledger_partitions(3)")


def test_entries_and_postings_land_in_their_months_partition(owner, people):
    entry = transfer(owner, people["alice"], "bob@example.com", "BRL", "10.00", "p-1")["entry_id"]
    assert one(owner, "select tableoid::regclass::text as t from core.entries where id = %s", entry)["t"] \
        == f"core.entries_{month()}"
    legs = owner.execute("select tableoid::regclass::text as t, user_id, created_at from core.postings "
                         "where entry_id = %s", (entry,)).fetchall()
    assert {r["t"] for r in legs} == {f"core.postings_{month()}"}
    assert {r["user_id"] for r in legs} == {people["alice"], people["bob"]}
    created = one(owner, "select created_at from core.entries where id = %s", entry)["created_at"]
    assert {r["created_at"] for r in legs} == {created}
    books(owner)


def test_history_stays_append_only_in_every_partition(owner, people):
    transfer(owner, people["alice"], "bob@example.com", "BRL", "1.00", "p-2")
    for table in ("entries", "postings"):
        part = f"core.{table}_{month()}"
        for statement in (f"update {part} set created_at = created_at", f"delete from {part}", f"truncate {part}",
                          f"update core.{table} set created_at = created_at", f"truncate core.{table}"):
            expect("BSX02", owner, statement)
    books(owner)


def test_a_month_without_a_partition_stops_posting_loudly_and_the_books_warn(owner, worker, people):
    # No default partition: a row for a month that has none is refused outright.
    expect("23514", owner, "insert into core.entries (kind, created_at) values ('manual', '2099-01-01')")
    # Next month's partitions missing (the job stopped): the books check says so beforehand.
    owner.execute(f"drop table core.entries_{month(1)}, core.postings_{month(1)}")
    found = {(r["check_name"], r["detail"]) for r in owner.execute("select * from admin.check_books()")}
    assert {name for name, _ in found} == {"partitions_ahead"}
    assert len(found) == 2
    # what the worker's job calls puts them back
    rows = worker.execute("select * from admin.ensure_ledger_partitions(3)").fetchall()
    assert [r["month"] for r in rows if r["created"]] == [month(1).replace("_", "-")]
    books(owner)


def test_the_worker_job_keeps_three_months_ahead(app, owner):
    from webapp.audit import tasks
    from webapp.jobs import collect_jobs
    owner.execute(f"drop table core.entries_{month(3)}, core.postings_{month(3)}")
    with app.app_context():
        rows = tasks.ensure_ledger_partitions(app)
    assert [r["month"] for r in rows if r["created"]] == [month(3).replace("_", "-")]
    assert f"entries_{month(3)}" in partitions(owner, "entries")
    assert dict((f.__name__, s) for f, s in collect_jobs())["ensure_ledger_partitions"] <= 3600


def test_a_hold_is_resolved_once_whatever_the_month(owner, people):
    """entries.resolves_hold_id was a unique index; a partitioned table cannot have one, so
    core.hold_resolutions (not partitioned) refuses a second resolving entry."""
    hold = place_hold(owner, people["alice"], "BRL", "50.00")
    capture(owner, hold, [account(owner, people["bob"], "BRL")], [Decimal("50.00")])
    assert one(owner, "select count(*) as n from core.hold_resolutions where hold_id = %s", hold)["n"] == 1
    # a second entry naming the same hold, written around resolve_hold's status check
    alice, alice_locked = account(owner, people["alice"], "BRL"), account(owner, people["alice"], "BRL", "locked")
    expect("23505", owner, "select core.post_entry('hold_release', 'again', %s, array[%s, %s]::bigint[], "
                           "array[-1.00, 1.00]::numeric[], null, null, %s)",
           people["alice"], alice, alice_locked, hold)
    books(owner)


def test_a_repeated_idempotency_key_moves_nothing_also_concurrently(db_url, owner, people):
    """Idempotency keys live in their own, unpartitioned table: a key is refused globally."""
    first = transfer(owner, people["alice"], "bob@example.com", "BRL", "3.00", "dup-key")
    again = transfer(owner, people["alice"], "bob@example.com", "BRL", "3.00", "dup-key")
    assert again["replayed"] and again["entry_id"] == first["entry_id"]
    expect("BSI01", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 4.00, 'dup-key')",
           people["alice"])
    results, barrier = [], threading.Barrier(8)

    def race():
        with psycopg.connect(db_url, autocommit=True) as conn:
            barrier.wait()
            results.append(conn.execute("select * from api.transfer(%s, 'bob@example.com', 'BRL', 2.00, "
                                        "'race-key')", (people["alice"],)).fetchone())
    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len({r[0] for r in results}) == 1
    assert sorted(r[2] for r in results) == [False] + [True] * 7
    assert one(owner, "select count(*) as n from core.entries where reference = 'transfer:race-key'")["n"] == 1
    books(owner)


def test_adjustments_and_the_statement_read_across_partitions(owner, people):
    adjust(owner, people["admin"], people["alice"], "BRL", "7.00", "adj-part")
    rows = owner.execute("select * from api.get_statement(%s, 'BRL')", (people["alice"],)).fetchall()
    assert rows[0]["amount"] == Decimal("7.00") and rows[0]["kind"] == "adjustment"
    books(owner)
