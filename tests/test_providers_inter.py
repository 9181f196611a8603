"""InterClient against the local Banco Inter emulator over real HTTPS with
mutual TLS (providers.md E). No mocks."""
import json
import re
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from webapp.pix import parse_brcode
from webapp.providers.base import (
    CHARGE_APPROVED, CHARGE_CANCELLED, CHARGE_CHARGED_BACK, CHARGE_EXPIRED, CHARGE_REFUNDED, REFUND_COMPLETED,
    REFUND_FAILED, REFUND_PENDING, NotCancellable, NotFound, PixProvider, ProviderError, Refund,
)
from webapp.providers.inter import (
    InterClient, devolucao_id, idempotency_uuid, parse_pix_webhook, resolve_cert, txid_for,
)
from sandbox import certs
from sandbox.inter import start_in_thread

CLIENT_ID, CLIENT_SECRET, PIX_KEY = "test-client", "test-secret", "12345678000195"


class Receiver:
    """Records JSON POSTs (the emulator's webhook deliveries)."""

    def __init__(self):
        self.hits: list[dict] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.cond:
                    outer.hits.append({"path": self.path, "raw": raw})
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, path, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not [h for h in self.hits if h["path"] == path]:
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    return []
            return [h for h in self.hits if h["path"] == path]


@pytest.fixture(scope="module")
def cert_paths(tmp_path_factory):
    return certs.generate(tmp_path_factory.mktemp("inter-certs"))


@pytest.fixture(scope="module")
def sandbox(cert_paths):
    server = start_in_thread({"CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET, "PIX_KEY": PIX_KEY,
                              "ACCOUNT": "998877", "WEBHOOK_RETRY_INTERVALS": [0.05]}, cert_paths)
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(autouse=True)
def payout_mode(sandbox):
    sandbox.state.payout_mode = "approve"
    sandbox.state.webhook_shape = "object"
    sandbox.state.devolucao_mode = "settle"


@pytest.fixture
def inter(sandbox, cert_paths):
    return InterClient(CLIENT_ID, CLIENT_SECRET, str(cert_paths.client_pem), PIX_KEY,
                       base_url=sandbox.url, account="998877", verify=str(cert_paths.ca_crt))


def soon(minutes=60):
    return datetime.now(timezone.utc) + timedelta(minutes=minutes)


# --------------------------------------------------------------------------- mTLS and token

def test_mtls_required(sandbox, cert_paths):
    with pytest.raises(requests.exceptions.SSLError):        # no client certificate at all
        requests.post(sandbox.url + "/oauth/v2/token", verify=str(cert_paths.ca_crt), timeout=5)
    r = requests.post(sandbox.url + "/oauth/v2/token", verify=str(cert_paths.ca_crt), timeout=5,
                      cert=cert_paths.client_cert,
                      data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                            "grant_type": "client_credentials", "scope": "cob.read"})
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer"


def test_client_certificate_from_another_ca_is_refused(sandbox, cert_paths, tmp_path):
    stranger = certs.generate(tmp_path / "other")
    client = InterClient(CLIENT_ID, CLIENT_SECRET, stranger.client_cert, PIX_KEY,
                         base_url=sandbox.url, verify=str(cert_paths.ca_crt))
    with pytest.raises(ProviderError, match="TLS"):
        client.token()


def test_token_is_cached_and_refreshed_after_401(inter, sandbox):
    first = inter.token()
    assert inter.token() == first
    with sandbox.state.lock:
        sandbox.state.tokens.clear()           # Inter revokes it early
    assert inter.find_charges_by_reference("nothing-here") == []   # transparently re-authenticated
    assert inter.token() != first


def test_bad_credentials_are_a_readable_error(sandbox, cert_paths):
    client = InterClient(CLIENT_ID, "wrong", str(cert_paths.client_pem), PIX_KEY,
                         base_url=sandbox.url, verify=str(cert_paths.ca_crt))
    with pytest.raises(ProviderError) as err:
        client.token()
    assert err.value.status == 401 and "client_secret" in err.value.message


def test_wrong_account_header_is_refused(sandbox, cert_paths):
    client = InterClient(CLIENT_ID, CLIENT_SECRET, str(cert_paths.client_pem), PIX_KEY,
                         base_url=sandbox.url, account="111", verify=str(cert_paths.ca_crt))
    with pytest.raises(ProviderError) as err:
        client.find_charges_by_reference("x")
    assert err.value.status == 403


