"""MercadoPagoClient against the local Mercado Pago emulator, over real HTTP,
plus the webhook signature verifier (providers.md A-D). No mocks."""
import base64
import json
import socket
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from mercadopago.webhook import InvalidWebhookSignatureError, WebhookSignatureValidator

from webapp.pix import parse_brcode
from webapp.providers.base import (
    CHARGE_APPROVED, CHARGE_CANCELLED, CHARGE_CHARGED_BACK, CHARGE_EXPIRED, CHARGE_IN_MEDIATION,
    CHARGE_REFUNDED, REFUND_COMPLETED, NotCancellable, NotFound, PixProvider, ProviderError, Refund,
)
from webapp.providers.mercadopago import (
    MercadoPagoClient, WebhookSignatureError, check_webhook_signature, idempotency_key, sign_webhook,
)
from sandbox.mercadopago import start_in_thread


def verify_webhook_signature(*args, **kwargs) -> bool:
    try:
        check_webhook_signature(*args, **kwargs)
    except WebhookSignatureError:
        return False
    return True

SECRET = "test-webhook-secret"
TOKEN = "TEST-1234-sandbox"


class Receiver:
    """A tiny HTTP server that records webhook deliveries. `fail_next` answers 500 that many times."""

    def __init__(self):
        self.hits: list[dict] = []
        self.cond = threading.Condition()
        self.fail_next = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                parts = urlsplit(self.path)
                with outer.cond:
                    failing = outer.fail_next > 0
                    if failing:
                        outer.fail_next -= 1
                    outer.hits.append({"path": parts.path, "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                                       "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "body": json.loads(raw or b"null"), "answered": 500 if failing else 200})
                    outer.cond.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout=5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [h for h in self.hits if predicate(h)]
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self.cond.wait(left)


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def sandbox():
    server = start_in_thread({"ACCESS_TOKEN": TOKEN, "WEBHOOK_SECRET": SECRET,
                              "WEBHOOK_RETRY_INTERVALS": [0.05, 0.1, 0.2], "WEBHOOK_TIMEOUT": 2,
                              "PAYOUT_TIMEOUT_SLEEP": 1.5})
    yield server
    server.shutdown()


@pytest.fixture(autouse=True)
def fresh(sandbox):
    sandbox.state.reset()
    yield


@pytest.fixture
def mp(sandbox):
    return MercadoPagoClient(TOKEN, base_url=sandbox.url, timeout=5)


def expires(minutes=60):
    return datetime.now(timezone(timedelta(hours=-3))) + timedelta(minutes=minutes)


def control(sandbox, path, **body):
    r = requests.post(sandbox.url + path, json=body, timeout=5)
    assert r.status_code < 300, r.text
    return r.json()


def verify(hit) -> None:
    check_webhook_signature(hit["headers"].get("x-signature"), hit["headers"].get("x-request-id"),
                            hit["query"]["data.id"], SECRET)


# --------------------------------------------------------------------------- charges

def test_client_implements_the_interface(mp):
    assert isinstance(mp, PixProvider)


def test_charge_lifecycle_with_signed_webhooks(mp, sandbox, receiver):
    hook = receiver.url + "/webhooks/mp?source_news=webhooks"
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # the SDK's notification_url warning must not leak
        charge = mp.create_pix_charge("dep-0001", Decimal("150.10"), "cliente@example.com",
                                      "19119119100", expires(), "Deposito conta 42", hook)
    assert charge.status == "pending" and charge.status_detail == "pending_waiting_transfer"
    assert charge.amount == Decimal("150.10") and charge.reference == "dep-0001"
    assert charge.payer_cpf is None      # payer data is only echoed once paid
    code = parse_brcode(charge.qr_code)
    assert code.amount == Decimal("150.10") and code.txid == f"mpqrinter{charge.provider_id}"
    assert base64.b64decode(charge.qr_code_base64).startswith(b"\x89PNG")
    assert charge.expires_at > datetime.now(timezone.utc) + timedelta(minutes=55)

    again = mp.get_payment(charge.provider_id)
    assert again.provider_id == charge.provider_id and again.status == "pending"
    found = mp.find_payments_by_reference("dep-0001")
    assert [c.provider_id for c in found] == [charge.provider_id]
    assert mp.find_payments_by_reference("dep-none") == []

    control(sandbox, f"/_sandbox/payments/{charge.provider_id}/pay", payer_cpf="529.982.247-25")
    paid = mp.get_payment(charge.provider_id)
    assert paid.status == "approved" and paid.status_detail == "accredited"
    assert paid.payer_cpf == "52998224725"
    assert paid.paid_amount == Decimal("150.10") and paid.paid_at is not None
    assert paid.end_to_end_id.startswith("E")

    hits = receiver.wait_for(lambda h: h["query"].get("data.id") == charge.provider_id
                             and h["body"]["action"] == "payment.updated")
    assert hits, "no payment.updated webhook arrived"
    hit = hits[0]
    assert hit["path"] == "/webhooks/mp" and hit["query"]["source_news"] == "webhooks"
    assert hit["query"]["type"] == "payment" and hit["body"]["data"] == {"id": charge.provider_id}
    assert hit["body"]["type"] == "payment" and hit["body"]["api_version"] == "v1"
    verify(hit)                                   # our verifier accepts the emulator's signature
    ts = hit["headers"]["x-signature"].split(",")[0].split("=")[1]
    assert abs(int(ts) - time.time()) < 60         # seconds, not milliseconds
    assert receiver.wait_for(lambda h: h["query"].get("data.id") == charge.provider_id
                             and h["body"]["action"] == "payment.created")


