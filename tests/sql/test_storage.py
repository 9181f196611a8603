"""Bytes per transfer (migration 0021, docs/PERFORMANCE.md "Storage and growth"): the ledger's rows
laid out without alignment padding, idempotency keys stored as a digest with the same uniqueness,
and the migration rebuilding both tables on a database that has history."""
from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import url_for_db
from webapp import migrate

from .test_ledger import expect


def layout(conn, table: str) -> list[tuple[str, int, str]]:
    return [(r["attname"], r["attlen"], r["attalign"]) for r in conn.execute(
        "select attname, attlen, attalign from pg_attribute where attrelid = %s::regclass and attnum > 0"
        " and not attisdropped order by attnum", (table,))]


ALIGN = {"d": 8, "i": 4, "s": 2, "c": 1}


@pytest.mark.parametrize("table", ["core.postings", "core.idempotency_keys"])
def test_columns_are_in_alignment_order(owner, table):
    """Fixed-width columns by alignment, widest first, then the variable-length ones: no padding
    byte between two columns (the partitions have their parent's layout)."""
    columns = layout(owner, table)
    rank = [(0 if length > 0 else 1, -ALIGN[align] if length > 0 else 0) for _, length, align in columns]
    assert rank == sorted(rank), columns
    for partition in owner.execute("select inhrelid::regclass::text as p from pg_inherits where inhparent = %s::regclass",
                                   (table,)):
        assert layout(owner, partition["p"]) == columns


def test_the_digest_keeps_operation_and_key_apart(owner):
    digest = "select core.idempotency_digest(%s, %s) as d"
    pairs = [("ab", "c"), ("a", "bc"), ("transfer", "k"), ("adjust_balance", "k"), ("transfer", "K")]
    digests = {owner.execute(digest, pair).fetchone()["d"] for pair in pairs}
    assert len(digests) == len(pairs)
    assert owner.execute(digest, ("transfer", "k")).fetchone()["d"] == owner.execute(digest, ("transfer", "k")).fetchone()["d"]


def test_a_key_is_claimed_once_per_customer_and_operation(owner):
    claim = "select core.claim_idempotency(%s, %s, %s, %s, %s::jsonb) as r"
    assert owner.execute(claim, (1, "k-1", "transfer", "h1", '{"entry_id": 7}')).fetchone()["r"] is None
    assert owner.execute(claim, (1, "k-1", "transfer", "h1", '{"entry_id": 8}')).fetchone()["r"] == {"entry_id": 7}
    expect("BSI01", owner, claim, 1, "k-1", "transfer", "h2", '{}')
    # another operation, another customer: independent
    assert owner.execute(claim, (1, "k-1", "create_deposit", "h1", '{}')).fetchone()["r"] is None
    assert owner.execute(claim, (2, "k-1", "transfer", "h1", '{}')).fetchone()["r"] is None
    assert owner.execute("select count(*) as n from core.idempotency_keys where user_id in (1, 2)").fetchone()["n"] == 3


@pytest.fixture
def before_0021(admin_url):
    """A database migrated up to 0020, with history written in the old layout."""
    name = f"bsm_storage_{datetime.now().strftime('%H%M%S%f')}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    url = url_for_db(admin_url, name)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("set client_min_messages = warning")
        conn.execute("create schema core")
        conn.execute("create table core.schema_migrations (version text primary key,"
                     " applied_at timestamptz not null default now())")
        for path in migrate.migration_files():
            if path.name >= "0021":
                break
            with conn.transaction():
                conn.execute(path.read_text())
                conn.execute("insert into core.schema_migrations (version) values (%s)", (path.name,))
        month = datetime.now(UTC).replace(day=2, hour=12, minute=0, second=0, microsecond=0)
        conn.execute("""insert into core.entries (id, kind, reference, user_id, created_at)
                        select g, 'transfer', 'transfer:k-' || g, 1, %s from generate_series(1, 300) g""", (month,))
        conn.execute("""insert into core.postings (entry_id, leg, account_id, currency, amount, account_version,
                                                   balance_after, user_id, created_at)
                        select g, l, 100 + l, 'BRL', case l when 1 then -0.01 else 0.01 end, g,
                               case l when 1 then 1000 - 0.01 * g else 0.01 * g end, case l when 1 then 1 end, %s
                        from generate_series(1, 300) g, generate_series(1, 2) l""", (month,))
        conn.execute("""insert into core.idempotency_keys (user_id, key, operation, request_hash, result)
                        select 1, 'k-' || g, 'transfer', md5('request ' || g), jsonb_build_object('entry_id', g)
                        from generate_series(1, 300) g""")
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")


POSTINGS = """select entry_id, leg, account_id, currency, amount, account_version, balance_after, user_id, created_at
              from core.postings order by entry_id, leg"""


def test_the_migration_rebuilds_postings_and_keys_with_their_history(before_0021):
    with psycopg.connect(before_0021, autocommit=True, row_factory=dict_row) as conn:
        postings = conn.execute(POSTINGS).fetchall()
        partitions = conn.execute("select count(*) as n from pg_inherits where inhparent = 'core.postings'::regclass"
                                  ).fetchone()["n"]
    done = migrate.upgrade(before_0021, log=lambda *_: None)
    assert "0021_storage.sql" in done["migrations"] and done["sql"]
    with psycopg.connect(before_0021, autocommit=True, row_factory=dict_row) as conn:
        assert conn.execute(POSTINGS).fetchall() == postings
        rows = conn.execute("""select c.relname, obj_description(c.oid, 'pg_class') as comment,
                                      exists (select from pg_trigger t where t.tgrelid = c.oid
                                              and t.tgname = 'postings_no_truncate') as guarded,
                                      (select count(*) from pg_index x where x.indrelid = c.oid and x.indisunique) as keys
                               from pg_inherits i join pg_class c on c.oid = i.inhrelid
                               where i.inhparent = 'core.postings'::regclass""").fetchall()
        assert len(rows) == partitions
        assert all(r["comment"].startswith("Partition of core.postings for ") and r["guarded"] and r["keys"] == 2
                   for r in rows), rows
        # the old keys replay, refuse other requests, and stay scoped per operation
        claim = "select core.claim_idempotency(1, %s, %s, %s, '{}'::jsonb) as r"
        assert conn.execute(claim, ("k-17", "transfer", conn.execute("select md5('request 17')").fetchone()["md5"])
                            ).fetchone()["r"] == {"entry_id": 17}
        expect("BSI01", conn, claim, "k-17", "transfer", "other")
        assert conn.execute(claim, ("k-17", "create_deposit", "x")).fetchone()["r"] is None
        # append-only and balanced, as before
        expect("BSX02", conn, "update core.postings set amount = 0 where entry_id = 1")
        expect("BSX02", conn, "delete from core.postings where entry_id = 1")
        assert conn.execute("select count(*) as n from core.idempotency_keys").fetchone()["n"] == 301
