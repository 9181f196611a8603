"""Mercado Pago client: PIX charges (Payments API, via the official `mercadopago`
SDK), PIX payouts (`/v1/transaction-intents`, plain `requests`: not in the SDK)
and webhook signature verification (providers.md A-D).

`base_url` points the client at the local emulator (sandbox/mercadopago.py)
or at any other host: the SDK has no setting for it, so an `HttpClient`
subclass rewrites `https://api.mercadopago.com` on every request (providers.md C).

Idempotency: the key sent to Mercado Pago is derived from our reference
(`bsm-<reference>`), so retrying a create after a crash or a timeout returns the
payment/payout made the first time instead of creating a second one.

Payout look-up: the documented API has no search for transaction intents, only
`GET /v1/transaction-intents/{id}`. When a payout create ends with an unknown
outcome (timeout, 5xx) we do not know the id, so `recover_payout` resends the
*same* request with the *same* idempotency key, which Mercado Pago answers with
the intent created the first time (or creates it if the first call never landed).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import warnings
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable

import mercadopago
import requests
from mercadopago.config import RequestOptions
from mercadopago.errors import MercadoPagoError
from mercadopago.http import HttpClient

from webapp.formatting import N_
from webapp.pix import normalize_pix_key, parse_decimal
from webapp.providers.base import (
    CHARGE_APPROVED, CHARGE_CANCELLED, CHARGE_CHARGED_BACK, CHARGE_EXPIRED, CHARGE_IN_MEDIATION,
    CHARGE_PENDING, CHARGE_REFUNDED, CHARGE_REJECTED, PAYOUT_COMPLETED, PAYOUT_FAILED, PAYOUT_PENDING,
    REFUND_COMPLETED, REFUND_FAILED, REFUND_PENDING,
    Charge, NotCancellable, NotFound, Payout, ProviderError, Refund, connection_never_made, payout_failure_text,
)

MP_API = "https://api.mercadopago.com"

Payment = Charge   # a Mercado Pago "payment" is our PIX charge

# Mercado Pago `chave.type` values for payouts (providers.md D). The documented
# list has no random key (EVP): such a withdrawal is refused before any call.
PAYOUT_CHAVE_TYPES = {"CPF": "CPF", "CNPJ": "CNPJ", "EMAIL": "EMAIL", "PHONE": "PHONE"}

_CHARGE_STATUS = {
    "pending": CHARGE_PENDING, "in_process": CHARGE_PENDING, "authorized": CHARGE_PENDING,
    "in_mediation": CHARGE_IN_MEDIATION,   # disputed (MED): blocked until it settles
    "approved": CHARGE_APPROVED,
    "cancelled": CHARGE_CANCELLED,
    "refunded": CHARGE_REFUNDED, "charged_back": CHARGE_CHARGED_BACK,
    "rejected": CHARGE_REJECTED,
}
# Statuses in which money arrived (total_paid_amount is what the payer sent).
_PAID = ("approved", "refunded", "charged_back", "in_mediation")
# Refund statuses (sdk-nodejs RefundResponse; UNVERIFIED beyond approved/in_process/rejected).
_REFUND_STATUS = {"approved": REFUND_COMPLETED, "in_process": REFUND_PENDING, "pending": REFUND_PENDING,
                  "authorized": REFUND_PENDING, "rejected": REFUND_FAILED, "cancelled": REFUND_FAILED}
NOT_CANCELLABLE_CODE = "2018"   # A.7: "action not valid for the current state"
_PAYOUT_STATUS = {
    "pending": PAYOUT_PENDING, "in_process": PAYOUT_PENDING, "created": PAYOUT_PENDING,
    "approved": PAYOUT_COMPLETED,
    "rejected": PAYOUT_FAILED, "refunded": PAYOUT_FAILED, "cancelled": PAYOUT_FAILED,
}

# Why a payout was refused (its status_detail), as the customer reads it; translated when shown.
PAYOUT_FAILURE_TEXTS = {
    "by_bank": N_("recusado pelo banco de destino"), "by_provider": N_("recusado pelo provedor PIX"),
    "high_risk": N_("recusado pela análise de risco do provedor"),
    "insufficient_funds": N_("provedor sem saldo no momento"), "other_reason": N_("recusado pelo provedor PIX"),
    "review_manual": N_("recusado na revisão do provedor"), "refunded": N_("devolvido pelo banco de destino"),
}


# --------------------------------------------------------------------------- helpers

def idempotency_key(reference: str) -> str:
    """`bsm-<reference>`, or a hash of it when that would pass the SDK's 64-char cap."""
    key = f"bsm-{reference}"
    if len(key) > 64:
        key = "bsm-" + hashlib.sha256(reference.encode()).hexdigest()[:60]
    return key


