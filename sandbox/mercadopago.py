"""A local Mercado Pago for development and tests, over real HTTP.

It follows the documented API (providers.md A, B, D) closely enough that the
official SDK and our client cannot tell the difference:

- `POST /v1/payments` (PIX only), `GET /v1/payments/{id}`, `GET /v1/payments/search`,
  `PUT /v1/payments/{id}` (cancel: only pending/in_process/authorized, else 400 code 2018),
  with `X-Idempotency-Key` replay / 409 conflict on creates;
- refunds (A.8): `POST /v1/payments/{id}/refunds` (`{"amount"?}`, X-Idempotency-Key required and
  replayed), `GET /v1/payments/{id}/refunds`, `GET /v1/payments/{id}/refunds/{refund_id}`;
- `POST /v1/transaction-intents/process`, `GET /v1/transaction-intents/{id}` (payouts);
- signed webhooks (B.5/B.6) delivered from a background thread, with retries.

Operator/test controls live under `/_sandbox/` (not part of Mercado Pago):
  GET  /_sandbox/                              HTML: charges (with "Pagar"), payouts, webhooks
  POST /_sandbox/payments/<id>/pay             {amount?, payer_cpf?, payer_email?, payer_name?}
  POST /_sandbox/pix/pay                       {qr_code, amount?, payer_cpf?, ...} pay by "copia e cola"
  POST /_sandbox/payments/<id>/expire          expire one pending charge now
  POST /_sandbox/payments/<id>/chargeback      {status?: charged_back|in_mediation|approved, amount?,
                                               status_detail?} MED / chargeback (approved only from
                                               in_mediation: the dispute lost by the payer); signed webhook
  POST /_sandbox/expire-due                    expire every pending charge past date_of_expiration
  POST /_sandbox/payments/<id>/notify          re-send the last notification (replay)
  POST /_sandbox/payouts/mode                  {mode: approve|reject|hang|error500|timeout, status_detail?}
  GET  /_sandbox/payouts/mode
  POST /_sandbox/payouts/<id>/settle           {outcome: approve|reject, status_detail?} (hanging payouts)
  GET  /_sandbox/webhooks[?resource_id=]       delivery attempts
  POST /_sandbox/webhooks/drop                 {drop: true|false} lose notifications on purpose
  POST /_sandbox/webhooks/chaos                {delay_max?: s, duplicates?: n} (bench/chaos.py) every
                                               notification waits a random 0..delay_max s before its first
                                               try (so they arrive out of order) and is sent 1+duplicates times
  POST /_sandbox/faults                        {count: n, status?: 5xx, sleep?: s} (bench/chaos.py) the next n
                                               API calls (/v1/...) answer `status` without acting, or first
                                               sleep `sleep` s (a client timeout) and then act
  GET  /_sandbox/state                         everything, as JSON
  POST /_sandbox/reset                         forget everything

Ids (payments, refunds, notifications, payouts, e2e) never repeat, across restarts too
(sandbox/ids.py; `--state-dir` keeps the high-water marks). The charges themselves
live in memory: a restarted emulator no longer knows the old ones (404).

Run: `python -m sandbox.mercadopago --port 8001 --webhook-secret s3cret`
(see `--help`); in tests use `start_in_thread(config)`.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import random
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

import segno
from flask import Flask, Response, current_app, redirect, render_template_string, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.local import LocalProxy

from webapp.pix import brcode, is_cnpj, is_cpf, normalize_pix_key, parse_brcode, parse_decimal
from webapp.providers.mercadopago import sign_webhook
from sandbox.ids import IdSource, base36
from sandbox.server import (BackgroundServer, FaultQueue, Routes, apply_fault, control_body, from_form,
                            make_app, parse_fault, post_with_retries, serve, state_proxy)

MP_TZ = timezone(timedelta(hours=-4))     # Mercado Pago answers in -04:00
CANCELLABLE = ("pending", "in_process", "authorized")
REFUNDABLE = ("approved",)           # incl. approved/partially_refunded
MAX_REFUNDS = 20                     # A.8: at most 20 partial refunds per payment
PAYOUT_MODES = ("approve", "reject", "hang", "error500", "timeout")
PAYOUT_CHAVE_TYPES = ("EMAIL", "PHONE", "CPF", "CNPJ", "PIX_CODE")
SORT_FIELDS = ("date_approved", "date_created", "date_last_updated", "money_release_date")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

DEFAULTS = {
    "ACCESS_TOKEN": None,             # None: any Bearer token is accepted
    "WEBHOOK_SECRET": "sandbox-webhook-secret",
    "WEBHOOK_URL": None,              # "Your integrations" URL, used when a payment has no notification_url
    "WEBHOOK_RETRY_INTERVALS": (0.5, 1, 2, 4, 8),   # seconds between tries (real MP: 15 min)
    "WEBHOOK_TIMEOUT": 5.0,
    "PAYOUT_MODE": "approve",
    "PAYOUT_TIMEOUT_SLEEP": 15.0,     # "timeout" mode: seconds before answering
    "EXPIRE_SWEEP_SECONDS": 0,        # >0: a thread expires due charges this often
    "PIX_KEY": "b76aa9c2-2ec4-4110-954e-ebfe34f05b61",
    "MERCHANT_NAME": "BS MARKET LTDA",
    "MERCHANT_CITY": "SAO PAULO",
    "COLLECTOR_ID": 987654321,
    "FIRST_PAYMENT_ID": 1312345678,   # a floor: ids come from the clock (sandbox/ids.py)
    "STATE_DIR": None,                # where id high-water marks survive a restart (None: clock only)
}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def mp_time(dt: datetime | None) -> str | None:
    return dt.astimezone(MP_TZ).isoformat(timespec="milliseconds") if dt else None


def _number(value: Decimal) -> int | float:
    # JSON numbers for money; values carry at most 2 places, so float's repr is exact.
    return int(value) if value == value.to_integral_value() else float(value)


def _comma(value: Decimal) -> str:
    """"100,00": the decimal-comma string the payouts docs show inside accounts."""
    return f"{value:.2f}".replace(".", ",")


def _jsonable(obj):
    if isinstance(obj, Decimal):
        return _number(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def json_response(obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(_jsonable(obj)), status=status, headers=headers,
                    mimetype="application/json")


def mp_error(status: int, message: str, error: str, code=None) -> Response:
    """The A.9 envelope."""
    cause = [{"code": code, "description": message, "data": None}] if code is not None else []
    return json_response({"message": message, "error": error, "status": status, "cause": cause}, status)


def payout_error(status: int, code: str, message: str) -> Response:
    return json_response({"code": code, "message": message, "status": status}, status)


class ApiError(Exception):
    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


def bad_request(message: str, code=None, error: str = "bad_request") -> ApiError:
    return ApiError(mp_error(400, message, error, code))


def _canonical(body) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _qr_png_base64(text: str) -> str:
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=4, border=2)
    return base64.b64encode(buf.getvalue()).decode()


@dataclass
class Delivery:
    """One notification and its delivery attempts."""
    delivery_id: int
    resource: str             # payment | transaction_intent
    resource_id: str
    url: str | None
    body: dict
    state: str = "pending"    # pending | delivered | failed | dropped | no_url
    attempts: list = None

    def as_dict(self) -> dict:
        return {"delivery_id": self.delivery_id, "resource": self.resource,
                "resource_id": self.resource_id, "url": self.url, "state": self.state,
                "action": self.body.get("action"), "notification_id": self.body.get("id"),
                "attempts": list(self.attempts or [])}


class State:
    """Everything the emulator remembers. One lock; handlers hold it briefly."""

    def __init__(self, config: dict):
        self.config = config
        self.lock = threading.RLock()
        self.ids = IdSource("mercadopago", config.get("STATE_DIR"))
        self.reset()

    def reset(self):
        """Forget everything except the id counters: ids are never reused, as in the real API."""
        with self.lock:
            self.payments: dict[int, dict] = {}
            self.intents: dict[str, dict] = {}
            self.idempotency: dict[tuple, tuple] = {}   # (scope, token, key) -> (body hash, resource id)
            self.deliveries: list[Delivery] = []
            self.last_notification: dict[tuple, dict] = {}  # (resource, id) -> body
            self.payout_mode = self.config["PAYOUT_MODE"]
            self.payout_reject_detail = "by_bank"
            self.drop_webhooks = False
            self.webhook_delay_max = 0.0     # /_sandbox/webhooks/chaos
            self.webhook_duplicates = 0
            self.faults = FaultQueue(self.lock)     # /_sandbox/faults, consumed by the next API calls

    # ---- webhooks
    def notify(self, resource: str, resource_id: str, url: str | None, body: dict,
               redelivery: bool = False) -> Delivery:
        with self.lock:
            if not redelivery:
                body = dict(body, id=self.ids.next("notification", 20_000_000_000))
            self.last_notification[(resource, resource_id)] = body
            d = Delivery(len(self.deliveries) + 1, resource, resource_id, url, body, attempts=[])
            self.deliveries.append(d)
            if not url:
                d.state = "no_url"
                return d
            if self.drop_webhooks:
                d.state = "dropped"
                return d
            copies, delay_max = 1 + self.webhook_duplicates, self.webhook_delay_max
        for _ in range(copies):
            threading.Thread(target=self._deliver, args=(d, random.uniform(0, delay_max) if delay_max else 0),
                             daemon=True, name=f"mp-webhook-{d.delivery_id}").start()
        return d

    def _deliver(self, d: Delivery, delay: float = 0):
        """Try, then retry after each interval, until a 2xx or the intervals run out."""
        if delay:
            time.sleep(delay)
        secret = self.config["WEBHOOK_SECRET"]
        data_id = str(d.body["data"]["id"])
        sep = "&" if "?" in d.url else "?"

        def headers() -> dict:
            request_id = str(uuid.uuid4())
            ts = str(int(time.time()))     # seconds, as the SDK and the docs example do
            return {"Content-Type": "application/json", "x-request-id": request_id,
                    "x-signature": sign_webhook(data_id, request_id, ts, secret),
                    "User-Agent": "MercadoPago WebHook v1.0 (sandbox)"}

        def record(attempt: dict, ok: bool, last: bool):
            with self.lock:
                d.attempts.append({"at": mp_time(now_utc()), "request_id": attempt["headers"]["x-request-id"],
                                   "status_code": attempt["status_code"], "error": attempt["error"]})
                if last:
                    d.state = "delivered" if ok else "failed"

        post_with_retries(f"{d.url}{sep}data.id={data_id}&type={d.resource}", json.dumps(d.body), headers,
                          self.config["WEBHOOK_RETRY_INTERVALS"], self.config["WEBHOOK_TIMEOUT"], record)

    # ---- payments
    def notify_payment(self, p: dict, action: str):
        body = {"live_mode": False, "type": "payment", "date_created": mp_time(p["_created"]),
                "user_id": self.config["COLLECTOR_ID"], "api_version": "v1", "action": action,
                "data": {"id": str(p["id"])}}
        url = p.get("notification_url") or self.config.get("WEBHOOK_URL")
        return self.notify("payment", str(p["id"]), url, body)

    def new_payment_id(self) -> int:
        return self.ids.next("payment", int(self.config["FIRST_PAYMENT_ID"]))

    def new_e2e_id(self, at: datetime) -> str:
        """A BACEN end-to-end id: E + ISPB (8) + yyyyMMddHHmm + 11 characters, 32 in all."""
        return f"E18236120{at:%Y%m%d%H%M}{base36(self.ids.next('e2e'), 11)}"

    def expire(self, p: dict) -> bool:
        """pending -> cancelled/expired. Returns whether it changed."""
        if p["status"] != "pending":
            return False
        p.update(status="cancelled", status_detail="expired", _updated=now_utc())
        return True

    def expire_due(self) -> list[int]:
        with self.lock:
            due = [p for p in self.payments.values()
                   if p["status"] == "pending" and p["_expires"] <= now_utc()]
            for p in due:
                self.expire(p)
        for p in due:
            self.notify_payment(p, "payment.updated")
        return [p["id"] for p in due]


# --------------------------------------------------------------------------- views of records

def _payer_view(p: dict, paid: bool) -> dict:
    payer = {"id": p["_payer_id"], "email": None, "identification": {"type": None, "number": None},
             "first_name": None, "last_name": None, "entity_type": None, "type": None}
    if paid:   # payer data is echoed only once paid (providers.md A.2)
        payer.update(email=p["_paid_by"].get("email"),
                     identification={"type": "CPF", "number": p["_paid_by"].get("cpf")},
                     first_name=p["_paid_by"].get("first_name"), last_name=p["_paid_by"].get("last_name"))
    return payer


def _transaction_data_view(p: dict, paid: bool) -> dict:
    bank_payer = {}
    if paid:
        bank_payer = {"name": p["_paid_by"].get("name"), "identification": {"type": "CPF", "number": p["_paid_by"].get("cpf")},
                      "long_name": p["_paid_by"].get("bank", "BANCO SANDBOX S.A."), "account_id": None}
    return {"qr_code": p["_qr_code"], "qr_code_base64": p["_qr_png"], "ticket_url": p["_ticket_url"],
            "transaction_id": p.get("_e2e"), "e2e_id": p.get("_e2e"),
            "bank_info": {"payer": bank_payer, "collector": {"account_holder_name": p["_merchant"]},
                          "is_same_bank_account_owner": None}}


def payment_view(p: dict) -> dict:
    paid = p["status"] in ("approved", "refunded", "charged_back", "in_mediation")
    payer = _payer_view(p, paid)
    total_paid = p.get("_paid_amount") if paid else p["transaction_amount"]
    overpaid = max(Decimal("0"), (p.get("_paid_amount") or Decimal(0)) - p["transaction_amount"]) if paid else 0
    return {
        "id": p["id"],
        "date_created": mp_time(p["_created"]),
        "date_approved": mp_time(p.get("_approved")),
        "date_last_updated": mp_time(p["_updated"]),
        "date_of_expiration": p["date_of_expiration"],
        "money_release_date": mp_time(p.get("_approved")),
        "money_release_status": "released" if p["status"] == "approved" else None,
        "operation_type": "regular_payment",
        "payment_method_id": "pix",
        "payment_type_id": "bank_transfer",
        "payment_method": {"id": "pix", "type": "bank_transfer"},
        "status": p["status"],
        "status_detail": p["status_detail"],
        "currency_id": "BRL",
        "description": p.get("description"),
        "live_mode": False,
        "collector_id": p["_collector_id"],
        "payer": payer,
        "metadata": p.get("metadata") or {},
        "additional_info": p.get("additional_info") or {},
        "external_reference": p.get("external_reference"),
        "transaction_amount": p["transaction_amount"],
        "transaction_amount_refunded": p.get("_refunded") or 0,
        "installments": 1,
        "captured": True,
        "binary_mode": False,
        "notification_url": p.get("notification_url"),
        "refunds": [refund_view(r) for r in p.get("_refunds", [])],
        "fee_details": [],
        "transaction_details": {
            "net_received_amount": total_paid if paid else 0, "total_paid_amount": total_paid,
            "overpaid_amount": overpaid, "installment_amount": 0,
            "external_resource_url": None, "financial_institution": None,
        },
        "point_of_interaction": {
            "type": "OPENPLATFORM",
            "sub_type": "INTER_PSP" if paid else None,
            "transaction_data": _transaction_data_view(p, paid),
        },
    }


def refund_view(r: dict) -> dict:
    return {"id": r["id"], "payment_id": r["payment_id"], "amount": r["amount"], "metadata": {},
            "source": {"id": "987654321", "name": "BS MARKET LTDA", "type": "collector"},
            "date_created": mp_time(r["_created"]), "unique_sequence_number": None,
            "refund_mode": "standard", "adjustment_amount": 0, "status": r["status"],
            "reason": None, "labels": [], "amount_refunded_to_payer": r["amount"],
            "e2e_id": r.get("_e2e")}


def intent_view(t: dict) -> dict:
    amount = t["_amount"]
    to = {"type": t["_to"].get("type", "current"), "amount": _comma(amount),
          "status_detail": t["status_detail"], "origin_id": t["_origin_id"]}
    if t["_to"].get("chave"):
        to["chave"] = t["_to"]["chave"]
    for k in ("bank_id", "branch", "holder", "number", "provider_id", "currency_id"):
        if k in t["_to"]:
            to[k] = t["_to"][k]
    to["owner"] = t["_to"].get("owner") or {}
    return {
        "id": t["id"],
        "status": t["status"],
        "created_date": t["_created"].astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "last_updated_date": t["_updated"].astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "external_reference": t["external_reference"],
        "point_of_interaction": "PSP_TRANSFER",
        "seller_configuration": {"notification_info": {"notification_url": t.get("_notification_url")}},
        "transaction": {
            "from": {"accounts": [{"amount": _comma(amount)}]},
            "to": {"accounts": [to]},
            "paid_amount": amount if t["status"] == "approved" else 0,
            "refunded_amount": amount if t["status"] == "refunded" else 0,
            "payer": {"id": t["_collector_id"]},
            "total_amount": amount,
        },
    }


# --------------------------------------------------------------------------- validation

def _amount(value, field: str, maximum: Decimal) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise bad_request(f"{field} is required and must be a number", 4000)
    if isinstance(value, str):
        try:
            value = parse_decimal(value)
        except ValueError:
            raise bad_request(f"{field} must be a number", 4000) from None
    if not isinstance(value, (Decimal, int)):
        raise bad_request(f"{field} must be a number", 4000)
    value = Decimal(value)
    if value <= 0 or value > maximum:
        raise bad_request(f"{field} must be greater than 0 and at most {maximum}", 4000)
    if value != value.quantize(Decimal("0.01")):
        raise bad_request(f"{field} must have at most 2 decimal places", 4000)
    return value.quantize(Decimal("0.01"))


def _parse_expiration(text, created: datetime) -> datetime:
    if not isinstance(text, str):
        raise bad_request("date_of_expiration must be an ISO 8601 string", 4000)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request("date_of_expiration is not a valid date (use 2026-11-25T18:30:00.000-03:00)", 4000) from None
    if dt.tzinfo is None:
        raise bad_request("date_of_expiration must include a UTC offset", 4000)
    delta = dt - created
    # A few seconds of grace on the 30-minute floor: a client asking for exactly
    # "now + 30 min" would otherwise fail on network latency.
    if delta < timedelta(minutes=30) - timedelta(seconds=10) or delta > timedelta(days=30):
        raise bad_request("date_of_expiration must be between 30 minutes and 30 days from now", 4000)
    return dt


def _body() -> dict:
    raw = request.get_data()
    try:
        body = json.loads(raw or b"null", parse_float=Decimal)
    except ValueError:
        raise bad_request("request body is not valid JSON", 4000) from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", 4000)
    return body


def _new_intent_id(collector_id: int, serial: int) -> str:
    """`<collector>-` + 26 Crockford characters: a never-repeating serial, then random."""
    head = ""
    while serial:
        serial, r = divmod(serial, 32)
        head = _CROCKFORD[r] + head
    head = head.rjust(10, "0")[-10:]
    return f"{collector_id}-{head}" + "".join(secrets.choice(_CROCKFORD) for _ in range(16))


# --------------------------------------------------------------------------- app

# --------------------------------------------------------------------------- routes
# Small functions on the shared server library (sandbox/server.py); `state` and `cfg`
# are this request's emulator and its settings.

routes = Routes()
state: State = state_proxy()
cfg = LocalProxy(lambda: state.config)


def token() -> str:
    auth = request.headers.get("Authorization", "")
    tok = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not tok or (cfg["ACCESS_TOKEN"] is not None and tok != cfg["ACCESS_TOKEN"]):
        raise ApiError(mp_error(401, "Unauthorized: invalid or missing access token", "unauthorized", 5))
    return tok


def idem_key() -> str:
    key = request.headers.get("X-Idempotency-Key", "").strip()
    if not key:
        raise bad_request("X-Idempotency-Key header is required", 4292)
    if len(key) > 64:
        raise bad_request("X-Idempotency-Key must be at most 64 characters", 4292)
    return key


@routes.before_request
def _injected_fault():
    # /_sandbox/faults: the provider answering 5xx (without acting) or slowly (then acting).
    if not request.path.startswith("/v1/"):
        return None
    return apply_fault(state.faults.take(),
                       lambda status: mp_error(status, "injected fault (sandbox)", "service_unavailable"))


@routes.errorhandler(ApiError)
def _api_error(e: ApiError):
    if request.path.startswith("/_sandbox/") and from_form():
        # A person on the control page (the payer): say it in a page, not in JSON.
        message = json.loads(e.response.get_data()).get("message")
        return Response(render_template_string(ERROR_HTML, status=e.response.status_code, message=message),
                        status=e.response.status_code, mimetype="text/html")
    return e.response


@routes.errorhandler(HTTPException)
def _http_error(e: HTTPException):
    return mp_error(e.code or 500, e.description or e.name, e.name.lower().replace(" ", "_"))


@routes.errorhandler(Exception)
def _crash(e: Exception):
    current_app.logger.exception("sandbox crashed")
    return mp_error(500, f"internal error: {e}", "internal_server_error")


# ---------------------------------------------------------------- payments
def _validate_payment(body: dict) -> tuple:
    """A PIX create request's amount, payer, notification_url and external_reference, checked."""
    amount = _amount(body.get("transaction_amount"), "transaction_amount", Decimal("10000000"))
    if body.get("payment_method_id") != "pix":
        raise bad_request("payment_method_id must be 'pix' (this sandbox emulates PIX only)", 4050)
    payer = body.get("payer")
    if not isinstance(payer, dict) or not payer.get("email"):
        raise bad_request("payer.email is required", 4050)
    if "@" not in str(payer["email"]):
        raise bad_request("payer.email must be a valid e-mail", 4050)
    ident = payer.get("identification") or {}
    if ident:
        kind, number = str(ident.get("type") or "").upper(), str(ident.get("number") or "")
        if kind not in ("CPF", "CNPJ") or not (is_cpf(number) if kind == "CPF" else is_cnpj(number)):
            raise bad_request("Invalid user identification number", 2067)
    url = body.get("notification_url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))
                            or len(url) > 248):
        raise bad_request("notification_url attribute must be url valid", 4020)
    ref = body.get("external_reference")
    if ref is not None and (not isinstance(ref, str) or len(ref) > 256):
        raise bad_request("external_reference must be a string of at most 256 characters", 4000)
    return amount, payer, url, ref


