"""/webhooks/mercadopago through real HTTP: signature (providers.md B.2), queued
for the worker, which fetches from the API and credits once (here the worker's
job is run by hand: `process(app)`). The B.2 test vector itself (accepted, and refused
with one byte changed) is checked against our verifier in
tests/test_providers_mercadopago.py::test_b2_vector_accepted and
::test_b2_vector_with_one_byte_changed_is_rejected — the same function
(webapp.providers.mercadopago.check_webhook_signature) this endpoint uses."""
import re
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests

from tests.conftest import books
from tests.rails_support import (
    app_call, brl, charge, close_app, control, deposit_entries, make_app, mp_config, process, signed_post,
)
from sandbox.mercadopago import start_in_thread


@pytest.fixture(scope="module")
def mp():
    server = start_in_thread(mp_config())
    yield server
    server.shutdown()


@pytest.fixture
def app(db_url, mp):
    mp.state.reset()
    app = make_app(db_url, worker=False, MERCADO_PAGO_BASE_URL=mp.url)
    yield app
    close_app(app)


@pytest.fixture
def paid_silently(app, forms, demo, login, owner, mp):
    """A deposit paid at the provider whose notifications were all lost."""
    def make(amount="120,00", paid=None):
        login("alice@example.com")
        response = forms.post("/deposits", {"amount": amount})
        dep = int(re.search(r"/deposits/(\d+)$", response.headers["Location"]).group(1))
        pid = charge(owner, dep)["provider_payment_id"]
        control(mp, "/_sandbox/webhooks/drop", drop=True)
        control(mp, f"/_sandbox/payments/{pid}/pay", **({"amount": paid} if paid else {}))
        return dep, pid
    return make


def test_forged_and_unsigned_notifications_are_refused(app, owner, demo, paid_silently, caplog):
    dep, pid = paid_silently()
    url = app.config["APP_URL"]
    unsigned = requests.post(f"{url}/webhooks/mercadopago?data.id={pid}&type=payment",
                             json={"type": "payment", "data": {"id": pid}}, timeout=10)
    assert unsigned.status_code == 401 and unsigned.json()["reason"] == "MISSING_SIGNATURE_HEADER"
    forged = signed_post(url, pid, secret="not-the-secret")
    assert forged.status_code == 401 and forged.json()["reason"] == "SIGNATURE_MISMATCH"
    stale = signed_post(url, pid, ts=str(int(time.time()) - 3600))
    assert stale.status_code == 401 and stale.json()["reason"] == "TIMESTAMP_OUT_OF_TOLERANCE"
    assert charge(owner, dep)["status"] == "PENDING" and deposit_entries(owner, f"dep-{dep}") == 0
    assert "mercadopago webhook refused" in caplog.text

    millis = signed_post(url, pid, ts=str(int(time.time() * 1000)))        # ts in milliseconds is fine
    assert millis.status_code == 200 and millis.json()["status"] == "queued"
    assert process(app) == {"credited": 1}
    assert charge(owner, dep)["status"] == "PAID"
    books(owner)


def test_replayed_50_times_concurrently_credits_once(app, owner, demo, paid_silently):
    alice = demo["alice@example.com"]
    before = brl(owner, alice)
    dep, pid = paid_silently("77,70")
    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(lambda _: signed_post(app.config["APP_URL"], pid), range(50)))
    assert [a.status_code for a in answers] == [200] * 50
    assert sorted({a.json()["status"] for a in answers}) == ["queued"]
    # one pending row for the payment, however many deliveries
    queued = owner.execute("select count(*) as n, sum(deliveries) as d from core.provider_notifications").fetchone()
    assert queued["n"] == 1 and queued["d"] >= 50     # (+ the emulator's own delivery at creation)
    with ThreadPoolExecutor(max_workers=4) as pool:                         # two workers racing, say
        outcomes = list(pool.map(lambda _: process(app), range(4)))
    assert [o for o in outcomes if o] == [{"credited": 1}]
    assert deposit_entries(owner, f"dep-{dep}") == 1
    assert brl(owner, alice) == before + Decimal("77.70")
    assert owner.execute("select count(*) as n from core.notifications where kind = 'deposit.credited'").fetchone()["n"] == 1
    books(owner)


