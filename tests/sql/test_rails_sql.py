"""The BRL rails at the SQL level (sql/deposits.sql, sql/withdrawals.sql):
privileges and function hygiene first, then every error code by its code, the
state machines, SKIP LOCKED claiming, and the P2P glue."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import books
from webapp.config import role_url

RAILS_FUNCTIONS = [
    "api.create_deposit", "api.get_deposit", "api.list_deposits", "api.get_withdrawable",
    "api.create_withdrawal", "api.cancel_withdrawal", "api.list_withdrawals",
    "admin.attach_pix_charge", "admin.note_pix_charge_error", "admin.pix_charges_to_attach", "admin.fail_pix_charge",
    "admin.expire_pix_charge", "admin.pix_charges_to_reconcile", "admin.confirm_pix_charge",
    "admin.create_p2p_pix_charge", "admin.resolve_deposit_review", "admin.list_deposit_reviews",
    "admin.claim_withdrawals", "admin.record_withdrawal_payout", "admin.complete_withdrawal", "admin.fail_withdrawal",
    "admin.withdrawals_to_recheck", "admin.approve_withdrawal", "admin.reject_withdrawal", "admin.list_withdrawals",
]


@pytest.fixture
def app_conn(db_url):
    with psycopg.connect(role_url(db_url, "exchange_app"), autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def worker_conn(db_url):
    """What the worker books (a PIX paid, a payout made) only its role may call."""
    with psycopg.connect(role_url(db_url, "exchange_worker"), autocommit=True, row_factory=dict_row) as conn:
        yield conn


OWN_CPF = {"alice@example.com": "52601815906", "bob@example.com": "08301661305"}


def code_of(conn, sql, params=()):
    with pytest.raises(psycopg.Error) as err:
        conn.execute(sql, params)
    return err.value.sqlstate


def one(conn, sql, params=()):
    return conn.execute(sql, params).fetchone()


def deposit(conn, user_id, amount="100.00", key=None, provider="mercadopago"):
    return one(conn, "select * from api.create_deposit(%s, %s, %s, %s)",
               (user_id, Decimal(amount), provider, key or f"k-{amount}-{datetime.now().timestamp()}"))


def credit(conn, reference, amount, payment_id):
    return one(conn, "select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'approved', %s)",
               (reference, payment_id, Decimal(amount)))


def withdraw(conn, user_id, amount, key_type="CPF", key=None, idem=None):
    """A withdrawal to the customer's own CPF (alice's, unless another key is given)."""
    return one(conn, "select * from api.create_withdrawal(%s, %s, %s, %s, %s)",
               (user_id, Decimal(amount), key_type, key or OWN_CPF["alice@example.com"],
                idem or f"w-{amount}-{datetime.now().timestamp()}"))


# --------------------------------------------------------------------------- hygiene

def test_functions_are_definer_pinned_commented_and_not_public(owner):
    rows = owner.execute("""
        select n.nspname || '.' || p.proname as name, p.prosecdef, p.proconfig,
               obj_description(p.oid, 'pg_proc') as comment,
               has_function_privilege('public', p.oid, 'execute') as public_exec,
               has_function_privilege('exchange_app', p.oid, 'execute')
                 or has_function_privilege('exchange_worker', p.oid, 'execute') as app_exec,
               has_function_privilege('exchange_admin', p.oid, 'execute') as admin_exec
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname || '.' || p.proname = any(%s)""", (RAILS_FUNCTIONS,)).fetchall()
    assert sorted(r["name"] for r in rows) == sorted(RAILS_FUNCTIONS)
    for r in rows:
        assert r["prosecdef"] and "search_path=pg_catalog, pg_temp" in r["proconfig"], r["name"]
        assert r["comment"] and not r["public_exec"] and r["app_exec"], r["name"]
        assert r["admin_exec"] == r["name"].startswith("admin."), r["name"]
    for view in ("pix_charges", "pix_charges_attention", "withdrawals", "withdrawal_mismatches"):
        assert owner.execute("select obj_description(%s::regclass, 'pg_class') as c",
                             (f"reporting.{view}",)).fetchone()["c"]


def test_app_role_cannot_touch_the_tables(app_conn, demo):
    assert code_of(app_conn, "insert into core.pix_charges (user_id, purpose, reference, amount, provider, expires_at) "
                             "values (3, 'deposit', 'dep-1', 1, 'mercadopago', now())") == "42501"
    assert code_of(app_conn, "update core.withdrawals set status = 'COMPLETED'") == "42501"
    assert code_of(app_conn, "select * from core.pix_charges") == "42501"


def test_auditor_reads_the_reporting_views(db_url, demo):
    with psycopg.connect(role_url(db_url, "exchange_auditor"), autocommit=True, row_factory=dict_row) as auditor:
        for view in ("pix_charges", "pix_charges_attention", "withdrawals", "withdrawal_mismatches"):
            assert auditor.execute(f"select * from reporting.{view}").fetchall() == []


# --------------------------------------------------------------------------- PIX keys

@pytest.mark.parametrize("key_type, key, canonical", [
    ("CPF", "529.982.247-25", "52998224725"), ("CPF", "19119119100", "19119119100"),
    ("CNPJ", "11.222.333/0001-81", "11222333000181"), ("CNPJ", "12.ABC.345/01DE-35", "12ABC34501DE35"),
    ("EMAIL", " Maria.Silva@Example.COM ", "maria.silva@example.com"),
    ("PHONE", "(11) 91234-5678", "+5511912345678"), ("PHONE", "+55 21 3456-7890", "+552134567890"),
    ("EVP", "123E4567-E89B-42D3-A456-426614174000", "123e4567-e89b-42d3-a456-426614174000"),
])
def test_pix_keys_normalized(owner, key_type, key, canonical):
    assert one(owner, "select core.pix_normalize_key(%s, %s) as k", (key_type, key))["k"] == canonical
    assert one(owner, "select core.pix_key_is_valid(%s, %s) as ok", (key_type, key))["ok"] is True


@pytest.mark.parametrize("key_type, key", [
    ("CPF", "123.456.789-00"), ("CPF", "11111111111"), ("CPF", "5299822472"), ("CNPJ", "11222333000182"),
    ("CNPJ", "00000000000000"), ("EMAIL", "maria@"), ("PHONE", "12345"), ("EVP", "not-a-uuid"),
    ("BOLETO", "x"), ("CPF", ""),
])
def test_bad_pix_keys_are_bsv01(owner, key_type, key):
    assert code_of(owner, "select core.pix_normalize_key(%s, %s)", (key_type, key)) == "BSV01"
    assert one(owner, "select core.pix_key_is_valid(%s, %s) as ok", (key_type, key))["ok"] is False


def test_cnpj_check_digits(owner):
    assert one(owner, "select core.is_valid_cnpj('11222333000181') as ok")["ok"]
    assert not one(owner, "select core.is_valid_cnpj('11222333000180') as ok")["ok"]
    assert one(owner, "select core.is_valid_cnpj('12345678000195') as ok")["ok"]


# --------------------------------------------------------------------------- deposits

def test_deposit_error_codes(app_conn, owner, demo):
    alice, admin = demo["alice@example.com"], demo["admin@example.com"]
    assert code_of(app_conn, "select * from api.create_deposit(%s, 5, 'mercadopago', 'a')", (alice,)) == "BSV01"
    assert code_of(app_conn, "select * from api.create_deposit(%s, 60000, 'mercadopago', 'a')", (alice,)) == "BSL01"
    assert code_of(app_conn, "select * from api.create_deposit(%s, 10.001, 'mercadopago', 'a')", (alice,)) == "BSV02"
    assert code_of(app_conn, "select * from api.create_deposit(%s, -1, 'mercadopago', 'a')", (alice,)) == "BSV03"
    assert code_of(app_conn, "select * from api.create_deposit(%s, 10, 'paypal', 'a')", (alice,)) == "BSV01"
    assert code_of(app_conn, "select * from api.create_deposit(%s, 10, 'mercadopago', 'a')", (admin,)) == "BSA01"
    first = deposit(app_conn, alice, "10.00", key="same")
    assert deposit(app_conn, alice, "10.00", key="same")["deposit_id"] == first["deposit_id"]
    assert code_of(app_conn, "select * from api.create_deposit(%s, 11, 'mercadopago', 'same')", (alice,)) == "BSI01"
    owner.execute("update core.users set status = 'frozen' where id = %s", (alice,))
    assert code_of(app_conn, "select * from api.create_deposit(%s, 10, 'mercadopago', 'b')", (alice,)) == "BSA02"
    owner.execute("update core.kyc_limits set daily_deposit_brl = 15 where kyc_level = 2")
    owner.execute("update core.users set status = 'active' where id = %s", (alice,))
    assert code_of(app_conn, "select * from api.create_deposit(%s, 10, 'mercadopago', 'c')", (alice,)) == "BSL01"


def test_confirm_state_machine(app_conn, owner, demo, worker_conn):
    alice = demo["alice@example.com"]
    before = one(owner, "select balance from core.accounts where id = core.user_account(%s, 'BRL')", (alice,))["balance"]
    d = deposit(app_conn, alice, "42.00")
    assert code_of(worker_conn, "select * from admin.confirm_pix_charge('dep-999999', 'mercadopago', 'x', 'approved', 1)") == "BSN01"
    assert code_of(worker_conn, "select * from admin.confirm_pix_charge(%s, 'inter', 'x', 'approved', 42)",
                   (d["reference"],)) == "BSV01"
    assert code_of(worker_conn, "select * from admin.confirm_pix_charge(%s, 'mercadopago', 'x', 'weird', 42)",
                   (d["reference"],)) == "BSV01"
    pending = one(worker_conn, "select * from admin.confirm_pix_charge(%s, 'mercadopago', 'pay-1', 'pending')",
                  (d["reference"],))
    assert pending["outcome"] == "pending"
    other = one(worker_conn, "select * from admin.confirm_pix_charge(%s, 'mercadopago', 'pay-2', 'approved', 42)",
                (d["reference"],))
    assert other["outcome"] == "other_payment"                    # a second payment is never booked by itself
    assert credit(worker_conn, d["reference"], "42.00", "pay-1")["outcome"] == "credited"
    again = credit(worker_conn, d["reference"], "42.00", "pay-1")
    assert again["outcome"] == "credited" and again["replayed"] is True
    late_expiry = one(worker_conn, "select * from admin.confirm_pix_charge(%s, 'mercadopago', 'pay-1', 'expired')",
                      (d["reference"],))
    assert late_expiry["charge_status"] == "PAID" and late_expiry["replayed"]
    after = one(owner, "select balance from core.accounts where id = core.user_account(%s, 'BRL')", (alice,))["balance"]
    assert after == before + 42
    # attach is idempotent for the same payment and refuses another one
    assert one(app_conn, "select admin.attach_pix_charge(%s, 'mercadopago', 'pay-1', 'qr', null) as r",
               (d["deposit_id"],))["r"] is False
    assert code_of(app_conn, "select admin.attach_pix_charge(%s, 'mercadopago', 'pay-9', 'qr', null)",
                   (d["deposit_id"],)) == "BSS01"
    books(owner)


def test_resolve_review_needs_admin_and_review(app_conn, owner, demo, worker_conn):
    alice, admin = demo["alice@example.com"], demo["admin@example.com"]
    d = deposit(app_conn, alice, "50.00")
    assert code_of(app_conn, "select admin.resolve_deposit_review(%s, %s, true, 'ok ok')", (admin, d["deposit_id"])) == "BSS01"
    assert credit(worker_conn, d["reference"], "49.00", "pay-r")["outcome"] == "review"
    assert code_of(app_conn, "select admin.resolve_deposit_review(%s, %s, true, 'ok ok')", (alice, d["deposit_id"])) == "BSA01"
    assert one(app_conn, "select admin.resolve_deposit_review(%s, %s, false, 'valor errado, devolver') as r",
               (admin, d["deposit_id"]))["r"] == "REJECTED"
    books(owner)


def test_reconcile_and_attach_queues(app_conn, owner, demo, worker_conn):
    alice = demo["alice@example.com"]
    d = deposit(app_conn, alice, "20.00")
    assert worker_conn.execute("select * from admin.pix_charges_to_attach(10, 30)").fetchall() == []   # too young
    owner.execute("update core.pix_charges set created_at = now() - interval '1 minute' where id = %s", (d["deposit_id"],))
    assert worker_conn.execute("select * from admin.pix_charges_to_attach(10, 30)").fetchall()[0]["charge_id"] == d["deposit_id"]
    assert worker_conn.execute("select * from admin.pix_charges_to_attach(10, 30)").fetchall() == []   # stamped
    owner.execute("update core.settings set value = '0' where name = 'deposit_reconcile_after_minutes'")
    assert len(worker_conn.execute("select * from admin.pix_charges_to_reconcile(10)").fetchall()) == 1
    # not expired yet: expire_pix_charge refuses; once past expiry it expires it
    assert one(worker_conn, "select admin.expire_pix_charge(%s) as r", (d["deposit_id"],))["r"] is False
    owner.execute("update core.pix_charges set expires_at = now() - interval '1 hour' where id = %s", (d["deposit_id"],))
    assert one(worker_conn, "select admin.expire_pix_charge(%s) as r", (d["deposit_id"],))["r"] is True
    assert one(app_conn, "select admin.fail_pix_charge(%s, 'x') as r", (d["deposit_id"],))["r"] is False
    books(owner)


# --------------------------------------------------------------------------- withdrawals

def test_withdrawal_error_codes_and_transitions(app_conn, owner, demo, worker_conn):
    alice, bob, admin = demo["alice@example.com"], demo["bob@example.com"], demo["admin@example.com"]
    assert code_of(app_conn, "select * from api.create_withdrawal(%s, 20, 'CPF', '12345678900', 'x')", (alice,)) == "BSV01"
    assert code_of(app_conn, "select * from api.create_withdrawal(%s, 5, 'CPF', '52601815906', 'x')", (alice,)) == "BSV01"
    assert code_of(app_conn, "select * from api.create_withdrawal(%s, 20, 'CPF', '52998224725', 'x')", (alice,)) == "BSV01"  # not hers
    assert code_of(app_conn, "select * from api.create_withdrawal(%s, 99999, 'CPF', '52601815906', 'x')", (alice,)) == "BSF01"
    w = withdraw(app_conn, alice, "100.00", idem="w1")
    assert withdraw(app_conn, alice, "100.00", idem="w1")["replayed"] is True
    assert code_of(app_conn, "select * from api.create_withdrawal(%s, 101, 'CPF', '52601815906', 'w1')", (alice,)) == "BSI01"
    wid = w["withdrawal_id"]
    assert code_of(app_conn, "select api.cancel_withdrawal(%s, %s)", (bob, wid)) == "BSN01"
    assert code_of(worker_conn, "select admin.complete_withdrawal(%s)", (wid,)) == "BSS01"        # not processing
    assert code_of(app_conn, "select admin.approve_withdrawal(%s, %s)", (admin, wid)) == "BSS01"  # not awaiting
    assert code_of(app_conn, "select admin.approve_withdrawal(%s, %s)", (alice, wid)) == "BSA01"
    assert code_of(worker_conn, "select * from admin.claim_withdrawals('paypal')") == "BSV01"
    claimed = worker_conn.execute("select * from admin.claim_withdrawals('mercadopago', 5)").fetchall()
    assert [c["withdrawal_id"] for c in claimed] == [wid] and claimed[0]["attempts"] == 1
    assert code_of(app_conn, "select api.cancel_withdrawal(%s, %s)", (alice, wid)) == "BSS01"
    assert code_of(app_conn, "select admin.reject_withdrawal(%s, %s, 'motivo qualquer')", (admin, wid)) == "BSS01"
    assert one(worker_conn, "select admin.fail_withdrawal(%s, 'recusado pelo banco') as r", (wid,))["r"] is True
    assert one(worker_conn, "select admin.fail_withdrawal(%s, 'de novo') as r", (wid,))["r"] is False
    assert code_of(worker_conn, "select admin.complete_withdrawal(%s)", (wid,)) == "BSS01"
    assert code_of(app_conn, "select api.cancel_withdrawal(%s, 999999)", (alice,)) == "BSN01"
    books(owner)


def test_claim_skips_rows_locked_elsewhere(db_url, app_conn, owner, demo, worker_conn):
    alice = demo["alice@example.com"]
    first = withdraw(app_conn, alice, "10.00")["withdrawal_id"]
    second = withdraw(app_conn, alice, "11.00")["withdrawal_id"]
    with psycopg.connect(db_url) as other:            # e.g. the customer cancelling right now
        other.execute("select 1 from core.withdrawals where id = %s for update", (first,))
        claimed = worker_conn.execute("select * from admin.claim_withdrawals('mercadopago', 10)").fetchall()
        assert [c["withdrawal_id"] for c in claimed] == [second]
    assert [c["withdrawal_id"] for c in worker_conn.execute(
        "select * from admin.claim_withdrawals('mercadopago', 10)").fetchall()] == [first]
    # frozen customers' withdrawals wait
    third = withdraw(app_conn, alice, "12.00")["withdrawal_id"]
    owner.execute("update core.users set status = 'frozen' where id = %s", (alice,))
    assert worker_conn.execute("select * from admin.claim_withdrawals('mercadopago', 10)").fetchall() == []
    assert one(owner, "select status from core.withdrawals where id = %s", (third,))["status"] == "PENDING"
    books(owner)


def test_maturation_in_sql(app_conn, owner, demo, worker_conn):
    alice = demo["alice@example.com"]
    owner.execute("update core.settings set value = '24' where name = 'deposit_maturation_hours'")
    d = deposit(app_conn, alice, "500.00")
    credit(worker_conn, d["reference"], "500.00", "m-1")
    w = one(app_conn, "select * from api.get_withdrawable(%s)", (alice,))
    assert w["available"] == Decimal("10500.00") and w["maturing"] == 500 and w["withdrawable"] == 10000
    with pytest.raises(psycopg.Error) as err:
        withdraw(app_conn, alice, "10100.00")
    assert err.value.sqlstate == "BSL01" and "fica liberado em" in err.value.diag.message_primary
    assert withdraw(app_conn, alice, "10000.00")["status"] in ("PENDING", "AWAITING_APPROVAL")
    owner.execute("update core.settings set value = '0' where name = 'deposit_maturation_hours'")
    assert one(app_conn, "select * from api.get_withdrawable(%s)", (alice,))["withdrawable"] == 500
    books(owner)


def test_maturing_deposits_cannot_leave_through_a_transfer(app_conn, owner, demo, worker_conn):
    """Sending immature BRL to another customer (who could withdraw it at once) is refused too."""
    alice = demo["alice@example.com"]
    owner.execute("update core.settings set value = '24' where name = 'deposit_maturation_hours'")
    d = deposit(app_conn, alice, "500.00")
    credit(worker_conn, d["reference"], "500.00", "m-2")
    with pytest.raises(psycopg.Error) as err:
        one(app_conn, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 10100.00, 't-1')", (alice,))
    assert err.value.sqlstate == "BSL01" and "MED" in err.value.diag.message_primary
    assert one(app_conn, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 10000.00, 't-2')",
               (alice,))["replayed"] is False
    books(owner)


def test_the_customers_maturing_until_follows_deposits_and_the_window(app_conn, owner, demo, worker_conn):
    """users.exposure_until (what api.transfer reads instead of looking at the credits) is never early."""
    alice = demo["alice@example.com"]

    def until():
        return one(owner, "select exposure_until as t from core.users where id = %s", (alice,))["t"]

    owner.execute("update core.settings set value = '24' where name = 'deposit_maturation_hours'")
    d = deposit(app_conn, alice, "500.00")
    assert until() is None                                              # a charge not yet paid
    credit(worker_conn, d["reference"], "500.00", "m-3")
    paid = one(owner, "select resolved_at as t from core.pix_charges where id = %s", (d["deposit_id"],))["t"]
    assert until() == paid + timedelta(hours=24)
    owner.execute("update core.settings set value = '48' where name = 'deposit_maturation_hours'")
    assert until() == paid + timedelta(hours=48)                        # a longer window applies at once
    owner.execute("update core.settings set value = '24' where name = 'deposit_maturation_hours'")
    assert until() == paid + timedelta(hours=24)
    with pytest.raises(psycopg.Error) as err:
        one(app_conn, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 10100.00, 't-3')", (alice,))
    assert err.value.sqlstate == "BSL01"
    # a day later the deposit has matured: the transfer goes through (the exact check decides)
    owner.execute("update core.reversible_credits set credited_at = credited_at - interval '25 hours', "
                  "matures_at = matures_at - interval '25 hours' where pix_charge_id = %s", (d["deposit_id"],))
    assert one(app_conn, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 10100.00, 't-4')",
               (alice,))["replayed"] is False
    owner.execute("update core.settings set value = '24' where name = 'deposit_maturation_hours'")
    assert until() == paid - timedelta(hours=1)                         # recomputed from the credits
    books(owner)


# --------------------------------------------------------------------------- P2P glue

def test_p2p_charge_is_attached_to_the_trade_and_settled_by_p2p(app_conn, owner, demo, worker_conn):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    owner.execute("insert into core.prices (symbol, price) values ('BTCBRL', 300000)")   # fixed prices are checked
    owner.execute("insert into core.kyc_profiles (user_id, full_name, cpf, birth_date, address) values "
                  "(%s, 'Alice Souza', '52998224725', '1990-01-01', 'Rua A, 1') on conflict do nothing", (alice,))
    offer = one(app_conn, "select * from api.create_p2p_offer(%s, 'SELL', 'BTC', 'fixed', 0.01, 10, 5000, "
                          "array['PIX_CONFIRMED'], 'offer-1', fixed_price => 300000)", (bob,))
    trade = one(app_conn, "select * from api.open_p2p_trade(%s, %s, 'PIX_CONFIRMED', 'trade-1', brl_amount => 300)",
                (alice, offer["offer_id"]))
    tid = trade["trade_id"]
    expires = datetime.now(timezone.utc) + timedelta(minutes=40)
    assert code_of(app_conn, "select * from admin.create_p2p_pix_charge(%s, 299, 'mercadopago', %s)", (tid, expires)) == "BSV01"
    row = one(app_conn, "select * from admin.create_p2p_pix_charge(%s, 300, 'mercadopago', %s)", (tid, expires))
    assert row["reference"] == f"p2p-{tid}" and row["created"] is True and row["payer_email"] == "alice@example.com"
    assert one(app_conn, "select * from admin.create_p2p_pix_charge(%s, 300, 'mercadopago', %s)",
               (tid, expires))["created"] is False
    assert one(app_conn, "select admin.attach_pix_charge(%s, 'mercadopago', 'mp-p2p-1', 'qr-text', 'cG5n') as r",
               (row["charge_id"],))["r"] is True
    t = one(owner, "select * from core.p2p_trades where id = %s", (tid,))
    assert t["pix_provider_payment_id"] == "mp-p2p-1" and t["pix_qr_code"] == "qr-text"

    assert row["payer_cpf"] == one(owner, "select core.rails_payer_cpf(%s) as c", (alice,))["c"]
    done = one(worker_conn, "select * from admin.confirm_pix_charge(%s, 'mercadopago', 'mp-p2p-1', 'approved', 300, %s)",
               (row["reference"], row["payer_cpf"] or "52998224725"))
    expected = "p2p_completed"
    assert done["outcome"] == expected and done["charge_status"] == "PAID"
    again = one(worker_conn, "select * from admin.confirm_pix_charge(%s, 'mercadopago', 'mp-p2p-1', 'approved', 300)",
                (row["reference"],))
    assert again["replayed"] is True and again["outcome"] == expected
    assert one(owner, "select status from core.p2p_trades where id = %s", (tid,))["status"] == \
        ("COMPLETED" if expected == "p2p_completed" else "REVIEW")
    books(owner)