@routes.post("/v1/payments")
def create_payment():
    tok = token()
    key = idem_key()
    body = _body()
    digest = _canonical(body)
    with state.lock:
        seen = state.idempotency.get(("payment", tok, key))
        if seen:
            if seen[0] != digest:
                return mp_error(409, "idempotency key already used with a different request body",
                                "conflict", "idempotency_key_conflict")
            return json_response(payment_view(state.payments[seen[1]]), 201,
                                 {"X-Idempotency-Replayed": "true"})

        amount, payer, url, ref = _validate_payment(body)
        created = now_utc()
        if body.get("date_of_expiration") is not None:
            expires = _parse_expiration(body["date_of_expiration"], created)
        else:
            expires = (created + timedelta(hours=24)).astimezone(MP_TZ)
        pid = state.new_payment_id()
        qr = brcode(cfg["PIX_KEY"], amount, cfg["MERCHANT_NAME"], cfg["MERCHANT_CITY"],
                    txid=f"mpqrinter{pid}")
        p = {
            "id": pid, "status": "pending", "status_detail": "pending_waiting_transfer",
            "transaction_amount": amount, "description": body.get("description"),
            "external_reference": ref, "notification_url": url,
            "metadata": body.get("metadata"), "additional_info": body.get("additional_info"),
            "date_of_expiration": expires.isoformat(timespec="milliseconds"),
            "_expires": expires, "_created": created, "_updated": created,
            "_payer_request": payer, "_payer_id": str(1_100_000_000 + pid % 1_000_000),
            "_collector_id": cfg["COLLECTOR_ID"], "_merchant": cfg["MERCHANT_NAME"],
            "_qr_code": qr, "_qr_png": _qr_png_base64(qr),
            "_ticket_url": f"{request.host_url}_sandbox/payments/{pid}/ticket",
        }
        state.payments[pid] = p
        state.idempotency[("payment", tok, key)] = (digest, pid)
        view = payment_view(p)
    state.notify_payment(p, "payment.created")
    return json_response(view, 201)


