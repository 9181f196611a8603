"""COMMENT on every table and every money column (issue 16).

Every table of every schema (core holds them all today; api, admin and reporting are meant to hold
only functions and views, so a table there is checked too) has a COMMENT, and so has every numeric
column (amounts, balances, prices, fees, rates: the money and the numbers money is computed from).
Every reporting view has a COMMENT too (what it shows and what healthy looks like, for auditors).

Partitions: a partition of a partitioned table is described by its parent (PostgreSQL copies no
comment to it); the test asks the parent for the comments, and a partition only for its own table
comment, which `core.create_ledger_partition` writes when it makes the partition.
"""
from __future__ import annotations

import psycopg
import pytest

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")


@pytest.fixture
def catalog(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def tables_without_comment(conn) -> list[str]:
    return [r[0] for r in conn.execute("""
        select n.nspname || '.' || c.relname
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where c.relkind in ('r', 'p') and n.nspname <> all (%s) and n.nspname not like 'pg_temp%%'
           and n.nspname not like 'pg_toast%%'
           and coalesce(obj_description(c.oid, 'pg_class'), '') = ''
         order by 1""", (list(SYSTEM_SCHEMAS),)).fetchall()]


def numeric_columns_without_comment(conn) -> list[str]:
    return [r[0] for r in conn.execute("""
        select n.nspname || '.' || c.relname || '.' || a.attname
          from pg_attribute a
          join pg_class c on c.oid = a.attrelid
          join pg_namespace n on n.oid = c.relnamespace
         where c.relkind in ('r', 'p') and not c.relispartition
           and n.nspname <> all (%s) and n.nspname not like 'pg_temp%%' and n.nspname not like 'pg_toast%%'
           and a.attnum > 0 and not a.attisdropped
           and a.atttypid in ('numeric'::regtype, 'numeric[]'::regtype)
           and coalesce(col_description(c.oid, a.attnum), '') = ''
         order by 1""", (list(SYSTEM_SCHEMAS),)).fetchall()]


def views_without_comment(conn) -> list[str]:
    return [r[0] for r in conn.execute("""
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'reporting' and c.relkind in ('v', 'm')
           and coalesce(obj_description(c.oid, 'pg_class'), '') = '' order by 1""").fetchall()]


def test_every_table_has_a_comment(catalog):
    assert tables_without_comment(catalog) == []


def test_every_numeric_column_has_a_comment(catalog):
    assert numeric_columns_without_comment(catalog) == []


def test_every_reporting_view_has_a_comment(catalog):
    assert views_without_comment(catalog) == []


def test_partitions_carry_their_own_table_comment(catalog):
    """The ledger's monthly partitions are commented when made (core.create_ledger_partition)."""
    catalog.execute("select core.create_ledger_partition(date '2031-07-01')")
    names = [r[0] for r in catalog.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'core' and c.relispartition and c.relname like '%%_2031_07'").fetchall()]
    assert sorted(names) == ["entries_2031_07", "postings_2031_07"]
    assert tables_without_comment(catalog) == []


def test_the_check_fails_on_an_uncommented_table_and_money_column(catalog):
    catalog.execute("create table core.planted (id bigint primary key, amount numeric not null)")
    catalog.execute("create table reporting.planted_table (id bigint)")
    catalog.execute("create view reporting.planted_view as select 1 as one")
    assert "reporting.planted_table" in tables_without_comment(catalog)
    assert "planted_view" in views_without_comment(catalog)
    assert "core.planted" in tables_without_comment(catalog)
    assert "core.planted.amount" in numeric_columns_without_comment(catalog)
    catalog.execute("comment on table core.planted is 'x'; comment on column core.planted.amount is 'y'")
    assert "core.planted" not in tables_without_comment(catalog)
    assert "core.planted.amount" not in numeric_columns_without_comment(catalog)