def test_cert_path_forms(cert_paths, tmp_path):
    assert resolve_cert(str(cert_paths.client_pem)) == str(cert_paths.client_pem)
    assert resolve_cert(str(cert_paths.client_crt)) == cert_paths.client_cert     # .crt with .key beside
    assert resolve_cert(str(cert_paths.directory / "client")) == cert_paths.client_cert   # prefix
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(cert_paths.client_crt, only / "inter.crt")
    shutil.copy(cert_paths.client_key, only / "inter.key")
    assert resolve_cert(str(only)) == (str(only / "inter.crt"), str(only / "inter.key"))
    with pytest.raises(ValueError, match="exactly one"):
        resolve_cert(str(cert_paths.directory))          # several .crt files there
    with pytest.raises(ValueError, match="INTER_CERT_PATH"):
        resolve_cert("")
    shutil.copy(cert_paths.client_crt, tmp_path / "only-cert.pem")
    with pytest.raises(ValueError, match="both"):
        resolve_cert(str(tmp_path / "only-cert.pem"))


# --------------------------------------------------------------------------- charges

def test_txid_and_idempotency_key_derivation():
    uuid_ref = "3f2a5b7c-1d2e-4f60-8a9b-0c1d2e3f4a5b"
    assert txid_for(uuid_ref) == "bsm3f2a5b7c1d2e4f608a9b0c1d2e3f4a5b"
    for ref in (uuid_ref, "42", "dep_01J9ZQ7B8K3", "x" * 80, "depósito 7"):
        assert re.fullmatch(r"[a-zA-Z0-9]{26,35}", txid_for(ref))
        assert txid_for(ref) == txid_for(ref)
    assert txid_for("42") != txid_for("43")
    assert idempotency_uuid("wd-1") == idempotency_uuid("wd-1") != idempotency_uuid("wd-2")


def test_charge_pay_query_and_webhook(inter, sandbox, receiver):
    assert isinstance(inter, PixProvider)
    inter.register_webhook(receiver.url + "/inter/pix")
    ref = "dep-inter-0001"
    charge = inter.create_pix_charge(ref, Decimal("150.00"), "cliente@example.com", "19119119100",
                                     soon(), "Deposito conta 42", payer_name="Maria Silva")
    assert charge.provider_id == txid_for(ref) and charge.reference == ref
    assert charge.status == "pending" and charge.amount == Decimal("150.00")
    code = parse_brcode(charge.qr_code)
    assert code.amount == Decimal("150.00") and code.url and code.fields["01"] == "12"
    assert charge.qr_code_base64 and charge.expires_at > soon(55)
    assert charge.raw["devedor"] == {"cpf": "19119119100", "nome": "Maria Silva"}

    # creating again (e.g. after a timeout) finds the first charge
    assert inter.create_pix_charge(ref, Decimal("150.00"), "cliente@example.com", None, soon(),
                                   "Deposito conta 42").provider_id == charge.provider_id
    with pytest.raises(ProviderError, match="another amount"):
        inter.create_pix_charge(ref, Decimal("151.00"), "cliente@example.com", None, soon(), "x")

    inter.simulate_payment(charge.provider_id, Decimal("150.00"), payer_cpf="52998224725")
    paid = inter.get_charge(charge.provider_id)
    assert paid.status == "approved" and paid.payer_cpf == "52998224725"
    assert paid.paid_amount == Decimal("150.00") and paid.end_to_end_id.startswith("E")
    assert [c.status for c in inter.find_charges_by_reference(ref)] == ["approved"]

    hits = receiver.wait_for("/inter/pix")
    assert hits
    body = json.loads(hits[0]["raw"])
    assert isinstance(body, dict) and "pix" in body
    received = parse_pix_webhook(hits[0]["raw"])
    assert received[0].txid == charge.provider_id and received[0].amount == Decimal("150.00")
    assert received[0].end_to_end_id == paid.end_to_end_id


