"""Reporting views, the auditor role, the books check, and the DBA's door (comments and docs/SQL.md).

Everything here runs SQL directly: as the owner to act and to plant
corruption, and as exchange_auditor to prove what the auditor can and cannot do.
"""
from __future__ import annotations

import importlib.util
import re
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import books
from webapp.config import role_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def auditor(db_url):
    with psycopg.connect(role_url(db_url, "exchange_auditor"), autocommit=True, row_factory=dict_row) as conn:
        yield conn


def rows(conn, query, *params):
    return conn.execute(query, params).fetchall()


def view_names(owner) -> list[str]:
    return [r["relname"] for r in rows(owner, """
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'reporting' and c.relkind in ('v', 'm') order by 1""")]


def transfer(owner, sender, email, currency, amount, key):
    return owner.execute("select * from api.transfer(%s, %s, %s, %s, %s)",
                         (sender, email, currency, Decimal(amount), key)).fetchone()


def health(owner) -> dict[str, int]:
    return {r["check_name"]: r["failures"] for r in rows(owner, "select * from reporting.health_checks")}


# ---------------------------------------------------------------------------
# The auditor role
# ---------------------------------------------------------------------------

def test_auditor_reads_every_reporting_view(owner, auditor, demo):
    names = view_names(owner)
    assert {"trial_balance", "balance_mismatches", "user_balances", "journal", "customer_statements", "liabilities",
            "open_holds_by_purpose", "open_escrow", "escrow_mismatches", "stale_items", "suspicious_activity",
            "fee_revenue_by_day", "activity_by_day", "p2p_volume_by_day", "books_health", "book_alerts",
            "health_checks", "liability_snapshots", "catalog"} <= set(names)
    for name in names:
        auditor.execute(f"select * from reporting.{name} limit 5").fetchall()
    catalog = {r["view_name"] for r in rows(auditor, "select * from reporting.catalog")}
    assert catalog == set(names)


def test_auditor_cannot_write_execute_or_read_core(owner, auditor, demo):
    tables = rows(owner, """select n.nspname, c.relname, c.relkind from pg_class c
                            join pg_namespace n on n.oid = c.relnamespace
                            where c.relkind in ('r', 'v', 'm', 'p', 'f')
                              and n.nspname not in ('pg_catalog', 'information_schema')""")
    assert tables
    for t in tables:
        name = f'"{t["nspname"]}"."{t["relname"]}"'
        for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
            assert not owner.execute("select has_table_privilege('exchange_auditor', %s, %s) as ok",
                                     (name, privilege)).fetchone()["ok"], (name, privilege)
        if t["nspname"] != "reporting":
            assert not owner.execute("select has_table_privilege('exchange_auditor', %s, 'SELECT') as ok",
                                     (name,)).fetchone()["ok"], name

    functions = rows(owner, """select p.oid::regprocedure::text as sig from pg_proc p
                               join pg_namespace n on n.oid = p.pronamespace
                               where n.nspname in ('api', 'admin', 'core')""")
    assert len(functions) > 20
    for f in functions:
        assert not owner.execute("select has_function_privilege('exchange_auditor', %s, 'EXECUTE') as ok",
                                 (f["sig"],)).fetchone()["ok"], f["sig"]
    for schema in ("core", "api", "admin", "public"):
        assert not owner.execute("select has_schema_privilege('exchange_auditor', %s, 'USAGE') as ok",
                                 (schema,)).fetchone()["ok"], schema

    # And for real: each attempt is refused by the server.
    attempts = [
        "select * from core.accounts",
        "update core.accounts set balance = 0",
        "insert into core.book_checks (failure_count) values (0)",
        "select * from api.get_wallet(1)",
        "select * from admin.check_books()",
        "select * from admin.publish_liabilities_snapshot()",
        "update reporting.open_holds set amount = 0",
        "delete from reporting.open_holds",
        "create table reporting.x (id int)",
        "create table public.x (id int)",
    ]
    for statement in attempts:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            auditor.execute(statement)


