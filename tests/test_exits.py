"""Money exits are safe: the attacks that once moved value out without the rules,
each replayed against the database as the web (exchange_app) and the worker
(exchange_worker) call it. After every scenario the books are checked.

The exit policy (sql/exits.sql): while PIX credits can still be clawed back
(MED), an exit must leave the customer assets at the bid worth at least that
reversible exposure; exits of one customer run one at a time; with 2FA on the
database wants a fresh TOTP code; a clawback is journaled against whoever got
the money and blocks their exits."""
from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import psycopg
import pyotp
import pytest
from werkzeug.security import generate_password_hash

from tests.conftest import DEMO_PASSWORD, books, enable_totp, totp_code
from webapp.config import role_url

def sqlstate(conn, statement, params=()):
    try:
        conn.execute(statement, params)
    except psycopg.Error as exc:
        return exc.diag.sqlstate
    return None


def one(conn, statement, params=()):
    return conn.execute(statement, params).fetchone()


def balance(owner, user_id, currency="BRL", purpose="available"):
    return one(owner, "select balance from core.accounts where user_id = %s and currency = %s and purpose = %s",
               (user_id, currency, purpose))["balance"]


def customer(owner, email, cpf=None, kyc_level=2):
    user_id = one(owner, "select api.register_user(%s, %s, %s) as id",
                  (email, generate_password_hash(DEMO_PASSWORD, method="pbkdf2:sha256:1000"),
                   email.split("@")[0].title()))["id"]
    owner.execute("update core.users set kyc_level = %s where id = %s", (kyc_level, user_id))
    owner.execute("select core.mark_email_verified(%s)", (user_id,))
    if cpf:
        owner.execute("insert into core.kyc_profiles (user_id, full_name, cpf, birth_date, address) "
                      "values (%s, %s, %s, '1990-01-01', 'Rua A, 1')", (user_id, email, cpf))
    return user_id


def pix_deposit(web, worker, user_id, amount, e2e=None):
    """A PIX deposit paid and confirmed as the worker books it (what the provider's API said)."""
    dep = one(web, "select * from api.create_deposit(%s, %s, 'mercadopago', %s)", (user_id, amount, str(uuid.uuid4())))
    pid = f"pay-{dep['deposit_id']}"
    web.execute("select admin.attach_pix_charge(%s, 'mercadopago', %s, 'qr', null)", (dep["deposit_id"], pid))
    row = one(worker, "select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'approved', %s, null, %s)",
              (dep["reference"], pid, amount, e2e or f"E{dep['deposit_id']:031d}"))
    assert row["outcome"] == "credited"
    return dep["deposit_id"], pid


def transfer(web, sender, to_email, amount, currency="BRL", code=None):
    return one(web, "select * from api.transfer(%s, %s, %s, %s, %s, %s)",
               (sender, to_email, currency, amount, str(uuid.uuid4()), code))


def adjust(owner, admin, user_id, currency, amount):
    owner.execute("select * from admin.adjust_balance(%s, %s, %s, %s, 'funding for a test', %s)",
                  (admin, user_id, currency, amount, str(uuid.uuid4())))


# ---------------------------------------------------------------------------
# Value-based maturation
# ---------------------------------------------------------------------------

def test_fresh_pix_cannot_leave_in_any_currency_but_can_be_traded(owner, web, worker, demo, priced):
    """Fresh PIX BRL → USDT (a fair platform trade is allowed) → transfer the USDT: refused."""
    carla = customer(owner, "carla@example.com", cpf="11144477735")
    bob = demo["bob@example.com"]
    pix_deposit(web, worker, carla, "1000.00")
    # BRL straight out: refused, and the message says how much can leave now
    with pytest.raises(psycopg.Error) as refused:
        transfer(web, carla, "bob@example.com", "10.00")
    assert refused.value.diag.sqlstate == "BSL01"
    assert "R$ 0,00" in refused.value.diag.message_primary and "liberado em" in refused.value.diag.message_primary
    # trading is allowed: buy USDT from bob's offer with the platform balance, at the market price
    offer = one(web, "select * from api.create_p2p_offer(%s, 'SELL', 'USDT', 'fixed', 300, 10, 2000, array['BALANCE'], %s, 5.00)",
                (bob, str(uuid.uuid4())))["offer_id"]
    trade = one(web, "select * from api.open_p2p_trade(%s, %s, 'BALANCE', %s, 500.00)", (carla, offer, str(uuid.uuid4())))
    assert trade["status"] == "COMPLETED"
    assert balance(owner, carla, "USDT") > 0
    # ... but the USDT cannot leave either: it is what covers the exposure
    assert sqlstate(web, "select * from api.transfer(%s, 'bob@example.com', 'USDT', 10, %s)",
                    (carla, str(uuid.uuid4()))) == "BSL01"
    # bob's BRL came from carla's exposure-covered purchase: bob may withdraw it
    books(owner)