def _payment(pid) -> dict:
    try:
        p = state.payments.get(int(pid))
    except ValueError:
        p = None
    if p is None:
        raise ApiError(mp_error(404, "Payment not found", "not_found", 2000))
    return p


@routes.get("/v1/payments/<pid>")
def get_payment(pid):
    token()
    with state.lock:
        return json_response(payment_view(_payment(pid)))


@routes.get("/v1/payments/search")
def search_payments():
    token()
    args = request.args
    sort = args.get("sort", "date_created")
    criteria = args.get("criteria", "desc")
    if sort not in SORT_FIELDS:
        raise bad_request("Invalid sort value", 1003)
    if criteria not in ("asc", "desc"):
        raise bad_request("Invalid criteria value", 1004)
    try:
        limit = min(max(int(args.get("limit", 30)), 1), 1000)
        offset = max(int(args.get("offset", 0)), 0)
    except ValueError:
        raise bad_request("limit and offset must be integers", 4000) from None
    field_of = {"date_created": "_created", "date_approved": "_approved",
                "date_last_updated": "_updated", "money_release_date": "_approved"}
    begin = end = None
    try:
        if args.get("begin_date"):
            begin = datetime.fromisoformat(args["begin_date"].replace("Z", "+00:00"))
        if args.get("end_date"):
            end = datetime.fromisoformat(args["end_date"].replace("Z", "+00:00"))
    except ValueError:
        raise bad_request("begin_date/end_date must be ISO 8601 dates", 4000) from None
    range_field = field_of.get(args.get("range", "date_created"), "_created")
    with state.lock:
        rows = list(state.payments.values())
        for name in ("external_reference", "status", "status_detail"):
            if name in args:
                rows = [p for p in rows if str(p.get(name)) == args[name]]
        if "id" in args:
            rows = [p for p in rows if str(p["id"]) == args["id"]]
        if begin or end:
            rows = [p for p in rows if p.get(range_field)
                    and (not begin or p[range_field] >= begin) and (not end or p[range_field] <= end)]
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        rows.sort(key=lambda p: (p.get(field_of[sort]) or epoch, p["id"]), reverse=criteria == "desc")
        page = [payment_view(p) for p in rows[offset:offset + limit]]
    return json_response({"paging": {"total": len(rows), "limit": limit, "offset": offset},
                          "results": page})


