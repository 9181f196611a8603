"""PIX withdrawals end to end: the form, the worker claiming and paying through
the Mercado Pago emulator (approve, reject, 500, timeout, hang), the recheck
job, cancel, admin approval, limits and the maturation of fresh deposits."""
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.conftest import books, totp_code
from tests.rails_support import (
    app_call, brl, clearing, close_app, control, make_app, mp_config, new_customer, setting, wait_until, worker_call,
)
from webapp.errors import DomainError
from webapp.withdrawals import tasks
from sandbox.mercadopago import start_in_thread

CPF = "52601815906"   # alice's own (her KYC): a CPF key must be the holder's


@pytest.fixture(scope="module")
def mp():
    server = start_in_thread(mp_config(PAYOUT_TIMEOUT_SLEEP=2.5))
    yield server
    server.shutdown()


@pytest.fixture
def app(db_url, mp):
    mp.state.reset()
    app = make_app(db_url, MERCADO_PAGO_BASE_URL=mp.url, PIX_PROVIDER_TIMEOUT=1)
    yield app
    close_app(app)


def withdraw(forms, amount="100,00", key_type="CPF", key="526.018.159-06", expect=302):
    response = forms.post("/withdrawals", {"amount": amount, "key_type": key_type, "pix_key": key})
    assert response.status_code == expect, response.get_data(as_text=True)[:3000]
    return response


def destination(owner, user_id, key_type, key):
    """A PIX key in the customer's withdrawal list, past its cooling-off period."""
    owner.execute("insert into core.withdrawal_destinations (user_id, key_type, pix_key, usable_from) "
                  "values (%s, %s, %s, now() - interval '1 minute')", (user_id, key_type, key))


def last(owner):
    return owner.execute("select * from core.withdrawals order by id desc limit 1").fetchone()


def test_withdrawal_is_paid_out(app, client, forms, demo, login, owner, mp):
    alice = demo["alice@example.com"]
    before, clearing_before = brl(owner, alice), clearing(owner)
    login("alice@example.com")
    withdraw(forms, "250,00")
    w = last(owner)
    assert w["status"] == "PENDING" and w["pix_key"] == CPF and w["reference"] == f"wd-{w['id']}"
    assert brl(owner, alice) == before - 250 and brl(owner, alice, "locked") == 250
    assert "Na fila" in client.get("/withdrawals").get_data(as_text=True)

    assert tasks.process_withdrawals(app) == {"completed": 1}
    w = last(owner)
    assert w["status"] == "COMPLETED" and w["provider"] == "mercadopago" and w["provider_payout_id"]
    assert brl(owner, alice) == before - 250 and brl(owner, alice, "locked") == 0
    assert clearing(owner) == clearing_before + 250
    intent = mp.state.intents[w["provider_payout_id"]]
    assert intent["external_reference"] == w["reference"] and intent["_amount"] == Decimal("250.00")
    assert tasks.process_withdrawals(app) == {}            # nothing left to claim
    kinds = [r["kind"] for r in owner.execute(
        "select kind from core.notifications where user_id = %s and kind like 'withdrawal.%%' order by id", (alice,))]
    assert kinds == ["withdrawal.pending", "withdrawal.processing", "withdrawal.completed"]
    assert "Concluído" in client.get("/withdrawals").get_data(as_text=True)
    books(owner)


def test_rejected_payout_is_refunded_and_explained(app, client, forms, demo, login, owner, mp):
    alice = demo["alice@example.com"]
    before = brl(owner, alice)
    destination(owner, alice, "EMAIL", "alice.pix@example.com")
    login("alice@example.com")
    withdraw(forms, "80,00", "EMAIL", "Alice.Pix@Example.com")
    control(mp, "/_sandbox/payouts/mode", mode="reject", status_detail="by_bank")
    assert tasks.process_withdrawals(app) == {"failed": 1}
    w = last(owner)
    assert w["status"] == "FAILED" and w["failure_reason"] == "recusado pelo banco de destino"
    assert brl(owner, alice) == before and brl(owner, alice, "locked") == 0
    page = client.get("/withdrawals").get_data(as_text=True)
    assert "Falhou" in page and "recusado pelo banco de destino" in page
    books(owner)


