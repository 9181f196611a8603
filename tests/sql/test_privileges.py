"""Privileges and the shape of the public faces, checked on the real catalog.

The app role can only execute api/admin functions; the auditor can only read
reporting views; every api/admin function is a SECURITY DEFINER with a pinned
search_path, no PUBLIC execute and a COMMENT; every reporting view has a
COMMENT. The catalog checks enumerate whatever is in the database, so the
functions and views of every later domain are checked too.
"""
from __future__ import annotations

import psycopg
import pytest
from psycopg import errors, sql

ROLES = ("exchange_app", "exchange_auditor")


def core_tables(conn) -> list[str]:
    rows = conn.execute("""select c.relname from pg_class c
                           where c.relnamespace = 'core'::regnamespace and c.relkind in ('r', 'p')
                           order by c.relname""").fetchall()
    return [r["relname"] for r in rows]


def some_column(conn, table: str) -> str:
    return conn.execute("""select a.attname from pg_attribute a
                           where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
                           order by a.attnum limit 1""", (f"core.{table}",)).fetchone()["attname"]


def public_functions(conn) -> list[dict]:
    """Every function of the api and admin schemas (whatever domains exist)."""
    return conn.execute("""select p.oid, p.oid::regprocedure::text as signature, p.prosecdef, p.proconfig,
                                  p.proacl is null as default_acl, obj_description(p.oid, 'pg_proc') as comment
                           from pg_proc p
                           where p.pronamespace in ('api'::regnamespace, 'admin'::regnamespace)
                           order by 2""").fetchall()


def reporting_views(conn) -> list[dict]:
    return conn.execute("""select c.oid, c.relname, obj_description(c.oid, 'pg_class') as comment
                           from pg_class c
                           where c.relnamespace = 'reporting'::regnamespace and c.relkind in ('v', 'm')
                           order by c.relname""").fetchall()


def refused(conn, role: str, statement: sql.Composable | str, expected=errors.InsufficientPrivilege):
    """Run one statement as `role` on the owner's connection; it must fail with `expected`."""
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
    try:
        with pytest.raises(expected):
            conn.execute(statement)
    finally:
        conn.execute("reset role")


def allowed(conn, role: str, statement: sql.Composable | str):
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
    try:
        return conn.execute(statement).fetchall()
    finally:
        conn.execute("reset role")


@pytest.mark.parametrize("role", ROLES)
def test_roles_cannot_touch_any_core_table(owner, role):
    tables = core_tables(owner)
    assert {"accounts", "entries", "postings", "holds", "idempotency_keys", "users", "settings",
            "admin_audit_log"} <= set(tables)
    for table in tables:
        ident = sql.Identifier("core", table)
        column = sql.Identifier(some_column(owner, table))
        refused(owner, role, sql.SQL("select * from {} limit 1").format(ident))
        refused(owner, role, sql.SQL("insert into {} default values").format(ident))
        refused(owner, role, sql.SQL("update {} set {} = {}").format(ident, column, column))
        refused(owner, role, sql.SQL("delete from {}").format(ident))
        refused(owner, role, sql.SQL("truncate {}").format(ident))
        # and in the catalog, not only because the schema is closed
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
            assert not owner.execute("select has_table_privilege(%s, %s, %s) as ok",
                                     (role, f"core.{table}", privilege)).fetchone()["ok"], (role, table, privilege)
    assert not owner.execute("select has_schema_privilege(%s, 'core', 'USAGE') as ok", (role,)).fetchone()["ok"]
    sequences = owner.execute("""select c.oid::regclass::text as name from pg_class c
                                 where c.relnamespace = 'core'::regnamespace and c.relkind = 'S'""").fetchall()
    for seq in sequences:
        for privilege in ("USAGE", "SELECT", "UPDATE"):
            assert not owner.execute("select has_sequence_privilege(%s, %s, %s) as ok",
                                     (role, seq["name"], privilege)).fetchone()["ok"], (role, seq, privilege)


# What only the worker may call: every function that books what a provider
# said (money in or out of the ledger on a provider's word) or runs a sweep.
WORKER_ONLY = {
    "admin.confirm_pix_charge", "admin.confirm_p2p_pix_payment", "admin.settle_market_order",
    "admin.fail_market_order", "admin.complete_withdrawal", "admin.fail_withdrawal", "admin.record_prices",
    "admin.claim_withdrawals", "admin.expire_p2p_trades", "admin.expire_p2p_offers", "admin.market_orders_to_place",
    "admin.provider_notifications_due", "admin.record_pix_refund", "admin.cancel_pix_charge",
}


def test_every_function_has_its_role_and_the_web_cannot_book_money(owner):
    functions = public_functions(owner)
    names = {f["signature"].split("(")[0] for f in functions}
    assert {"api.transfer", "api.get_wallet", "api.get_statement", "admin.adjust_balance",
            "admin.check_books", "admin.set_user_status"} <= names
    assert WORKER_ONLY <= names

    def can(role, f):
        return owner.execute("select has_function_privilege(%s, %s, 'EXECUTE') as ok", (role, f["oid"])).fetchone()["ok"]
    for f in functions:
        name = f["signature"].split("(")[0]
        assert can("exchange_app", f) or can("exchange_worker", f), f["signature"]
        if name.startswith("api."):
            assert can("exchange_app", f) and not can("exchange_worker", f), f["signature"]
        else:
            assert can("exchange_admin", f), f["signature"]
        if name in WORKER_ONLY:
            assert not can("exchange_app", f) and can("exchange_worker", f), f["signature"]
    # and really, as the role the web logs in as
    assert allowed(owner, "exchange_app", "select * from api.health()")
    assert allowed(owner, "exchange_app", "select * from admin.check_books()") == []
    refused(owner, "exchange_app", "select * from admin.confirm_pix_charge('dep-1', 'mercadopago', '1', 'approved', 10)")
    refused(owner, "exchange_app", "select * from admin.settle_market_order(1, 1, 1, 1, '[]', 'FILLED')")