def test_webhook_bare_array_shape(inter, sandbox, receiver, cert_paths):
    inter.register_webhook(receiver.url + "/inter/array")
    requests.post(sandbox.url + "/_sandbox/webhooks/shape", json={"shape": "array"}, timeout=5,
                  cert=cert_paths.client_cert, verify=str(cert_paths.ca_crt))
    charge = inter.create_pix_charge("dep-inter-0002", Decimal("10.50"), "a@example.com", None, soon(), "x")
    inter.simulate_payment(charge.provider_id)
    hits = receiver.wait_for("/inter/array")
    assert hits and isinstance(json.loads(hits[0]["raw"]), list)
    assert parse_pix_webhook(hits[0]["raw"])[0].amount == Decimal("10.50")


def test_parse_pix_webhook_shapes():
    item = {"endToEndId": "E123", "txid": "t" * 26, "valor": "110.00", "horario": "2026-11-24T10:00:00.000Z",
            "chave": PIX_KEY, "infoPagador": "oi"}
    for body in ({"pix": [item]}, [item], json.dumps([item]).encode(), json.dumps({"pix": [item]})):
        [got] = parse_pix_webhook(body)
        assert got.amount == Decimal("110.00") and got.end_to_end_id == "E123" and got.paid_at.year == 2026
    for bad in (b"not json", {"other": []}, {"pix": {}}, [{"valor": "1.00"}]):
        with pytest.raises(ValueError):
            parse_pix_webhook(bad)


def test_cancel_expire_and_unknown(inter, sandbox):
    charge = inter.create_pix_charge("dep-inter-0003", Decimal("5.00"), "a@example.com", None, soon(), "x")
    assert inter.cancel_charge(charge.provider_id).status == "cancelled"
    with pytest.raises(ProviderError, match="não pode ser paga"):
        inter.simulate_payment(charge.provider_id)
    other = inter.create_pix_charge("dep-inter-0004", Decimal("5.00"), "a@example.com", None, soon(), "x")
    with sandbox.state.lock:
        sandbox.state.cobs[other.provider_id]["_expires"] = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert inter.get_charge(other.provider_id).status == "expired"
    with pytest.raises(NotFound):
        inter.get_charge("bsm" + "0" * 30)


def test_charge_validation_errors_are_readable(inter):
    with pytest.raises(ProviderError, match="devedor.cpf"):
        inter.create_pix_charge("dep-inter-0005", Decimal("5.00"), "a@example.com", "12345678900",
                                soon(), "x", payer_name="Fulano")


# --------------------------------------------------------------------------- payouts

def test_payout_completed_and_idempotent(inter, sandbox, receiver):
    inter.register_payout_webhook(receiver.url + "/inter/banking")
    payout = inter.send_pix_payout("wd-inter-0001", Decimal("100.00"), "EMAIL", "Cliente@Example.com")
    assert payout.status == "pending" and payout.status_detail == "PROCESSADO"
    done = inter.get_payout(payout.provider_id)
    assert done.status == "completed" and done.amount == Decimal("100.00")
    assert done.raw["transacaoPix"]["chave"] == "cliente@example.com"
    count = len(sandbox.state.payouts)
    again = inter.send_pix_payout("wd-inter-0001", Decimal("100.00"), "EMAIL", "cliente@example.com")
    assert again.provider_id == payout.provider_id
    assert len(sandbox.state.payouts) == count          # replayed, not sent twice
    with pytest.raises(ProviderError) as err:
        inter.send_pix_payout("wd-inter-0001", Decimal("99.00"), "EMAIL", "cliente@example.com")
    assert err.value.status == 409
    hits = receiver.wait_for("/inter/banking")
    assert hits and json.loads(hits[0]["raw"])[0]["status"] == "EFETIVADO"


def test_payout_rejected_and_hanging(inter, sandbox):
    sandbox.state.payout_mode = "reject"
    rejected = inter.send_pix_payout("wd-inter-0002", Decimal("10.00"), "CPF", "191.191.191-00")
    failed = inter.get_payout(rejected.provider_id)
    assert failed.status == "failed" and "Chave PIX não encontrada" in failed.failure_reason
    assert inter.payout_failure_text(failed) == "recusado pelo banco"      # REPROVADO, in the client's words

    sandbox.state.payout_mode = "hang"
    hanging = inter.send_pix_payout("wd-inter-0003", Decimal("10.00"), "EVP",
                                    "B76AA9C2-2EC4-4110-954E-EBFE34F05B61")
    assert inter.get_payout(hanging.provider_id).status == "pending"
    sandbox.app.test_client().post(f"/_sandbox/payouts/{hanging.provider_id}/settle", json={"outcome": "approve"})
    assert inter.get_payout(hanging.provider_id).status == "completed"
    with pytest.raises(NotFound):
        inter.get_payout("00000000-0000-0000-0000-000000000000")


