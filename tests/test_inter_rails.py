"""The BRL rails with Banco Inter as the provider (PIX_PROVIDER=inter), against
the Inter emulator over HTTPS with mutual TLS: deposits credited through the
(unsigned) webhook only when Inter's API confirms, the reconciler, payouts."""
import re
from decimal import Decimal

import pytest
import requests

from tests.conftest import books
from tests.rails_support import (
    brl, charge, clearing, close_app, deposit_entries, make_app, setting, wait_until,
)
from webapp.deposits import tasks as deposit_tasks
from webapp.providers import get_pix_provider
from sandbox import certs
from sandbox.inter import start_in_thread
from webapp.withdrawals import tasks as withdrawal_tasks

CLIENT_ID, CLIENT_SECRET, PIX_KEY = "rails-inter-client", "rails-inter-secret", "12345678000195"


@pytest.fixture(scope="module")
def cert_paths(tmp_path_factory):
    return certs.generate(tmp_path_factory.mktemp("inter-rails-certs"))


@pytest.fixture(scope="module")
def inter(cert_paths):
    server = start_in_thread({"CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET, "PIX_KEY": PIX_KEY,
                              "WEBHOOK_RETRY_INTERVALS": [0.2, 0.5]}, cert_paths)
    yield server
    server.shutdown()


@pytest.fixture
def app(db_url, inter, cert_paths):
    with inter.state.lock:          # every test's database starts at dep-1 again: forget old charges
        inter.state.cobs.clear()
        inter.state.payouts.clear()
        inter.state.payout_keys.clear()
    inter.state.payout_mode = "approve"
    inter.state.webhook_shape = "object"
    app = make_app(db_url, PIX_PROVIDER="inter", INTER_CLIENT_ID=CLIENT_ID, INTER_CLIENT_SECRET=CLIENT_SECRET,
                   INTER_CERT_PATH=str(cert_paths.client_pem), INTER_CA_BUNDLE=str(cert_paths.ca_crt),
                   INTER_PIX_KEY=PIX_KEY, INTER_BASE_URL=inter.url)
    assert deposit_tasks.register_inter_webhook(app)
    yield app
    close_app(app)


def deposit(forms, amount):
    response = forms.post("/deposits", {"amount": amount})
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    return int(re.search(r"/deposits/(\d+)$", response.headers["Location"]).group(1))


@pytest.mark.parametrize("shape", ["object", "array"])
def test_inter_deposit_credited_through_the_webhook(app, client, forms, demo, login, owner, inter, shape):
    inter.state.webhook_shape = shape
    alice = demo["alice@example.com"]
    before, clearing_before = brl(owner, alice), clearing(owner, "inter")
    login("alice@example.com")
    dep = deposit(forms, "210,00")
    row = charge(owner, dep)
    assert row["provider"] == "inter" and row["provider_payment_id"].startswith("bsm") and row["qr_code"]
    assert inter.state.pix_webhooks[PIX_KEY] == app.config["APP_URL"] + "/webhooks/inter"
    page = client.get(f"/deposits/{dep}").get_data(as_text=True)
    assert 'src="data:image/png;base64,' in page and row["qr_code"] in page

    get_pix_provider(app).simulate_payment(row["provider_payment_id"], Decimal("210.00"), payer_cpf="52998224725")
    wait_until(lambda: charge(owner, dep)["status"] == "PAID", what="the Inter webhook")
    assert brl(owner, alice) == before + Decimal("210.00")
    assert clearing(owner, "inter") == clearing_before - Decimal("210.00")
    assert charge(owner, dep)["payer_cpf"] == "52998224725" and charge(owner, dep)["end_to_end_id"]
    assert deposit_entries(owner, f"dep-{dep}") == 1
    books(owner)