# ---------------------------------------------------------------------------
# Ledger views
# ---------------------------------------------------------------------------

def test_liabilities_and_statements_match_the_ledger(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    transfer(owner, alice, "bob@example.com", "BRL", "250.00", "t-liab-1")
    owner.execute("select core.place_hold(%s, 'BTC', 0.01, 'withdrawal', 'withdrawal:1')", (bob,))
    liab = {r["currency"]: r for r in rows(owner, "select * from reporting.liabilities")}
    assert liab["BRL"]["total"] == Decimal("15000.00") and liab["BRL"]["available"] == Decimal("15000.00")
    assert liab["BTC"]["locked"] == Decimal("0.01") and liab["BTC"]["total"] == Decimal("0.17")
    assert all(r["total"] == r["system_counterpart"] for r in liab.values())
    assert liab["BRL"]["customers_with_balance"] == 2

    statement = rows(owner, """select * from reporting.customer_statements
                               where user_id = %s and currency = 'BRL' order by entry_id""", alice)
    assert [r["amount"] for r in statement] == [Decimal("10000.00"), Decimal("-250.00")]
    assert statement[-1]["balance_after"] == Decimal("9750.00")

    held = rows(owner, "select * from reporting.open_holds_by_purpose")
    assert [(r["purpose"], r["currency"], r["holds"], r["total"], r["expired"]) for r in held] == \
        [("withdrawal", "BTC", 1, Decimal("0.01"), 0)]
    books(owner)


def test_fee_revenue_and_activity_by_day(owner, demo):
    owner.execute("update core.settings set value = '1' where name = 'transfer_fee_percent'")
    transfer(owner, demo["alice@example.com"], "bob@example.com", "BRL", "100.00", "t-fee-1")
    fees = rows(owner, "select * from reporting.fee_revenue_by_day")
    assert [(r["currency"], r["kind"], r["entries"], r["fees"]) for r in fees] == [("BRL", "transfer", 1, Decimal("1.00"))]
    activity = {(r["kind"], r["currency"]): r for r in rows(owner, "select * from reporting.activity_by_day")}
    assert activity[("transfer", "BRL")]["moved"] == Decimal("101.00")
    assert activity[("transfer", "BRL")]["fees"] == Decimal("1.00")
    assert activity[("adjustment", "BRL")]["entries"] == 2
    books(owner)


# ---------------------------------------------------------------------------
# Health: clean on normal traffic, red on planted corruption
# ---------------------------------------------------------------------------

def test_health_checks_clean_on_normal_traffic(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    transfer(owner, alice, "bob@example.com", "BRL", "100.00", "n-1")
    transfer(owner, bob, "alice@example.com", "USDT", "10", "n-2")
    hold = owner.execute("select core.place_hold(%s, 'ETH', 0.5, 'market_order', 'order:1') as h", (alice,)).fetchone()["h"]
    owner.execute("select core.resolve_hold(%s, 'market_fill', 'order:1', array[core.system_account('binance_omnibus', 'ETH')], array[0.5])", (hold,))
    owner.execute("select * from admin.publish_liabilities_snapshot()")
    checks = health(owner)
    assert checks and all(n == 0 for n in checks.values()), checks
    assert rows(owner, "select * from admin.check_books()") == []
    books(owner)


def test_check_books_finds_planted_cached_balance_corruption(owner, demo):
    assert rows(owner, "select * from admin.check_books()") == []
    account = owner.execute("select core.user_account(%s, 'BRL') as id", (demo["bob@example.com"],)).fetchone()["id"]
    owner.execute("update core.accounts set balance = balance + 1 where id = %s", (account,))
    failures = {r["check_name"] for r in rows(owner, "select * from admin.check_books()")}
    assert {"zero_sum", "cached_balance"} <= failures
    mismatch = rows(owner, "select * from reporting.balance_mismatches")
    assert [(r["account_id"], r["cached"] - r["computed"]) for r in mismatch] == [(account, Decimal("1"))]
    checks = health(owner)
    assert checks["trial_balance"] == 1 and checks["balance_mismatches"] == 1 and checks["books_health"] >= 2


def test_check_books_finds_a_hold_without_locked_funds_and_a_broken_chain(owner, demo):
    alice = demo["alice@example.com"]
    owner.execute("insert into core.holds (user_id, currency, amount, purpose, reference, created_entry_id) "
                  "values (%s, 'BRL', 5, 'withdrawal', 'planted', (select max(id) from core.entries))", (alice,))
    assert {r["check_name"] for r in rows(owner, "select * from admin.check_books()")} == {"held_mismatch"}
    assert len(rows(owner, "select * from reporting.held_mismatches")) == 1

    owner.execute("alter table core.postings disable trigger postings_immutable")
    owner.execute("update core.postings set balance_after = balance_after + 1 "
                  "where (entry_id, leg) = (select entry_id, leg from core.postings order by entry_id limit 1)")
    owner.execute("alter table core.postings enable trigger postings_immutable")
    assert "broken_chain" in {r["check_name"] for r in rows(owner, "select * from admin.check_books()")}


def test_record_books_check_remembers_each_run(owner, demo):
    assert rows(owner, "select * from admin.record_books_check()") == []
    assert health(owner)["book_alerts"] == 0
    owner.execute("update core.accounts set balance = balance - 0.001 where id = core.user_account(%s, 'BTC')",
                  (demo["alice@example.com"],))
    found = rows(owner, "select * from admin.record_books_check()")
    assert found
    alerts = rows(owner, "select * from reporting.book_alerts where latest")
    assert {a["check_name"] for a in alerts} == {r["check_name"] for r in found}
    assert health(owner)["book_alerts"] == len(found)
    runs = rows(owner, "select * from reporting.book_checks order by check_id")
    assert [r["failure_count"] for r in runs] == [0, len(found)]
    with pytest.raises(psycopg.Error) as refused:
        owner.execute("delete from core.book_checks")
    assert refused.value.sqlstate == "BSX02"


def test_stale_items_flag_an_expired_hold_left_open(owner, demo):
    alice = demo["alice@example.com"]
    owner.execute("select core.place_hold(%s, 'BRL', 10, 'withdrawal', 'w:fresh', now() + interval '1 hour')", (alice,))
    assert rows(owner, "select * from reporting.stale_items") == []
    owner.execute("select core.place_hold(%s, 'BRL', 20, 'withdrawal', 'w:stale', now() - interval '1 hour')", (alice,))
    stale = rows(owner, "select * from reporting.stale_items")
    assert [(r["item_kind"], r["amount"]) for r in stale] == [("expired_hold", Decimal("20"))]
    assert health(owner)["stale_items"] == 1
    assert rows(owner, "select purpose, expired from reporting.open_holds_by_purpose") == [{"purpose": "withdrawal", "expired": 1}]
    books(owner)


# ---------------------------------------------------------------------------
# Suspicious activity: each rule fires on its pattern, not on normal traffic
# ---------------------------------------------------------------------------

def suspicious(owner, rule=None):
    found = rows(owner, "select * from reporting.suspicious_activity")
    return [r for r in found if rule is None or r["rule"] == rule]


def test_rapid_round_trip_transfers(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    # normal: one way, and a small unrelated payment back
    transfer(owner, alice, "bob@example.com", "BRL", "500.00", "rt-1")
    transfer(owner, bob, "alice@example.com", "BRL", "35.00", "rt-2")
    transfer(owner, bob, "alice@example.com", "BTC", "0.01", "rt-3")
    assert suspicious(owner) == []
    # the pattern: (about) the same amount straight back
    transfer(owner, bob, "alice@example.com", "BRL", "495.00", "rt-4")
    fired = suspicious(owner)
    assert [(r["rule"], r["user_id"], r["counterparty_id"], r["amount"]) for r in fired] == \
        [("rapid_round_trip_transfer", alice, bob, Decimal("500.00"))]
    # outside the window it is not rapid
    owner.execute("update core.settings set value = '0' where name = 'audit_round_trip_minutes'")
    assert suspicious(owner) == []
    books(owner)


def plant_trade(owner, seller, buyer, amount, status="COMPLETED", disputed=False, offer=None, hold_id=None,
                deadline="now() + interval '15 minutes'", crypto="BTC"):
    if offer is None:
        offer = owner.execute("""
            insert into core.p2p_offers (user_id, side, crypto, price_type, fixed_price, total_amount, remaining_amount,
                                         min_brl, max_brl, payment_methods, payment_window_minutes, maker_fee_percent,
                                         expires_at)
            values (%s, 'BUY', %s, 'fixed', 300000, 1, 1, 10, 10000, array['PIX'], 15, 0.1, now() + interval '1 day')
            returning id""", (buyer, crypto)).fetchone()["id"]
    return owner.execute(f"""
        insert into core.p2p_trades (offer_id, maker_id, taker_id, buyer_id, seller_id, crypto, crypto_amount, price,
                                     brl_amount, seller_fee, buyer_fee, payment_method, status, hold_id,
                                     payment_deadline, completed_at, disputed_at)
        values (%s, %s, %s, %s, %s, %s, %s, 300000, round(%s * 300000, 2), 0.00001, 0.00002, 'PIX', %s, %s,
                {deadline}, case when %s = 'COMPLETED' then now() end, case when %s then now() end)
        returning id""", (offer, buyer, seller, buyer, seller, crypto, Decimal(amount), Decimal(amount), status,
                          hold_id, status, disputed)).fetchone()["id"]


def test_rapid_round_trip_p2p(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    plant_trade(owner, alice, bob, "0.01")
    plant_trade(owner, bob, alice, "0.002")  # a different, smaller trade back: normal
    assert suspicious(owner) == []
    plant_trade(owner, bob, alice, "0.0101")
    assert [(r["rule"], r["user_id"], r["counterparty_id"], r["currency"]) for r in suspicious(owner)] == \
        [("rapid_round_trip_p2p", alice, bob, "BTC")]


def test_high_dispute_rate(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    for i, amount in enumerate(["0.001", "0.002", "0.004", "0.008", "0.016"]):
        plant_trade(owner, alice, bob, amount, disputed=(i == 0))  # 1 of 5 = 20%: not above the threshold
    assert suspicious(owner) == []
    plant_trade(owner, alice, bob, "0.032", status="REFUNDED", disputed=True)  # 2 of 6
    fired = suspicious(owner, "high_dispute_rate")
    assert sorted(r["user_id"] for r in fired) == sorted([alice, bob])
    assert all(r["amount"] == 2 for r in fired)


# ---------------------------------------------------------------------------
# Escrow reconciliation (P2P holds against offers and trades)
# ---------------------------------------------------------------------------

def test_escrow_mismatches_flag_planted_escrow_problems(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    # a well-formed running trade: the seller's amount + fee held for it
    hold = owner.execute("select core.place_hold(%s, 'BTC', 0.01001, 'p2p_trade', 'p2p_trade:x') as h",
                         (alice,)).fetchone()["h"]
    good = plant_trade(owner, alice, bob, "0.01", status="OPEN", hold_id=hold)
    escrow = rows(owner, "select * from reporting.open_escrow")
    assert [(r["escrow_kind"], r["trade_id"], r["amount"]) for r in escrow] == [("trade", good, Decimal("0.01001"))]
    assert rows(owner, "select * from reporting.escrow_mismatches") == []
    assert health(owner)["escrow_mismatches"] == 0

    # an escrow hold that no offer or trade points to, and a trade whose hold was released
    owner.execute("select core.place_hold(%s, 'BTC', 0.005, 'p2p_trade', 'p2p_trade:orphan')", (bob,))
    other = owner.execute("select core.place_hold(%s, 'BTC', 0.02002, 'p2p_trade', 'p2p_trade:y') as h",
                          (alice,)).fetchone()["h"]
    broken = plant_trade(owner, alice, bob, "0.02", status="PAID", hold_id=other)
    owner.execute("select core.release_hold(%s)", (other,))
    problems = {(r["problem"], r["trade_id"]) for r in rows(owner, "select * from reporting.escrow_mismatches")}
    assert problems == {("orphan_escrow_hold", None), ("trade_without_open_hold", broken)}
    assert health(owner)["escrow_mismatches"] == 2
    books(owner)


def test_stale_p2p_trade_past_its_deadline(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    hold = owner.execute("select core.place_hold(%s, 'BTC', 0.01001, 'p2p_trade', 'p2p_trade:z') as h",
                         (alice,)).fetchone()["h"]
    trade = plant_trade(owner, alice, bob, "0.01", status="OPEN", hold_id=hold,
                        deadline="now() - interval '1 hour'")
    stale = rows(owner, "select * from reporting.stale_items")
    assert [(r["item_kind"], r["item_id"]) for r in stale] == [("p2p_trade_unpaid", trade)]


# ---------------------------------------------------------------------------
# The DBA's door: comments everywhere, and docs/SQL.md generated from them
# ---------------------------------------------------------------------------

def test_every_api_admin_function_and_reporting_view_has_a_comment(owner):
    missing = rows(owner, """
        select p.oid::regprocedure::text as object from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('api', 'admin') and coalesce(obj_description(p.oid, 'pg_proc'), '') = ''
        union all
        select 'reporting.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'reporting' and c.relkind in ('v', 'm')
          and coalesce(obj_description(c.oid, 'pg_class'), '') = ''""")
    assert missing == []


def load_gen_sql_docs():
    spec = importlib.util.spec_from_file_location("gen_sql_docs", ROOT / "docs" / "gen_sql_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented_functions(markdown: str) -> set[str]:
    return set(re.findall(r"^#{3,4} `((?:api|admin)\.[a-z_0-9]+\(.*\))`$", markdown, re.M))


def test_gen_sql_docs_lists_every_function_with_its_errors(owner):
    markdown = load_gen_sql_docs().render(owner)
    signatures = {r["sig"] for r in rows(owner, """
        select n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' as sig
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname in ('api', 'admin')""")}
    assert documented_functions(markdown) == signatures
    for view in view_names(owner):
        assert f"### `reporting.{view}`" in markdown
    section = markdown.split("### `admin.adjust_balance(")[1].split("\n### ")[0]
    assert "BSV01" in section and "BSV03" in section  # raised directly
    assert "BSA01" in section and "BSF01" in section  # through core.assert_admin and core.post_entry
    assert "executable by exchange_app, exchange_admin" in section
    assert "(no comment)" not in markdown


def test_committed_sql_md_is_current(owner):
    """docs/SQL.md documents exactly the functions of a fresh database (regenerate with `make sql-docs`)."""
    committed = (ROOT / "docs" / "SQL.md").read_text()
    current = load_gen_sql_docs().render(owner)
    assert documented_functions(committed) == documented_functions(current), "run `make sql-docs`"


# ---------------------------------------------------------------------------
# BRL rails and the market desk: rows planted as the rails and the desk write them
# ---------------------------------------------------------------------------

def next_id(owner, table):
    return owner.execute("select nextval(pg_get_serial_sequence(%s, 'id')) as id", (table,)).fetchone()["id"]


def plant_deposit(owner, user, amount, status="PAID", credit=None, payer_cpf=None, with_entry=True,
                  expires="now() + interval '1 hour'"):
    """A PIX deposit charge; when PAID, the journal entry that credits `credit` (default: the amount)."""
    cid = next_id(owner, "core.pix_charges")
    reference = f"dep-{cid}"
    amount = Decimal(amount)
    entry = None
    if status == "PAID":
        if with_entry:
            credit = Decimal(credit if credit is not None else amount)
            entry = owner.execute("""select core.post_entry('deposit', %s, %s,
                array[core.system_account('clearing_mercadopago', 'BRL'), core.user_account(%s, 'BRL')],
                array[-%s::numeric, %s::numeric]) as e""", (reference, user, user, credit, credit)).fetchone()["e"]
        else:  # the charge names an entry that is not its own
            entry = owner.execute("select min(id) as e from core.entries").fetchone()["e"]
    owner.execute(f"""
        insert into core.pix_charges (id, user_id, purpose, reference, amount, provider, status, provider_payment_id,
                                      expires_at, payer_cpf, paid_amount, credited_amount, entry_id, paid_at, resolved_at)
        values (%s, %s, 'deposit', %s, %s, 'mercadopago', %s, %s, {expires}, %s,
                case when %s = 'PAID' then %s end, case when %s = 'PAID' then %s end, %s,
                case when %s = 'PAID' then now() end, case when %s <> 'PENDING' then now() end)""",
                  (cid, user, reference, amount, status, f"mp-{cid}" if status == "PAID" else None, payer_cpf,
                   status, amount, status, amount, entry, status, status))
    return reference


def plant_withdrawal(owner, user, amount, status="COMPLETED", hold_outcome=None, claimed="now()"):
    wid = next_id(owner, "core.withdrawals")
    reference = f"wd-{wid}"
    hold = owner.execute("select core.place_hold(%s, 'BRL', %s, 'withdrawal', %s) as h",
                         (user, Decimal(amount), reference)).fetchone()["h"]
    outcome = hold_outcome or {"COMPLETED": "capture", "FAILED": "release"}.get(status, "open")
    if outcome == "capture":
        owner.execute("select core.resolve_hold(%s, 'withdrawal', %s, array[core.system_account('clearing_mercadopago', "
                      "'BRL')], array[%s::numeric])", (hold, reference, Decimal(amount)))
    elif outcome == "release":
        owner.execute("select core.release_hold(%s)", (hold,))
    final = status in ("COMPLETED", "FAILED", "CANCELLED", "REJECTED")
    owner.execute(f"""
        insert into core.withdrawals (id, user_id, reference, amount, key_type, pix_key, status, hold_id, provider,
                                      provider_payout_id, claimed_at, resolved_at)
        values (%s, %s, %s, %s, 'EMAIL', 'me@example.com', %s, %s, 'mercadopago', %s, {claimed},
                case when %s then now() end)""",
                  (wid, user, reference, Decimal(amount), status, hold,
                   f"po-{wid}" if status == "COMPLETED" else None, final))
    return reference


def test_rails_reconciliation_matches_normal_rows_and_flags_planted_ones(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    plant_deposit(owner, alice, "100.00")
    plant_deposit(owner, bob, "30.00", status="PENDING")
    plant_withdrawal(owner, alice, "50.00")
    plant_withdrawal(owner, bob, "20.00", status="FAILED")
    plant_withdrawal(owner, bob, "25.00", status="PENDING")
    recon = rows(owner, "select * from reporting.rails_reconciliation")
    assert len(recon) == 5 and {r["outcome"] for r in recon} == {"matched"}
    assert health(owner)["rails_reconciliation"] == 0
    books(owner)

    short = plant_deposit(owner, alice, "200.00", credit="190.00")         # credited less than paid
    lost = plant_deposit(owner, bob, "80.00", with_entry=False)            # PAID, never credited
    owner.execute("""select core.post_entry('deposit', 'dep-999999', %s,
                     array[core.system_account('clearing_inter', 'BRL'), core.user_account(%s, 'BRL')],
                     array[-10::numeric, 10::numeric])""", (bob, bob))    # credited with no charge
    unpaid = plant_withdrawal(owner, alice, "60.00", hold_outcome="release")  # COMPLETED but refunded
    flagged = {(r["reference"], r["outcome"]) for r in rows(owner, "select * from reporting.rails_mismatches")}
    assert flagged == {(short, "mismatched"), (lost, "missing"), ("dep-999999", "unexpected"), (unpaid, "missing")}
    assert health(owner)["rails_reconciliation"] == 4


def plant_market_buy(owner, user, brl, executed, quote_qty, commission, credited_crypto, dust_crypto=None,
                     symbol="BTCBRL", base="BTC"):
    """A COMPLETED market buy settled the way admin.settle_market_order posts it (no spread or fee)."""
    brl, executed, quote_qty = Decimal(brl), Decimal(executed), Decimal(quote_qty)
    commission, credited_crypto = Decimal(commission), Decimal(credited_crypto)
    quote = owner.execute("""
        insert into core.market_quotes (user_id, side, symbol, base_currency, amount, price, price_fetched_at,
            spread_percent, fee_percent, spread_amount, fee_amount, quote_order_qty, estimated_brl, estimated_crypto,
            limit_brl, expires_at)
        values (%s, 'buy', %s, %s, %s, 300000, now(), 0, 0, 0, 0, %s, %s, %s, %s, now() + interval '10 seconds')
        returning id""", (user, symbol, base, brl, brl, brl, credited_crypto, brl)).fetchone()["id"]
    client_order_id = f"mo-{quote}"
    hold = owner.execute("select core.place_hold(%s, 'BRL', %s, 'market_order', %s) as h",
                         (user, brl, client_order_id)).fetchone()["h"]
    entry = owner.execute("""
        select core.post_entry('market_buy', %s, %s,
            array[core.user_account(%s, 'BRL', 'locked'), core.system_account('binance_omnibus', 'BRL'),
                  core.system_account('binance_omnibus', %s), core.user_account(%s, %s)],
            array[-%s::numeric, %s::numeric, -%s::numeric, %s::numeric], 'compra', null, %s) as e""",
        ("market:" + client_order_id, user, user, base, user, base, brl, brl, credited_crypto, credited_crypto,
         hold)).fetchone()["e"]
    owner.execute("update core.holds set status = 'captured', captured = amount, resolved_entry_id = %s, "
                  "resolved_at = now() where id = %s", (entry, hold))
    owner.execute("""
        insert into core.market_orders (user_id, quote_id, side, symbol, base_currency, status, client_order_id, hold_id,
            amount, quote_order_qty, price, spread_percent, fee_percent, quoted_spread, quoted_fee, limit_brl,
            binance_order_id, executed_qty, cummulative_quote_qty, commission, brl_amount, crypto_amount,
            spread_charged, fee_charged, dust_brl, dust_crypto, entry_id, settled_at)
        values (%s, %s, 'buy', %s, %s, 'COMPLETED', %s, %s, %s, %s, 300000, 0, 0, 0, 0, %s,
                %s, %s, %s, %s, %s, %s, 0, 0, %s, %s, %s, now())""",
        (user, quote, symbol, base, client_order_id, hold, brl, brl, brl, quote, executed, quote_qty, commission,
         brl, credited_crypto, brl - quote_qty,
         executed - commission - credited_crypto if dust_crypto is None else Decimal(dust_crypto), entry))


def test_omnibus_position_against_settled_orders(owner, demo):
    alice = demo["alice@example.com"]
    plant_market_buy(owner, alice, "1000.00", executed="0.003", quote_qty="999.995", commission="0.000003",
                     credited_crypto="0.002997")
    position = {r["currency"]: r for r in rows(owner, "select * from reporting.omnibus_position")}
    assert position["BRL"]["ledger_balance"] == Decimal("1000.00") and position["BRL"]["dust"] == Decimal("0.005")
    assert position["BTC"]["binance_net"] == Decimal("0.002997")
    assert all(r["difference"] == 0 and r["other_movements"] == 0 for r in position.values())
    assert health(owner)["omnibus_position"] == 0
    books(owner)

    # a treasury movement shows as other_movements; fills that disagree with the entry as a difference
    owner.execute("""select core.post_entry('treasury', 'rebalance-1', null,
                     array[core.system_account('binance_omnibus', 'USDT'), core.system_account('adjustments', 'USDT')],
                     array[-100::numeric, 100::numeric])""")
    plant_market_buy(owner, alice, "500.00", executed="0.002", quote_qty="500.00", commission="0",
                     credited_crypto="0.0015", dust_crypto="0")  # Binance gave 0.002, the customer got 0.0015
    position = {r["currency"]: r for r in rows(owner, "select * from reporting.omnibus_position")}
    assert position["USDT"]["other_movements"] == Decimal("-100") and position["USDT"]["difference"] == 0
    assert position["BTC"]["difference"] == Decimal("0.0005")
    assert health(owner)["omnibus_position"] == 1


def test_small_deposits_then_withdrawal(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    for _ in range(4):
        plant_deposit(owner, alice, "99.00")
    plant_deposit(owner, bob, "3000.00")
    plant_withdrawal(owner, alice, "300.00")
    plant_withdrawal(owner, bob, "1000.00")
    assert suspicious(owner) == []  # four small deposits are not five; bob's one is not small
    plant_deposit(owner, alice, "99.00")
    later = plant_withdrawal(owner, alice, "390.00")
    fired = suspicious(owner)
    assert [(r["rule"], r["user_id"], r["amount"]) for r in fired] == \
        [("small_deposits_then_withdrawal", alice, Decimal("390.00"))]
    assert later in fired[0]["detail"]


def test_deposit_from_another_cpf(owner, demo):
    alice = demo["alice@example.com"]
    profile = owner.execute("select cpf from core.kyc_profiles where user_id = %s", (alice,)).fetchone()
    if profile is None:  # the demo may already have confirmed her data
        owner.execute("insert into core.kyc_profiles (user_id, full_name, cpf, birth_date, address) "
                      "values (%s, 'Alice Souza', '52998224725', '1990-01-01', 'Rua A, 1, São Paulo')", (alice,))
    cpf = owner.execute("select cpf from core.kyc_profiles where user_id = %s", (alice,)).fetchone()["cpf"]
    assert cpf != "11144477735"
    formatted = f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}"
    plant_deposit(owner, alice, "700.00", payer_cpf=formatted)  # her own CPF, formatted
    plant_deposit(owner, alice, "700.00", payer_cpf=None)
    assert suspicious(owner) == []
    plant_deposit(owner, alice, "800.00", payer_cpf="11144477735")
    fired = suspicious(owner)
    assert [(r["rule"], r["user_id"], r["amount"]) for r in fired] == \
        [("deposit_payer_cpf_mismatch", alice, Decimal("800.00"))]
    assert "11144477735" not in fired[0]["detail"]  # only the last digits, for the auditor


def test_stale_rails_and_market_items(owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    plant_deposit(owner, alice, "10.00", status="PENDING")  # fresh: not stale
    plant_withdrawal(owner, bob, "10.00", status="PROCESSING")
    assert rows(owner, "select * from reporting.stale_items") == []
    plant_deposit(owner, alice, "20.00", status="PENDING", expires="now() - interval '1 hour'")
    plant_withdrawal(owner, bob, "30.00", status="PROCESSING", claimed="now() - interval '1 hour'")
    kinds = sorted((r["item_kind"], r["amount"]) for r in rows(owner, "select * from reporting.stale_items"))
    assert kinds == [("deposit_pending", Decimal("20.00")), ("withdrawal_processing", Decimal("30.00"))]