def test_idempotent_replay_and_conflict(mp, sandbox):
    exp = expires()
    first = mp.create_pix_charge("dep-0002", Decimal("20.00"), "a@example.com", None, exp, "x")
    again = mp.create_pix_charge("dep-0002", Decimal("20.00"), "a@example.com", None, exp, "x")
    assert again.provider_id == first.provider_id
    assert len(sandbox.state.payments) == 1
    with pytest.raises(ProviderError) as err:
        mp.create_pix_charge("dep-0002", Decimal("25.00"), "a@example.com", None, exp, "x")
    assert err.value.status == 409 and not err.value.outcome_unknown and not err.value.retryable
    assert "different request body" in err.value.message


def test_idempotency_key_is_derived_and_bounded():
    assert idempotency_key("dep-1") == "bsm-dep-1"
    long = idempotency_key("x" * 100)
    assert len(long) <= 64 and long == idempotency_key("x" * 100)


def test_cancel(mp, sandbox):
    charge = mp.create_pix_charge("dep-0003", Decimal("5.00"), "a@example.com", None, expires(), "x")
    cancelled = mp.cancel_charge(charge.provider_id)
    assert cancelled.status == CHARGE_CANCELLED and cancelled.status_detail == "by_collector"
    # The emulator answers 400 code 2018 to a second PUT (real rule, A.7); the client
    # looks the payment up and returns it: cancelling is what the caller wanted.
    r = requests.put(f"{mp.base_url}/v1/payments/{charge.provider_id}", json={"status": "cancelled"},
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 400 and r.json()["cause"][0]["code"] == 2018
    again = mp.cancel_charge(charge.provider_id)
    assert again.status == CHARGE_CANCELLED
    # an expired one is as good as cancelled
    other = mp.create_pix_charge("dep-0003b", Decimal("5.00"), "a@example.com", None, expires(), "x")
    control(sandbox, f"/_sandbox/payments/{other.provider_id}/expire")
    assert mp.cancel_charge(other.provider_id).status == CHARGE_EXPIRED


def test_cannot_cancel_a_paid_charge(mp, sandbox):
    charge = mp.create_pix_charge("dep-0004", Decimal("5.00"), "a@example.com", None, expires(), "x")
    control(sandbox, f"/_sandbox/payments/{charge.provider_id}/pay")
    with pytest.raises(NotCancellable) as err:
        mp.cancel_charge(charge.provider_id)
    assert isinstance(err.value, ProviderError) and err.value.not_cancellable
    assert err.value.status == 400 and err.value.code == "2018"
    assert not (err.value.retryable or err.value.outcome_unknown)
    assert err.value.charge.status == CHARGE_APPROVED and err.value.charge.paid_amount == Decimal("5.00")


def test_unknown_payment_is_a_clear_404(mp):
    with pytest.raises(NotFound) as err:
        mp.get_payment(999)
    assert err.value.status == 404 and "Payment not found" in err.value.message
    assert not err.value.outcome_unknown


def test_rejections_are_readable(mp):
    with pytest.raises(ProviderError, match="30 minutes and 30 days"):
        mp.create_pix_charge("dep-0005", Decimal("5.00"), "a@example.com", None, expires(10), "x")
    with pytest.raises(ProviderError, match="identification"):
        mp.create_pix_charge("dep-0006", Decimal("5.00"), "a@example.com", "12345678900", expires(), "x")


def test_bearer_token_required(sandbox):
    r = requests.get(sandbox.url + "/v1/payments/1", timeout=5)
    assert r.status_code == 401 and r.json()["status"] == 401 and r.json()["error"] == "unauthorized"
    r = requests.get(sandbox.url + "/v1/payments/1", headers={"Authorization": "Bearer wrong"}, timeout=5)
    assert r.status_code == 401
    with pytest.raises(ProviderError) as err:
        MercadoPagoClient("wrong-token", base_url=sandbox.url).get_payment(1)
    assert err.value.status == 401


def test_search_validation_and_json_errors(sandbox):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.get(sandbox.url + "/v1/payments/search?sort=bogus", headers=auth, timeout=5)
    assert r.status_code == 400 and r.json()["cause"][0]["code"] == 1003
    r = requests.get(sandbox.url + "/v1/nothing-here", headers=auth, timeout=5)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json")


def test_expire_and_expire_due(mp, sandbox):
    a = mp.create_pix_charge("dep-0007", Decimal("5.00"), "a@example.com", None, expires(), "x")
    b = mp.create_pix_charge("dep-0008", Decimal("6.00"), "a@example.com", None, expires(), "x")
    control(sandbox, f"/_sandbox/payments/{a.provider_id}/expire")
    assert mp.get_payment(a.provider_id).status == "expired"
    with sandbox.state.lock:   # time travel: b is now due
        sandbox.state.payments[int(b.provider_id)]["_expires"] = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert control(sandbox, "/_sandbox/expire-due")["expired"] == [int(b.provider_id)]
    expired = mp.get_payment(b.provider_id)
    assert expired.status == "expired" and expired.raw["status"] == "cancelled"
    r = requests.post(sandbox.url + f"/_sandbox/payments/{b.provider_id}/pay", json={}, timeout=5)
    assert r.status_code == 409


def test_pay_a_different_amount_and_by_brcode(mp, sandbox):
    charge = mp.create_pix_charge("dep-0009", Decimal("100.00"), "a@example.com", None, expires(), "x")
    control(sandbox, "/_sandbox/pix/pay", qr_code=charge.qr_code, amount="99,50", payer_cpf="11144477735")
    paid = mp.get_payment(charge.provider_id)
    assert paid.status == "approved" and paid.amount == Decimal("100.00")
    assert paid.paid_amount == Decimal("99.50") and paid.payer_cpf == "11144477735"


def test_lost_webhook_and_replay(mp, sandbox, receiver):
    charge = mp.create_pix_charge("dep-0010", Decimal("7.00"), "a@example.com", None, expires(), "x",
                                  receiver.url + "/hook")
    receiver.wait_for(lambda h: h["query"].get("data.id") == charge.provider_id)
    control(sandbox, "/_sandbox/webhooks/drop", drop=True)
    control(sandbox, f"/_sandbox/payments/{charge.provider_id}/pay")
    time.sleep(0.3)
    updated = lambda h: h["query"].get("data.id") == charge.provider_id and h["body"]["action"] == "payment.updated"
    assert receiver.wait_for(updated, timeout=0.2) == []
    deliveries = requests.get(sandbox.url + f"/_sandbox/webhooks?resource_id={charge.provider_id}",
                              timeout=5).json()["deliveries"]
    assert deliveries[-1]["state"] == "dropped"
    control(sandbox, "/_sandbox/webhooks/drop", drop=False)
    control(sandbox, f"/_sandbox/payments/{charge.provider_id}/notify")
    hits = receiver.wait_for(updated)
    assert hits and verify(hits[0]) is None
    assert hits[0]["body"]["id"] == deliveries[-1]["notification_id"]   # same notification, redelivered


def test_webhook_retries_until_2xx(mp, sandbox, receiver):
    receiver.fail_next = 2
    charge = mp.create_pix_charge("dep-0011", Decimal("8.00"), "a@example.com", None, expires(), "x",
                                  receiver.url + "/retry")
    hits = receiver.wait_for(lambda h: h["query"].get("data.id") == charge.provider_id and h["answered"] == 200)
    assert hits
    tries = [h for h in receiver.hits if h["query"].get("data.id") == charge.provider_id]
    assert [h["answered"] for h in tries] == [500, 500, 200]
    assert len({h["headers"]["x-request-id"] for h in tries}) == 3     # fresh request id per try
    for h in tries:
        verify(h)
    time.sleep(0.05)
    delivery = requests.get(sandbox.url + f"/_sandbox/webhooks?resource_id={charge.provider_id}",
                            timeout=5).json()["deliveries"][0]
    assert delivery["state"] == "delivered" and [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]


def test_unreachable_provider_is_retryable_not_unknown():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # nothing listens here once closed
    client = MercadoPagoClient(TOKEN, base_url=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ProviderError) as err:
        client.create_pix_charge("dep-x", Decimal("1.00"), "a@example.com", None, expires(), "x")
    assert err.value.retryable and not err.value.outcome_unknown


# --------------------------------------------------------------------------- payouts

def intents_for(sandbox, reference):
    # What the "bank" holds, read from the emulator's state (the real API has no search).
    with sandbox.state.lock:
        return [t for t in sandbox.state.intents.values() if t["external_reference"] == reference]


def test_payout_approved_with_signed_notification(mp, sandbox, receiver):
    payout = mp.send_pix_payout("wd-0001", Decimal("100.00"), "CPF", "191.191.191-00",
                                notification_url=receiver.url + "/payouts")
    assert payout.status == "completed" and payout.amount == Decimal("100.00")
    assert payout.reference == "wd-0001"
    # The account amounts come back as "100,00" strings (providers.md D); both parse.
    assert payout.raw["transaction"]["to"]["accounts"][0]["amount"] == "100,00"
    fetched = mp.get_payout(payout.provider_id)
    assert fetched.status == "completed" and fetched.provider_id == payout.provider_id
    hits = receiver.wait_for(lambda h: h["query"].get("data.id") == payout.provider_id)
    assert hits and hits[0]["query"]["type"] == "transaction_intent"
    assert hits[0]["body"]["action"] == "transaction_intent.created" and hits[0]["body"]["status"] == "approved"
    verify(hits[0])
    # same reference again: the same intent, not a second transfer
    assert mp.send_pix_payout("wd-0001", Decimal("100.00"), "CPF", "19119119100",
                              notification_url=receiver.url + "/payouts").provider_id == payout.provider_id
    assert len(intents_for(sandbox, "wd-0001")) == 1


def test_payout_rejected(mp, sandbox):
    control(sandbox, "/_sandbox/payouts/mode", mode="reject", status_detail="insufficient_funds")
    payout = mp.send_pix_payout("wd-0002", Decimal("50.00"), "EMAIL", "Cliente@Example.com")
    assert payout.status == "failed" and payout.failure_reason == "rejected/insufficient_funds"
    assert mp.payout_failure_text(payout) == "provedor sem saldo no momento"   # the client's text for it


def test_payout_hangs_until_settled(mp, sandbox):
    control(sandbox, "/_sandbox/payouts/mode", mode="hang")
    payout = mp.send_pix_payout("wd-0003", Decimal("10.00"), "PHONE", "(11) 98765-4321")
    assert payout.status == "pending" and payout.status_detail == "pending_bank"
    assert mp.get_payout(payout.provider_id).status == "pending"
    control(sandbox, f"/_sandbox/payouts/{payout.provider_id}/settle", outcome="approve")
    assert mp.get_payout(payout.provider_id).status == "completed"


def test_payout_500_means_unknown_then_look_up(mp, sandbox):
    control(sandbox, "/_sandbox/payouts/mode", mode="error500")
    with pytest.raises(ProviderError) as err:
        mp.send_pix_payout("wd-0004", Decimal("30.00"), "CNPJ", "11.222.333/0001-81")
    assert err.value.outcome_unknown and err.value.status == 500
    assert len(intents_for(sandbox, "wd-0004")) == 1          # it did happen
    recovered = mp.recover_payout("wd-0004", Decimal("30.00"), "CNPJ", "11.222.333/0001-81")
    assert recovered.status == "completed"
    assert len(intents_for(sandbox, "wd-0004")) == 1          # and only once


def test_payout_timeout_means_unknown_then_look_up(sandbox):
    impatient = MercadoPagoClient(TOKEN, base_url=sandbox.url, timeout=0.5)
    control(sandbox, "/_sandbox/payouts/mode", mode="timeout")
    with pytest.raises(ProviderError) as err:
        impatient.send_pix_payout("wd-0005", Decimal("12.00"), "CPF", "52998224725")
    assert err.value.outcome_unknown and not err.value.retryable
    control(sandbox, "/_sandbox/payouts/mode", mode="approve")
    recovered = impatient.recover_payout("wd-0005", Decimal("12.00"), "CPF", "52998224725")
    assert recovered.status == "completed"
    assert len(intents_for(sandbox, "wd-0005")) == 1


def test_payout_rejections_before_and_at_the_provider(mp, sandbox):
    with pytest.raises(ProviderError, match="chave aleatória"):
        mp.send_pix_payout("wd-0006", Decimal("1.00"), "EVP", "b76aa9c2-2ec4-4110-954e-ebfe34f05b61")
    with pytest.raises(ProviderError, match="CPF inválido"):
        mp.send_pix_payout("wd-0006", Decimal("1.00"), "CPF", "12345678900")
    mp.send_pix_payout("wd-0007", Decimal("1.00"), "CPF", "19119119100")
    with pytest.raises(ProviderError) as err:        # same reference, different amount
        mp.send_pix_payout("wd-0007", Decimal("2.00"), "CPF", "19119119100")
    assert err.value.status == 409
    with pytest.raises(NotFound):
        mp.get_payout("987654321-NOPE")


def test_emulator_accepts_both_point_of_interaction_shapes(sandbox):
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Idempotency-Key": "k-string-poi"}
    body = {"external_reference": "wd-0008", "point_of_interaction": "PSP_TRANSFER",
            "transaction": {"from": {"accounts": [{"amount": 5}]},
                            "to": {"accounts": [{"type": "current", "amount": 5,
                                                 "chave": {"type": "EMAIL", "value": "a@example.com"}}]},
                            "total_amount": 5}}
    r = requests.post(sandbox.url + "/v1/transaction-intents/process", json=body, headers=headers, timeout=5)
    assert r.status_code == 202
    body["transaction"]["total_amount"] = 6
    headers["X-Idempotency-Key"] = "k-unequal"
    r = requests.post(sandbox.url + "/v1/transaction-intents/process", json=body, headers=headers, timeout=5)
    assert r.status_code == 400 and "equal" in r.json()["message"]


def test_control_page_renders(sandbox, mp):
    mp.create_pix_charge("dep-0012", Decimal("9.99"), "a@example.com", None, expires(), "Deposito")
    r = requests.get(sandbox.url + "/_sandbox/", timeout=5)
    assert r.status_code == 200 and "Pagar" in r.text and "dep-0012" in r.text


# --------------------------------------------------------------------------- signature (B.2)

VECTOR = dict(
    x_signature="ts=1704908010,v1=84a027b72f65253f3552243c5e627df84dfc2f20d4f0ec1d6f4cf7094dbd9594",
    x_request_id="bb56a2f1-6aae-46ac-982e-9dcd3581d08e", data_id="123456789", secret=SECRET)


def test_b2_vector_accepted():
    assert verify_webhook_signature(**VECTOR, now=1704908015)
    # and the official SDK's validator agrees
    WebhookSignatureValidator.validate(VECTOR["x_signature"], VECTOR["x_request_id"], VECTOR["data_id"],
                                       SECRET, now=lambda: 1704908015 * 1000)


@pytest.mark.parametrize("field,value", [
    ("x_signature", VECTOR["x_signature"][:-1] + "5"),             # one hex digit of v1
    ("x_signature", VECTOR["x_signature"].replace("1704908010", "1704908011")),
    ("data_id", "123456788"),
    ("x_request_id", "bb56a2f1-6aae-46ac-982e-9dcd3581d08f"),
    ("secret", "test-webhook-secreT"),
])
def test_b2_vector_with_one_byte_changed_is_rejected(field, value):
    args = dict(VECTOR, **{field: value})
    assert not verify_webhook_signature(**args, now=1704908015)
    with pytest.raises(WebhookSignatureError) as err:
        check_webhook_signature(**args, now=1704908015)
    assert err.value.reason == "SIGNATURE_MISMATCH"


def test_stale_and_future_timestamps_rejected():
    with pytest.raises(WebhookSignatureError) as err:
        check_webhook_signature(**VECTOR, now=1704908010 + 301)
    assert err.value.reason == "TIMESTAMP_OUT_OF_TOLERANCE"
    assert not verify_webhook_signature(**VECTOR, now=1704908010 - 400)
    assert verify_webhook_signature(**VECTOR, now=1704908010 + 10_000, tolerance_seconds=None)


def test_millisecond_timestamps_accepted():
    header = sign_webhook("123456789", VECTOR["x_request_id"], "1704908010123", SECRET)
    assert verify_webhook_signature(header, VECTOR["x_request_id"], "123456789", SECRET, now=1704908011)
    assert not verify_webhook_signature(header, VECTOR["x_request_id"], "123456789", SECRET, now=1704908400)
    assert verify_webhook_signature(header, VECTOR["x_request_id"], "123456789", SECRET,
                                    now=datetime.fromtimestamp(1704908011, timezone.utc))


def test_missing_parts_and_case():
    # no x-request-id: the manifest leaves that part out
    header = sign_webhook("123456789", None, "1704908010", SECRET)
    assert verify_webhook_signature(header, None, "123456789", SECRET, now=1704908010)
    # an alphanumeric id signed lower-case is accepted from the raw upper-case query value
    header = sign_webhook("abc123xyz", "r1", "1704908010", SECRET)
    assert verify_webhook_signature(header, "r1", "ABC123XYZ", SECRET, now=1704908010)
    # ... and one signed with its original case too
    header = sign_webhook("ABC123XYZ", "r1", "1704908010", SECRET)
    assert verify_webhook_signature(header, "r1", "ABC123XYZ", SECRET, now=1704908010)
    # spaces around parts are tolerated
    assert verify_webhook_signature(" ts = 1704908010 , v1 = " + VECTOR["x_signature"].split("v1=")[1],
                                    VECTOR["x_request_id"], "123456789", SECRET, now=1704908010)


@pytest.mark.parametrize("header,reason", [
    (None, "MISSING_SIGNATURE_HEADER"), ("", "MISSING_SIGNATURE_HEADER"),
    ("garbage", "MALFORMED_SIGNATURE_HEADER"), ("v1=abc", "MISSING_TIMESTAMP"),
    ("ts=1704908010", "MISSING_HASH"), ("ts=abc,v1=00", "MALFORMED_SIGNATURE_HEADER"),
])
def test_malformed_headers(header, reason):
    with pytest.raises(WebhookSignatureError) as err:
        check_webhook_signature(header, "r", "1", SECRET, now=1704908010)
    assert err.value.reason == reason


def test_sdk_validator_agrees_on_a_mismatch():
    with pytest.raises(InvalidWebhookSignatureError):
        WebhookSignatureValidator.validate(VECTOR["x_signature"][:-1] + "5", VECTOR["x_request_id"],
                                           VECTOR["data_id"], SECRET, now=lambda: 1704908015 * 1000)


# --------------------------------------------------------------------------- refunds, MED (clawback)

def paid_charge(mp, sandbox, reference, amount="100.00"):
    charge = mp.create_pix_charge(reference, Decimal(amount), "a@example.com", None, expires(), "x")
    control(sandbox, f"/_sandbox/payments/{charge.provider_id}/pay")
    return charge


def test_partial_then_full_refund_through_the_sdk(mp, sandbox, receiver):
    sandbox.state.config["WEBHOOK_URL"] = receiver.url + "/hook"
    try:
        charge = paid_charge(mp, sandbox, "dep-r1")
        part = mp.refund_charge(charge.provider_id, Decimal("30.10"), "refund-dep-r1-1")
        assert isinstance(part, Refund) and part.amount == Decimal("30.10") and part.status == REFUND_COMPLETED
        assert part.charge_id == charge.provider_id and part.id.isdigit()
        now = mp.get_charge(charge.provider_id)
        assert now.status == CHARGE_APPROVED and now.status_detail == "partially_refunded"
        assert now.refunded_amount == Decimal("30.10") and now.paid_amount == Decimal("100.00")

        # The same key replays the same refund: nothing more leaves.
        replay = mp.refund_charge(charge.provider_id, Decimal("30.10"), "refund-dep-r1-1")
        assert replay.id == part.id
        assert mp.get_charge(charge.provider_id).refunded_amount == Decimal("30.10")

        # More than what is left: a definite refusal.
        with pytest.raises(ProviderError) as err:
            mp.refund_charge(charge.provider_id, Decimal("69.91"), "refund-dep-r1-2")
        assert err.value.status == 400 and not (err.value.retryable or err.value.outcome_unknown)
        assert "more than what is left" in err.value.message

        rest = mp.refund_charge(charge.provider_id, Decimal("69.90"), "refund-dep-r1-3")
        done = mp.get_charge(charge.provider_id)
        assert done.status == CHARGE_REFUNDED and done.status_detail == "refunded"
        assert done.refunded_amount == Decimal("100.00")
        assert [r.id for r in mp.list_refunds(charge.provider_id)] == [part.id, rest.id]
        assert mp.get_refund(charge.provider_id, rest.id) == rest
        with pytest.raises(NotFound):
            mp.get_refund(charge.provider_id, "1")
        # a refunded charge cannot be refunded again, nor cancelled
        with pytest.raises(ProviderError) as err:
            mp.refund_charge(charge.provider_id, Decimal("1.00"), "refund-dep-r1-4")
        assert err.value.status == 400
        with pytest.raises(NotCancellable) as nc:
            mp.cancel_charge(charge.provider_id)
        assert nc.value.charge.status == CHARGE_REFUNDED
        # each refund notified the payment (signed)
        hits = receiver.wait_for(lambda h: h["query"].get("data.id") == charge.provider_id
                                 and h["body"]["action"] == "payment.updated")
        assert hits
        for hit in hits:
            verify(hit)
    finally:
        sandbox.state.config["WEBHOOK_URL"] = None


def test_refund_wire_format(mp, sandbox):
    """X-Idempotency-Key goes on the wire as given; the amount is a JSON number; a pending
    charge cannot be refunded; a different body under the same key is a 409."""
    charge = paid_charge(mp, sandbox, "dep-r2", "10.00")
    url = f"{sandbox.url}/v1/payments/{charge.provider_id}/refunds"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = requests.post(url, json={"amount": 1.5}, headers={**auth, "X-Idempotency-Key": "k-r2"}, timeout=5)
    assert first.status_code == 201 and first.json()["amount"] == 1.5
    clash = requests.post(url, json={"amount": 2}, headers={**auth, "X-Idempotency-Key": "k-r2"}, timeout=5)
    assert clash.status_code == 409
    no_key = requests.post(url, json={"amount": 2}, headers=auth, timeout=5)
    assert no_key.status_code == 400
    full = requests.post(url, headers={**auth, "X-Idempotency-Key": "k-r2-full"}, timeout=5)   # no body: the rest
    assert full.status_code == 201 and full.json()["amount"] == 8.5
    pending = mp.create_pix_charge("dep-r2b", Decimal("10.00"), "a@example.com", None, expires(), "x")
    with pytest.raises(ProviderError) as err:
        mp.refund_charge(pending.provider_id, Decimal("1.00"), "k-r2b")
    assert err.value.status == 400
    with pytest.raises(TypeError):
        mp.refund_charge(charge.provider_id, 1.0, "k-float")
    with pytest.raises(ValueError):
        mp.refund_charge(charge.provider_id, Decimal("1.00"), "x" * 65)


def test_med_mediation_then_chargeback_with_signed_webhooks(mp, sandbox, receiver):
    sandbox.state.config["WEBHOOK_URL"] = receiver.url + "/hook"
    try:
        charge = paid_charge(mp, sandbox, "dep-med", "80.00")
        control(sandbox, f"/_sandbox/payments/{charge.provider_id}/chargeback", status="in_mediation")
        blocked = mp.get_charge(charge.provider_id)
        assert blocked.status == CHARGE_IN_MEDIATION and blocked.paid_amount == Decimal("80.00")
        with pytest.raises(ProviderError):       # no refund while disputed
            mp.refund_charge(charge.provider_id, Decimal("1.00"), "k-med")
        control(sandbox, f"/_sandbox/payments/{charge.provider_id}/chargeback", status="charged_back", amount="50.00")
        gone = mp.get_charge(charge.provider_id)
        assert gone.status == CHARGE_CHARGED_BACK and gone.refunded_amount == Decimal("50.00")
        hits = receiver.wait_for(lambda h: h["query"].get("data.id") == charge.provider_id
                                 and h["body"]["action"] == "payment.updated", timeout=5)
        deadline = time.monotonic() + 5
        while len(hits) < 3 and time.monotonic() < deadline:    # pay, mediation, chargeback
            time.sleep(0.05)
            hits = [h for h in receiver.hits if h["query"].get("data.id") == charge.provider_id
                    and h["body"]["action"] == "payment.updated"]
        assert len(hits) >= 3
        for hit in hits:
            verify(hit)
        # a dispute the payer lost goes back to approved
        other = paid_charge(mp, sandbox, "dep-med2", "20.00")
        control(sandbox, f"/_sandbox/payments/{other.provider_id}/chargeback", status="in_mediation")
        control(sandbox, f"/_sandbox/payments/{other.provider_id}/chargeback", status="approved")
        assert mp.get_charge(other.provider_id).status == CHARGE_APPROVED
        # a pending charge has nothing to take back
        pending = mp.create_pix_charge("dep-med3", Decimal("20.00"), "a@example.com", None, expires(), "x")
        r = requests.post(f"{sandbox.url}/_sandbox/payments/{pending.provider_id}/chargeback", json={}, timeout=5)
        assert r.status_code == 409
    finally:
        sandbox.state.config["WEBHOOK_URL"] = None


def test_cancelled_or_expired_charge_cannot_be_paid(mp, sandbox):
    cancelled = mp.create_pix_charge("dep-c1", Decimal("10.00"), "a@example.com", None, expires(), "x")
    mp.cancel_charge(cancelled.provider_id)
    expired = mp.create_pix_charge("dep-c2", Decimal("10.00"), "a@example.com", None, expires(), "x")
    control(sandbox, f"/_sandbox/payments/{expired.provider_id}/expire")
    for charge in (cancelled, expired):
        by_id = requests.post(f"{sandbox.url}/_sandbox/payments/{charge.provider_id}/pay", json={}, timeout=5)
        assert by_id.status_code == 409 and "not pending" in by_id.json()["message"]
        by_code = requests.post(f"{sandbox.url}/_sandbox/pix/pay", json={"qr_code": charge.qr_code}, timeout=5)
        assert by_code.status_code == 409
        # the payer, on the control page's form, gets a page that says so
        page = requests.post(f"{sandbox.url}/_sandbox/payments/{charge.provider_id}/pay",
                             data={"payer_cpf": "19119119100"}, timeout=5, allow_redirects=False)
        assert page.status_code == 409 and page.headers["Content-Type"].startswith("text/html")
        assert "não é possível" in page.text.lower() or "Não foi possível" in page.text
        assert mp.get_charge(charge.provider_id).paid_amount is None
    # a pending charge past its expiry (not swept yet) cannot be paid either
    late = mp.create_pix_charge("dep-c3", Decimal("10.00"), "a@example.com", None, expires(), "x")
    with sandbox.state.lock:
        sandbox.state.payments[int(late.provider_id)]["_expires"] = datetime.now(timezone.utc)
    r = requests.post(f"{sandbox.url}/_sandbox/payments/{late.provider_id}/pay", json={}, timeout=5)
    assert r.status_code == 400 and "expired" in r.json()["message"]


def test_ids_never_repeat_after_a_restart(tmp_path):
    """Issue 20: a second emulator (a restart) never hands out an id the first one did,
    with its state directory and without it (the clock)."""
    seen = {"payment": set(), "e2e": set(), "refund": set(), "notification": set()}
    for state_dir in (tmp_path, tmp_path, None):
        server = start_in_thread({"ACCESS_TOKEN": TOKEN, "STATE_DIR": state_dir})
        try:
            client = MercadoPagoClient(TOKEN, base_url=server.url, timeout=5)
            for n in range(3):
                charge = paid_charge(client, server, f"dep-restart-{n}", "10.00")
                refund = client.refund_charge(charge.provider_id, Decimal("1.00"), f"k-{n}")
                paid = client.get_charge(charge.provider_id)
                for kind, value in (("payment", charge.provider_id), ("e2e", paid.end_to_end_id),
                                    ("refund", refund.id)):
                    assert value not in seen[kind], (kind, value)
                    seen[kind].add(value)
                assert len(paid.end_to_end_id) == 32
            with server.state.lock:
                for d in server.state.deliveries:
                    assert d.body["id"] not in seen["notification"]
                    seen["notification"].add(d.body["id"])
        finally:
            server.shutdown()
    assert (tmp_path / "mercadopago-ids.json").exists()