def test_an_off_market_platform_trade_cannot_hand_value_to_an_accomplice(owner, web, worker, demo, priced):
    carla = customer(owner, "carla@example.com", cpf="11144477735")
    mule = customer(owner, "mule@example.com", cpf="52998224725")
    adjust(owner, demo["admin@example.com"], mule, "USDT", "20")
    pix_deposit(web, worker, carla, "1000.00")
    # the accomplice sells 10 USDT (worth R$ 50) for R$ 7,49 a unit, the most the price band allows
    offer = one(web, "select * from api.create_p2p_offer(%s, 'SELL', 'USDT', 'fixed', 10, 10, 2000, array['BALANCE'], %s, 7.49)",
                (mule, str(uuid.uuid4())))["offer_id"]
    # paying 74,90 for 50 worth hands value to the accomplice: refused, nothing moved
    assert sqlstate(web, "select * from api.open_p2p_trade(%s, %s, 'BALANCE', %s, 74.90)",
                    (carla, offer, str(uuid.uuid4()))) == "BSL01"
    assert balance(owner, carla) == Decimal("1000.00")
    books(owner)


def test_parallel_exits_never_leave_the_exposure_uncovered(db_url, owner, web, worker, demo, priced):
    """R$ 500 withdrawable and R$ 1.000 maturing, 20 transfers of R$ 500 at once: exactly one passes."""
    carla = customer(owner, "carla@example.com", cpf="11144477735")
    adjust(owner, demo["admin@example.com"], carla, "BRL", "500.00")
    pix_deposit(web, worker, carla, "1000.00")
    results, start = [], threading.Barrier(20)

    def send():
        with psycopg.connect(role_url(db_url, "exchange_app"), autocommit=True) as conn:
            start.wait()
            try:
                conn.execute("select * from api.transfer(%s, 'bob@example.com', 'BRL', 500.00, %s)",
                             (carla, str(uuid.uuid4())))
                results.append("ok")
            except psycopg.Error as exc:
                results.append(exc.diag.sqlstate)
    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1, results
    assert set(results) <= {"ok", "BSL01"}
    assert balance(owner, carla) == Decimal("1000.00")
    books(owner)