def _json_amount(amount: Decimal) -> float | int:
    """Decimal -> JSON number. The value has at most 2 places, and a float's
    shortest repr prints it back exactly ("150.1"), so nothing is lost on the wire."""
    if isinstance(amount, float) or not isinstance(amount, (Decimal, int)):
        raise TypeError("amount must be a Decimal")
    q = Decimal(amount).quantize(Decimal("0.01"))
    if q != amount or q <= 0:
        raise ValueError(f"amount must be positive with at most 2 decimal places, got {amount}")
    return int(q) if q == q.to_integral_value() else float(q)


def money(value) -> Decimal:
    """A provider amount (number, "100.00" or "100,00") as Decimal with 2 places."""
    return parse_decimal(value).quantize(Decimal("0.01"))


def _parse_dt(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _error_reason(body) -> tuple[str, str | None]:
    """A readable message and a code from the A.9 envelope (or anything else)."""
    if isinstance(body, dict):
        causes = body.get("cause") or []
        cause = causes[0] if isinstance(causes, list) and causes and isinstance(causes[0], dict) else {}
        message = body.get("message") or cause.get("description") or body.get("error") or str(body)
        code = cause.get("code") or body.get("code") or body.get("error")
        return str(message), (str(code) if code is not None else None)
    return (str(body) if body else "no body"), None


class _BaseUrlHttpClient(HttpClient):
    """The SDK's transport, pointed at another host (providers.md C, option 2)."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, **kwargs):
        if url.startswith(MP_API):
            url = self.base_url + url[len(MP_API):]
        return super().request(method, url, **kwargs)


# --------------------------------------------------------------------------- client

class MercadoPagoClient:
    """PIX in and out through Mercado Pago. Implements base.PixProvider."""

    name = "mercadopago"

    def __init__(self, access_token: str, base_url: str | None = None, timeout: float = 10,
                 payout_signer: Callable[[bytes], str] | None = None):
        """`payout_signer(body) -> base64 Ed25519 signature` is required by Mercado Pago
        in production for payouts (providers.md D); without it we send
        `x-enforce-signature: false`, which only test environments accept."""
        if not access_token:
            raise ValueError("Mercado Pago access token is required")
        self.access_token = access_token
        self.base_url = (base_url or MP_API).rstrip("/")
        self.timeout = float(timeout)
        self.payout_signer = payout_signer
        http_client = _BaseUrlHttpClient(self.base_url) if self.base_url != MP_API else HttpClient()
        self.sdk = mercadopago.SDK(access_token, http_client=http_client,
                                   request_options=self._options())

    def _options(self, idempotency: str | None = None) -> RequestOptions:
        # retry_on=[]: never let urllib3 replay on a 5xx; we decide (and POSTs must not be replayed).
        ro = RequestOptions(access_token=self.access_token, connection_timeout=self.timeout,
                            max_retries=2, retry_on=[])
        if idempotency:
            ro.custom_headers = {"X-Idempotency-Key": idempotency}
        return ro

    # ---- transport with the error contract of base.ProviderError
    def _sdk_call(self, what: str, fn, *, create: bool, want: type = dict) -> tuple[int, dict]:
        try:
            res = fn()
        except requests.RequestException as exc:
            if connection_never_made(exc):
                raise ProviderError(f"Mercado Pago unreachable ({what}): {exc}", retryable=True) from exc
            raise ProviderError(f"Mercado Pago did not answer ({what}): {exc.__class__.__name__}",
                                retryable=not create, outcome_unknown=create) from exc
        except MercadoPagoError as exc:
            # The SDK raises only for a non-JSON body; treat it like a 5xx.
            raise ProviderError(f"Mercado Pago sent an unreadable answer ({what}): {exc}",
                                retryable=not create, outcome_unknown=create) from exc
        return self._check(what, res["status"], res["response"], create=create, want=want)

    def _check(self, what: str, status: int, body, *, create: bool, want: type = dict) -> tuple[int, dict]:
        if 200 <= status < 300:
            if not isinstance(body, want):
                raise ProviderError(f"Mercado Pago answered {status} without a JSON {want.__name__} ({what})",
                                    retryable=not create, outcome_unknown=create, status=status)
            return status, body
        message, code = _error_reason(body)
        text = f"Mercado Pago {what}: {message} (HTTP {status}{', code ' + code if code else ''})"
        if status == 404:
            raise NotFound(text, status=status, code=code, raw=body)
        if status >= 500:
            raise ProviderError(text, retryable=not create, outcome_unknown=create,
                                status=status, code=code, raw=body)
        if status == 423:   # same key still being processed by another request
            raise ProviderError(text, retryable=True, outcome_unknown=create,
                                status=status, code=code, raw=body)
        if status == 429:
            raise ProviderError(text, retryable=True, status=status, code=code, raw=body)
        raise ProviderError(text, status=status, code=code, raw=body)

    # ---- charges (pay-in)
    def create_pix_charge(self, reference: str, amount: Decimal, payer_email: str,
                          payer_cpf: str | None, expires_at: datetime, description: str,
                          notification_url: str | None = None) -> Charge:
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        body = {
            "transaction_amount": _json_amount(amount),
            "payment_method_id": "pix",
            "description": description,
            "external_reference": reference,
            "date_of_expiration": expires_at.isoformat(timespec="milliseconds"),
            "payer": {"email": payer_email},
        }
        if payer_cpf:
            body["payer"]["identification"] = {"type": "CPF", "number": payer_cpf}
        if notification_url:
            body["notification_url"] = notification_url
        options = self._options(idempotency_key(reference))
        with warnings.catch_warnings():
            # The SDK warns on notification_url (providers.md C.5); the API still accepts it
            # and it is how one deployment routes its own webhooks.
            warnings.filterwarnings("ignore", message="notification_url is deprecated",
                                    category=DeprecationWarning)
            _, data = self._sdk_call("create payment",
                                     lambda: self.sdk.payment().create(body, options), create=True)
        return self._charge(data)

    def get_payment(self, payment_id) -> Charge:
        _, data = self._sdk_call(f"get payment {payment_id}",
                                 lambda: self.sdk.payment().get(payment_id), create=False)
        return self._charge(data)

    get_charge = get_payment

    def find_payments_by_reference(self, reference: str) -> list[Charge]:
        """Every payment with this external_reference, newest first."""
        found: list[Charge] = []
        offset, limit = 0, 50
        while True:
            filters = {"external_reference": reference, "sort": "date_created",
                       "criteria": "desc", "limit": limit, "offset": offset}
            _, data = self._sdk_call("search payments",
                                     lambda: self.sdk.payment().search(filters), create=False)
            results = data.get("results") or []
            found.extend(self._charge(r) for r in results
                         if str(r.get("external_reference")) == reference)
            total = (data.get("paging") or {}).get("total", 0)
            offset += len(results)
            if not results or offset >= total:
                return found

    find_charges_by_reference = find_payments_by_reference

    def cancel_charge(self, payment_id) -> Charge:
        """Cancel an unpaid charge: `PUT /v1/payments/{id}` `{"status":"cancelled"}` (A.7).

        Mercado Pago allows it only from pending/in_process/authorized and answers
        400 code 2018 otherwise. Then we look the payment up: already cancelled or
        expired is returned as is (the charge can no longer be paid, which is what
        the caller wants); anything else (paid, refunded…) raises NotCancellable
        with that charge."""
        try:
            _, data = self._sdk_call(
                f"cancel payment {payment_id}",
                lambda: self.sdk.payment().update(payment_id, {"status": "cancelled"}), create=False)
        except ProviderError as exc:
            if exc.status != 400 or exc.code != NOT_CANCELLABLE_CODE:
                raise
            now = self.get_payment(payment_id)   # may raise: then the caller asks again later
            if now.status in (CHARGE_CANCELLED, CHARGE_EXPIRED):
                return now
            raise NotCancellable(f"Mercado Pago payment {payment_id} cannot be cancelled: it is "
                                 f"{now.status} ({now.raw.get('status')}/{now.status_detail})",
                                 charge=now, status=exc.status, code=exc.code, raw=exc.raw) from exc
        return self._charge(data)

    cancel_payment = cancel_charge

    # ---- refunds (A.8)
    def refund_charge(self, payment_id, amount: Decimal, idempotency_key: str) -> Refund:
        """`POST /v1/payments/{id}/refunds` `{"amount": …}` with `X-Idempotency-Key`.

        `amount` is always sent, even for everything (an explicit amount cannot be
        replayed as "the rest"). The same key returns the refund made the first
        time. A timeout or a 5xx is outcome_unknown: look with `list_refunds`, or
        call again with the same key."""
        if not idempotency_key or len(idempotency_key) > 64:
            raise ValueError("idempotency_key must have 1 to 64 characters")
        body = {"amount": _json_amount(amount)}
        options = self._options(idempotency_key)
        _, data = self._sdk_call(f"refund payment {payment_id}",
                                 lambda: self.sdk.refund().create(payment_id, body, options), create=True)
        return self._refund(data, payment_id)

    def get_refund(self, payment_id, refund_id) -> Refund:
        _, data = self._sdk_call(f"get refund {refund_id} of payment {payment_id}",
                                 lambda: self.sdk.refund().get(payment_id, refund_id), create=False)
        return self._refund(data, payment_id)

    def list_refunds(self, payment_id) -> list[Refund]:
        _, data = self._sdk_call(f"list refunds of payment {payment_id}",
                                 lambda: self.sdk.refund().list_all(payment_id), create=False, want=list)
        return [self._refund(r, payment_id) for r in data if isinstance(r, dict)]

    @staticmethod
    def _refund(r: dict, payment_id) -> Refund:
        status = r.get("status") or ""
        return Refund(id=str(r.get("id")), charge_id=str(r.get("payment_id") or payment_id),
                      amount=money(r.get("amount")), status=_REFUND_STATUS.get(status, REFUND_PENDING),
                      status_detail=status or None, created_at=_parse_dt(r.get("date_created")), raw=r)

    @staticmethod
    def _charge(p: dict) -> Charge:
        status = p.get("status") or ""
        detail = p.get("status_detail")
        normalized = _CHARGE_STATUS.get(status, CHARGE_PENDING)
        if status == "cancelled" and detail == "expired":
            normalized = CHARGE_EXPIRED
        tx = ((p.get("point_of_interaction") or {}).get("transaction_data") or {})
        ident = ((p.get("payer") or {}).get("identification") or {})
        details = p.get("transaction_details") or {}
        paid = None
        if status in _PAID and details.get("total_paid_amount") is not None:
            paid = money(details["total_paid_amount"])
        refunded = None
        if p.get("transaction_amount_refunded"):
            refunded = money(p["transaction_amount_refunded"])
        if not refunded and status == "refunded":
            refunded = paid if paid is not None else money(p.get("transaction_amount"))
        return Charge(
            provider_id=str(p.get("id")),
            reference=p.get("external_reference"),
            amount=money(p.get("transaction_amount")),
            status=normalized,
            qr_code=tx.get("qr_code"),
            qr_code_base64=tx.get("qr_code_base64"),
            expires_at=_parse_dt(p.get("date_of_expiration")),
            payer_cpf=ident.get("number") if (ident.get("type") or "CPF").upper() == "CPF" else None,
            raw=p,
            status_detail=detail,
            paid_amount=paid,
            paid_at=_parse_dt(p.get("date_approved")),
            end_to_end_id=tx.get("e2e_id"),
            refunded_amount=refunded,
        )

    # ---- payouts (transaction intents; not in the SDK)
    def _payout_request(self, method: str, path: str, what: str, *, body: dict | None = None,
                        key: str | None = None, create: bool) -> dict:
        headers = {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
            if self.payout_signer:
                headers["x-signature"] = self.payout_signer(data)
                headers["x-enforce-signature"] = "true"
            else:
                headers["x-enforce-signature"] = "false"
        if key:
            headers["X-Idempotency-Key"] = key
        try:
            r = requests.request(method, self.base_url + path, data=data, headers=headers,
                                 timeout=self.timeout)
        except requests.RequestException as exc:
            if connection_never_made(exc):
                raise ProviderError(f"Mercado Pago unreachable ({what}): {exc}", retryable=True) from exc
            raise ProviderError(f"Mercado Pago did not answer ({what}): {exc.__class__.__name__}",
                                retryable=not create, outcome_unknown=create) from exc
        try:
            parsed = r.json() if r.content else None
        except ValueError:
            parsed = {"message": r.text[:200]}
        return self._check(what, r.status_code, parsed, create=create)[1]

    def payout_body(self, reference: str, amount: Decimal, key_type: str, key_value: str,
                    notification_url: str | None = None) -> dict:
        kind = (key_type or "").upper()
        try:
            value = normalize_pix_key(kind, key_value)
        except ValueError as exc:
            raise ProviderError(str(exc), code="invalid_chave_pix") from None
        if kind not in PAYOUT_CHAVE_TYPES:
            raise ProviderError("Mercado Pago não envia PIX para chave aleatória; "
                                "use CPF, CNPJ, e-mail ou telefone.", code="unsupported_chave_type")
        value_json = _json_amount(amount)
        body = {
            "external_reference": reference,
            "point_of_interaction": {"type": "PSP_TRANSFER"},
            "transaction": {
                "from": {"accounts": [{"amount": value_json}]},
                "to": {"accounts": [{"type": "current", "amount": value_json,
                                     "chave": {"type": PAYOUT_CHAVE_TYPES[kind], "value": value}}]},
                "total_amount": value_json,
            },
        }
        if notification_url:
            body["seller_configuration"] = {"notification_info": {"notification_url": notification_url}}
        return body

    def send_pix_payout(self, reference: str, amount: Decimal, key_type: str, key_value: str,
                        notification_url: str | None = None) -> Payout:
        """Create and process one PIX transfer. Safe to call again with the same
        arguments: the idempotency key (from `reference`) returns the first intent."""
        body = self.payout_body(reference, amount, key_type, key_value, notification_url)
        data = self._payout_request("POST", "/v1/transaction-intents/process", "send payout",
                                    body=body, key=idempotency_key(reference), create=True)
        return self._payout(data)

    # After an outcome_unknown error: the same call, by design (see module docstring).
    recover_payout = send_pix_payout

    def payout_failure_text(self, payout: Payout) -> str:
        return payout_failure_text(PAYOUT_FAILURE_TEXTS, payout)

    def get_payout(self, payout_id: str) -> Payout:
        data = self._payout_request("GET", f"/v1/transaction-intents/{requests.utils.quote(str(payout_id), safe='')}",
                                    f"get payout {payout_id}", create=False)
        return self._payout(data)

    @staticmethod
    def _payout(t: dict) -> Payout:
        status = t.get("status") or ""
        tx = t.get("transaction") or {}
        to = ((tx.get("to") or {}).get("accounts") or [{}])[0]
        detail = to.get("status_detail")
        amount = tx.get("total_amount")
        if amount is None:
            amount = to.get("amount")
        normalized = _PAYOUT_STATUS.get(status, PAYOUT_PENDING)
        failure = None
        if normalized == PAYOUT_FAILED:
            failure = f"{status}/{detail}" if detail else status
        return Payout(
            provider_id=str(t.get("id")),
            reference=t.get("external_reference"),
            amount=money(amount),
            status=normalized,
            failure_reason=failure,
            raw=t,
            status_detail=detail,
        )


# --------------------------------------------------------------------------- webhooks

class WebhookSignatureError(Exception):
    """Why a notification's signature was refused. `reason` is one of the constants below."""
    MISSING_SIGNATURE_HEADER = "MISSING_SIGNATURE_HEADER"
    MALFORMED_SIGNATURE_HEADER = "MALFORMED_SIGNATURE_HEADER"
    MISSING_TIMESTAMP = "MISSING_TIMESTAMP"
    MISSING_HASH = "MISSING_HASH"
    SIGNATURE_MISMATCH = "SIGNATURE_MISMATCH"
    TIMESTAMP_OUT_OF_TOLERANCE = "TIMESTAMP_OUT_OF_TOLERANCE"

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_signature_header(x_signature: str) -> tuple[str | None, str | None]:
    """`ts=…,v1=…` -> (ts, v1). Split on ',', then each part on the first '='."""
    ts = v1 = None
    for part in x_signature.split(","):
        if "=" not in part:
            continue
        k, v = part.split("=", 1)
        k, v = k.strip(), v.strip()
        if k == "ts":
            ts = v
        elif k == "v1":
            v1 = v
    return ts, v1


def signature_manifest(data_id: str | None, x_request_id: str | None, ts: str | None) -> str:
    """`id:…;request-id:…;ts:…;` with each missing part left out (providers.md B.2)."""
    out = ""
    if data_id:
        out += f"id:{data_id};"
    if x_request_id:
        out += f"request-id:{x_request_id};"
    if ts:
        out += f"ts:{ts};"
    return out


def sign_webhook(data_id: str | None, x_request_id: str | None, ts: str, secret: str) -> str:
    """The `x-signature` header value Mercado Pago would send (used by the emulator)."""
    manifest = signature_manifest(data_id, x_request_id, ts)
    v1 = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
    return f"ts={ts},v1={v1}"


def check_webhook_signature(x_signature: str | None, x_request_id: str | None, data_id: str | None,
                            secret: str, now: float | datetime | None = None,
                            tolerance_seconds: float | None = 300) -> None:
    """Raise WebhookSignatureError unless the notification is signed with `secret`.

    `data_id` is the `data.id` *query parameter*. `ts` may be in seconds or in
    milliseconds (ts > 1e12 means ms; the docs disagree, providers.md B.2). The
    raw data.id is tried first, then its lower-case form. `tolerance_seconds=None`
    skips the freshness check.
    """
    if not secret:
        raise ValueError("webhook secret is not configured")
    if not x_signature or not x_signature.strip():
        raise WebhookSignatureError(WebhookSignatureError.MISSING_SIGNATURE_HEADER)
    if "=" not in x_signature:
        raise WebhookSignatureError(WebhookSignatureError.MALFORMED_SIGNATURE_HEADER, x_signature[:80])
    ts, v1 = parse_signature_header(x_signature)
    if not ts:
        raise WebhookSignatureError(WebhookSignatureError.MISSING_TIMESTAMP)
    if not ts.isdigit():
        raise WebhookSignatureError(WebhookSignatureError.MALFORMED_SIGNATURE_HEADER, f"ts={ts!r}")
    if not v1:
        raise WebhookSignatureError(WebhookSignatureError.MISSING_HASH)

    candidates = [data_id]
    if data_id and data_id.lower() != data_id:
        candidates.append(data_id.lower())
    ok = False
    for candidate in candidates:
        manifest = signature_manifest(candidate, x_request_id, ts)
        expected = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
        ok |= hmac.compare_digest(expected, v1.lower())
    if not ok:
        raise WebhookSignatureError(WebhookSignatureError.SIGNATURE_MISMATCH)

    if tolerance_seconds is not None:
        sent = int(ts) / 1000 if int(ts) > 10**12 else int(ts)
        if now is None:
            now_s = time.time()
        elif isinstance(now, datetime):
            now_s = (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).timestamp()
        else:
            now_s = float(now)
        if abs(now_s - sent) > tolerance_seconds:
            raise WebhookSignatureError(WebhookSignatureError.TIMESTAMP_OUT_OF_TOLERANCE,
                                        f"ts={ts}, {abs(now_s - sent):.0f}s away")
