"""The ledger functions of sql/ledger.sql, called directly on a real database.

Every refusal is asserted by its SQLSTATE (sql/ERROR_CODES.md), never by its
message. `books(owner)` runs after every scenario that moves money. Corruption
is planted as the owner, in the throwaway test database only, to prove that
admin.check_books() notices it.
"""
from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from tests.conftest import books

SCALES = {"BRL": 2, "BTC": 8, "ETH": 18, "USDT": 6}
HASH = "x" * 40  # a stand-in password hash: these tests never log in


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def sqlstate_of(conn, query: str, *params) -> str:
    """Run a statement that must fail; return its SQLSTATE."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value.sqlstate


def expect(code: str, conn, query: str, *params) -> None:
    state = sqlstate_of(conn, query, *params)
    assert state == code, f"expected {code}, got {state}"


def one(conn, query: str, *params):
    return conn.execute(query, params).fetchone()


def register(conn, email: str, role: str = "customer", status: str = "active") -> int:
    user = one(conn, "select api.register_user(%s, %s, %s) as id", email, HASH, email.split("@")[0].title())["id"]
    conn.execute("update core.users set role = %s, status = %s where id = %s", (role, status, user))
    conn.execute("select core.mark_email_verified(%s)", (user,))
    return user


def account(conn, user: int, currency: str, purpose: str = "available") -> int:
    return one(conn, "select core.user_account(%s, %s, %s) as id", user, currency, purpose)["id"]


def balance(conn, user: int, currency: str, purpose: str = "available") -> Decimal:
    return one(conn, "select balance from core.accounts where id = core.user_account(%s, %s, %s)",
               user, currency, purpose)["balance"]


def wallet(conn, user: int) -> dict:
    return {(r["currency"], "available"): r["available"] for r in conn.execute(
        "select * from api.get_wallet(%s)", (user,))} | {(r["currency"], "locked"): r["locked"] for r in conn.execute(
            "select * from api.get_wallet(%s)", (user,))}


def transfer(conn, sender: int, email: str, currency: str, amount, key: str) -> dict:
    return one(conn, "select * from api.transfer(%s, %s, %s, %s, %s)", sender, email, currency, amount, key)


def adjust(conn, admin: int, user: int, currency: str, amount, key: str, reason: str = "Ajuste de teste") -> dict:
    return one(conn, "select * from admin.adjust_balance(%s, %s, %s, %s, %s, %s)",
               admin, user, currency, amount, reason, key)


def place_hold(conn, user: int, currency: str, amount, purpose: str = "test", reference: str = "ref",
               expires_at=None) -> int:
    return one(conn, "select core.place_hold(%s, %s, %s, %s, %s, %s) as id",
               user, currency, amount, purpose, reference, expires_at)["id"]


def capture(conn, hold: int, accounts: list[int], amounts: list) -> int:
    return one(conn, "select core.resolve_hold(%s, 'capture', 'ref', %s::bigint[], %s::numeric[]) as id",
               hold, accounts, amounts)["id"]


def failures(conn) -> set[str]:
    return {r["check_name"] for r in conn.execute("select * from admin.check_books()")}


@pytest.fixture
def people(owner, demo):
    """The demo users: admin, auditor, alice (10000 BRL…) and bob (5000 BRL…)."""
    return {
        "admin": demo["admin@example.com"], "auditor": demo["auditor@example.com"],
        "alice": demo["alice@example.com"], "bob": demo["bob@example.com"],
    }


# ---------------------------------------------------------------------------
# history is append-only; the database refuses unbalanced entries
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("table", ["entries", "postings", "admin_audit_log"])
def test_history_refuses_update_delete_truncate_even_for_the_owner(owner, people, table):
    assert one(owner, f"select count(*) as n from core.{table}")["n"] > 0
    column = {"entries": "description", "postings": "amount", "admin_audit_log": "reason"}[table]
    expect("BSX02", owner, f"update core.{table} set {column} = {column}")
    expect("BSX02", owner, f"delete from core.{table}")
    expect("BSX02", owner, f"truncate core.{table} cascade")
    books(owner)


def test_a_directly_inserted_unbalanced_entry_is_refused(owner, people):
    alice, bob = account(owner, people["alice"], "BRL"), account(owner, people["bob"], "BRL")
    for legs in ([(alice, Decimal("-1.00")), (bob, Decimal("2.00"))],   # two legs summing to 1
                 [(alice, Decimal("-1.00"))]):                            # one leg
        with pytest.raises(psycopg.Error) as info:
            with owner.transaction():
                entry = one(owner, "insert into core.entries (kind, reference) values ('manual', 'test') returning id")["id"]
                owner.execute(
                    """insert into core.postings (entry_id, leg, account_id, currency, amount, account_version, balance_after)
                       select %s, m.leg, a.id, a.currency, m.amount, a.version + 1, a.balance + m.amount
                       from unnest(%s::bigint[], %s::numeric[]) with ordinality m (id, amount, leg)
                       join core.accounts a on a.id = m.id""",
                    (entry, [acc for acc, _ in legs], [amount for _, amount in legs]))
        assert info.value.sqlstate == "BSX01"
    books(owner)


def test_a_directly_inserted_balanced_entry_is_accepted(owner, people):
    alice, bob = account(owner, people["alice"], "BRL"), account(owner, people["bob"], "BRL")
    with owner.transaction():
        entry = one(owner, "insert into core.entries (kind, reference) values ('manual', 'test') returning id")["id"]
        owner.execute("""with moved as (
                           update core.accounts a set balance = a.balance + m.amount, version = a.version + 1
                           from (values (%s::bigint, 1, -1.25), (%s::bigint, 2, 1.25)) m (id, leg, amount)
                           where a.id = m.id returning m.leg, a.id, a.currency, m.amount, a.version, a.balance, a.user_id)
                         insert into core.postings (entry_id, leg, account_id, currency, amount, account_version, balance_after,
                                                    user_id)
                         select %s, leg, id, currency, amount, version, balance, user_id from moved""", (alice, bob, entry))
    assert balance(owner, people["alice"], "BRL") == Decimal("9998.75")
    assert balance(owner, people["bob"], "BRL") == Decimal("5001.25")
    books(owner)


def direct_postings(owner, entry, legs):
    """Insert postings straight into the table, as an owner in psql could."""
    owner.execute("""insert into core.postings (entry_id, leg, account_id, currency, amount, account_version, balance_after)
                     select %s, m.leg, m.id, m.currency, m.amount, 100 + m.leg, 0
                     from unnest(%s::bigint[], %s::text[], %s::numeric[]) with ordinality m (id, currency, amount, leg)""",
                  (entry, [a for a, _, _ in legs], [c for _, c, _ in legs], [x for _, _, x in legs]))


def test_postings_written_by_hand_are_refused_or_reported(owner, people):
    """What core.post_entry guarantees by construction, the books report when an owner breaks it by hand.

    The statement trigger refuses an entry that does not sum to zero per currency and a posting of
    zero. A posting naming an entry or an account that does not exist, or in another currency than its
    account, cannot come from post_entry (it takes both from the rows it writes in the same statement):
    written by hand it is reported by admin.check_books (migration 0011).
    """
    alice, bob = account(owner, people["alice"], "BRL"), account(owner, people["bob"], "BRL")
    with pytest.raises(psycopg.Error) as info:
        with owner.transaction():
            entry = one(owner, "insert into core.entries (kind) values ('manual') returning id")["id"]
            direct_postings(owner, entry, [(alice, "BRL", 0), (bob, "BRL", 0)])
    assert info.value.sqlstate == "BSX01"
    cases = [
        ([(alice, "BTC", -1), (bob, "BTC", 1)], True, "currency_mismatch"),    # accounts of another currency
        ([(alice, "BRL", -1), (999999999, "BRL", 1)], True, "orphan_posting"),  # an account that does not exist
        ([(alice, "BRL", -1), (bob, "BRL", 1)], False, "orphan_posting"),       # an entry that does not exist
    ]
    for legs, with_entry, check in cases:
        with pytest.raises(RuntimeError):
            with owner.transaction():
                entry = (one(owner, "insert into core.entries (kind) values ('manual') returning id")["id"]
                         if with_entry else 987654321)
                direct_postings(owner, entry, legs)
                reported = {r["check_name"] for r in owner.execute("select * from admin.check_books()")}
                assert check in reported, (legs, reported)
                raise RuntimeError("roll back")
    books(owner)


def test_an_entry_customer_owns_one_of_its_accounts(owner, people):
    alice, bob = account(owner, people["alice"], "BRL"), account(owner, people["bob"], "BRL")
    post = "select core.post_entry('test', 'ref', %s, %s::bigint[], %s::numeric[])"
    expect("BSX01", owner, post, people["admin"], [alice, bob], [Decimal("-1"), Decimal("1")])
    expect("BSX01", owner, post, 999999999, [alice, bob], [Decimal("-1"), Decimal("1")])
    # the recipient's side is as good as the sender's
    assert one(owner, post + " as id", people["bob"], [alice, bob], [Decimal("-1"), Decimal("1")])["id"]
    # an entry written by hand for someone else is reported
    with pytest.raises(RuntimeError):
        with owner.transaction():
            owner.execute("insert into core.entries (kind, user_id) values ('manual', %s)", (people["admin"],))
            reported = {r["check_name"] for r in owner.execute("select * from admin.check_books()")}
            assert "entry_customer" in reported, reported
            raise RuntimeError("roll back")
    books(owner)


def test_accounts_are_never_deleted_nor_change_what_they_are(owner, people):
    alice = account(owner, people["alice"], "BRL")
    expect("BSX02", owner, "delete from core.accounts where id = %s", alice)
    expect("BSX02", owner, "truncate core.accounts cascade")
    for change in ("currency = 'BTC'", "user_id = %s" % people["bob"], "purpose = 'locked'", "shard = 1",
                   "must_not_go_negative = false"):
        expect("BSX02", owner, f"update core.accounts set {change} where id = %s", alice)
    # the balance and version still move (as post_entry moves them)
    owner.execute("update core.accounts set balance = balance, version = version where id = %s", (alice,))
    books(owner)


@pytest.mark.parametrize("user, purpose, may_go_negative", [
    ("alice", "salary", False),            # unknown purpose
    (None, "available", False),            # a customer purpose with no customer
    ("alice", "fees", False),              # a system purpose owned by a customer
    ("alice", "available", True),          # a customer account allowed to go negative
])
def test_an_account_that_breaks_the_rules_cannot_be_opened(owner, people, user, purpose, may_go_negative):
    expect("BSX01", owner, """insert into core.accounts (user_id, currency, purpose, shard, must_not_go_negative)
                              values (%s, 'BRL', %s, 7, %s)""",
           people[user] if user else None, purpose, not may_go_negative)


# ---------------------------------------------------------------------------
# core.post_entry guards
# ---------------------------------------------------------------------------

def test_post_entry_refuses_malformed_entries(owner, people):
    alice, bob = account(owner, people["alice"], "BRL"), account(owner, people["bob"], "BRL")
    bob_btc = account(owner, people["bob"], "BTC")
    post = "select core.post_entry('test', 'ref', null, %s::bigint[], %s::numeric[])"
    expect("BSX01", owner, post, [alice, bob], [Decimal("-1")])                     # arrays of different length
    expect("BSX01", owner, post, [alice], [Decimal("1")])                            # one account
    expect("BSX01", owner, post, [], [])                                             # nothing
    expect("BSX01", owner, post, [alice, alice], [Decimal("-1"), Decimal("1")])      # nets to nothing
    expect("BSX01", owner, post, [alice, 999999999], [Decimal("-1"), Decimal("1")])  # unknown account
    expect("BSX01", owner, post, [alice, None], [Decimal("-1"), Decimal("1")])       # null account
    expect("BSX01", owner, post, [alice, bob_btc], [Decimal("-1"), Decimal("1")])    # crosses currencies
    expect("BSX01", owner, post, [alice, bob], [Decimal("-1"), Decimal("2")])        # does not sum to zero
    expect("BSF01", owner, post, [alice, bob], [Decimal("-10000.01"), Decimal("10000.01")])
    expect("BSV02", owner, post, [alice, bob], [Decimal("-0.001"), Decimal("0.001")])
    for kind in ("Bad Kind", "1x", "", None):                                       # kinds are snake_case names
        expect("BSX01", owner, "select core.post_entry(%s, 'ref', null, %s::bigint[], %s::numeric[])",
               kind, [alice, bob], [Decimal("-1"), Decimal("1")])
    books(owner)


def test_every_currency_has_at_least_two_places(owner):
    # core.post_entry reads a currency's scale only for legs with more than two places
    for scale in (0, 1, 19):
        with pytest.raises(errors.CheckViolation):
            owner.execute("insert into core.currencies (code, name, scale, kind, sort_order) "
                          "values ('XYZ', 'Test', %s, 'crypto', 99)", (scale,))


def test_post_entry_nets_per_account_and_chains_versions(owner, people):
    alice, bob = account(owner, people["alice"], "BRL"), account(owner, people["bob"], "BRL")
    fees = one(owner, "select core.fee_account('BRL', 'k') as id")["id"]
    entry = one(owner, "select core.post_entry('test', 'ref', null, %s::bigint[], %s::numeric[]) as id",
                [alice, bob, alice, fees], [Decimal("-3"), Decimal("2.5"), Decimal("1"), Decimal("-0.5")])["id"]
    legs = owner.execute("select account_id, amount, account_version, balance_after from core.postings "
                         "where entry_id = %s order by leg", (entry,)).fetchall()
    # one posting per account, customers first in (user_id, id) order, system accounts last
    assert [(r["account_id"], r["amount"]) for r in legs] == [
        (alice, Decimal("-2")), (bob, Decimal("2.5")), (fees, Decimal("-0.5"))]
    assert legs[0]["balance_after"] == Decimal("9998.00") and legs[0]["account_version"] == 2
    assert legs[1]["balance_after"] == Decimal("5002.50")
    books(owner)


# ---------------------------------------------------------------------------
# balances never go negative
# ---------------------------------------------------------------------------

def test_a_customer_balance_never_goes_negative(owner, people):
    alice, bob = people["alice"], people["bob"]
    expect("BSF01", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 10000.01, 'k1')", alice)
    expect("BSF01", owner, "select core.place_hold(%s, 'BTC', 0.05000001, 'test', 'ref')", alice)
    expect("BSF01", owner, "select core.post_entry('test', 'ref', null, %s::bigint[], %s::numeric[])",
           [account(owner, alice, "ETH"), account(owner, bob, "ETH")], [Decimal("-1.500000000000000001"),
                                                                         Decimal("1.500000000000000001")])
    expect("BSF01", owner, "select * from admin.adjust_balance(%s, %s, 'USDT', -2000.000001, 'Estorno de teste', 'a1')",
           people["admin"], alice)
    # the table itself refuses it, whatever writes the row (here the owner, by hand)
    with pytest.raises(errors.CheckViolation):
        owner.execute("update core.accounts set balance = -0.01 where id = %s", (account(owner, alice, "BRL"),))
    with pytest.raises(errors.CheckViolation):
        owner.execute("update core.accounts set balance = -1 where id = %s", (account(owner, bob, "BTC", "locked"),))
    # exactly everything is fine
    transfer(owner, alice, "bob@example.com", "BRL", Decimal("10000.00"), "k2")
    assert balance(owner, alice, "BRL") == 0
    books(owner)


# ---------------------------------------------------------------------------
# amounts: scale, sign, non-finite
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("currency,scale", sorted(SCALES.items()))
def test_off_scale_amounts_are_refused_for_each_currency(owner, people, currency, scale):
    alice, admin = people["alice"], people["admin"]
    unit = Decimal(1).scaleb(-scale)           # the smallest amount of the currency
    off = Decimal(1).scaleb(-(scale + 1))      # one decimal more
    assert one(owner, "select scale from core.currencies where code = %s", currency)["scale"] == scale
    before = wallet(owner, alice)
    expect("BSV02", owner, "select * from api.transfer(%s, 'bob@example.com', %s, %s, 'k-off')", alice, currency, off)
    expect("BSV02", owner, "select * from api.transfer(%s, 'bob@example.com', %s, %s, 'k-off2')", alice, currency,
           Decimal(1) + off)
    expect("BSV02", owner, "select core.place_hold(%s, %s, %s, 'test', 'ref')", alice, currency, unit + off)
    expect("BSV02", owner, "select core.check_amount(%s, %s)", currency, off)
    expect("BSV02", owner, "select * from admin.adjust_balance(%s, %s, %s, %s, 'Ajuste de teste', 'adj-off')",
           admin, alice, currency, off)
    assert wallet(owner, alice) == before
    # trailing zeros beyond the scale are not "off-scale": 1.000… is 1
    assert one(owner, "select core.check_amount(%s, %s) as s", currency, Decimal("1." + "0" * (scale + 3)))["s"] == scale
    # the smallest unit moves
    row = transfer(owner, alice, "bob@example.com", currency, unit, "k-unit")
    assert row["replayed"] is False
    assert balance(owner, alice, currency) == before[(currency, "available")] - unit
    books(owner)


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-1"), Decimal("-0.01"), None])
def test_non_positive_amounts_are_refused(owner, people, amount):
    alice, admin = people["alice"], people["admin"]
    expect("BSV03", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', %s, 'k')", alice, amount)
    expect("BSV03", owner, "select core.place_hold(%s, 'BRL', %s, 'test', 'ref')", alice, amount)
    if amount is None or amount == 0:  # a negative adjustment is a debit, not an error
        expect("BSV03", owner, "select * from admin.adjust_balance(%s, %s, 'BRL', %s, 'Ajuste de teste', 'a')",
               admin, alice, amount)
    hold = place_hold(owner, alice, "BRL", Decimal("10"))
    expect("BSV03", owner, "select core.split_hold(%s, %s, 'other', 'ref')", hold, amount)
    if amount is not None:
        expect("BSV03", owner, "select core.resolve_hold(%s, 'capture', 'ref', %s::bigint[], %s::numeric[])",
               hold, [account(owner, people["bob"], "BRL")], [amount])
    books(owner)


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_amounts_never_move_money(owner, people, amount):
    alice, admin = people["alice"], people["admin"]
    before = wallet(owner, alice)
    for query, params in (
            ("select * from api.transfer(%s, 'bob@example.com', 'BRL', %s::numeric, 'k')", (alice, amount)),
            ("select core.place_hold(%s, 'BRL', %s::numeric, 'test', 'ref')", (alice, amount)),
            ("select * from admin.adjust_balance(%s, %s, 'BRL', %s::numeric, 'Ajuste de teste', 'a')",
             (admin, alice, amount))):
        state = sqlstate_of(owner, query, *params)
        assert state.startswith("BS"), state
    assert wallet(owner, alice) == before
    books(owner)


@pytest.mark.parametrize("amount", ["NaN", "Infinity"])
def test_non_finite_amounts_are_refused_as_invalid_input(owner, people, amount):
    state = sqlstate_of(owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', %s::numeric, 'k')",
                        people["alice"], amount)
    assert state in ("BSV01", "BSV03")


# ---------------------------------------------------------------------------
# transfers and idempotency
# ---------------------------------------------------------------------------

def test_transfer_refusals(owner, people):
    alice = people["alice"]
    expect("BSN01", owner, "select * from api.transfer(%s, 'nobody@example.com', 'BRL', 1, 'k')", alice)
    expect("BSN01", owner, "select * from api.transfer(%s, 'admin@example.com', 'BRL', 1, 'k')", alice)
    expect("BSV01", owner, "select * from api.transfer(%s, ' Alice@Example.com ', 'BRL', 1, 'k')", alice)
    expect("BSN01", owner, "select * from api.transfer(%s, 'bob@example.com', 'XYZ', 1, 'k')", alice)
    expect("BSN01", owner, "select * from api.transfer(987654321, 'bob@example.com', 'BRL', 1, 'k')")
    expect("BSV01", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 1, '')", alice)
    expect("BSV01", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 1, null)", alice)
    expect("BSV01", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 1, repeat('k', 201))", alice)
    # the recipient is found whatever the case and spaces of the e-mail typed
    row = transfer(owner, alice, "  BOB@example.COM ", "BRL", Decimal("1"), "k-ok")
    assert row["replayed"] is False
    books(owner)


def test_idempotent_replay_returns_the_first_result_and_moves_nothing(owner, people):
    alice, bob = people["alice"], people["bob"]
    first = transfer(owner, alice, "bob@example.com", "BRL", Decimal("12.50"), "key-1")
    assert first["replayed"] is False and first["fee"] == 0
    after_first = (wallet(owner, alice), wallet(owner, bob))
    for amount in (Decimal("12.50"), Decimal("12.5"), Decimal("12.500")):
        again = transfer(owner, alice, "bob@example.com", "BRL", amount, "key-1")
        assert again["replayed"] is True
        assert again["entry_id"] == first["entry_id"] and again["fee"] == first["fee"]
    assert (wallet(owner, alice), wallet(owner, bob)) == after_first
    assert one(owner, "select count(*) as n from core.entries where reference = 'transfer:key-1'")["n"] == 1
    assert balance(owner, alice, "BRL") == Decimal("9987.50")
    # the same key for another request
    expect("BSI01", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 12.51, 'key-1')", alice)
    expect("BSI01", owner, "select * from api.transfer(%s, 'bob@example.com', 'USDT', 12.5, 'key-1')", alice)
    register(owner, "carol@example.com")
    expect("BSI01", owner, "select * from api.transfer(%s, 'carol@example.com', 'BRL', 12.5, 'key-1')", alice)
    # keys belong to a customer: bob may use the same one
    assert transfer(owner, bob, "alice@example.com", "BRL", Decimal("1"), "key-1")["replayed"] is False
    # a refused transfer does not burn its key
    expect("BSF01", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 99999, 'key-2')", alice)
    assert transfer(owner, alice, "bob@example.com", "BRL", Decimal("1"), "key-2")["replayed"] is False
    books(owner)


def test_transfer_fee_goes_to_a_fee_shard_and_replays_with_it(owner, people):
    alice, bob = people["alice"], people["bob"]
    owner.execute("update core.settings set value = '1' where name = 'transfer_fee_percent'")
    fees_before = one(owner, "select coalesce(sum(balance), 0) as s from core.accounts "
                             "where purpose = 'fees' and currency = 'BRL'")["s"]
    row = transfer(owner, alice, "bob@example.com", "BRL", Decimal("100.00"), "fee-key")
    assert row["fee"] == Decimal("1.00")
    assert balance(owner, alice, "BRL") == Decimal("9899.00")
    assert balance(owner, bob, "BRL") == Decimal("5100.00")
    shard = one(owner, "select core.fee_account('BRL', 'fee-key') as id")["id"]
    legs = owner.execute("select account_id, amount from core.postings where entry_id = %s order by leg",
                         (row["entry_id"],)).fetchall()
    assert legs[-1] == {"account_id": shard, "amount": Decimal("1.00")}
    assert one(owner, "select coalesce(sum(balance), 0) as s from core.accounts "
                      "where purpose = 'fees' and currency = 'BRL'")["s"] == fees_before + 1
    again = transfer(owner, alice, "bob@example.com", "BRL", Decimal("100"), "fee-key")
    assert again == {**row, "replayed": True}
    assert balance(owner, alice, "BRL") == Decimal("9899.00")
    # a fee that rounds to zero adds no leg; a fee beyond the balance is refused
    tiny = transfer(owner, alice, "bob@example.com", "BRL", Decimal("0.10"), "tiny")
    assert tiny["fee"] == 0
    assert one(owner, "select count(*) as n from core.postings where entry_id = %s", tiny["entry_id"])["n"] == 2
    expect("BSF01", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', %s, 'all')",
           alice, balance(owner, alice, "BRL"))
    btc = transfer(owner, alice, "bob@example.com", "BTC", Decimal("0.01234567"), "btc-fee")
    assert btc["fee"] == Decimal("0.00012346")
    books(owner)


def test_adjust_balance_is_journaled_and_audited(owner, people):
    admin, alice, bob = people["admin"], people["alice"], people["bob"]
    log_before = one(owner, "select count(*) as n from core.admin_audit_log")["n"]
    row = adjust(owner, admin, alice, "BRL", Decimal("100.00"), "adj-1", "Correção de depósito PIX")
    assert row["replayed"] is False
    assert balance(owner, alice, "BRL") == Decimal("10100.00")
    log = one(owner, "select * from core.admin_audit_log order by id desc limit 1")
    assert (log["admin_id"], log["action"], log["target_user_id"], log["reason"]) == (
        admin, "adjust_balance", alice, "Correção de depósito PIX")
    assert int(log["details"]["entry_id"]) == row["entry_id"] and log["details"]["currency"] == "BRL"
    assert one(owner, "select admin_email from reporting.admin_audit_log where id = %s", log["id"])["admin_email"] == \
        "admin@example.com"
    # a replay moves nothing and logs nothing
    assert adjust(owner, admin, alice, "BRL", Decimal("100"), "adj-1", "Correção de depósito PIX") == {
        **row, "replayed": True}
    assert one(owner, "select count(*) as n from core.admin_audit_log")["n"] == log_before + 1
    expect("BSI01", owner, "select * from admin.adjust_balance(%s, %s, 'BRL', 101, 'Correção de depósito PIX', 'adj-1')",
           admin, alice)
    # debits too, within the balance
    adjust(owner, admin, alice, "BRL", Decimal("-50.00"), "adj-2", "Estorno de crédito duplicado")
    assert balance(owner, alice, "BRL") == Decimal("10050.00")
    adjust_sql = "select * from admin.adjust_balance(%s, %s, %s, %s, %s, %s)"
    expect("BSF01", owner, adjust_sql, admin, alice, "BRL", Decimal("-10050.01"), "Estorno grande", "adj-3")
    expect("BSA01", owner, adjust_sql, bob, alice, "BRL", Decimal("1"), "Bob tentando", "adj-4")
    expect("BSA01", owner, adjust_sql, people["auditor"], alice, "BRL", Decimal("1"), "Auditor tentando", "adj-5")
    expect("BSA01", owner, adjust_sql, None, alice, "BRL", Decimal("1"), "Ninguém tentando", "adj-6")
    expect("BSV01", owner, adjust_sql, admin, alice, "BRL", Decimal("1"), "", "adj-7")
    expect("BSV01", owner, adjust_sql, admin, alice, "BRL", Decimal("1"), "   ab   ", "adj-8")
    expect("BSV01", owner, adjust_sql, admin, alice, "BRL", Decimal("1"), None, "adj-9")
    expect("BSV03", owner, adjust_sql, admin, alice, "BRL", Decimal("0"), "Ajuste zero", "adj-10")
    expect("BSN01", owner, adjust_sql, admin, 987654321, "BRL", Decimal("1"), "Cliente inexistente", "adj-11")
    expect("BSN01", owner, adjust_sql, admin, admin, "BRL", Decimal("1"), "Ajuste no admin", "adj-12")
    expect("BSN01", owner, adjust_sql, admin, alice, "XYZ", Decimal("1"), "Moeda inexistente", "adj-13")
    # a frozen admin is no admin
    owner.execute("update core.users set status = 'frozen' where id = %s", (admin,))
    expect("BSA01", owner, adjust_sql, admin, alice, "BRL", Decimal("1"), "Admin bloqueado", "adj-14")
    assert one(owner, "select count(*) as n from core.admin_audit_log")["n"] == log_before + 2
    books(owner)


def test_frozen_customers_cannot_move_money(owner, people):
    admin, alice, bob = people["admin"], people["alice"], people["bob"]
    owner.execute("select admin.set_user_status(%s, %s, 'frozen', 'Suspeita de fraude')", (admin, alice))
    assert one(owner, "select status, frozen_reason from core.users where id = %s", alice) == {
        "status": "frozen", "frozen_reason": "Suspeita de fraude"}
    expect("BSA02", owner, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 1, 'k1')", alice)
    expect("BSA02", owner, "select * from api.transfer(%s, 'alice@example.com', 'BRL', 1, 'k2')", bob)
    expect("BSA01", owner, "select admin.set_user_status(%s, %s, 'active', 'Eu mesmo')", bob, alice)
    expect("BSA01", owner, "select admin.set_user_status(%s, %s, 'frozen', 'Eu mesmo')", admin, admin)
    expect("BSV01", owner, "select admin.set_user_status(%s, %s, 'closed', 'Encerrar')", admin, alice)
    expect("BSN01", owner, "select admin.set_user_status(%s, 987654321, 'frozen', 'Fantasma')", admin)
    owner.execute("select admin.set_user_status(%s, %s, 'active', 'Verificado')", (admin, alice))
    assert transfer(owner, alice, "bob@example.com", "BRL", Decimal("1"), "k1")["replayed"] is False
    actions = [r["action"] for r in owner.execute(
        "select action from core.admin_audit_log where target_user_id = %s and action like '%%freeze%%' order by id",
        (alice,))]
    assert actions == ["freeze_user", "unfreeze_user"]
    books(owner)


# ---------------------------------------------------------------------------
# holds
# ---------------------------------------------------------------------------

def test_hold_moves_available_to_locked_and_resolves_once(owner, people):
    alice, bob = people["alice"], people["bob"]
    hold = place_hold(owner, alice, "BRL", Decimal("100.00"), "withdrawal", "w-1")
    assert (balance(owner, alice, "BRL"), balance(owner, alice, "BRL", "locked")) == (Decimal("9900.00"), Decimal("100.00"))
    books(owner)
    owner.execute("select core.release_hold(%s)", (hold,))
    assert (balance(owner, alice, "BRL"), balance(owner, alice, "BRL", "locked")) == (Decimal("10000.00"), 0)
    expect("BSH01", owner, "select core.release_hold(%s)", hold)
    expect("BSH01", owner, "select core.resolve_hold(%s, 'capture', 'ref', %s::bigint[], %s::numeric[])",
           hold, [account(owner, bob, "BRL")], [Decimal("1")])
    expect("BSH01", owner, "select core.split_hold(%s, 1, 'other', 'ref')", hold)
    captured = place_hold(owner, alice, "BRL", Decimal("10.00"))
    capture(owner, captured, [account(owner, bob, "BRL")], [Decimal("10.00")])
    expect("BSH01", owner, "select core.release_hold(%s)", captured)
    expect("BSN01", owner, "select core.release_hold(987654321)")
    statuses = owner.execute("select status, captured from core.holds where id in (%s, %s) order by id",
                             (hold, captured)).fetchall()
    assert statuses == [{"status": "released", "captured": 0}, {"status": "captured", "captured": Decimal("10.00")}]
    assert one(owner, "select count(*) as n from core.entries where resolves_hold_id in (%s, %s)", hold, captured)["n"] == 2
    books(owner)


def test_capture_larger_than_the_hold_is_refused_and_partial_capture_releases_the_rest(owner, people):
    alice, bob = people["alice"], people["bob"]
    hold = place_hold(owner, alice, "BRL", Decimal("100.00"))
    bob_acc = account(owner, bob, "BRL")
    expect("BSH03", owner, "select core.resolve_hold(%s, 'capture', 'ref', %s::bigint[], %s::numeric[])",
           hold, [bob_acc], [Decimal("100.01")])
    expect("BSH03", owner, "select core.resolve_hold(%s, 'capture', 'ref', %s::bigint[], %s::numeric[])",
           hold, [bob_acc, bob_acc], [Decimal("60"), Decimal("40.01")])
    # a destination in another currency cannot balance
    expect("BSX01", owner, "select core.resolve_hold(%s, 'capture', 'ref', %s::bigint[], %s::numeric[])",
           hold, [account(owner, bob, "BTC")], [Decimal("1")])
    fees = one(owner, "select core.fee_account('BRL', 'h') as id")["id"]
    capture(owner, hold, [bob_acc, fees], [Decimal("29.70"), Decimal("0.30")])
    assert balance(owner, alice, "BRL") == Decimal("9970.00")
    assert balance(owner, alice, "BRL", "locked") == 0
    assert balance(owner, bob, "BRL") == Decimal("5029.70")
    assert one(owner, "select status, captured from core.holds where id = %s", hold) == {
        "status": "captured", "captured": Decimal("30.00")}
    books(owner)


def test_an_expired_hold_cannot_be_captured_but_can_be_released(owner, people):
    alice, bob = people["alice"], people["bob"]
    hold = one(owner, "select core.place_hold(%s, 'BTC', 0.01, 'test', 'ref', now() - interval '1 minute') as id",
               alice)["id"]
    expect("BSH02", owner, "select core.resolve_hold(%s, 'capture', 'ref', %s::bigint[], %s::numeric[])",
           hold, [account(owner, bob, "BTC")], [Decimal("0.01")])
    live = one(owner, "select core.place_hold(%s, 'BTC', 0.01, 'test', 'ref', now() + interval '1 hour') as id",
               alice)["id"]
    capture(owner, live, [account(owner, bob, "BTC")], [Decimal("0.005")])
    owner.execute("select core.release_hold(%s)", (hold,))
    assert balance(owner, alice, "BTC") == Decimal("0.04500000")
    assert balance(owner, alice, "BTC", "locked") == 0
    books(owner)


def test_split_hold_keeps_locked_equal_to_open_holds(owner, people):
    alice, bob = people["alice"], people["bob"]
    hold = place_hold(owner, alice, "USDT", Decimal("100"), "p2p_offer", "offer-1",
                      expires_at=None)
    split = one(owner, "select * from core.split_hold(%s, 40, 'p2p_trade', 'trade-1')", hold)
    taken, rest = split["taken_hold_id"], split["remainder_hold_id"]
    holds = {r["id"]: r for r in owner.execute("select * from core.holds where id in (%s, %s, %s)", (hold, taken, rest))}
    assert holds[hold]["status"] == "split"
    assert (holds[taken]["amount"], holds[taken]["purpose"], holds[taken]["split_from"]) == (40, "p2p_trade", hold)
    assert (holds[rest]["amount"], holds[rest]["purpose"], holds[rest]["status"]) == (60, "p2p_offer", "open")
    assert balance(owner, alice, "USDT", "locked") == 100
    assert owner.execute("select * from reporting.held_mismatches").fetchall() == []
    books(owner)
    expect("BSH01", owner, "select core.release_hold(%s)", hold)
    expect("BSH03", owner, "select core.split_hold(%s, 60.000001, 'p2p_trade', 'trade-2')", rest)
    expect("BSV02", owner, "select core.split_hold(%s, 0.0000001, 'p2p_trade', 'trade-2')", rest)
    whole = one(owner, "select * from core.split_hold(%s, 60, 'p2p_trade', 'trade-2')", rest)
    assert whole["remainder_hold_id"] is None
    capture(owner, taken, [account(owner, bob, "USDT")], [Decimal("40")])
    owner.execute("select core.release_hold(%s)", (whole["taken_hold_id"],))
    assert balance(owner, alice, "USDT", "locked") == 0
    assert balance(owner, alice, "USDT") == Decimal("1960")
    assert balance(owner, bob, "USDT") == Decimal("1540")
    books(owner)


# ---------------------------------------------------------------------------
# wallet and statement
# ---------------------------------------------------------------------------

def test_wallet_and_statement(owner, people):
    alice, bob = people["alice"], people["bob"]
    rows = owner.execute("select * from api.get_wallet(%s)", (alice,)).fetchall()
    assert [(r["currency"], r["scale"], r["available"], r["locked"]) for r in rows] == [
        ("BRL", 2, Decimal("10000.00"), 0), ("BTC", 8, Decimal("0.05"), 0),
        ("ETH", 18, Decimal("1.5"), 0), ("USDT", 6, Decimal("2000"), 0)]
    for i in range(7):
        transfer(owner, alice, "bob@example.com", "BRL", Decimal("1.00"), f"s-{i}")
    hold = place_hold(owner, alice, "BRL", Decimal("5.00"))
    page1 = owner.execute("select * from api.get_statement(%s, 'BRL', 1, 4)", (alice,)).fetchall()
    page3 = owner.execute("select * from api.get_statement(%s, 'BRL', 3, 4)", (alice,)).fetchall()
    # 1 seed + 7 transfers + the hold's two legs (available and locked)
    assert page1[0]["total_rows"] == 10 and len(page1) == 4 and len(page3) == 2
    # newest first; the hold is one entry with a leg on each bucket
    assert page1[0]["entry_id"] == page1[1]["entry_id"] > page1[2]["entry_id"] > page1[3]["entry_id"]
    assert {r["bucket"]: r["balance_after"] for r in page1[:2]} == {"available": Decimal("9988.00"),
                                                                    "locked": Decimal("5.00")}
    assert [r["balance_after"] for r in page1[2:]] == [Decimal("9993.00"), Decimal("9994.00")]
    assert page3[-1]["kind"] == "adjustment" and page3[-1]["balance_after"] == Decimal("10000.00")
    assert owner.execute("select * from api.get_statement(%s, 'BRL', 4, 4)", (alice,)).fetchall() == []
    assert owner.execute("select count(*) as n from api.get_statement(%s, 'BRL', 1, 200)", (bob,)).fetchone()["n"] == 8
    expect("BSV01", owner, "select * from api.get_statement(%s, 'BRL', 0, 20)", alice)
    expect("BSV01", owner, "select * from api.get_statement(%s, 'BRL', 1, 201)", alice)
    expect("BSN01", owner, "select * from api.get_statement(%s, 'XYZ', 1, 20)", alice)
    owner.execute("select core.release_hold(%s)", (hold,))
    books(owner)


# ---------------------------------------------------------------------------
# admin.check_books
# ---------------------------------------------------------------------------

def test_check_books_is_clean_after_normal_operations(owner, people):
    admin, alice, bob = people["admin"], people["alice"], people["bob"]
    owner.execute("update core.settings set value = '0.5' where name = 'transfer_fee_percent'")
    transfer(owner, alice, "bob@example.com", "BRL", Decimal("250.00"), "n1")
    transfer(owner, bob, "alice@example.com", "ETH", Decimal("0.123456789012345678"), "n2")
    adjust(owner, admin, bob, "USDT", Decimal("-10"), "n3", "Estorno de teste")
    h1 = place_hold(owner, alice, "BTC", Decimal("0.02"))
    capture(owner, h1, [account(owner, bob, "BTC")], [Decimal("0.015")])
    h2 = place_hold(owner, bob, "BRL", Decimal("100"))
    parts = one(owner, "select * from core.split_hold(%s, 30, 'other', 'ref')", h2)
    owner.execute("select core.release_hold(%s)", (parts["taken_hold_id"],))
    assert failures(owner) == set()
    assert owner.execute("select * from reporting.books_health").fetchall() == []
    books(owner)


def _plant_first_posting(owner, people, sql_for_posting: str):
    owner.execute("alter table core.postings disable trigger postings_immutable")
    posting = one(owner, "select entry_id, leg from core.postings where account_id = core.user_account(%s, 'BRL') "
                         "order by account_version limit 1", people["alice"])
    owner.execute(sql_for_posting, (posting["entry_id"], posting["leg"]))
    owner.execute("alter table core.postings enable trigger postings_immutable")


def _negative_balance(owner, people):
    # the CHECK forbids it, so drop that CHECK first (in this throwaway database only)
    name = one(owner, """select conname from pg_constraint where conrelid = 'core.accounts'::regclass and contype = 'c'
                         and pg_get_constraintdef(oid) like '%%must_not_go_negative%%balance%%'""")["conname"]
    owner.execute(f"alter table core.accounts drop constraint {name}")
    # move 10000.01 out of alice's BRL, straight into bob's: zero-sum still holds
    owner.execute("update core.accounts set balance = balance - 10000.01 where id = core.user_account(%s, 'BRL')",
                  (people["alice"],))
    owner.execute("update core.accounts set balance = balance + 10000.01 where id = core.user_account(%s, 'BRL')",
                  (people["bob"],))


def _open_hold(owner, people) -> int:
    return place_hold(owner, people["alice"], "BRL", Decimal("10"))


PLANTS = {
    "cached_balance": (lambda o, p: o.execute(
        "update core.accounts set balance = balance + 1 where id = core.user_account(%s, 'BRL')", (p["alice"],)),
        {"cached_balance", "zero_sum"}),
    "version": (lambda o, p: o.execute(
        "update core.accounts set version = version + 1 where id = core.user_account(%s, 'BRL')", (p["alice"],)),
        {"cached_balance"}),
    "balance_after": (lambda o, p: _plant_first_posting(
        o, p, "update core.postings set balance_after = balance_after + 1 where entry_id = %s and leg = %s"),
        {"broken_chain"}),
    "posting_amount": (lambda o, p: _plant_first_posting(
        o, p, "update core.postings set amount = amount + 1, balance_after = balance_after + 1 "
              "where entry_id = %s and leg = %s"),
        {"unbalanced_entry", "cached_balance"}),
    "deleted_posting": (lambda o, p: _plant_first_posting(
        o, p, "delete from core.postings where entry_id = %s and leg = %s"),
        {"unbalanced_entry", "broken_chain", "cached_balance"}),
    "negative_balance": (_negative_balance, {"negative_balance", "cached_balance"}),
    "hold_amount": (lambda o, p: o.execute("update core.holds set amount = amount + 1 where id = %s",
                                           (_open_hold(o, p),)),
                    {"held_mismatch"}),
    "hold_vanished": (lambda o, p: o.execute(
        "update core.holds set status = 'released', resolved_at = now() where id = %s", (_open_hold(o, p),)),
        {"held_mismatch", "hold_resolution"}),
    "currency": (lambda o, p: (
        o.execute("alter table core.postings disable trigger all"),
        _plant_first_posting(o, p, "update core.postings set currency = 'BTC' where entry_id = %s and leg = %s"),
        o.execute("alter table core.postings enable trigger all")),
        {"currency_mismatch"}),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_check_books_finds_planted_corruption(owner, people, plant):
    transfer(owner, people["alice"], "bob@example.com", "BRL", Decimal("10.00"), "before")
    assert failures(owner) == set()
    corrupt, expected = PLANTS[plant]
    corrupt(owner, people)
    found = failures(owner)
    assert expected <= found, found
    # the same, as the app role sees it (the worker's reconciliation job)
    from webapp.config import role_url
    with psycopg.connect(role_url(owner.info.dsn, "exchange_app")) as app:
        assert {r[0] for r in app.execute("select check_name from admin.check_books()")} == found
    with pytest.raises(AssertionError):
        books(owner)


def test_idempotency_keys_are_scoped_per_operation(owner, people):
    """A customer's key cannot block an admin operation that happens to use the same key."""
    admin, alice = people["admin"], people["alice"]
    owner.execute("select * from api.transfer(%s, 'bob@example.com', 'BRL', 1.00, 'adjust:X')", (alice,))
    owner.execute("select * from api.transfer(%s, 'bob@example.com', 'BRL', 1.00, 'shared-key')", (alice,))
    row = owner.execute("select * from admin.adjust_balance(%s, %s, 'BRL', 5.00, 'correção de teste', 'X')",
                        (admin, alice)).fetchone()
    assert row["replayed"] is False
    # the same key in another operation of the same user is independent too
    again = owner.execute("select * from admin.adjust_balance(%s, %s, 'BRL', 5.00, 'correção de teste', 'X')",
                          (admin, alice)).fetchone()
    assert again["replayed"] is True and again["entry_id"] == row["entry_id"]
    books(owner)