def test_random_key_is_refused_for_mercado_pago(app, client, forms, demo, login, owner):
    login("alice@example.com")
    page = client.get("/withdrawals").get_data(as_text=True)
    assert 'value="EVP"' not in page and 'value="EMAIL"' in page  # not offered on either form
    assert "Chave aleatória não é aceita pelo provedor atual" in page
    response = withdraw(forms, "10,00", "EVP", "123e4567-e89b-42d3-a456-426614174000", expect=422)
    assert "chave aleatória" in response.get_data(as_text=True)
    assert last(owner) is None


@pytest.mark.parametrize("mode", ["timeout", "error500"])
def test_unknown_outcome_is_looked_up_never_resent_anew(app, forms, demo, login, owner, mp, mode):
    alice = demo["alice@example.com"]
    before = brl(owner, alice)
    destination(owner, alice, "PHONE", "+5511912345678")
    login("alice@example.com")
    withdraw(forms, "60,00", "PHONE", "(11) 91234-5678")
    control(mp, "/_sandbox/payouts/mode", mode=mode)
    control(mp, "/_sandbox/webhooks/drop", drop=True)      # only the recheck job can find out
    assert tasks.process_withdrawals(app) == {"unknown": 1}
    w = last(owner)
    assert w["status"] == "PROCESSING" and w["provider_payout_id"] is None and w["last_error"]
    assert len(mp.state.intents) == 1                        # it was made, the answer was lost

    control(mp, "/_sandbox/payouts/mode", mode="approve")
    assert tasks.recheck_withdrawals(app) == {}              # not due yet
    setting(owner, "withdrawal_recheck_seconds", 0)
    assert tasks.recheck_withdrawals(app) == {"completed": 1}
    w = last(owner)
    assert w["status"] == "COMPLETED" and w["provider_payout_id"] in mp.state.intents
    assert len(mp.state.intents) == 1                        # same idempotency key: no second payout
    assert brl(owner, alice) == before - 60
    books(owner)


def test_hanging_payout_completes_by_notification(app, forms, demo, login, owner, mp):
    login("alice@example.com")
    withdraw(forms, "45,00")
    control(mp, "/_sandbox/payouts/mode", mode="hang")
    assert tasks.process_withdrawals(app) == {"pending": 1}
    w = last(owner)
    assert w["status"] == "PROCESSING" and w["provider_payout_id"]
    control(mp, f"/_sandbox/payouts/{w['provider_payout_id']}/settle", outcome="approve")
    wait_until(lambda: last(owner)["status"] == "COMPLETED", what="the payout notification")
    books(owner)


def test_cancel_while_pending_only(app, client, forms, demo, login, owner, mp):
    alice = demo["alice@example.com"]
    before = brl(owner, alice)
    login("alice@example.com")
    withdraw(forms, "30,00")
    w = last(owner)
    page = client.get("/withdrawals").get_data(as_text=True)
    assert f'data-testid="cancel-{w["id"]}"' in page
    response = forms.post(f"/withdrawals/{w['id']}/cancel", {}, form_url="/withdrawals")
    assert response.status_code == 302
    assert last(owner)["status"] == "CANCELLED" and brl(owner, alice) == before
    assert tasks.process_withdrawals(app) == {}

    withdraw(forms, "31,00")
    control(mp, "/_sandbox/payouts/mode", mode="hang")
    tasks.process_withdrawals(app)                           # taken by the worker: too late to cancel
    w = last(owner)
    response = forms.post(f"/withdrawals/{w['id']}/cancel", {}, form_url="/withdrawals")
    assert response.status_code == 302 and last(owner)["status"] == "PROCESSING"
    assert "não pode mais ser cancelado" in client.get("/withdrawals").get_data(as_text=True)
    books(owner)


