"""PIX deposits end to end: the app served over HTTP, the Mercado Pago emulator
creating charges and delivering signed webhooks to it, the worker jobs called
directly. After every scenario the books must balance."""
import re
from decimal import Decimal

import pytest
import requests

from tests.conftest import books
from webapp.errors import DomainError
from tests.rails_support import (
    app_call, brl, charge, clearing, close_app, control, deposit_entries, make_app, mp_config, new_customer,
    setting, wait_until, worker_call,
)
from webapp.deposits import tasks
from sandbox.mercadopago import start_in_thread


@pytest.fixture(scope="module")
def mp():
    server = start_in_thread(mp_config())
    yield server
    server.shutdown()


@pytest.fixture
def app(db_url, mp):
    mp.state.reset()
    app = make_app(db_url, MERCADO_PAGO_BASE_URL=mp.url)
    yield app
    close_app(app)


def deposit(forms, amount: str) -> int:
    response = forms.post("/deposits", {"amount": amount})
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    return int(re.search(r"/deposits/(\d+)$", response.headers["Location"]).group(1))


def test_deposit_paid_is_credited_once(app, client, forms, demo, login, owner, mp):
    alice = demo["alice@example.com"]
    before, clearing_before = brl(owner, alice), clearing(owner)
    login("alice@example.com")
    dep = deposit(forms, "150,00")

    row = charge(owner, dep)
    assert row["status"] == "PENDING" and row["provider_payment_id"] and row["reference"] == f"dep-{dep}"
    page = client.get(f"/deposits/{dep}").get_data(as_text=True)
    assert 'src="data:image/png;base64,' in page                      # the QR image
    assert row["qr_code"] in page and 'data-copy-target="#pix-code"' in page   # copia e cola + copy button
    assert "data-countdown=" in page and "R$ 150,00" in page
    assert "Aguardando pagamento" in client.get(f"/deposits/{dep}/status").get_data(as_text=True)
    payment = mp.state.payments[int(row["provider_payment_id"])]
    assert payment["external_reference"] == f"dep-{dep}" and payment["transaction_amount"] == Decimal("150.00")

    control(mp, f"/_sandbox/payments/{row['provider_payment_id']}/pay")        # the customer's bank pays
    wait_until(lambda: charge(owner, dep)["status"] == "PAID", what="the webhook to credit")
    assert brl(owner, alice) == before + Decimal("150.00")
    assert clearing(owner) == clearing_before - Decimal("150.00")
    assert deposit_entries(owner, f"dep-{dep}") == 1
    fragment = client.get(f"/deposits/{dep}/status").get_data(as_text=True)
    assert "Pagamento confirmado" in fragment and "R$ 150,00" in fragment       # the live panel says so

    # The emulator re-sends the notification; the reconciler looks again: still once.
    control(mp, f"/_sandbox/payments/{row['provider_payment_id']}/notify")
    wait_until(lambda: len([d for d in mp.state.deliveries if d.state == "delivered"]) >= 3, what="redelivery")
    assert worker_call(app, "admin.confirm_pix_charge", reference=f"dep-{dep}", provider="mercadopago",
                    provider_payment_id=row["provider_payment_id"], status="approved",
                    paid_amount=Decimal("150.00"))[0]["replayed"] is True
    assert deposit_entries(owner, f"dep-{dep}") == 1 and brl(owner, alice) == before + Decimal("150.00")
    kinds = [r["kind"] for r in owner.execute("select kind from core.notifications where user_id = %s order by id",
                                              (alice,))]
    assert kinds[-2:] == ["deposit.created", "deposit.credited"]
    assert "Creditado" in client.get("/deposits").get_data(as_text=True)
    books(owner)


def test_double_submit_creates_one_deposit(client, forms, demo, login, owner):
    login("alice@example.com")
    html = client.get("/deposits").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', html).group(1)
    first = client.post("/deposits", data={"amount": "50", "csrf_token": token, "idempotency_key": key})
    second = client.post("/deposits", data={"amount": "50", "csrf_token": token, "idempotency_key": key})
    assert first.headers["Location"] == second.headers["Location"]
    assert owner.execute("select count(*) as n from core.pix_charges").fetchone()["n"] == 1
    books(owner)