def test_amount_mismatch_goes_to_review_without_credit(app, client, owner, demo, paid_silently):
    alice = demo["alice@example.com"]
    before = brl(owner, alice)
    dep, pid = paid_silently("200,00", paid="150.00")
    answer = signed_post(app.config["APP_URL"], pid)
    assert answer.status_code == 200 and answer.json()["status"] == "queued"
    assert process(app) == {"review": 1}
    row = charge(owner, dep)
    assert row["status"] == "REVIEW" and row["paid_amount"] == Decimal("150.00") and row["entry_id"] is None
    assert brl(owner, alice) == before and deposit_entries(owner, f"dep-{dep}") == 0
    assert "R$ 150,00" in client.get(f"/deposits/{dep}/status").get_data(as_text=True)
    signed_post(app.config["APP_URL"], pid)
    assert process(app) == {"review": 1}                                            # replay: still nothing
    books(owner)

    # An admin closes the review: what actually arrived is credited, audit-logged.
    admin = demo["admin@example.com"]
    assert app_call(app, "admin.list_deposit_reviews", admin_id=admin)[0]["deposit_id"] == dep
    assert app_call(app, "admin.resolve_deposit_review", admin_id=admin, deposit_id=dep, credit=True,
                    reason="cliente confirmou o valor enviado")[0]["resolve_deposit_review"] == "PAID"
    assert brl(owner, alice) == before + Decimal("150.00")
    assert owner.execute("select action from core.admin_audit_log order by id desc limit 1").fetchone()["action"] \
        == "credit_deposit_review"
    books(owner)


def test_unknown_payment_and_not_ours(app, owner, demo, mp):
    url = app.config["APP_URL"]
    unknown = signed_post(url, "999999999")
    assert unknown.status_code == 200 and unknown.json()["status"] == "queued"
    assert process(app) == {"unknown_payment": 1}
    # A payment at our provider that is not one of our charges (another reference).
    from webapp.providers import get_pix_provider
    from datetime import datetime, timedelta, timezone
    foreign = get_pix_provider(app).create_pix_charge("order-42", Decimal("10.00"), "x@example.com", None,
                                                      datetime.now(timezone.utc) + timedelta(hours=1), "outra loja")
    control(mp, f"/_sandbox/payments/{foreign.provider_id}/pay")
    signed_post(url, foreign.provider_id)
    assert process(app) == {"not_ours": 1}
    other_type = signed_post(url, "123", kind="topic_merchant_order_wh")
    assert other_type.status_code == 200 and other_type.json()["status"] == "ignored"
    assert owner.execute("select count(*) as n from core.entries where kind = 'deposit'").fetchone()["n"] == 0
    books(owner)


def test_expired_payment_notification(app, owner, demo, forms, login, mp):
    login("alice@example.com")
    response = forms.post("/deposits", {"amount": "33,00"})
    dep = int(response.headers["Location"].rsplit("/", 1)[1])
    pid = charge(owner, dep)["provider_payment_id"]
    control(mp, "/_sandbox/webhooks/drop", drop=True)
    control(mp, f"/_sandbox/payments/{pid}/expire")
    signed_post(app.config["APP_URL"], pid)
    assert process(app) == {"expired": 1}
    assert charge(owner, dep)["status"] == "EXPIRED"
    signed_post(app.config["APP_URL"], pid)
    assert process(app) == {"expired": 1}                                           # replay
    assert owner.execute("select count(*) as n from core.notifications where kind = 'deposit.expired'").fetchone()["n"] == 1
    books(owner)


def test_webhook_needs_no_csrf_and_is_retried_while_the_provider_is_down(app, owner, demo, paid_silently, mp):
    dep, pid = paid_silently()
    mp_url = app.config["MERCADO_PAGO_BASE_URL"]
    app.config["MERCADO_PAGO_BASE_URL"] = "http://127.0.0.1:9"
    app.extensions.pop("pix_providers", None)
    answer = signed_post(app.config["APP_URL"], pid)
    assert answer.status_code == 200                 # acknowledged: the worker books it
    assert process(app) == {"retry": 1}
    pending = owner.execute("select * from core.provider_notifications").fetchone()
    assert pending["processed_at"] is None and pending["last_error"] and pending["next_try_at"] > pending["received_at"]
    assert charge(owner, dep)["status"] == "PENDING"
    assert process(app) == {}                        # not due again yet
    app.config["MERCADO_PAGO_BASE_URL"] = mp_url     # the provider is back, the retry is due
    app.extensions.pop("pix_providers", None)
    owner.execute("update core.provider_notifications set next_try_at = now()")
    assert process(app) == {"credited": 1}
    books(owner)
