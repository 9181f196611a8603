"""COMMENT on every table and every money column (issue 16).

Every table of the schemas that hold data (core, and any other schema with tables but api, admin
and reporting, which hold only functions and views) has a COMMENT, and so has every numeric column
(amounts, balances, prices, fees, rates: the money and the numbers money is computed from).

Partitions: a partition of a partitioned table is described by its parent (PostgreSQL copies no
comment to it); the test asks the parent for the comments, and a partition only for its own table
comment, which `core.create_ledger_partition` writes when it makes the partition.
"""
from __future__ import annotations

import psycopg
import pytest

NO_DATA_SCHEMAS = ("api", "admin", "reporting", "pg_catalog", "information_schema", "pg_toast")


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
         order by 1""", (list(NO_DATA_SCHEMAS),)).fetchall()]


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
         order by 1""", (list(NO_DATA_SCHEMAS),)).fetchall()]


def test_every_table_has_a_comment(catalog):
    assert tables_without_comment(catalog) == []


def test_every_numeric_column_has_a_comment(catalog):
    assert numeric_columns_without_comment(catalog) == []


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
    assert "core.planted" in tables_without_comment(catalog)
    assert "core.planted.amount" in numeric_columns_without_comment(catalog)
    catalog.execute("comment on table core.planted is 'x'; comment on column core.planted.amount is 'y'")
    assert "core.planted" not in tables_without_comment(catalog)
    assert "core.planted.amount" not in numeric_columns_without_comment(catalog)