def test_fifty_mixed_parallel_exits_against_one_account(db_url, owner, web, worker, demo, priced):
    """Transfers in BRL and USDT and withdrawals at once: what is left always covers the exposure."""
    carla = customer(owner, "carla@example.com", cpf="11144477735")
    adjust(owner, demo["admin@example.com"], carla, "BRL", "600.00")
    adjust(owner, demo["admin@example.com"], carla, "USDT", "100")   # R$ 500 at the quoted price, less at the bid
    pix_deposit(web, worker, carla, "800.00")
    start = threading.Barrier(50)
    outcomes = []

    def act(i):
        with psycopg.connect(role_url(db_url, "exchange_app"), autocommit=True) as conn:
            start.wait()
            try:
                if i % 3 == 0:
                    conn.execute("select * from api.create_withdrawal(%s, 100.00, 'CPF', '11144477735', %s)",
                                 (carla, str(uuid.uuid4())))
                elif i % 3 == 1:
                    conn.execute("select * from api.transfer(%s, 'bob@example.com', 'USDT', 20, %s)",
                                 (carla, str(uuid.uuid4())))
                else:
                    conn.execute("select * from api.transfer(%s, 'bob@example.com', 'BRL', 100.00, %s)",
                                 (carla, str(uuid.uuid4())))
                outcomes.append("ok")
            except psycopg.Error as exc:
                outcomes.append(exc.diag.sqlstate)
    threads = [threading.Thread(target=act, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") >= 1 and set(outcomes) <= {"ok", "BSL01", "BSF01"}, outcomes
    left = one(owner, "select * from core.exit_capacity(%s)", (carla,))
    assert left["assets"] >= left["exposure"] == Decimal("800.00")
    books(owner)


def test_exposure_matures_and_then_everything_can_leave(owner, web, worker, demo, priced):
    carla = customer(owner, "carla@example.com", cpf="11144477735")
    pix_deposit(web, worker, carla, "300.00")
    assert sqlstate(web, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 300.00, %s)",
                    (carla, str(uuid.uuid4()))) == "BSL01"
    capacity = one(web, "select * from api.get_exit_capacity(%s)", (carla,))
    assert capacity["exposure"] == Decimal("300.00") and capacity["can_leave"] == 0
    owner.execute("update core.reversible_credits set credited_at = credited_at - interval '25 hours', "
                  "matures_at = matures_at - interval '25 hours' where user_id = %s", (carla,))
    assert transfer(web, carla, "bob@example.com", "300.00")["entry_id"]
    books(owner)


# ---------------------------------------------------------------------------
# PIX-confirmed trades
# ---------------------------------------------------------------------------

def pix_confirmed_trade(owner, web, worker, seller, buyer, brl="100.00", amount=100):
    offer = one(web, "select * from api.create_p2p_offer(%s, 'SELL', 'USDT', 'fixed', %s, 10, 2000, array['PIX_CONFIRMED'], %s, 5.00)",
                (seller, amount, str(uuid.uuid4())))["offer_id"]
    trade = one(web, "select * from api.open_p2p_trade(%s, %s, 'PIX_CONFIRMED', %s, %s)",
                (buyer, offer, str(uuid.uuid4()), brl))["trade_id"]
    charge = one(web, "select * from admin.create_p2p_pix_charge(%s, %s, 'mercadopago', now() + interval '1 hour')",
                 (trade, brl))
    web.execute("select admin.attach_pix_charge(%s, 'mercadopago', %s, 'qr', null)", (charge["charge_id"], f"p2p-pay-{trade}"))
    return trade, charge


def test_a_cancelled_pix_trade_paid_anyway_is_refunded_not_credited(owner, web, worker, demo, priced):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    trade, charge = pix_confirmed_trade(owner, web, worker, bob, alice)
    web.execute("select * from api.cancel_p2p_trade(%s, %s)", (alice, trade))
    before = balance(owner, alice)
    late = one(worker, "select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'approved', 100.00, '52601815906')",
               (charge["reference"], f"p2p-pay-{trade}"))
    assert late["outcome"] == "p2p_refund"
    assert balance(owner, alice) == before            # never free BRL
    refund = one(owner, "select * from core.pix_refunds where trade_id = %s", (trade,))
    assert refund["status"] == "PENDING" and refund["amount"] == Decimal("100.00")
    # the worker makes it at the provider and records it
    due = worker.execute("select * from admin.pix_refunds_due()").fetchall()
    assert [r["refund_id"] for r in due] == [refund["id"]]
    payable = "select balance from core.accounts where purpose = 'refunds_payable' and currency = 'BRL'"
    assert one(owner, payable)["balance"] == Decimal("100.00")        # the payer's money, journaled
    listed = web.execute("select * from admin.list_pix_refunds(%s)", (demo["admin@example.com"],)).fetchall()
    assert [r["refund_id"] for r in listed] == [refund["id"]]
    assert one(worker, "select admin.record_pix_refund(%s, 'refund-1') as s", (refund["id"],))["s"] == "DONE"
    assert one(owner, payable)["balance"] == 0                          # it left the provider
    assert one(owner, "select count(*) as n from reporting.pix_refunds where status = 'DONE'")["n"] == 1
    books(owner)


def test_the_sellers_brl_from_a_pix_confirmed_trade_matures_before_it_leaves(owner, web, worker, demo, priced):
    alice = demo["alice@example.com"]
    dana = customer(owner, "dana@example.com", cpf="11144477735")
    adjust(owner, demo["admin@example.com"], dana, "USDT", "21")       # 20 to sell, the rest for the maker fee
    trade, charge = pix_confirmed_trade(owner, web, worker, dana, alice, amount=20)
    paid = one(worker, "select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'approved', 100.00, '52601815906')",
               (charge["reference"], f"p2p-pay-{trade}"))
    assert paid["outcome"] == "p2p_completed"
    assert balance(owner, dana) == Decimal("100.00")
    assert one(owner, "select exposure from core.reversible_exposure(%s)", (dana,))["exposure"] == Decimal("100.00")
    # the buyer's bank can still claw that PIX back: dana cannot withdraw it yet
    assert sqlstate(web, "select * from api.create_withdrawal(%s, 100.00, 'CPF', '11144477735', %s)",
                    (dana, str(uuid.uuid4()))) == "BSL01"
    books(owner)


# ---------------------------------------------------------------------------
# Step-up: a stolen session without the phone moves nothing
# ---------------------------------------------------------------------------

def test_with_2fa_every_exit_needs_a_fresh_code_checked_by_the_database(owner, web, worker, demo, priced):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    secret = enable_totp(owner, alice, pyotp.random_base32())
    for statement, params in [
        ("select * from api.transfer(%s, 'bob@example.com', 'BRL', 10.00, %s)", (alice, str(uuid.uuid4()))),
        ("select * from api.create_withdrawal(%s, 20.00, 'CPF', '52601815906', %s)", (alice, str(uuid.uuid4()))),
    ]:
        assert sqlstate(web, statement, params) == "BSV01"
    # a platform-balance trade paying bob, and a release, also need it
    offer = one(web, "select * from api.create_p2p_offer(%s, 'SELL', 'USDT', 'fixed', 100, 10, 2000, array['BALANCE', 'PIX'], %s, 5.00, null, null, '', 'pix bob@example.com')",
                (bob, str(uuid.uuid4())))["offer_id"]
    assert sqlstate(web, "select * from api.open_p2p_trade(%s, %s, 'BALANCE', %s, 50.00)",
                    (alice, offer, str(uuid.uuid4()))) == "BSV01"
    bob_secret = enable_totp(owner, bob, pyotp.random_base32())
    trade = one(web, "select * from api.open_p2p_trade(%s, %s, 'PIX', %s, 50.00)", (alice, offer, str(uuid.uuid4())))["trade_id"]
    web.execute("select * from api.mark_p2p_trade_paid(%s, %s)", (alice, trade))
    assert sqlstate(web, "select * from api.release_p2p_trade(%s, %s)", (bob, trade)) == "BSV01"
    assert sqlstate(web, "select * from api.release_p2p_trade(%s, %s, '000000')", (bob, trade)) == "BSV01"
    # with the code from the phone it goes through, once: the same code cannot be replayed
    code = pyotp.TOTP(bob_secret).now()
    assert one(web, "select * from api.release_p2p_trade(%s, %s, %s)", (bob, trade, code))["status"] == "COMPLETED"
    code = pyotp.TOTP(secret).now()
    assert transfer(web, alice, "bob@example.com", "10.00", code=code)["entry_id"]
    assert sqlstate(web, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 10.00, %s, %s)",
                    (alice, str(uuid.uuid4()), code)) == "BSV01"
    books(owner)