def test_inter_webhook_body_is_never_trusted(app, forms, demo, login, owner):
    login("alice@example.com")
    dep = deposit(forms, "55,00")
    txid = charge(owner, dep)["provider_payment_id"]
    url = app.config["APP_URL"] + "/webhooks/inter"
    fake = {"pix": [{"endToEndId": "E00000000202611241200abcdef123456", "txid": txid, "valor": "55.00",
                     "horario": "2026-11-24T12:00:00Z"}]}
    answer = requests.post(url, json=fake, timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == ["queued"]
    wait_until(lambda: owner.execute("select count(*) as n from core.provider_notifications where outcome = 'pending'"
                                     ).fetchone()["n"] == 1, what="the worker asking Inter")   # Inter says: not paid
    assert charge(owner, dep)["status"] == "PENDING" and deposit_entries(owner, f"dep-{dep}") == 0
    assert requests.post(url, data=b"not json", timeout=10).status_code == 400
    stranger = requests.post(url, json=[{"endToEndId": "E1", "txid": "bsm" + "0" * 30, "valor": "1.00"}], timeout=10)
    assert stranger.status_code == 200 and stranger.json()["status"] == ["queued"]
    wait_until(lambda: owner.execute("select count(*) as n from core.provider_notifications where outcome = 'unknown_payment'"
                                     ).fetchone()["n"] == 1, what="the worker asking Inter")
    books(owner)


def test_inter_lost_webhook_reconciled_and_expiry(app, forms, demo, login, owner, inter):
    alice = demo["alice@example.com"]
    before = brl(owner, alice)
    login("alice@example.com")
    dep = deposit(forms, "70,00")
    with inter.state.lock:
        inter.state.pix_webhooks.clear()                        # Inter loses our webhook
    get_pix_provider(app).simulate_payment(charge(owner, dep)["provider_payment_id"])
    setting(owner, "deposit_reconcile_after_minutes", 0)
    assert deposit_tasks.reconcile_charges(app) == {"credited": 1}
    assert brl(owner, alice) == before + Decimal("70.00")
    books(owner)


def test_inter_payouts(app, client, forms, demo, login, owner, inter):
    alice = demo["alice@example.com"]
    before, clearing_before = brl(owner, alice), clearing(owner, "inter")
    login("alice@example.com")
    evp = "123e4567-e89b-42d3-a456-426614174000"          # Inter sends to random keys too
    for key_type, key in (("EVP", evp), ("EMAIL", "alice@example.com")):   # saved a day ago, say
        owner.execute("insert into core.withdrawal_destinations (user_id, key_type, pix_key, usable_from) "
                      "values (%s, %s, %s, now())", (alice, key_type, key))
    page = client.get("/withdrawals").get_data(as_text=True)
    assert page.count('value="EVP"') == 2 and "não é aceita pelo provedor" not in page   # offered on both forms
    # typed in upper case, as some banking apps show it: normalised to the lower-case UUID v4
    assert forms.post("/withdrawals", {"amount": "90,00", "key_type": "EVP", "pix_key": evp.upper()}).status_code == 302
    assert withdrawal_tasks.process_withdrawals(app) == {"completed": 1}
    w = owner.execute("select * from core.withdrawals order by id desc limit 1").fetchone()
    assert w["status"] == "COMPLETED" and w["provider"] == "inter" and w["provider_payout_id"] in inter.state.payouts
    assert w["key_type"] == "EVP" and w["pix_key"] == evp
    assert inter.state.payouts[w["provider_payout_id"]]["chave"] == evp   # what the emulated bank was sent
    assert clearing(owner, "inter") == clearing_before + 90

    inter.state.payout_mode = "reject"
    assert forms.post("/withdrawals", {"amount": "20,00", "key_type": "EMAIL",
                                       "pix_key": "alice@example.com"}).status_code == 302
    assert withdrawal_tasks.process_withdrawals(app) == {"failed": 1}
    w = owner.execute("select * from core.withdrawals order by id desc limit 1").fetchone()
    assert w["status"] == "FAILED" and w["failure_reason"] == "recusado pelo banco"

    inter.state.payout_mode = "hang"
    assert forms.post("/withdrawals", {"amount": "15,00", "key_type": "CPF",
                                       "pix_key": "52601815906"}).status_code == 302
    assert withdrawal_tasks.process_withdrawals(app) == {"pending": 1}
    w = owner.execute("select * from core.withdrawals order by id desc limit 1").fetchone()
    requests.post(f"{inter.url}/_sandbox/payouts/{w['provider_payout_id']}/settle", json={"outcome": "approve"},
                  verify=str(inter.certs.ca_crt), cert=inter.certs.client_cert, timeout=10)
    setting(owner, "withdrawal_recheck_seconds", 0)
    assert withdrawal_tasks.recheck_withdrawals(app) == {"completed": 1}
    assert brl(owner, alice) == before - 105
    books(owner)