@routes.put("/v1/payments/<pid>")
def update_payment(pid):
    token()
    body = _body()
    with state.lock:
        p = _payment(pid)
        if "status" not in body or body["status"] is None:
            raise bad_request("status can't be null", 4017)
        if body["status"] != "cancelled":
            raise bad_request("Invalid status for update: only 'cancelled' is accepted", 2016)
        if p["status"] not in CANCELLABLE:
            raise bad_request(f"Action not allowed for a payment in status {p['status']}", 2018)
        p.update(status="cancelled", status_detail="by_collector", _updated=now_utc())
        view = payment_view(p)
    state.notify_payment(p, "payment.updated")
    return json_response(view)


# ---------------------------------------------------------------- refunds (A.8)
def _refund_body() -> dict:
    raw = request.get_data()
    if not raw.strip() or raw.strip() == b"null":
        return {}      # the SDK's full refund sends no body
    return _body()


def _remaining(p: dict) -> Decimal:
    return (p.get("_paid_amount") or p["transaction_amount"]) - (p.get("_refunded") or Decimal("0"))


@routes.post("/v1/payments/<pid>/refunds")
def create_refund(pid):
    tok = token()
    key = idem_key()
    body = _refund_body()
    digest = _canonical({"payment": str(pid), "body": body})
    with state.lock:
        seen = state.idempotency.get(("refund", tok, key))
        if seen:
            if seen[0] != digest:
                return mp_error(409, "idempotency key already used with a different request body",
                                "conflict", "idempotency_key_conflict")
            p = _payment(seen[1][0])
            r = next(r for r in p["_refunds"] if r["id"] == seen[1][1])
            return json_response(refund_view(r), 201, {"X-Idempotency-Replayed": "true"})
        p = _payment(pid)
        if p["status"] not in REFUNDABLE:
            raise bad_request(f"Payment in status {p['status']}/{p['status_detail']} cannot be refunded",
                              "invalid_payment_status")
        refunds = p.setdefault("_refunds", [])
        if len(refunds) >= MAX_REFUNDS:
            raise bad_request(f"A payment accepts at most {MAX_REFUNDS} refunds", "max_refunds_reached")
        remaining = _remaining(p)
        amount = remaining
        if body.get("amount") is not None:
            amount = _amount(body["amount"], "amount", Decimal("10000000"))
        if amount > remaining:
            raise bad_request(f"The amount to refund ({amount}) is more than what is left to refund "
                              f"({remaining})", "amount_exceeds_refundable")
        now = now_utc()
        r = {"id": state.ids.next("refund", 1_000_000_000), "payment_id": p["id"], "amount": amount,
             "status": "approved", "_created": now, "_e2e": state.new_e2e_id(now).replace("E", "D", 1)}
        refunds.append(r)
        p["_refunded"] = (p.get("_refunded") or Decimal("0")) + amount
        if _remaining(p) <= 0:
            p.update(status="refunded", status_detail="refunded")
        else:
            p.update(status="approved", status_detail="partially_refunded")
        p["_updated"] = now
        state.idempotency[("refund", tok, key)] = (digest, (p["id"], r["id"]))
        view = refund_view(r)
    state.notify_payment(p, "payment.updated")
    return json_response(view, 201)


