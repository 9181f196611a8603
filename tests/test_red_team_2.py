"""Red team, second pass: attacks on the fixes of the first pass (tests/test_red_team.py) and on the
newest code. Every test asserts the SAFE behaviour: a failing test is a hole."""
from __future__ import annotations

from decimal import Decimal

import pyotp
import pytest

from tests.conftest import books, enable_totp, totp_code
from tests.test_red_team import key
from tests.test_exits import adjust, balance, customer, one, pix_confirmed_trade, pix_deposit, sqlstate

D = Decimal
TRON_TO = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def age_credits(owner, user_id, days=3):
    """Time passes: the customer's PIX credits were made `days` ago and have matured."""
    owner.execute("update core.reversible_credits set credited_at = now() - make_interval(days => %s), "
                  "matures_at = now() - make_interval(days => %s) + interval '24 hours' where user_id = %s",
                  (days, days, user_id))
    owner.execute("update core.users set exposure_until = (select max(matures_at) from core.reversible_credits "
                  "where user_id = %s) where id = %s", (user_id, user_id))


def transfer_without_code(web, sender, to="bob@example.com", amount="10.00"):
    return sqlstate(web, "select * from api.transfer(%s, %s, 'BRL', %s, %s)", (sender, to, amount, key()))


# ---------------------------------------------------------------------------
# The 24 h exit pause after turning 2FA off
# ---------------------------------------------------------------------------

def test_unblocking_exits_does_not_lift_the_pause_after_2fa_was_turned_off(owner, web, worker, demo, priced):
    """A thief with password and phone turns 2FA off (exits paused 24 h) on an account blocked by a MED of an old,
    matured PIX; the admin unblocks it: admin.unblock_exits recomputes exposure_until from the credits only, so
    api.transfer's fast path skips core.lock_for_exit and the paused account sends money at once."""
    carla = customer(owner, "carla@example.com", cpf="11144477735")
    enable_totp(owner, carla, pyotp.random_base32())
    dep, pid = pix_deposit(web, worker, carla, "1000.00")
    age_credits(owner, carla)
    claw = one(worker, "select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'in_mediation', null, null, null, 100.00)",
               (f"dep-{dep}", pid))
    assert claw["outcome"] == "clawed_back"
    assert one(web, "select api.disable_totp(%s, %s) as r", (carla, totp_code(owner, carla)))["r"] == "ok"
    owner.execute("select admin.unblock_exits(%s, %s, 'MED reviewed, customer ok', null)", (demo["admin@example.com"], carla))
    paused = one(owner, "select exits_paused_until > now() as p from core.users where id = %s", (carla,))["p"]
    assert paused
    assert transfer_without_code(web, carla) == "BSA02", "R$ 10 sent during the 24 h pause after 2FA was turned off"
    books(owner)


def test_changing_the_maturation_window_does_not_lift_the_pause_after_2fa_was_turned_off(owner, web, worker, demo, priced):
    """Turning 2FA off pauses exits 24 h (exits_paused_until, and exposure_until moved as far). When ops change
    deposit_maturation_hours, core.tg_settings__exposure_window sets exposure_until = the latest credit's maturity,
    forgetting the pause: the transfer fast path then never reads exits_paused_until."""
    carla = customer(owner, "carla@example.com", cpf="11144477735")
    enable_totp(owner, carla, pyotp.random_base32())
    pix_deposit(web, worker, carla, "1000.00")
    age_credits(owner, carla)
    assert one(web, "select api.disable_totp(%s, %s) as r", (carla, totp_code(owner, carla)))["r"] == "ok"
    assert transfer_without_code(web, carla) == "BSA02"          # the pause holds ...
    owner.execute("update core.settings set value = '48' where name = 'deposit_maturation_hours'")
    assert transfer_without_code(web, carla) == "BSA02", "... until the maturation window is changed"
    books(owner)


# ---------------------------------------------------------------------------
# Approval threshold on the day's total of PIX + crypto
# ---------------------------------------------------------------------------