def test_deposit_limits(client, forms, demo, login, owner):
    login("alice@example.com")
    low = forms.post("/deposits", {"amount": "5,00"})
    assert low.status_code == 422 and "O depósito mínimo é R$ 10,00" in low.get_data(as_text=True)
    high = forms.post("/deposits", {"amount": "60.000,00"})
    assert high.status_code == 422 and "depósito máximo" in high.get_data(as_text=True)
    junk = forms.post("/deposits", {"amount": "dez reais"})
    assert junk.status_code == 422 and "Informe um valor válido" in junk.get_data(as_text=True)
    odd = forms.post("/deposits", {"amount": "10,001"})
    assert odd.status_code == 422 and "casas decimais" in odd.get_data(as_text=True)

    new_customer(owner, "carla@example.com", kyc_level=0)        # level 0: R$ 1.000,00 a day
    forms.post("/logout", {}, form_url="/wallet")
    login("carla@example.com")
    deposit(forms, "800,00")
    over = forms.post("/deposits", {"amount": "300,00"})
    text = over.get_data(as_text=True)
    assert over.status_code == 422 and "Limite diário de depósito do nível 0" in text and "R$ 200,00" in text
    assert owner.execute("select count(*) as n from core.pix_charges").fetchone()["n"] == 1
    books(owner)


def test_lost_webhook_is_credited_by_the_reconciler(app, client, forms, demo, login, owner, mp):
    alice = demo["alice@example.com"]
    before = brl(owner, alice)
    login("alice@example.com")
    dep = deposit(forms, "99,90")
    row = charge(owner, dep)
    # the notification of the charge's creation is delivered and booked first
    # (else a late retry of it, on a loaded machine, would book the payment below)
    wait_until(lambda: all(d["state"] != "pending" for d in
                           requests.get(mp.url + "/_sandbox/webhooks", timeout=10).json()["deliveries"])
               and owner.execute("select count(*) as n from core.provider_notifications "
                                 "where processed_at is null").fetchone()["n"] == 0, what="the creation's notification")
    control(mp, "/_sandbox/webhooks/drop", drop=True)              # every notification is lost
    control(mp, f"/_sandbox/payments/{row['provider_payment_id']}/pay")
    assert charge(owner, dep)["status"] == "PENDING"

    assert tasks.reconcile_charges(app) == {}                       # too young to look at
    setting(owner, "deposit_reconcile_after_minutes", 0)
    assert tasks.reconcile_charges(app) == {"credited": 1}
    assert charge(owner, dep)["status"] == "PAID" and brl(owner, alice) == before + Decimal("99.90")
    assert tasks.reconcile_charges(app) == {}                       # settled: not looked at again
    books(owner)


def test_expired_deposit(app, client, forms, demo, login, owner, mp):
    login("alice@example.com")
    dep = deposit(forms, "40,00")
    pid = charge(owner, dep)["provider_payment_id"]
    control(mp, f"/_sandbox/payments/{pid}/expire")
    wait_until(lambda: charge(owner, dep)["status"] == "EXPIRED", what="the expiry webhook")
    assert "expirou" in client.get(f"/deposits/{dep}/status").get_data(as_text=True)
    assert 'id="deposit-qr"' not in client.get(f"/deposits/{dep}").get_data(as_text=True)
    assert deposit_entries(owner, f"dep-{dep}") == 0
    books(owner)