def test_payout_invalid_key_refused_before_sending(inter, sandbox):
    before = len(sandbox.state.payouts)
    with pytest.raises(ProviderError, match="Telefone inválido"):
        inter.send_pix_payout("wd-inter-0004", Decimal("10.00"), "PHONE", "123")
    assert len(sandbox.state.payouts) == before


# --------------------------------------------------------------------------- cancel, devolução, MED

def sandbox_post(sandbox, cert_paths, path, **body):
    r = requests.post(sandbox.url + path, json=body, timeout=5, cert=cert_paths.client_cert,
                      verify=str(cert_paths.ca_crt))
    return r


def paid_cob(inter, reference, amount="100.00"):
    charge = inter.create_pix_charge(reference, Decimal(amount), "a@example.com", None, soon(), "x")
    inter.simulate_payment(charge.provider_id)
    return charge


def test_cancel_charge_semantics(inter, sandbox):
    charge = inter.create_pix_charge("dep-inter-c1", Decimal("5.00"), "a@example.com", None, soon(), "x")
    assert inter.cancel_charge(charge.provider_id).status == CHARGE_CANCELLED
    assert inter.cancel_charge(charge.provider_id).status == CHARGE_CANCELLED    # again: still removed
    late = inter.create_pix_charge("dep-inter-c2", Decimal("5.00"), "a@example.com", None, soon(), "x")
    with sandbox.state.lock:
        sandbox.state.cobs[late.provider_id]["_expires"] = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert inter.cancel_charge(late.provider_id).status == CHARGE_EXPIRED
    paid = paid_cob(inter, "dep-inter-c3", "5.00")
    with pytest.raises(NotCancellable) as err:
        inter.cancel_charge(paid.provider_id)
    assert err.value.charge.status == CHARGE_APPROVED and not (err.value.retryable or err.value.outcome_unknown)
    with pytest.raises(NotFound):
        inter.cancel_charge("bsm" + "1" * 30)


def test_devolucao_partial_full_and_idempotent(inter, sandbox):
    charge = paid_cob(inter, "dep-inter-r1")
    part = inter.refund_charge(charge.provider_id, Decimal("40.00"), "refund-dep-inter-r1-1")
    assert isinstance(part, Refund) and part.id == devolucao_id("refund-dep-inter-r1-1")   # dashes: hashed
    assert part.id.startswith("bsm") and len(part.id) == 35
    assert part.status == REFUND_PENDING and part.status_detail == "EM_PROCESSAMENTO"   # as the PUT answers
    assert part.amount == Decimal("40.00") and part.charge_id == charge.provider_id
    assert inter.get_refund(charge.provider_id, part.id).status == REFUND_COMPLETED      # then DEVOLVIDO
    now = inter.get_charge(charge.provider_id)
    assert now.status == CHARGE_APPROVED and now.refunded_amount == Decimal("40.00")

    again = inter.refund_charge(charge.provider_id, Decimal("40.00"), "refund-dep-inter-r1-1")
    assert again.id == part.id and len(inter.list_refunds(charge.provider_id)) == 1
    with pytest.raises(ProviderError) as clash:       # same id, other amount
        inter.refund_charge(charge.provider_id, Decimal("41.00"), "refund-dep-inter-r1-1")
    assert clash.value.status == 409
    with pytest.raises(ProviderError) as too_much:
        inter.refund_charge(charge.provider_id, Decimal("60.01"), "refund-dep-inter-r1-2")
    assert too_much.value.status == 400 and not (too_much.value.retryable or too_much.value.outcome_unknown)

    rest = inter.refund_charge(charge.provider_id, Decimal("60.00"), "refund-dep-inter-r1-3")
    done = inter.get_charge(charge.provider_id)
    assert done.status == CHARGE_REFUNDED and done.refunded_amount == Decimal("100.00")
    assert done.raw["status"] == "CONCLUIDA"           # the cob itself stays CONCLUIDA
    assert [r.id for r in inter.list_refunds(charge.provider_id)] == [part.id, rest.id]
    rtr = done.raw["pix"][0]["devolucoes"][0]["rtrId"]
    assert len(rtr) == 32 and rtr.startswith("D")
    with pytest.raises(NotFound):
        inter.get_refund(charge.provider_id, "nope")

    unpaid = inter.create_pix_charge("dep-inter-r2", Decimal("5.00"), "a@example.com", None, soon(), "x")
    with pytest.raises(ProviderError) as nothing:
        inter.refund_charge(unpaid.provider_id, Decimal("1.00"), "k-unpaid")
    assert nothing.value.code == "not_paid"
    assert len(devolucao_id("x" * 80)) == 35 and devolucao_id("abc") == "abc"