def test_crypto_first_then_pix_cannot_slip_under_the_approval_threshold(owner, web, demo, priced):
    """R$ 5.000 a day of exits need approval. api.create_crypto_withdrawal counts PIX + crypto, but
    api.create_withdrawal counts only the PIX withdrawals of the day: ~R$ 4.900 on-chain first, then R$ 4.900
    by PIX, both go out PENDING (R$ 9.800 without anyone looking)."""
    alice = demo["alice@example.com"]
    adjust(owner, demo["admin@example.com"], alice, "BRL", "5000.00")
    adjust(owner, demo["admin@example.com"], alice, "USDT", "1000")
    threshold = D(one(owner, "select value from core.settings where name = 'withdrawal_approval_threshold_brl'")["value"])
    row = one(web, "select * from api.add_crypto_address(%s, 'USDT', 'TRX', %s, '', 'mine')", (alice, TRON_TO))
    owner.execute("update core.crypto_address_book set usable_from = now() - interval '1 second' where id = %s",
                  (row["address_id"],))
    c = one(web, "select * from api.create_crypto_withdrawal(%s, 'USDT', %s, 990, %s)", (alice, row["address_id"], key()))
    crypto_value = one(owner, "select brl_value from core.crypto_withdrawals where id = %s", (c["withdrawal_id"],))["brl_value"]
    assert c["status"] == "PENDING" and crypto_value < threshold
    w = one(web, "select * from api.create_withdrawal(%s, 4900.00, 'CPF', '52601815906', %s)", (alice, key()))
    assert w["status"] == "AWAITING_APPROVAL", (
        f"R$ {crypto_value} on-chain + R$ 4.900,00 by PIX today, both sent without approval (threshold R$ {threshold})")
    books(owner)


# ---------------------------------------------------------------------------
# A REVIEW P2P PIX clawed back, then "refunded" by the admin
# ---------------------------------------------------------------------------

def test_a_review_pix_clawed_back_is_not_refunded_again_when_the_dispute_is_refunded(owner, web, worker, demo, priced):
    """Triangulation: a PIX-confirmed trade paid from a third party's CPF goes to REVIEW; the payer's bank claws it
    back (MED). resolve_p2p_dispute now refuses 'release' and says to refund the crypto: that 'refund' branch calls
    core.record_pix_refund_due for the same PIX, and the worker pays the payer a second time from clearing."""
    alice, admin = demo["alice@example.com"], demo["admin@example.com"]
    dana = customer(owner, "dana@example.com", cpf="11144477735")
    adjust(owner, admin, dana, "USDT", "21")
    trade, charge = pix_confirmed_trade(owner, web, worker, dana, alice, amount=20)
    paid = one(worker, "select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'approved', 100.00, '52998224725')",
               (charge["reference"], f"p2p-pay-{trade}"))
    assert paid["outcome"] == "p2p_review"
    worker.execute("select * from admin.confirm_pix_charge(%s, 'mercadopago', %s, 'charged_back')",
                   (charge["reference"], f"p2p-pay-{trade}"))
    assert sqlstate(web, "select * from admin.resolve_p2p_dispute(%s, %s, 'release', 'pagamento conferido')",
                    (admin, trade)) == "BSS01"
    web.execute("select * from admin.resolve_p2p_dispute(%s, %s, 'refund', 'PIX devolvido pelo MED')", (admin, trade))
    due = worker.execute("select * from admin.pix_refunds_due()").fetchall()
    assert due == [], f"the payer already got the PIX back by MED; a second refund is due: {due}"
    books(owner)


# ---------------------------------------------------------------------------
# Admin approvals through the web without the admin's code
# ---------------------------------------------------------------------------

def test_approving_a_large_withdrawal_through_the_web_needs_the_admins_code(owner, web, demo):
    """adjust_balance and unblock_exits now want the admin's fresh TOTP when called by exchange_app, but
    admin.approve_withdrawal (and review_crypto_withdrawal) do not: a stolen admin session (or any code path
    of the web role holding an admin id) sends a R$ 9.000 withdrawal past the approval control."""
    alice, admin = demo["alice@example.com"], demo["admin@example.com"]
    adjust(owner, admin, alice, "BRL", "9000.00")
    w = one(web, "select * from api.create_withdrawal(%s, 9000.00, 'CPF', '52601815906', %s)", (alice, key()))
    assert w["status"] == "AWAITING_APPROVAL"
    approved = sqlstate(web, "select admin.approve_withdrawal(%s, %s, 'ok')", (admin, w["withdrawal_id"]))
    assert approved == "BSV01", "R$ 9.000 approved by the web role with only an admin id (no admin TOTP)"