def test_provider_down_then_the_job_attaches_the_same_charge(app, client, forms, demo, login, owner, mp):
    login("alice@example.com")
    app.config["MERCADO_PAGO_BASE_URL"] = "http://127.0.0.1:9"        # nothing listens there
    app.extensions.pop("pix_providers", None)
    response = forms.post("/deposits", {"amount": "25,00"})
    dep = int(response.headers["Location"].rsplit("/", 1)[1])
    page = client.get(f"/deposits/{dep}").get_data(as_text=True)
    assert "Gerando o QR code" in page and charge(owner, dep)["provider_payment_id"] is None
    assert charge(owner, dep)["last_error"]

    app.config["MERCADO_PAGO_BASE_URL"] = mp.url                      # the provider is back
    app.extensions.pop("pix_providers", None)
    assert tasks.attach_pending_charges(app, min_age_seconds=0) == {"created": 1}
    row = charge(owner, dep)
    assert row["provider_payment_id"] and row["qr_code"]
    assert 'data-testid="deposit-qr-image"' in client.get(f"/deposits/{dep}").get_data(as_text=True)

    # A crash between the provider call and recording it: the job finds the
    # payment by reference instead of creating a second one.
    other = app_call(app, "api.create_deposit", user_id=demo["alice@example.com"], amount=Decimal("30.00"),
                     provider="mercadopago", idempotency_key="crash-test")[0]
    from webapp.providers import get_pix_provider
    made = get_pix_provider(app).create_pix_charge(other["reference"], other["charge_amount"], other["payer_email"],
                                                   None, other["expires_at"], other["description"])
    assert tasks.attach_pending_charges(app, min_age_seconds=0) == {"found": 1}
    assert charge(owner, other["deposit_id"])["provider_payment_id"] == made.provider_id
    assert len([p for p in mp.state.payments.values() if p["external_reference"] == other["reference"]]) == 1
    books(owner)


def test_refused_charge_fails_the_deposit(app, client, forms, demo, login, owner, mp):
    login("alice@example.com")
    setting(owner, "deposit_expiry_minutes", 10)      # Mercado Pago refuses less than 30 minutes
    response = forms.post("/deposits", {"amount": "20,00"})
    dep = int(response.headers["Location"].rsplit("/", 1)[1])
    row = charge(owner, dep)
    assert row["status"] == "FAILED" and "30 minutes" in row["status_detail"]
    assert "Não gerado" in client.get("/deposits").get_data(as_text=True)
    books(owner)


def test_deposit_pages_are_private(app, client, forms, demo, login, owner):
    login("alice@example.com")
    dep = deposit(forms, "15,00")
    forms.post("/logout", {}, form_url="/wallet")
    login("bob@example.com")
    assert client.get(f"/deposits/{dep}").status_code == 404
    assert client.get(f"/deposits/{dep}/status").status_code == 404


def test_a_provider_id_seen_before_is_refused_clearly_and_fails_the_charge(app, forms, demo, login, owner, caplog):
    """A provider handing back a payment id another charge already holds (issue 20: a sandbox restarted
    on old data): a clear refusal, logged, the new charge failed, nothing booked — never a 500."""
    from webapp.deposits import service
    from webapp.providers.base import Charge
    login("alice@example.com")
    first = int(forms.post("/deposits", {"amount": "40,00"}).headers["Location"].rsplit("/", 1)[1])
    seen = charge(owner, first)["provider_payment_id"]
    row = app_call(app, "api.create_deposit", user_id=demo["alice@example.com"], amount=Decimal("41.00"),
                   provider="mercadopago", idempotency_key="second")[0]
    reused = Charge(provider_id=seen, reference=row["reference"], amount=Decimal("41.00"), status="pending",
                    qr_code="qr", qr_code_base64=None, expires_at=None, payer_cpf=None)
    with app.app_context(), pytest.raises(DomainError) as refused:
        service.attach(app, row["deposit_id"], "mercadopago", reused)
    assert refused.value.code == "BSS01" and refused.value.hint == "provider_id_reused"
    assert charge(owner, row["deposit_id"])["provider_payment_id"] is None
    # the same through confirm: the worker never books it
    with pytest.raises(DomainError) as confirm:
        worker_call(app, "admin.confirm_pix_charge", reference=row["reference"], provider="mercadopago",
                    provider_payment_id=seen, status="approved", paid_amount=Decimal("41.00"))
    assert confirm.value.code == "BSS01"
    assert deposit_entries(owner, row["reference"]) == 0
    books(owner)