def test_approval_flow(app, client, forms, demo, login, owner, mp):
    alice, admin = demo["alice@example.com"], demo["admin@example.com"]
    before = brl(owner, alice)
    setting(owner, "withdrawal_approval_threshold_brl", "1000.00")
    login("alice@example.com")
    withdraw(forms, "1.500,00")
    big = last(owner)
    assert big["status"] == "AWAITING_APPROVAL" and brl(owner, alice, "locked") == 1500
    assert tasks.process_withdrawals(app) == {}              # not paid before approval
    assert client.get("/admin/withdrawals").status_code == 403

    forms.post("/logout", {}, form_url="/wallet")
    login("admin@example.com")
    page = client.get("/admin/withdrawals").get_data(as_text=True)
    assert f'data-testid="approve-{big["id"]}"' in page and "R$ 1.500,00" in page
    assert forms.post(f"/admin/withdrawals/{big['id']}/approve", {}, form_url="/admin/withdrawals").status_code == 302
    assert last(owner)["status"] == "AWAITING_APPROVAL"          # no code from the admin's phone: nothing approved
    assert forms.post(f"/admin/withdrawals/{big['id']}/approve", {"totp_code": totp_code(owner, admin)},
                      form_url="/admin/withdrawals").status_code == 302
    assert last(owner)["status"] == "PENDING" and last(owner)["reviewed_by"] == admin
    assert tasks.process_withdrawals(app) == {"completed": 1}
    assert brl(owner, alice) == before - 1500

    forms.post("/logout", {}, form_url="/wallet")
    login("alice@example.com")
    withdraw(forms, "2.000,00")
    other = last(owner)
    forms.post("/logout", {}, form_url="/wallet")
    login("admin@example.com")
    short = forms.post(f"/admin/withdrawals/{other['id']}/reject", {"reason": "no"}, form_url="/admin/withdrawals")
    assert short.status_code == 302 and last(owner)["status"] == "AWAITING_APPROVAL"
    forms.post(f"/admin/withdrawals/{other['id']}/reject", {"reason": "Chave PIX de terceiro"},
               form_url="/admin/withdrawals")
    other = last(owner)
    assert other["status"] == "REJECTED" and other["failure_reason"] == "Chave PIX de terceiro"
    assert brl(owner, alice) == before - 1500 and brl(owner, alice, "locked") == 0
    audit = [r["action"] for r in owner.execute("select action from core.admin_audit_log order by id")]
    assert audit[-2:] == ["approve_withdrawal", "reject_withdrawal"]
    books(owner)


def test_validation_and_limits(app, client, forms, demo, login, owner):
    login("alice@example.com")
    bad_cpf = withdraw(forms, "20,00", "CPF", "123.456.789-00", expect=422)
    assert "CPF inválido" in bad_cpf.get_data(as_text=True)
    bad_cnpj = withdraw(forms, "20,00", "CNPJ", "11.222.333/0001-00", expect=422)
    assert "CNPJ inválido" in bad_cnpj.get_data(as_text=True)
    too_small = withdraw(forms, "5,00", expect=422)
    assert "saque mínimo" in too_small.get_data(as_text=True)
    too_much = withdraw(forms, "20.000,00", expect=422)
    assert "Saldo insuficiente" in too_much.get_data(as_text=True)
    assert last(owner) is None

    carla = new_customer(owner, "carla@example.com", kyc_level=0)      # level 0: R$ 500,00 a day
    owner.execute("select admin.adjust_balance(%s, %s, 'BRL', 2000, 'saldo de teste', 'carla-1')",
                  (demo["admin@example.com"], carla))
    destination(owner, carla, "CNPJ", "11222333000181")
    forms.post("/logout", {}, form_url="/wallet")
    login("carla@example.com")
    withdraw(forms, "400,00", "CNPJ", "11.222.333/0001-81")
    over = withdraw(forms, "150,00", "CNPJ", "11.222.333/0001-81", expect=422)
    assert "Limite diário de saque do nível 0" in over.get_data(as_text=True)
    books(owner)


