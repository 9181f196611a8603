"""Citus readiness, checked over the catalog (DESIGN.md §7, docs/SCALING.md).

If one primary's writes ever become the limit, the ledger is sharded by customer (`user_id`) with
Citus. What makes that a move rather than a port is kept from the start and checked here:

1. every per-customer table carries `user_id` (the distribution column); the tables that do not
   are listed below, each with the reason (reference tables copied to every node, global system
   tables, rows shared by two customers);
2. no function locks rows of two customers in one statement (a lint over the source of every
   function in core/api/admin): Citus runs `SELECT … FOR UPDATE` only within one shard, and DESIGN
   asks for one customer at a time, in (user_id, id) order. The few statements that do it today
   are listed, each with the reason and what the port does instead;
3. reference tables refer to no per-customer table (Citus refuses such a foreign key).

A new table or a new function that breaks these fails this file: add user_id, or list it here with
a reason a reviewer can judge.
"""
from __future__ import annotations

import re

import psycopg
import pytest

DISTRIBUTION_COLUMN = "user_id"

# Citus reference tables (create_reference_table: a copy on every node): small, read by every
# customer's operations, written by operators or the worker.
REFERENCE_TABLES = {
    "currencies": "the currency registry (code, scale): read by every posting",
    "tax_asset_codes": "the IRPF Bens e Direitos code of each crypto: read by the tax statement",
    "settings": "operator settings (fee shards and rates, windows, thresholds): read by every operation",
    "kyc_limits": "limits per KYC level: read by every money operation",
    "prices": "Binance index prices (written by the worker): quotes, floating P2P prices, the exit policy",
    "market_pairs": "tradable pairs, spreads and fees of the market desk",
    "market_stats": "24 h ticker per pair (written by the worker)",
    "p2p_fees": "the P2P fee schedule",
    "crypto_networks": "networks per coin (fees, minimums, confirmations) from Binance's config",
}

# Not per-customer data: global by nature, kept on the coordinator (Citus local tables).
SYSTEM_TABLES = {
    "schema_migrations": "which migrations ran (the owner's bookkeeping)",
    "users": "the customer itself: distributed by its id, which every other table's user_id names",
    "admin_audit_log": "operators' actions (admin_id, target_user_id): one global append-only log",
    "book_checks": "outcomes of the books check, which runs over every shard",
    "binance_balance_snapshots": "the exchange's own balances at Binance (omnibus), not a customer's",
    "liability_snapshots": "proof of liabilities: one snapshot over all customers (its leaves carry user_id)",
    "liability_roots": "proof of liabilities: the published Merkle roots, per currency",
    "liability_nodes": "proof of liabilities: inner nodes of the Merkle tree over all customers' leaves",
    "provider_notifications": "provider webhooks as received, before the worker matches them to a customer",
    "pix_refunds": "refunds of PIX payments to the payer's bank (a payer who may be no customer of ours)",
}

# Rows that belong to two customers at once: they live with one of them (the column named), and
# the other customer's side is the cross-shard path (two-phase commit, tested below).
TWO_CUSTOMER_TABLES = {
    "p2p_trades": "buyer_id and seller_id: distributed by seller_id (the escrow side)",
    "p2p_pix_payments": "a PIX payment for a trade (trade_id): with its trade, on the seller's shard",
    "p2p_ratings": "rater_id rates rated_id after a trade: with its trade, on the seller's shard",
}

# Statements that lock rows of several customers at once today, each with the reason it is
# accepted on one primary and what the Citus port does instead. The lint fails on any other.
MULTI_CUSTOMER_LOCKS = {
    "core.post_entry": "locks every account of an entry in one statement, ordered by (user_id, id): "
                       "on one primary the fewest statements per transfer (docs/PERFORMANCE.md); "
                       "under Citus each customer's accounts are locked on that customer's shard "
                       "(the same (user_id, id) order), a transfer between two customers being the "
                       "two-phase-commit path measured in docs/SCALING.md",
}

LOCKING = re.compile(r"\bfor\s+(no\s+key\s+update|update|key\s+share|share)\b", re.I)
# a set of keys (`id = any(…)`, `user_id in (…)`), or two keys (`id = a or id = b`)
KEY = r"\b(?:\w+\.)?(?:\w*_)?id\b"
SET_MATCH = re.compile(rf"{KEY}\s*(?:=\s*any\s*\(|in\s*\()|{KEY}\s*=\s*[\w.$]+\s+or\s+{KEY}\s*=", re.I)
ONE_CUSTOMER = re.compile(r"\buser_id\s*=\s*(?!\s*any\b)[\w.$]+", re.I)
TABLE = re.compile(r"\bcore\.(\w+)", re.I)


def tables(conn) -> dict[str, bool]:
    """core's tables (partitioned parents, not their partitions) and whether each has user_id."""
    rows = conn.execute("""
        select c.relname,
               exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = %s
                       and not a.attisdropped) as has_user_id
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'core' and c.relkind in ('r', 'p') and not c.relispartition""",
                        (DISTRIBUTION_COLUMN,)).fetchall()
    return {r[0]: r[1] for r in rows}