def test_app_cannot_call_core_helpers(owner):
    refused(owner, "exchange_app", "select core.post_entry('x', null, null, array[1, 2]::bigint[], array[1, -1]::numeric[])")
    refused(owner, "exchange_app", "select core.place_hold(1, 'BRL', 1, 'x', 'x')")
    assert not owner.execute("select has_function_privilege('exchange_app', "
                             "'core.post_entry(text,text,bigint,bigint[],numeric[],text,bigint,bigint)', 'EXECUTE') as ok"
                             ).fetchone()["ok"]


def test_auditor_reads_every_reporting_view_and_nothing_else(owner):
    views = reporting_views(owner)
    assert {"trial_balance", "balance_mismatches", "user_balances", "journal", "books_health"} <= {
        v["relname"] for v in views}
    for view in views:
        ident = sql.Identifier("reporting", view["relname"])
        allowed(owner, "exchange_auditor", sql.SQL("select * from {} limit 1").format(ident))
        for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
            assert not owner.execute("select has_table_privilege('exchange_auditor', %s, %s) as ok",
                                     (view["oid"], privilege)).fetchone()["ok"], (view["relname"], privilege)
        # the app reads through functions, never the reporting views directly
        assert not owner.execute("select has_table_privilege('exchange_app', %s, 'SELECT') as ok",
                                 (view["oid"],)).fetchone()["ok"], view["relname"]
    # a view that is automatically updatable still refuses the auditor's write
    refused(owner, "exchange_auditor", "delete from reporting.open_holds")


def test_auditor_cannot_execute_api_or_admin(owner):
    for f in public_functions(owner):
        assert not owner.execute("select has_function_privilege('exchange_auditor', %s, 'EXECUTE') as ok",
                                 (f["oid"],)).fetchone()["ok"], f["signature"]
    refused(owner, "exchange_auditor", "select * from api.health()")
    refused(owner, "exchange_auditor", "select * from admin.check_books()")
    refused(owner, "exchange_auditor",
            "select * from api.transfer(1, 'bob@example.com', 'BRL', 1, 'k')")


def test_every_api_and_admin_function_is_a_pinned_definer_without_public_execute(owner):
    functions = public_functions(owner)
    assert len(functions) >= 10
    problems = []
    for f in functions:
        if not f["prosecdef"]:
            problems.append(f"{f['signature']}: not SECURITY DEFINER")
        config = f["proconfig"] or []
        if not any(c.startswith("search_path=") for c in config):
            problems.append(f"{f['signature']}: search_path not pinned")
        elif "pg_catalog" not in next(c for c in config if c.startswith("search_path=")):
            problems.append(f"{f['signature']}: search_path without pg_catalog")
        if f["default_acl"]:
            problems.append(f"{f['signature']}: default ACL (PUBLIC may execute)")
        if owner.execute("select has_function_privilege('public', %s, 'EXECUTE') as ok", (f["oid"],)).fetchone()["ok"]:
            problems.append(f"{f['signature']}: PUBLIC may execute")
        grantees = owner.execute("select count(*) as n from pg_proc p, aclexplode(p.proacl) a "
                                 "where p.oid = %s and a.grantee = 0", (f["oid"],)).fetchone()["n"]
        if grantees:
            problems.append(f"{f['signature']}: granted to PUBLIC")
        if not (f["comment"] or "").strip():
            problems.append(f"{f['signature']}: no COMMENT")
    assert problems == []


def test_every_security_definer_function_pins_its_search_path(owner):
    """Trigger functions and anything else running with the owner's rights, in any of our schemas."""
    rows = owner.execute("""select p.oid::regprocedure::text as signature, p.proconfig
                            from pg_proc p
                            where p.prosecdef and p.pronamespace in
                                  ('core'::regnamespace, 'api'::regnamespace, 'admin'::regnamespace,
                                   'reporting'::regnamespace)""").fetchall()
    unpinned = [r["signature"] for r in rows if not any(c.startswith("search_path=") for c in r["proconfig"] or [])]
    assert unpinned == []


def test_every_reporting_view_has_a_comment(owner):
    views = reporting_views(owner)
    missing = [v["relname"] for v in views if not (v["comment"] or "").strip()]
    assert missing == []


def test_app_role_cannot_write_even_through_a_crafted_statement(db_url):
    """Logged in as exchange_app (as the web is): the same refusals, on its own connection."""
    from webapp.config import role_url
    with psycopg.connect(role_url(db_url, "exchange_app"), autocommit=True) as conn:
        for statement in ("update core.accounts set balance = 1000000",
                          "insert into core.postings (entry_id, leg, account_id, currency, amount, account_version,"
                          " balance_after) values (1, 1, 1, 'BRL', 1, 1, 1)",
                          "delete from core.entries",
                          "select * from core.users"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("select count(*) from api.get_wallet(1)").fetchone()[0] == 4