# ---------------------------------------------------------------------------
# Blocked (regression guards)
# ---------------------------------------------------------------------------

def test_an_adjustment_replay_key_cannot_skip_the_admin_code_for_another_amount(owner, web, demo):
    """admin.adjust_balance skips the admin's TOTP when the key exists: a replay with another amount or
    currency must be refused (BSI01), not booked."""
    admin, alice = demo["admin@example.com"], demo["alice@example.com"]
    k = key()
    first = one(web, "select * from admin.adjust_balance(%s, %s, 'BRL', 10.00, 'goodwill credit', %s, %s)",
                (admin, alice, k, totp_code(owner, admin)))
    assert first["replayed"] is False
    before = balance(owner, alice)
    assert sqlstate(web, "select * from admin.adjust_balance(%s, %s, 'BRL', 100000.00, 'goodwill credit', %s)",
                    (admin, alice, k)) == "BSI01"
    assert sqlstate(web, "select * from admin.adjust_balance(%s, %s, 'USDT', 10.00, 'goodwill credit', %s)",
                    (admin, alice, k)) == "BSI01"
    again = one(web, "select * from admin.adjust_balance(%s, %s, 'BRL', 10.00, 'goodwill credit', %s)", (admin, alice, k))
    assert again["replayed"] and balance(owner, alice) == before
    # the same key for another customer is a new adjustment: it needs the code
    assert sqlstate(web, "select * from admin.adjust_balance(%s, %s, 'BRL', 10.00, 'goodwill credit', %s)",
                    (admin, demo["bob@example.com"], k)) == "BSV01"
    books(owner)


def test_the_twofactor_flag_follows_enrolment_confirmation_and_disabling(owner, web, demo, priced):
    """users.twofactor_on (read by api.transfer's fast path) must equal a confirmed core.user_totp row on every path."""
    alice = demo["alice@example.com"]

    def flag():
        return one(owner, "select twofactor_on from core.users where id = %s", (alice,))["twofactor_on"]
    secret = pyotp.random_base32()
    web.execute("select api.begin_totp_enrolment(%s, %s)", (alice, secret))
    assert flag() is False
    assert transfer_without_code(web, alice, amount="1.00") is None   # a pending enrolment is not 2FA
    hashes = [f"pbkdf2:sha256:1000$hash{i:02d}xxxxxxxxxxxxxxxx" for i in range(10)]
    web.execute("select api.confirm_totp_enrolment(%s, %s, %s)", (alice, pyotp.TOTP(secret).now(), hashes))
    assert flag() is True
    assert transfer_without_code(web, alice, amount="1.00") == "BSV01"
    assert one(web, "select api.disable_totp(%s, %s) as r", (alice, "000000"))["r"] in ("wrong", "replayed")
    assert flag() is True
    assert one(web, "select api.disable_totp(%s, %s) as r", (alice, totp_code(owner, alice)))["r"] == "ok"
    assert flag() is False
    assert transfer_without_code(web, alice, amount="1.00") == "BSA02"   # the pause


# ---------------------------------------------------------------------------
# Pages that answer 500
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "/wallet/BRL?page=99999999999", "/wallet/BRL?page=3000000000", "/market/orders?page=99999999999",
    "/deposits?page=99999999999", "/withdrawals?page=99999999999", "/p2p?amount=1e400", "/p2p?amount=99999999999999999999999",
    "/p2p/trades?page=99999999999", "/p2p/users/99999999999999999999", "/market/quote/99999999999999999999",
])
def test_absurd_query_parameters_never_answer_500(demo, client, login, url):
    login("alice@example.com")
    response = client.get(url)
    assert response.status_code < 500, (url, response.status_code)