def test_fresh_deposits_mature_before_withdrawal(app, client, forms, demo, login, owner):
    carla = new_customer(owner, "carla@example.com", kyc_level=2)
    owner.execute("insert into core.kyc_profiles (user_id, full_name, cpf, birth_date, address) "
                  "values (%s, 'Carla', '52998224725', '1990-01-01', 'Rua A, 1')", (carla,))
    owner.execute("select admin.adjust_balance(%s, %s, 'BRL', 100, 'saldo antigo', 'carla-old')",
                  (demo["admin@example.com"], carla))
    row = app_call(app, "api.create_deposit", user_id=carla, amount=Decimal("500.00"), provider="mercadopago",
                   idempotency_key="dep-1")[0]
    worker_call(app, "admin.confirm_pix_charge", reference=row["reference"], provider="mercadopago",
                provider_payment_id="mp-1", status="approved", paid_amount=Decimal("500.00"))
    setting(owner, "deposit_maturation_hours", 24)
    login("carla@example.com")
    page = client.get("/withdrawals").get_data(as_text=True)
    assert "R$ 100,00" in page and "R$ 500,00 de PIX recebidos ainda em maturação" in page

    refused = withdraw(forms, "300,00", "CPF", "529.982.247-25", expect=422).get_data(as_text=True)
    assert "Hoje você pode sacar até R$ 100,00" in refused and "fica liberado em" in refused
    withdraw(forms, "100,00", "CPF", "529.982.247-25")                 # the old money is fine
    # Fresh money cannot leave through another customer either (they could withdraw it at once);
    # trading with it (market, P2P) is allowed.
    with pytest.raises(DomainError) as refused_transfer:
        app_call(app, "api.transfer", user_id=carla, recipient_email="alice@example.com", currency="BRL",
                 amount=Decimal("50.00"), idempotency_key="t-1")
    assert refused_transfer.value.code == "BSL01"

    # A day later the deposit has matured.
    owner.execute("update core.reversible_credits set credited_at = credited_at - %s, matures_at = matures_at - %s "
                  "where pix_charge_id = %s", (timedelta(hours=25), timedelta(hours=25), row["deposit_id"]))
    withdraw(forms, "300,00", "CPF", "529.982.247-25")
    assert last(owner)["status"] == "PENDING"
    w = app_call(app, "api.get_withdrawable", user_id=carla)[0]
    assert w["maturing"] == 0 and w["withdrawable"] == 200
    books(owner)


def test_withdrawal_needs_the_code_when_2fa_is_on(app, client, forms, demo, login, owner):
    from tests.test_twofactor import code_at, enrol
    alice = demo["alice@example.com"]
    login("alice@example.com")
    secret, _ = enrol(client, forms)          # uses the current time step
    before = brl(owner, alice)
    missing = forms.post("/withdrawals", {"amount": "100,00", "key_type": "CPF", "pix_key": "526.018.159-06"})
    assert missing.status_code == 422
    wrong = forms.post("/withdrawals", {"amount": "100,00", "key_type": "CPF", "pix_key": "526.018.159-06",
                                        "totp_code": "000000" if code_at(secret, 1) != "000000" else "111111"})
    assert wrong.status_code == 422
    assert owner.execute("select count(*) as n from core.withdrawals").fetchone()["n"] == 0
    assert brl(owner, alice) == before
    ok = forms.post("/withdrawals", {"amount": "100,00", "key_type": "CPF", "pix_key": "526.018.159-06",
                                     "totp_code": code_at(secret, 1)})
    assert ok.status_code == 302, ok.get_data(as_text=True)[:2000]
    assert last(owner)["status"] == "PENDING"
    books(owner)