@routes.get("/v1/payments/<pid>/refunds")
def list_refunds(pid):
    token()
    with state.lock:
        return json_response([refund_view(r) for r in _payment(pid).get("_refunds", [])])


@routes.get("/v1/payments/<pid>/refunds/<rid>")
def get_refund(pid, rid):
    token()
    with state.lock:
        for r in _payment(pid).get("_refunds", []):
            if str(r["id"]) == rid:
                return json_response(refund_view(r))
    raise ApiError(mp_error(404, "Refund not found", "not_found", 2000))


# ---------------------------------------------------------------- payouts
def _validate_destination(to: dict) -> None:
    """transaction.to.accounts[0]: a PIX key (chave) or bank account fields."""
    def err(code, message):
        return ApiError(payout_error(400, code, message))

    if to.get("type", "current") not in ("current", "mercadopago"):
        raise err("invalid_request_payload", "invalid value for field: transaction.to.accounts[0].type")
    chave = to.get("chave")
    if chave is None:
        missing = [k for k in ("bank_id", "branch", "number", "holder") if not to.get(k)]
        if missing:
            raise err("invalid_request_payload",
                      f"destination needs chave or bank account fields (missing {', '.join(missing)})")
        return
    kind = chave.get("type") if isinstance(chave, dict) else None
    if kind not in PAYOUT_CHAVE_TYPES:
        raise err("invalid_request_payload", "invalid value for field: transaction.to.accounts[0].chave.type")
    value = str(chave.get("value") or "")
    try:
        if kind == "PIX_CODE":
            parse_brcode(value)
        else:
            normalize_pix_key(kind, value)
    except ValueError as exc:
        raise err("invalid_chave_pix", f"invalid_chave_pix: {exc}") from None


def _validate_intent(body: dict) -> dict:
    def err(code, message):
        return ApiError(payout_error(400, code, message))

    ref = body.get("external_reference")
    if not isinstance(ref, str) or not ref or len(ref) > 64 or not all(
            c.isascii() and (c.isalnum() or c in "-_") for c in ref):
        raise err("invalid_request_payload",
                  "external_reference is required: up to 64 letters, digits, '-' or '_'")
    poi = body.get("point_of_interaction")
    poi_type = poi.get("type") if isinstance(poi, dict) else poi   # both documented shapes
    if poi_type != "PSP_TRANSFER":
        raise err("invalid_request_payload", "point_of_interaction must be PSP_TRANSFER")
    tx = body.get("transaction")
    if not isinstance(tx, dict):
        raise err("invalid_request_payload", "transaction is required")
    try:
        src = tx["from"]["accounts"]
        dst = tx["to"]["accounts"]
    except (KeyError, TypeError):
        raise err("invalid_request_payload", "transaction.from.accounts and transaction.to.accounts are required") from None
    if not isinstance(src, list) or len(src) != 1 or not isinstance(dst, list) or len(dst) != 1:
        raise err("invalid_request_payload", "exactly one source and one destination account per call")
    maximum = Decimal("10000000000")
    try:
        amounts = [_amount(src[0].get("amount"), "transaction.from.accounts[0].amount", maximum),
                   _amount(dst[0].get("amount"), "transaction.to.accounts[0].amount", maximum),
                   _amount(tx.get("total_amount"), "transaction.total_amount", maximum)]
    except ApiError as e:
        message = json.loads(e.response.get_data())["message"]
        raise err("invalid_request_payload", message) from None
    if len(set(amounts)) != 1:
        raise err("invalid_request_payload", "amounts in from, to and total_amount must be equal")
    to = dst[0]
    _validate_destination(to)
    url = ((body.get("seller_configuration") or {}).get("notification_info") or {}).get("notification_url")
    if url is not None and (not isinstance(url, str) or len(url) > 500
                            or not url.startswith(("http://", "https://"))):
        raise err("invalid_request_payload", "notification_url must be a URL of at most 500 characters")
    return {"ref": ref, "amount": amounts[0], "to": to, "url": url}


def notify_intent(t: dict, action: str):
    body = {"live_mode": False, "type": "transaction_intent", "action": action,
            "api_version": "v1", "user_id": cfg["COLLECTOR_ID"],
            "date_created": mp_time(t["_created"]), "last_updated": mp_time(t["_updated"]),
            "status": t["status"], "data": {"id": t["id"]}}
    return state.notify("transaction_intent", t["id"], t.get("_notification_url"), body)