def test_devolucao_hanging_and_failed(inter, sandbox, cert_paths):
    charge = paid_cob(inter, "dep-inter-r3", "10.00")
    assert sandbox_post(sandbox, cert_paths, "/_sandbox/devolucoes/mode", mode="hang").status_code == 200
    hanging = inter.refund_charge(charge.provider_id, Decimal("3.00"), "k-hang")
    assert inter.get_refund(charge.provider_id, hanging.id).status == REFUND_PENDING
    assert inter.get_charge(charge.provider_id).refunded_amount == Decimal("3.00")   # leaving: counted
    sandbox_post(sandbox, cert_paths, "/_sandbox/devolucoes/mode", mode="fail")
    failed = inter.refund_charge(charge.provider_id, Decimal("7.00"), "k-fail")
    assert inter.get_refund(charge.provider_id, failed.id).status == REFUND_FAILED
    assert inter.get_charge(charge.provider_id).refunded_amount == Decimal("3.00")   # refused: not counted


def test_med_devolucao_marks_the_charge_charged_back_and_notifies(inter, sandbox, receiver, cert_paths):
    inter.register_webhook(receiver.url + "/inter/med")
    charge = paid_cob(inter, "dep-inter-med", "80.00")
    e2e = inter.get_charge(charge.provider_id).end_to_end_id
    r = sandbox_post(sandbox, cert_paths, f"/_sandbox/pix/{e2e}/med", valor="30.00")
    assert r.status_code == 200 and r.json()["devolucoes"][0]["natureza"] == "MED_FRAUDE"
    gone = inter.get_charge(charge.provider_id)
    assert gone.status == CHARGE_CHARGED_BACK and gone.refunded_amount == Decimal("30.00")
    assert gone.paid_amount == Decimal("80.00")
    [med] = inter.list_refunds(charge.provider_id)
    assert med.status == REFUND_COMPLETED and med.raw["natureza"] == "MED_FRAUDE"
    deadline = time.monotonic() + 5
    while len(receiver.wait_for("/inter/med")) < 2 and time.monotonic() < deadline:   # paid, then MED
        time.sleep(0.05)
    hits = receiver.wait_for("/inter/med")
    assert len(hits) == 2
    [item] = parse_pix_webhook(hits[1]["raw"])
    assert item.txid == charge.provider_id and item.raw["devolucoes"][0]["status"] == "DEVOLVIDO"
    assert sandbox_post(sandbox, cert_paths, f"/_sandbox/pix/{e2e}/med", valor="60.00").status_code == 400
    assert sandbox_post(sandbox, cert_paths, "/_sandbox/pix/E0/med").status_code == 404


def test_inter_ids_never_repeat_after_a_restart(cert_paths, tmp_path):
    seen = set()
    for state_dir in (tmp_path, tmp_path, None):
        server = start_in_thread({"CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET, "PIX_KEY": PIX_KEY,
                                  "STATE_DIR": state_dir}, cert_paths)
        try:
            client = InterClient(CLIENT_ID, CLIENT_SECRET, str(cert_paths.client_pem), PIX_KEY,
                                 base_url=server.url, verify=str(cert_paths.ca_crt))
            for n in range(3):
                charge = paid_cob(client, f"dep-inter-restart-{len(seen)}-{n}", "10.00")
                got = client.get_charge(charge.provider_id)
                refund = client.refund_charge(charge.provider_id, Decimal("1.00"), "k1")
                rtr = client.get_refund(charge.provider_id, refund.id).raw["rtrId"]
                loc = got.raw["loc"]["id"]
                for value in (got.end_to_end_id, rtr, f"loc{loc}"):
                    assert value not in seen
                    seen.add(value)
                assert len(got.end_to_end_id) == 32
        finally:
            server.shutdown()
    assert (tmp_path / "inter-ids.json").exists()