def unclassified_tables(conn) -> list[str]:
    """Tables without user_id that no list explains, and list entries that are wrong."""
    problems = []
    listed = {**REFERENCE_TABLES, **SYSTEM_TABLES, **TWO_CUSTOMER_TABLES}
    found = tables(conn)
    for name, has_user_id in sorted(found.items()):
        if not has_user_id and name not in listed:
            problems.append(f"core.{name} has no {DISTRIBUTION_COLUMN} and is in no list")
        if has_user_id and name in listed:
            problems.append(f"core.{name} has {DISTRIBUTION_COLUMN}: take it off the lists")
    for name in sorted(set(listed) - set(found)):
        problems.append(f"core.{name} is listed but does not exist")
    return problems


def statements(source: str) -> list[str]:
    source = re.sub(r"--[^\n]*", " ", source)
    source = re.sub(r"'(?:[^']|'')*'", "''", source)   # string literals say nothing about locks
    return [s.strip() for s in source.split(";") if s.strip()]


def multi_customer_locks(conn) -> dict[str, list[str]]:
    """Functions with a statement that locks rows of a per-customer table (or users) chosen by a set
    of keys (`id = any(…)`, `user_id in (…)`, `id = a or id = b`) without pinning one customer
    (`user_id = …`). Worker sweeps that claim due rows by status or time (`for update skip locked`)
    are not chosen by customer and are not flagged (docs/SCALING.md: under Citus they run per shard)."""
    per_customer = {name for name, has in tables(conn).items() if has} | {"users"}
    found: dict[str, list[str]] = {}
    rows = conn.execute("""
        select n.nspname || '.' || p.proname, p.prosrc
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname in ('core', 'api', 'admin') and p.prolang in
               (select oid from pg_language where lanname in ('plpgsql', 'sql'))""").fetchall()
    for name, source in rows:
        for statement in statements(source):
            lock = LOCKING.search(statement)
            if not lock:
                continue
            before = statement[:lock.start()]
            where = re.split(r"\bwhere\b", before, flags=re.I)
            if len(where) < 2 or not set(t.lower() for t in TABLE.findall(before)) & per_customer:
                continue
            condition = where[-1]
            if SET_MATCH.search(condition) and not ONE_CUSTOMER.search(condition):
                found.setdefault(name, []).append(" ".join(statement.split())[:200])
    return found


@pytest.fixture
def catalog(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def test_every_per_customer_table_carries_user_id(catalog):
    assert unclassified_tables(catalog) == []


def test_reference_tables_refer_to_no_per_customer_table(catalog):
    per_customer = {name for name, has in tables(catalog).items() if has} | {"users"}
    rows = catalog.execute("""
        select c.conrelid::regclass::text, c.confrelid::regclass::text
          from pg_constraint c where c.contype = 'f'
           and c.conrelid::regclass::text = any(%s)""",
                           ([f"core.{t}" for t in REFERENCE_TABLES],)).fetchall()
    bad = [(src, dst) for src, dst in rows if dst.removeprefix("core.") in per_customer]
    assert bad == []
    # and none of them is big: a reference table is copied to every node
    for name in REFERENCE_TABLES:
        assert catalog.execute(f"select count(*) from core.{name}").fetchone()[0] < 10_000, name


def test_no_function_locks_rows_of_two_customers_in_one_statement(catalog):
    found = multi_customer_locks(catalog)
    assert set(found) == set(MULTI_CUSTOMER_LOCKS), found


def test_the_lint_fails_on_a_planted_violation(catalog):
    """The checks are real: a function locking two customers' rows, and a per-customer table
    without user_id, are both found."""
    catalog.execute("""
        create function core.planted_swap(a bigint, b bigint) returns void language plpgsql as $$
        begin
          -- both customers' BRL accounts in one statement
          perform 1 from core.accounts x where x.user_id in (a, b) and x.currency = 'BRL' for no key update;
        end $$""")
    catalog.execute("""
        create function core.planted_pair(a bigint, b bigint) returns void language sql as $$
          select 1 from core.users u where u.id = a or u.id = b for update
        $$""")
    catalog.execute("""
        create function core.planted_ok(a bigint) returns void language plpgsql as $$
        begin
          perform 1 from core.accounts x where x.user_id = a and x.id = any(array[1, 2]) for no key update;
          perform 1 from core.holds h where h.id = a for update;
        end $$""")
    found = multi_customer_locks(catalog)
    assert "core.planted_swap" in found and "core.planted_pair" in found
    assert "core.planted_ok" not in found      # one customer's rows, however many
    catalog.execute("create table core.planted_wallet_notes (id bigint primary key, owner bigint, note text)")
    assert unclassified_tables(catalog) == ["core.planted_wallet_notes has no user_id and is in no list"]