def settle(t: dict, outcome: str, detail: str | None = None):
    if outcome == "approve":
        t.update(status="approved", status_detail="approved")
    else:
        t.update(status="rejected", status_detail=detail or state.payout_reject_detail)
    t["_updated"] = now_utc()


@routes.post("/v1/transaction-intents/process")
def process_intent():
    tok = token()
    key = idem_key()
    body = _body()
    digest = _canonical(body)
    with state.lock:
        seen = state.idempotency.get(("intent", tok, key))
        if seen:
            if seen[0] != digest:
                return payout_error(409, "idempotency_key_conflict",
                                    "idempotency key already used with a different request body")
            return json_response(intent_view(state.intents[seen[1]]), 202,
                                 {"X-Idempotency-Replayed": "true"})
        v = _validate_intent(body)
        created = now_utc()
        t = {"id": _new_intent_id(cfg["COLLECTOR_ID"], state.ids.next("intent")), "external_reference": v["ref"],
             "status": "in_process", "status_detail": "pending_bank", "_amount": v["amount"],
             "_to": v["to"], "_notification_url": v["url"], "_created": created, "_updated": created,
             "_collector_id": cfg["COLLECTOR_ID"], "_origin_id": uuid.uuid4().hex,
             "_key": key}
        mode = state.payout_mode
        if mode in ("approve", "error500", "timeout"):
            settle(t, "approve")
        elif mode == "reject":
            settle(t, "reject")
        state.intents[t["id"]] = t
        state.idempotency[("intent", tok, key)] = (digest, t["id"])
        view = intent_view(t)
    notify_intent(t, "transaction_intent.created")
    if mode == "error500":
        # Processed, but the answer is lost: the client must look it up.
        return payout_error(500, "internal_server_error", "internal_server_error")
    if mode == "timeout":
        time.sleep(float(cfg["PAYOUT_TIMEOUT_SLEEP"]))
    return json_response(view, 202)


def _intent(tid: str) -> dict:
    t = state.intents.get(tid)
    if t is None:
        raise ApiError(payout_error(404, "not_found", "transaction intent not found"))
    return t


@routes.get("/v1/transaction-intents/<tid>")
def get_intent(tid):
    token()
    with state.lock:
        return json_response(intent_view(_intent(tid)))


# ---------------------------------------------------------------- sandbox controls
def _done(payload, status=200):
    if from_form():    # an HTML form: back to the page
        return redirect(url_for("sandbox_index"))
    return json_response(payload, status)


def pay(p: dict, params: dict):
    """Settle a charge as if a payer's bank had sent the PIX."""
    if p["status"] != "pending":
        raise ApiError(mp_error(409, f"payment is {p['status']}/{p['status_detail']}, not pending",
                                "conflict", "not_pending"))
    if p["_expires"] <= now_utc():
        raise ApiError(mp_error(400, "payment expired: the QR code can no longer be paid",
                                "bad_request", "expired"))
    amount = p["transaction_amount"]
    if params.get("amount") not in (None, ""):
        try:
            amount = parse_decimal(params["amount"]).quantize(Decimal("0.01"))
        except (ValueError, InvalidOperation):
            raise bad_request("amount must be a number", 4000) from None
    req_payer = p["_payer_request"] or {}
    req_ident = req_payer.get("identification") or {}
    cpf = str(params.get("payer_cpf") or req_ident.get("number") or "19119119100")
    if not is_cpf(cpf):
        raise bad_request("payer_cpf is not a valid CPF", 2067)
    name = params.get("payer_name") or " ".join(
        x for x in (req_payer.get("first_name"), req_payer.get("last_name")) if x) or "PAGADOR SANDBOX"
    first, _, last = name.partition(" ")
    now = now_utc()
    p.update(status="approved", status_detail="accredited", _approved=now, _updated=now,
             _paid_amount=amount, _e2e=state.new_e2e_id(now),
             _paid_by={"cpf": "".join(c for c in cpf if c.isdigit()),
                       "email": params.get("payer_email") or req_payer.get("email"),
                       "name": name, "first_name": first, "last_name": last or None})


@routes.post("/_sandbox/payments/<pid>/pay")
def sandbox_pay(pid):
    params = control_body()
    with state.lock:
        p = _payment(pid)
        pay(p, params)
        view = payment_view(p)
    state.notify_payment(p, "payment.updated")
    return _done(view)


@routes.post("/_sandbox/pix/pay")
def sandbox_pay_brcode():
    params = control_body()
    try:
        code = parse_brcode(str(params.get("qr_code") or ""))
    except ValueError as exc:
        raise bad_request(str(exc), 4000) from None
    if not (code.txid or "").startswith("mpqrinter"):
        raise bad_request("this BR Code was not issued by this sandbox", 4000)
    with state.lock:
        p = _payment(code.txid[len("mpqrinter"):])
        pay(p, params)
        view = payment_view(p)
    state.notify_payment(p, "payment.updated")
    return _done(view)


@routes.post("/_sandbox/payments/<pid>/expire")
def sandbox_expire(pid):
    with state.lock:
        p = _payment(pid)
        if not state.expire(p):
            raise ApiError(mp_error(409, f"payment is {p['status']}, not pending", "conflict", "not_pending"))
        view = payment_view(p)
    state.notify_payment(p, "payment.updated")
    return _done(view)


@routes.post("/_sandbox/payments/<pid>/chargeback")
def sandbox_chargeback(pid):
    """MED / chargeback: the payer's bank disputes (in_mediation) or takes back
    (charged_back) the money; `approved` ends a dispute the payer lost."""
    params = control_body()
    target = params.get("status") or "charged_back"
    allowed_from = {"charged_back": ("approved", "in_mediation"), "in_mediation": ("approved",),
                    "approved": ("in_mediation",)}
    if target not in allowed_from:
        raise bad_request("status must be charged_back, in_mediation or approved", 4000)
    with state.lock:
        p = _payment(pid)
        if p["status"] not in allowed_from[target]:
            raise ApiError(mp_error(409, f"payment is {p['status']}/{p['status_detail']}; "
                                         f"{target} needs {' or '.join(allowed_from[target])}",
                                    "conflict", "invalid_status"))
        remaining = _remaining(p)
        amount = remaining
        if params.get("amount") not in (None, ""):
            amount = _amount(params["amount"], "amount", Decimal("10000000"))
        if target == "charged_back":
            if amount > remaining:
                raise bad_request(f"amount ({amount}) is more than what is left ({remaining})",
                                  "amount_exceeds_refundable")
            # Emulator choice (UNVERIFIED): what the bank took back shows in
            # transaction_amount_refunded, so a client can read the amount.
            p["_refunded"] = (p.get("_refunded") or Decimal("0")) + amount
            detail = params.get("status_detail") or "settled"
        elif target == "in_mediation":
            detail = params.get("status_detail") or "in_mediation"
        else:
            detail = "partially_refunded" if p.get("_refunded") else "accredited"
        p.update(status=target, status_detail=detail, _updated=now_utc())
        view = payment_view(p)
    state.notify_payment(p, "payment.updated")
    return _done(view)