def test_the_totp_code_is_rfc_6238(owner):
    # RFC 6238 appendix B, SHA-1 secret "12345678901234567890" at T = 59 s: 94287082 (8 digits) → 287082
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    assert one(owner, "select core.totp_code(%s, 1) as c", (secret,))["c"] == "287082"
    assert one(owner, "select core.totp_code(%s, 37037036) as c", (secret,))["c"] == "081804"   # T = 1111111109
    assert one(owner, "select core.totp_code(%s, %s) as c", (secret, 20000000000 // 30))["c"] == \
        pyotp.TOTP(secret).at(20000000000)


def test_wrong_codes_are_counted_by_the_database_and_lock(owner, web, demo):
    alice = demo["alice@example.com"]
    enable_totp(owner, alice, pyotp.random_base32())
    outcomes = [one(web, "select api.verify_totp(%s, '000000', 'login') as o", (alice,))["o"] for _ in range(5)]
    assert outcomes[:4] == ["wrong"] * 4 and outcomes[4] == "locked"
    # locked even for the right code now
    right = totp_code(owner, alice)
    assert one(web, "select api.verify_totp(%s, %s, 'login') as o", (alice, right))["o"] == "locked"


# ---------------------------------------------------------------------------
# Withdrawals: destinations and the daily approval threshold
# ---------------------------------------------------------------------------

def test_three_withdrawals_cannot_slip_under_the_approval_threshold(owner, web, demo):
    alice = demo["alice@example.com"]
    statuses = [one(web, "select * from api.create_withdrawal(%s, 3000.00, 'CPF', '52601815906', %s)",
                    (alice, str(uuid.uuid4())))["status"] for _ in range(3)]
    assert statuses == ["PENDING", "AWAITING_APPROVAL", "AWAITING_APPROVAL"]
    books(owner)


def test_withdrawal_destinations_own_cpf_at_once_other_keys_after_cooling_off(owner, web, demo):
    alice = demo["alice@example.com"]
    assert sqlstate(web, "select * from api.create_withdrawal(%s, 20.00, 'CPF', '52998224725', %s)",
                    (alice, str(uuid.uuid4()))) == "BSV01"          # somebody else's CPF
    assert sqlstate(web, "select * from api.create_withdrawal(%s, 20.00, 'EMAIL', 'mule@example.com', %s)",
                    (alice, str(uuid.uuid4()))) == "BSV01"          # not in the list
    added = one(web, "select * from api.add_withdrawal_destination(%s, 'EMAIL', 'Mule@Example.com', 'amigo')", (alice,))
    assert added["created"]
    assert sqlstate(web, "select * from api.create_withdrawal(%s, 20.00, 'EMAIL', 'mule@example.com', %s)",
                    (alice, str(uuid.uuid4()))) == "BSL01"          # cooling off
    notice = one(owner, "select message from core.notifications where user_id = %s and kind = 'security.withdrawal_destination_added'",
                 (alice,))
    assert "mule@example.com" in notice["message"]
    owner.execute("update core.withdrawal_destinations set usable_from = now() - interval '1 minute' where id = %s",
                  (added["destination_id"],))
    assert one(web, "select * from api.create_withdrawal(%s, 20.00, 'EMAIL', 'mule@example.com', %s)",
               (alice, str(uuid.uuid4())))["status"] == "PENDING"
    assert one(web, "select * from api.create_withdrawal(%s, 20.00, 'CPF', '526.018.159-06', %s)",
               (alice, str(uuid.uuid4())))["status"] == "PENDING"
    books(owner)


# ---------------------------------------------------------------------------
# MED: clawbacks and tracing
# ---------------------------------------------------------------------------

def test_a_clawed_back_deposit_is_journaled_as_a_debt_and_blocks_exits(owner, web, worker, demo, priced):
    carla = customer(owner, "carla@example.com", cpf="11144477735")
    dep, pid = pix_deposit(web, worker, carla, "1000.00", e2e="E00000000202612021500000000001")
    # carla spends most of it on the platform (allowed), then her payer's bank claws the PIX back
    offer = one(web, "select * from api.create_p2p_offer(%s, 'SELL', 'USDT', 'fixed', 300, 10, 2000, array['BALANCE'], %s, 5.00)",
                (demo["bob@example.com"], str(uuid.uuid4())))["offer_id"]
    web.execute("select * from api.open_p2p_trade(%s, %s, 'BALANCE', %s, 600.00)", (carla, offer, str(uuid.uuid4())))
    row = one(worker, "select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'charged_back')", (f"dep-{dep}", pid))
    assert row["outcome"] == "clawed_back_with_debt"
    assert balance(owner, carla) == 0                               # never negative
    claw = one(owner, "select * from reporting.pix_clawbacks")
    assert (claw["recovered"], claw["debt"], claw["owed"]) == (Decimal("400.00"), Decimal("600.00"), Decimal("600.00"))
    assert one(owner, "select balance from core.accounts where user_id is null and purpose = 'receivables' and currency = 'BRL'")[
        "balance"] == Decimal("-600.00")
    # exits are blocked, in every currency; trading is not an exit
    assert sqlstate(web, "select * from api.transfer(%s, 'bob@example.com', 'USDT', 1, %s)",
                    (carla, str(uuid.uuid4()))) == "BSA02"
    assert one(owner, "select count(*) as n from core.notifications where user_id = %s and kind = 'security.pix_clawback'",
               (carla,))["n"] == 1
    # a replay books nothing more
    assert one(worker, "select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'charged_back')",
               (f"dep-{dep}", pid))["outcome"] == "replayed"
    admin = demo["admin@example.com"]
    listed = web.execute("select * from admin.list_clawbacks(%s, true)", (admin,)).fetchall()
    assert [r["user_id"] for r in listed] == [carla]
    assert sqlstate(web, "select admin.unblock_exits(%s, %s, 'ok now', %s)", (admin, carla, totp_code(owner, admin))) == "BSS01"   # still owes
    adjust(owner, admin, carla, "BRL", "600.00")                   # she paid it back, say by TED to us
    assert one(web, "select admin.recover_clawback_debt(%s, %s, 'paid by TED') as n", (admin, claw["clawback_id"]))["n"] == 600
    assert sqlstate(web, "select admin.unblock_exits(%s, %s, 'debt recovered')", (admin, carla)) == "BSV01"  # no code
    web.execute("select admin.unblock_exits(%s, %s, 'debt recovered', %s)", (admin, carla, totp_code(owner, admin)))
    books(owner)


def test_trace_pix_funds_follows_three_hops(owner, web, worker, demo, priced):
    owner.execute("update core.settings set value = '0' where name = 'deposit_maturation_hours'")  # already matured
    a = customer(owner, "hop-a@example.com", cpf="11144477735")
    b = customer(owner, "hop-b@example.com", cpf="52998224725")
    c = customer(owner, "hop-c@example.com", cpf="12345678909")
    e2e = "E12345678202612021200abcdefghij1"
    pix_deposit(web, worker, a, "900.00", e2e=e2e)
    transfer(web, a, "hop-b@example.com", "700.00")
    transfer(web, b, "hop-c@example.com", "500.00")
    one(web, "select * from api.create_withdrawal(%s, 400.00, 'CPF', '12345678909', %s)", (c, str(uuid.uuid4())))
    wd = one(owner, "select id from core.withdrawals where user_id = %s", (c,))["id"]
    worker.execute("select * from admin.claim_withdrawals('mercadopago')")
    worker.execute("select admin.complete_withdrawal(%s, 'payout-1')", (wd,))
    tree = web.execute("select * from admin.trace_pix_funds(%s, %s)", (demo["admin@example.com"], e2e)).fetchall()
    hops = [(r["depth"], r["from_user_id"], r["to_user_id"], r["kind"], r["amount"]) for r in tree]
    assert hops == [(0, None, a, "pix_credit", Decimal("900.00")),
                    (1, a, b, "transfer", Decimal("700.00")),
                    (2, b, c, "transfer", Decimal("500.00")),
                    (3, c, None, "withdrawal", Decimal("400.00"))], hops
    assert sqlstate(web, "select * from admin.trace_pix_funds(%s, 'E-unknown')", (demo["admin@example.com"],)) == "BSN01"
    books(owner)


# ---------------------------------------------------------------------------
# Hygiene
# ---------------------------------------------------------------------------

def test_seed_demo_refuses_a_production_database_and_never_takes_over_an_account(owner):
    hashed = generate_password_hash("attacker-password", method="pbkdf2:sha256:1000")
    assert sqlstate(owner, "select * from core.seed_demo(%s)", (hashed,)) == "BSA01"    # not a development database
    squatter = one(owner, "select api.register_user('admin@example.com', %s, 'Mallory') as id", (hashed,))["id"]
    owner.execute("update core.settings set value = 'development' where name = 'environment'")
    seeded = owner.execute("select * from core.seed_demo(%s)", (hashed,)).fetchall()
    assert "admin@example.com" not in {r["email"] for r in seeded}
    mallory = one(owner, "select role, password_hash, created_by_seed from core.users where id = %s", (squatter,))
    assert (mallory["role"], mallory["password_hash"], mallory["created_by_seed"]) == ("customer", hashed, False)
    assert balance(owner, squatter) == 0
    # the customers the seed did create are funded as usual
    assert {"alice@example.com", "bob@example.com"} <= {r["email"] for r in seeded}


def test_absurd_prices_and_amounts_are_refused(owner, web, demo, priced):
    bob = demo["bob@example.com"]
    assert sqlstate(web, "select * from api.create_p2p_offer(%s, 'SELL', 'USDT', 'fixed', 10, 10, 2000, array['PIX'], %s, 1e27, null, null, '', 'pix bob')",
                    (bob, str(uuid.uuid4()))) == "BSV01"
    assert sqlstate(web, "select * from api.create_p2p_offer(%s, 'SELL', 'USDT', 'fixed', 10, 10, 2000, array['PIX'], %s, 50.00, null, null, '', 'pix bob')",
                    (bob, str(uuid.uuid4()))) == "BSV01"             # ten times the index
    assert sqlstate(web, "select * from api.transfer(%s, 'alice@example.com', 'BRL', 1e20, %s)",
                    (bob, str(uuid.uuid4()))) == "BSV01"


def test_a_stored_absurd_price_never_breaks_the_offer_book(owner, web, demo, priced, client, login):
    bob = demo["bob@example.com"]
    offer = one(web, "select * from api.create_p2p_offer(%s, 'SELL', 'USDT', 'fixed', 10, 10, 2000, array['PIX'], %s, 5.00, null, null, '', 'pix bob')",
                (bob, str(uuid.uuid4())))["offer_id"]
    owner.execute("update core.p2p_offers set fixed_price = 1e27 where id = %s", (offer,))   # planted by hand
    login("alice@example.com")
    assert client.get("/p2p").status_code == 200
    assert client.get(f"/p2p/offers/{offer}").status_code == 200
    # and it cannot be traded
    assert sqlstate(web, "select * from api.open_p2p_trade(%s, %s, 'PIX', %s, 50.00)",
                    (demo["alice@example.com"], offer, str(uuid.uuid4()))) == "BSS01"


def test_the_back_office_shows_clawbacks_traces_a_pix_and_recovers(owner, web, worker, demo, priced, client, login):
    carla = customer(owner, "carla@example.com", cpf="11144477735")
    e2e = "E99999999202612021500000000077"
    dep, pid = pix_deposit(web, worker, carla, "300.00", e2e=e2e)
    assert one(worker, "select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'in_mediation', null, null, null, 120.00)",
               (f"dep-{dep}", pid))["outcome"] == "clawed_back"          # part of it, taken from her balance
    login("admin@example.com")
    page = client.get("/admin/med").get_data(as_text=True)
    assert "carla@example.com" in page and "in_mediation" in page and "saídas bloqueadas" in page
    assert "em disputa (MED): valor bloqueado" in page          # the provider status in words
    traced = client.get(f"/admin/med?e2e_id={e2e}").get_data(as_text=True)
    assert 'data-testid="trace"' in traced and "pix_credit" in traced
    assert client.get("/admin/med?e2e_id=E-nope").status_code == 404
    from tests.conftest import Forms
    response = Forms(client).post(f"/admin/med/users/{carla}/unblock",
                                  {"reason": "Analisado: pagador errou", "totp_code": totp_code(owner, demo["admin@example.com"])},
                                  form_url="/admin/med")
    assert response.status_code == 302
    assert one(owner, "select exits_blocked_at from core.users where id = %s", (carla,))["exits_blocked_at"] is None
    assert one(owner, "select action from core.admin_audit_log order by id desc limit 1")["action"] == "unblock_exits"
    books(owner)


def test_turning_2fa_off_needs_the_code_and_pauses_exits(owner, web, demo):
    alice = demo["alice@example.com"]
    secret = enable_totp(owner, alice, pyotp.random_base32())
    assert one(web, "select api.disable_totp(%s) as o", (alice,))["o"] == "missing"
    assert one(web, "select api.disable_totp(%s, '000000') as o", (alice,))["o"] in ("wrong", "replayed")
    assert one(owner, "select twofactor_on from core.users where id = %s", (alice,))["twofactor_on"] is True
    assert one(web, "select api.disable_totp(%s, %s) as o", (alice, pyotp.TOTP(secret).now()))["o"] == "ok"
    assert one(owner, "select twofactor_on from core.users where id = %s", (alice,))["twofactor_on"] is False
    # a thief who got the phone and the password gains nothing at once: no exit for 24 h
    assert sqlstate(web, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 10.00, %s)",
                    (alice, str(uuid.uuid4()))) == "BSA02"
    assert sqlstate(web, "select * from api.create_withdrawal(%s, 20.00, 'CPF', '52601815906', %s)",
                    (alice, str(uuid.uuid4()))) == "BSA02"
    owner.execute("update core.users set exits_paused_until = now() - interval '1 second' where id = %s", (alice,))
    assert transfer(web, alice, "bob@example.com", "10.00")["entry_id"]
    books(owner)