@routes.post("/_sandbox/expire-due")
def sandbox_expire_due():
    return _done({"expired": state.expire_due()})


@routes.post("/_sandbox/payments/<pid>/notify")
def sandbox_renotify(pid):
    with state.lock:
        p = _payment(pid)
        last = state.last_notification.get(("payment", str(p["id"])))
    if last is None:
        d = state.notify_payment(p, "payment.updated")
    else:
        d = state.notify("payment", str(p["id"]), p.get("notification_url") or cfg.get("WEBHOOK_URL"),
                         last, redelivery=True)
    return _done(d.as_dict())


@routes.get("/_sandbox/payments/<pid>/ticket")
def sandbox_ticket(pid):
    with state.lock:
        p = _payment(pid)
        return render_template_string(TICKET_HTML, p=payment_view(p))


@routes.route("/_sandbox/payouts/mode", methods=["GET", "POST"])
def sandbox_payout_mode():
    if request.method == "POST":
        params = control_body()
        mode = params.get("mode")
        if mode not in PAYOUT_MODES:
            raise bad_request(f"mode must be one of {', '.join(PAYOUT_MODES)}", 4000)
        with state.lock:
            state.payout_mode = mode
            state.payout_reject_detail = params.get("status_detail") or "by_bank"
    return _done({"mode": state.payout_mode, "reject_status_detail": state.payout_reject_detail})


@routes.post("/_sandbox/payouts/<tid>/settle")
def sandbox_settle(tid):
    params = control_body()
    outcome = params.get("outcome", "approve")
    if outcome not in ("approve", "reject"):
        raise bad_request("outcome must be approve or reject", 4000)
    with state.lock:
        t = _intent(tid)
        if t["status"] != "in_process":
            raise ApiError(payout_error(409, "not_in_process", f"payout is already {t['status']}"))
        settle(t, outcome, params.get("status_detail"))
        view = intent_view(t)
    notify_intent(t, "transaction_intent.updated")
    return _done(view)


@routes.get("/_sandbox/webhooks")
def sandbox_webhooks():
    rid = request.args.get("resource_id")
    with state.lock:
        rows = [d.as_dict() for d in state.deliveries if rid is None or d.resource_id == rid]
    return json_response({"drop": state.drop_webhooks, "deliveries": rows})


@routes.post("/_sandbox/webhooks/drop")
def sandbox_drop():
    params = control_body()
    value = params.get("drop", True)
    state.drop_webhooks = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
    return _done({"drop": state.drop_webhooks})


@routes.post("/_sandbox/webhooks/chaos")
def sandbox_webhook_chaos():
    params = control_body()
    with state.lock:
        state.webhook_delay_max = max(0.0, float(params.get("delay_max", 0) or 0))
        state.webhook_duplicates = max(0, int(params.get("duplicates", 0) or 0))
    return _done({"delay_max": state.webhook_delay_max, "duplicates": state.webhook_duplicates})


@routes.post("/_sandbox/faults")
def sandbox_faults():
    try:
        fault = parse_fault(control_body())
    except ValueError as exc:
        raise bad_request(str(exc), 4000) from None
    return _done(state.faults.push({"status": fault["status"], "sleep": fault["sleep"]}, fault["count"]))


@routes.get("/_sandbox/state")
def sandbox_state():
    with state.lock:
        return json_response({
            "payments": [payment_view(p) for p in state.payments.values()],
            "payouts": [intent_view(t) for t in state.intents.values()],
            "payout_mode": state.payout_mode, "drop_webhooks": state.drop_webhooks})


@routes.post("/_sandbox/reset")
def sandbox_reset():
    state.reset()
    return _done({"reset": True})


@routes.get("/_sandbox/")
@routes.get("/")
def sandbox_index():
    with state.lock:
        payments = sorted((payment_view(p) for p in state.payments.values()),
                          key=lambda p: p["id"], reverse=True)
        payouts = sorted((intent_view(t) for t in state.intents.values()),
                         key=lambda t: t["created_date"], reverse=True)
        deliveries = [d.as_dict() for d in state.deliveries[-30:]][::-1]
    return render_template_string(INDEX_HTML, payments=payments, payouts=payouts,
                                  deliveries=deliveries, mode=state.payout_mode,
                                  modes=PAYOUT_MODES, drop=state.drop_webhooks)


def create_app(config: dict | None = None) -> Flask:
    settings = {**DEFAULTS, **(config or {})}
    if settings["PAYOUT_MODE"] not in PAYOUT_MODES:
        raise ValueError(f"PAYOUT_MODE must be one of {PAYOUT_MODES}")
    emulator = State(settings)
    app = make_app(__name__, emulator, routes, extension="mp_sandbox")
    if float(settings["EXPIRE_SWEEP_SECONDS"] or 0) > 0:
        threading.Thread(target=_sweep_expired, args=(app, emulator), daemon=True, name="mp-expiry-sweep").start()
    return app


def _sweep_expired(app: Flask, emulator: State):
    while True:
        time.sleep(float(emulator.config["EXPIRE_SWEEP_SECONDS"]))
        try:
            emulator.expire_due()
        except Exception:   # keep sweeping; the next pass may succeed
            app.logger.exception("expiry sweep failed")


INDEX_HTML = """<!doctype html>
<html lang="pt-BR"><head><meta charset="utf-8"><title>Mercado Pago sandbox</title>
<meta http-equiv="refresh" content="10">
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin-bottom:2rem}
td,th{border:1px solid #ccc;padding:.3rem .6rem;font-size:.9rem;vertical-align:top}th{background:#f3f3f3}
.approved{color:#070}.cancelled,.rejected{color:#a00}.pending,.in_process{color:#a60}
code{font-size:.7rem;word-break:break-all;display:block;max-width:28rem}form{display:inline}</style></head>
<body><h1>Mercado Pago sandbox</h1>
<p>Emulador local. Nada aqui movimenta dinheiro de verdade. A página recarrega a cada 10 s.</p>
<h2>Cobranças PIX</h2>
<table><tr><th>id</th><th>referência</th><th>valor</th><th>status</th><th>expira</th><th>QR</th><th>ações</th></tr>
{% for p in payments %}<tr>
<td>{{ p.id }}</td><td>{{ p.external_reference or '' }}<br><small>{{ p.description or '' }}</small></td>
<td>R$ {{ '%.2f'|format(p.transaction_amount) }}</td>
<td class="{{ p.status }}">{{ p.status }}/{{ p.status_detail }}
{% if p.payer.identification.number %}<br><small>CPF {{ p.payer.identification.number }}</small>{% endif %}</td>
<td><small>{{ p.date_of_expiration }}</small></td>
<td><img alt="QR" width="96" src="data:image/png;base64,{{ p.point_of_interaction.transaction_data.qr_code_base64 }}">
<code>{{ p.point_of_interaction.transaction_data.qr_code }}</code></td>
<td>{% if p.status == 'pending' %}
<form method="post" action="{{ url_for('sandbox_pay', pid=p.id) }}">
<input name="payer_cpf" placeholder="CPF do pagador" size="13">
<input name="amount" placeholder="valor (opcional)" size="9">
<button>Pagar</button></form>
<form method="post" action="{{ url_for('sandbox_expire', pid=p.id) }}"><button>Expirar</button></form>
{% endif %}{% if p.status in ('approved', 'in_mediation') %}
<form method="post" action="{{ url_for('sandbox_chargeback', pid=p.id) }}"><input type="hidden" name="status" value="charged_back"><button>MED: devolver</button></form>
{% endif %}{% if p.status == 'approved' %}
<form method="post" action="{{ url_for('sandbox_chargeback', pid=p.id) }}"><input type="hidden" name="status" value="in_mediation"><button>MED: bloquear</button></form>
{% endif %}
<form method="post" action="{{ url_for('sandbox_renotify', pid=p.id) }}"><button>Reenviar webhook</button></form></td>
</tr>{% else %}<tr><td colspan="7">Nenhuma cobrança ainda.</td></tr>{% endfor %}</table>
<h2>Saques (transaction intents)</h2>
<form method="post" action="{{ url_for('sandbox_payout_mode') }}">Modo:
<select name="mode">{% for m in modes %}<option {% if m == mode %}selected{% endif %}>{{ m }}</option>{% endfor %}</select>
<button>Aplicar</button></form>
<table><tr><th>id</th><th>referência</th><th>valor</th><th>status</th><th>ações</th></tr>
{% for t in payouts %}<tr><td><small>{{ t.id }}</small></td><td>{{ t.external_reference }}</td>
<td>R$ {{ '%.2f'|format(t.transaction.total_amount) }}</td>
<td class="{{ t.status }}">{{ t.status }}/{{ t.transaction.to.accounts[0].status_detail }}</td>
<td>{% if t.status == 'in_process' %}
<form method="post" action="{{ url_for('sandbox_settle', tid=t.id) }}"><input type="hidden" name="outcome" value="approve"><button>Aprovar</button></form>
<form method="post" action="{{ url_for('sandbox_settle', tid=t.id) }}"><input type="hidden" name="outcome" value="reject"><button>Rejeitar</button></form>
{% endif %}</td></tr>{% else %}<tr><td colspan="5">Nenhum saque ainda.</td></tr>{% endfor %}</table>
<h2>Webhooks {% if drop %}(descartando!){% endif %}</h2>
<form method="post" action="{{ url_for('sandbox_drop') }}"><input type="hidden" name="drop" value="{{ 'false' if drop else 'true' }}">
<button>{{ 'Voltar a enviar' if drop else 'Descartar webhooks' }}</button></form>
<table><tr><th>#</th><th>recurso</th><th>ação</th><th>estado</th><th>tentativas</th><th>URL</th></tr>
{% for d in deliveries %}<tr><td>{{ d.delivery_id }}</td><td>{{ d.resource }} {{ d.resource_id }}</td><td>{{ d.action }}</td>
<td>{{ d.state }}</td><td>{% for a in d.attempts %}{{ a.status_code or a.error }}<br>{% endfor %}</td><td><small>{{ d.url }}</small></td></tr>
{% endfor %}</table></body></html>"""

ERROR_HTML = """<!doctype html><html lang="pt-BR"><head><meta charset="utf-8"><title>Erro {{ status }}</title></head>
<body style="font-family:system-ui,sans-serif;margin:2rem"><h1>Não foi possível</h1>
<p role="alert">{{ message }}</p><p><a href="/_sandbox/">Voltar</a></p></body></html>"""

TICKET_HTML = """<!doctype html><html lang="pt-BR"><head><meta charset="utf-8"><title>PIX {{ p.id }}</title></head>
<body style="font-family:system-ui,sans-serif;margin:2rem"><h1>Pague com PIX</h1>
<p>Valor: R$ {{ '%.2f'|format(p.transaction_amount) }} — status: {{ p.status }}</p>
<img alt="QR" src="data:image/png;base64,{{ p.point_of_interaction.transaction_data.qr_code_base64 }}">
<p><code style="word-break:break-all">{{ p.point_of_interaction.transaction_data.qr_code }}</code></p></body></html>"""


# --------------------------------------------------------------------------- serving

def start_in_thread(config: dict | None = None, host: str = "127.0.0.1", port: int = 0) -> BackgroundServer:
    """The emulator on a real socket in a daemon thread (tests); `.url`, `.state`, `.shutdown()`."""
    return BackgroundServer(create_app(config), host, port)


def main(argv=None):
    env = os.environ
    app_url = env.get("APP_URL")
    parser = argparse.ArgumentParser(prog="python -m sandbox.mercadopago",
                                     description="Local Mercado Pago emulator (PIX charges, payouts, webhooks).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--access-token", default=env.get("MERCADO_PAGO_SANDBOX_ACCESS_TOKEN"),
                        help="accept only this Bearer token (default: any non-empty token)")
    parser.add_argument("--webhook-secret", default=env.get("MERCADO_PAGO_WEBHOOK_SECRET") or DEFAULTS["WEBHOOK_SECRET"])
    parser.add_argument("--webhook-url", default=env.get("MERCADO_PAGO_SANDBOX_WEBHOOK_URL")
                        or (f"{app_url.rstrip('/')}/webhooks/mercadopago" if app_url else None),
                        help="dashboard webhook URL, used when a payment has no notification_url "
                             "(default: $APP_URL/webhooks/mercadopago)")
    parser.add_argument("--retry-intervals", default="2,5,15,60",
                        help="seconds between webhook retries, comma-separated")
    parser.add_argument("--payout-mode", choices=PAYOUT_MODES, default="approve")
    parser.add_argument("--timeout-sleep", type=float, default=30.0,
                        help="payout 'timeout' mode: seconds to wait before answering")
    parser.add_argument("--expire-every", type=float, default=5.0,
                        help="seconds between expiry sweeps of due charges (0 = off)")
    parser.add_argument("--state-dir", default=env.get("MERCADO_PAGO_SANDBOX_STATE_DIR"),
                        help="keep the id high-water marks here, so ids never repeat after a restart")
    args = parser.parse_args(argv)
    config = {
        "ACCESS_TOKEN": args.access_token, "WEBHOOK_SECRET": args.webhook_secret,
        "WEBHOOK_URL": args.webhook_url, "PAYOUT_MODE": args.payout_mode,
        "WEBHOOK_RETRY_INTERVALS": [float(x) for x in args.retry_intervals.split(",") if x.strip()],
        "PAYOUT_TIMEOUT_SLEEP": args.timeout_sleep, "EXPIRE_SWEEP_SECONDS": args.expire_every,
        "STATE_DIR": args.state_dir,
    }
    serve(create_app(config), args.host, args.port,
          f"Mercado Pago sandbox on http://{args.host}:{args.port}  (control page: /_sandbox/)")


if __name__ == "__main__":
    main()
