"""Banco Inter client (API PJ v2, providers.md E): PIX charges through the BACEN
"API Pix" (`/pix/v2/cob`) and PIX transfers through the Banking API
(`/banking/v2/pix`). Same interface and dataclasses as MercadoPagoClient.

Every call, the token call included, uses mutual TLS with the certificate pair
Inter issues for the application. `cert_path` (INTER_CERT_PATH) may be:
- a `(crt, key)` tuple;
- one `.pem` file holding the certificate and the private key;
- a `.crt`/`.cer` file with the key beside it under the same name (`x.crt` + `x.key`);
- a prefix, `path/inter` meaning `path/inter.crt` + `path/inter.key`;
- a directory holding exactly one `*.crt` (or `*.cer`) and one `*.key`.

OAuth2 client credentials; the token is cached until shortly before it expires
and fetched again (once) when the API answers 401.

Idempotency and look-up:
- a charge's txid is derived from our reference (`txid_for`), so a charge is
  looked up with `GET /pix/v2/cob/{txid}`, and creating it twice finds the first;
- a payout carries `x-id-idempotente: uuid5(reference)`; after an unknown outcome
  `recover_payout` resends the same request with the same key (Inter has no
  search by our reference; `codigoSolicitacao` is the id to keep).
- a refund is a BACEN devolução of the PIX that paid the cob,
  `PUT /pix/v2/pix/{e2eId}/devolucao/{id}` with *our* id (`devolucao_id`, from the
  caller's idempotency key): the same key is the same devolução, never a second one.

Clawback as the cob shows it: the cob stays CONCLUIDA; its `pix[].devolucoes`
say what went back. A devolução of natureza MED_OPERACIONAL/MED_FRAUDE (the
payer's bank, through BACEN's MED) makes the charge CHARGE_CHARGED_BACK;
ours (ORIGINAL) covering everything makes it CHARGE_REFUNDED.
Notes: UNVERIFIED against Inter's official reference (not public); see providers.md E.
The devolução shape follows the BACEN API Pix (community SDKs: id, rtrId, valor,
horario{solicitacao,liquidacao}, status EM_PROCESSAMENTO|DEVOLVIDO|NAO_REALIZADO, natureza).
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import requests
import segno

from webapp.formatting import N_
from webapp.pix import is_cpf, normalize_pix_key, parse_decimal
from webapp.providers.base import (
    CHARGE_APPROVED, CHARGE_CANCELLED, CHARGE_CHARGED_BACK, CHARGE_EXPIRED, CHARGE_PENDING, CHARGE_REFUNDED,
    PAYOUT_COMPLETED, PAYOUT_FAILED, PAYOUT_PENDING, REFUND_COMPLETED, REFUND_FAILED, REFUND_PENDING,
    Charge, NotCancellable, NotFound, Payout, ProviderError, Refund, connection_never_made, payout_failure_text,
)

INTER_API = "https://cdpj.partners.bancointer.com.br"
INTER_SANDBOX_API = "https://cdpj-sandbox.partners.uatinter.co"

DEFAULT_SCOPES = ("cob.read", "cob.write", "pix.read", "pix.write", "webhook.read", "webhook.write",
                  "pagamento-pix.read", "pagamento-pix.write", "webhook-banking.read",
                  "webhook-banking.write")

# Fixed namespace so uuid5(reference) is the same key on every machine and restart.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6b9f3c1e-2d4a-5e7f-8a9b-0c1d2e3f4a5b")
_TXID_RE = re.compile(r"^[a-zA-Z0-9]{26,35}$")
_DEVOLUCAO_ID_RE = re.compile(r"^[a-zA-Z0-9]{1,35}$")
_DEVOLUCAO_STATUS = {"EM_PROCESSAMENTO": REFUND_PENDING, "DEVOLVIDO": REFUND_COMPLETED,
                     "NAO_REALIZADO": REFUND_FAILED}
MED_NATUREZAS = ("MED_OPERACIONAL", "MED_FRAUDE")

_COB_STATUS = {
    "ATIVA": CHARGE_PENDING,
    "CONCLUIDA": CHARGE_APPROVED,
    "REMOVIDA_PELO_USUARIO_RECEBEDOR": CHARGE_CANCELLED,
    "REMOVIDA_PELO_PSP": CHARGE_EXPIRED,   # the PSP removes a cob when it expires
}
_PAYOUT_STATUS = {
    "PAGO": PAYOUT_COMPLETED, "EFETIVADO": PAYOUT_COMPLETED,
    "REPROVADO": PAYOUT_FAILED, "EXPIRADO": PAYOUT_FAILED, "CANCELADO": PAYOUT_FAILED,
    "FALHA": PAYOUT_FAILED, "CANCELADO_SEM_SALDO": PAYOUT_FAILED, "NAO_DEBITADO": PAYOUT_FAILED,
    "AGENDAMENTO_CANCELADO": PAYOUT_FAILED, "NAO_EFETIVADO": PAYOUT_FAILED, "ERRO": PAYOUT_FAILED,
    # CRIADO, AGUARDANDO_APROVACAO, APROVADO, AGENDADO, ENVIADO, DEBITADO and the
    # PARCIALMENTE_* states are all "not final yet": pending.
}
# Why a payout failed (its Inter status), as the customer reads it; translated when shown.
PAYOUT_FAILURE_TEXTS = {
    "REPROVADO": N_("recusado pelo banco"), "EXPIRADO": N_("expirou no banco"), "CANCELADO": N_("cancelado pelo banco"),
    "FALHA": N_("falha no banco"), "NAO_EFETIVADO": N_("não efetivado pelo banco"), "ERRO": N_("erro no banco"),
}


def txid_for(reference: str) -> str:
    """A BACEN txid (^[a-zA-Z0-9]{26,35}$) from our reference, deterministic.

    `bsm` + the reference itself when it is already alphanumeric and fits (a
    UUID without dashes does: 3 + 32 = 35), else `bsm` + 32 hex of its SHA-256.
    """
    compact = reference.replace("-", "")
    if compact.isascii() and compact.isalnum() and 26 <= len("bsm" + compact) <= 35:
        return "bsm" + compact
    return "bsm" + hashlib.sha256(reference.encode()).hexdigest()[:32]


def devolucao_id(idempotency_key: str) -> str:
    """Our devolução id (^[a-zA-Z0-9]{1,35}$) from the caller's idempotency key:
    the key itself when it fits, else `bsm` + 32 hex of its SHA-256."""
    if _DEVOLUCAO_ID_RE.match(idempotency_key or ""):
        return idempotency_key
    if not idempotency_key:
        raise ValueError("idempotency_key is required")
    return "bsm" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def idempotency_uuid(reference: str) -> str:
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"bs-market payout {reference}"))


def resolve_cert(cert_path) -> str | tuple[str, str]:
    """INTER_CERT_PATH -> what `requests` takes as `cert=` (see module docstring)."""
    if isinstance(cert_path, (tuple, list)):
        crt, key = cert_path
        return str(crt), str(key)
    if not cert_path:
        raise ValueError("INTER_CERT_PATH is required: Inter uses mutual TLS on every call")
    p = Path(cert_path)
    if p.is_dir():
        crts = sorted(list(p.glob("*.crt")) + list(p.glob("*.cer")))
        keys = sorted(p.glob("*.key"))
        if len(crts) != 1 or len(keys) != 1:
            raise ValueError(f"{p}: expected exactly one .crt/.cer and one .key file, "
                             f"found {len(crts)} and {len(keys)}")
        return str(crts[0]), str(keys[0])
    if p.is_file() and p.suffix == ".pem":
        text = p.read_text(errors="replace")
        if "PRIVATE KEY" not in text or "CERTIFICATE" not in text:
            raise ValueError(f"{p}: a .pem must hold both the certificate and the private key")
        return str(p)
    if p.is_file() and p.suffix in (".crt", ".cer"):
        key = p.with_suffix(".key")
        if not key.is_file():
            raise ValueError(f"{p}: no private key beside it ({key.name})")
        return str(p), str(key)
    crt, key = Path(f"{p}.crt"), Path(f"{p}.key")
    if crt.is_file() and key.is_file():
        return str(crt), str(key)
    raise ValueError(f"INTER_CERT_PATH {cert_path!r}: not a .pem, a .crt with its .key, a prefix or a directory")


def _money(value) -> Decimal:
    return parse_decimal(value).quantize(Decimal("0.01"))


def _dt(value) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _png(text: str) -> str:
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=4, border=2)
    return base64.b64encode(buf.getvalue()).decode()


def _inter_error(body) -> tuple[str, str | None]:
    """`{"title","detail","violacoes":[{"razao","propriedade","valor"}]}` -> message, code."""
    if not isinstance(body, dict):
        return (str(body)[:300] if body else "no body"), None
    parts = [body.get("title"), body.get("detail")]
    for v in body.get("violacoes") or []:
        if isinstance(v, dict):
            parts.append(f"{v.get('propriedade', '?')}: {v.get('razao', '')}".strip())
    message = " - ".join(str(p) for p in parts if p) or json.dumps(body)[:300]
    return message, body.get("title")


@dataclass(frozen=True)
class PixReceived:
    """One received PIX from a webhook (BACEN `pix` item)."""
    end_to_end_id: str
    txid: str | None
    amount: Decimal
    paid_at: datetime | None
    key: str | None
    payer_info: str | None
    raw: dict


def parse_pix_webhook(body) -> list[PixReceived]:
    """Inter's PIX-received notification, in either shape seen in the wild:
    `{"pix": [...]}` (BACEN standard) or a bare JSON array of the same items.
    `body` may be bytes, str or already-parsed JSON. ValueError if unreadable."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except ValueError:
            raise ValueError("webhook body is not JSON") from None
    if isinstance(body, dict):
        if "pix" not in body:
            raise ValueError("webhook body has no 'pix' list")
        items = body["pix"]
    else:
        items = body
    if not isinstance(items, list):
        raise ValueError("webhook 'pix' is not a list")
    out = []
    for item in items:
        if not isinstance(item, dict) or not item.get("endToEndId") or item.get("valor") is None:
            raise ValueError(f"webhook item without endToEndId/valor: {item!r}"[:200])
        out.append(PixReceived(end_to_end_id=item["endToEndId"], txid=item.get("txid"),
                               amount=_money(item["valor"]), paid_at=_dt(item.get("horario")),
                               key=item.get("chave"), payer_info=item.get("infoPagador"), raw=item))
    return out


class InterClient:
    """PIX in and out through Banco Inter. Implements base.PixProvider."""

    name = "inter"

    def __init__(self, client_id: str, client_secret: str, cert_path, pix_key: str,
                 base_url: str | None = None, account: str | None = None,
                 scopes=DEFAULT_SCOPES, timeout: float = 10, verify: bool | str = True,
                 merchant_name: str | None = None):
        """`pix_key`: our receiving key at Inter (goes in every cob). `account`:
        sent as `x-conta-corrente` when the application covers several accounts.
        `verify`: True, or a CA bundle path (the sandbox's ca.crt)."""
        if not client_id or not client_secret:
            raise ValueError("INTER_CLIENT_ID and INTER_CLIENT_SECRET are required")
        self.client_id = client_id
        self.client_secret = client_secret
        self.cert = resolve_cert(cert_path)
        self.pix_key = pix_key
        self.base_url = (base_url or INTER_API).rstrip("/")
        self.account = account
        self.scopes = " ".join(scopes)
        self.timeout = float(timeout)
        self.verify = verify
        self.merchant_name = merchant_name
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()
        self.session = requests.Session()

    # ---- transport
    def _tls(self) -> dict:
        # Per request, not on the Session: requests lets REQUESTS_CA_BUNDLE override
        # Session.verify, which would silently drop a CA we were given.
        return {"cert": self.cert, "verify": self.verify, "timeout": self.timeout}

    def _fail(self, what: str, exc: requests.RequestException, create: bool):
        if isinstance(exc, requests.exceptions.SSLError):
            raise ProviderError(f"Banco Inter TLS failure ({what}): check the certificate pair "
                                f"and the CA: {exc}", retryable=False) from exc
        if connection_never_made(exc):
            raise ProviderError(f"Banco Inter unreachable ({what}): {exc}", retryable=True) from exc
        raise ProviderError(f"Banco Inter did not answer ({what}): {exc.__class__.__name__}",
                            retryable=not create, outcome_unknown=create) from exc

    def token(self) -> str:
        """A valid access token, from cache when it has at least a minute left."""
        with self._lock:
            if self._token and time.monotonic() < self._token_expires:
                return self._token
            try:
                r = self.session.post(
                    self.base_url + "/oauth/v2/token",
                    data={"client_id": self.client_id, "client_secret": self.client_secret,
                          "grant_type": "client_credentials", "scope": self.scopes},
                    headers={"Content-Type": "application/x-www-form-urlencoded"}, **self._tls())
            except requests.RequestException as exc:
                self._fail("token", exc, create=False)
            body = self._json(r)
            if r.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
                message, code = _inter_error(body)
                raise ProviderError(f"Banco Inter token: {message} (HTTP {r.status_code})",
                                    retryable=r.status_code >= 500 or r.status_code == 429,
                                    status=r.status_code, code=code, raw=body)
            ttl = int(body.get("expires_in") or 3600)
            self._token = body["access_token"]
            self._token_expires = time.monotonic() + max(ttl - 60, ttl / 2)
            return self._token

    def _forget_token(self, used: str):
        with self._lock:
            if self._token == used:
                self._token = None

    @staticmethod
    def _json(r: requests.Response):
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return {"title": f"HTTP {r.status_code}", "detail": r.text[:200]}

    def _request(self, method: str, path: str, what: str, *, body=None, headers=None,
                 create: bool = False, allow_404: bool = False):
        for attempt in (1, 2):
            tok = self.token()
            h = {"Authorization": f"Bearer {tok}", "Accept": "application/json"}
            if self.account:
                h["x-conta-corrente"] = self.account
            if body is not None:
                h["Content-Type"] = "application/json"
            h.update(headers or {})
            try:
                r = self.session.request(method, self.base_url + path, headers=h,
                                         data=json.dumps(body) if body is not None else None,
                                         **self._tls())
            except requests.RequestException as exc:
                self._fail(what, exc, create)
            if r.status_code == 401 and attempt == 1:
                self._forget_token(tok)    # expired or revoked early: one fresh token, one retry
                continue
            break
        data = self._json(r)
        if 200 <= r.status_code < 300:
            return data
        message, code = _inter_error(data)
        text = f"Banco Inter {what}: {message} (HTTP {r.status_code})"
        if r.status_code == 404:
            raise NotFound(text, status=404, code=code, raw=data)
        if r.status_code >= 500:
            raise ProviderError(text, retryable=not create, outcome_unknown=create,
                                status=r.status_code, code=code, raw=data)
        raise ProviderError(text, retryable=r.status_code == 429, status=r.status_code, code=code, raw=data)

    # ---- charges (cob)
    def create_pix_charge(self, reference: str, amount: Decimal, payer_email: str,
                          payer_cpf: str | None, expires_at: datetime, description: str,
                          notification_url: str | None = None, payer_name: str | None = None) -> Charge:
        """`PUT /pix/v2/cob/{txid}`. Inter notifies through the webhook registered
        for our key (`register_webhook`), so `notification_url` is not used here.
        `devedor` is sent only with both CPF/CNPJ and name (BACEN requires the pair);
        `payer_email` has no place in a cob and is not sent."""
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        if isinstance(amount, float):
            raise TypeError("amount must be a Decimal")
        txid = txid_for(reference)
        seconds = int((expires_at - datetime.now(timezone.utc)).total_seconds())
        if seconds < 60:
            raise ValueError("expires_at must be at least a minute away")
        body = {
            "calendario": {"expiracao": seconds},
            "valor": {"original": f"{Decimal(amount).quantize(Decimal('0.01')):.2f}"},
            "chave": self.pix_key,
            "solicitacaoPagador": (description or "")[:140],
            "infoAdicionais": [{"nome": "referencia", "valor": reference[:200]}],
        }
        if payer_cpf and payer_name:
            doc = "".join(c for c in payer_cpf if c.isalnum())
            body["devedor"] = {("cnpj" if len(doc) == 14 else "cpf"): doc, "nome": payer_name[:200]}
        try:
            data = self._request("PUT", f"/pix/v2/cob/{txid}", "create cob", body=body, create=True)
        except ProviderError as exc:
            # Our txid is already taken: a previous attempt landed. Return it if it is
            # the same charge, otherwise this is a real conflict.
            taken = exc.status == 409 or (exc.status in (400, 422) and "existe" in exc.message.lower())
            if not taken:
                raise
            existing = self.get_charge(txid)
            if existing.amount != Decimal(amount).quantize(Decimal("0.01")):
                raise ProviderError(f"Banco Inter: txid {txid} already used for another amount "
                                    f"({existing.amount})", status=exc.status, code=exc.code) from exc
            return existing
        return self._charge(data, reference)

    def get_charge(self, txid: str) -> Charge:
        return self._charge(self._request("GET", f"/pix/v2/cob/{txid}", f"get cob {txid}"))

    get_payment = get_charge

    def find_charges_by_reference(self, reference: str) -> list[Charge]:
        try:
            return [self._charge(self._request("GET", f"/pix/v2/cob/{txid_for(reference)}",
                                               "find cob"), reference)]
        except NotFound:
            return []

    def cancel_charge(self, txid: str) -> Charge:
        """`PATCH /pix/v2/cob/{txid}` `{"status":"REMOVIDA_PELO_USUARIO_RECEBEDOR"}`.

        A refusal (4xx other than 401/404/429: the body is always the same, so it is the
        cob's state) is followed by a look-up: removed or expired already is returned;
        paid raises NotCancellable with the charge. UNVERIFIED: Inter's exact status code."""
        try:
            data = self._request("PATCH", f"/pix/v2/cob/{txid}", f"cancel cob {txid}",
                                 body={"status": "REMOVIDA_PELO_USUARIO_RECEBEDOR"})
        except NotFound:
            raise
        except ProviderError as exc:
            if exc.status is None or not 400 <= exc.status < 500 or exc.status in (401, 429):
                raise
            now = self.get_charge(txid)
            if now.status in (CHARGE_CANCELLED, CHARGE_EXPIRED):
                return now
            raise NotCancellable(f"Banco Inter cob {txid} cannot be removed: it is {now.status} "
                                 f"({now.status_detail})", charge=now, status=exc.status,
                                 code=exc.code, raw=exc.raw) from exc
        return self._charge(data)

    # ---- refunds (BACEN devolução)
    def _received(self, txid: str) -> tuple[dict, list[dict]]:
        cob = self._request("GET", f"/pix/v2/cob/{txid}", f"get cob {txid}")
        pix = [p for p in ((cob or {}).get("pix") or []) if isinstance(p, dict) and p.get("endToEndId")]
        return cob, pix

    def refund_charge(self, txid: str, amount: Decimal, idempotency_key: str) -> Refund:
        """Devolução of the PIX that paid this cob: `PUT /pix/v2/pix/{e2eId}/devolucao/{id}`
        `{"valor": "…"}` (scope pix.write), `id` = devolucao_id(idempotency_key)."""
        if isinstance(amount, float) or not isinstance(amount, (Decimal, int)):
            raise TypeError("amount must be a Decimal")
        value = Decimal(amount).quantize(Decimal("0.01"))
        if value <= 0 or value != amount:
            raise ValueError(f"amount must be positive with at most 2 decimal places, got {amount}")
        dev_id = devolucao_id(idempotency_key)
        _, pix = self._received(txid)
        if not pix:
            raise ProviderError(f"Banco Inter cob {txid}: no PIX received, nothing to give back",
                                code="not_paid")
        # The PIX that already holds this devolução (a replay), else the first one.
        target = next((p for p in pix for d in (p.get("devolucoes") or []) if d.get("id") == dev_id), pix[0])
        e2e = target["endToEndId"]
        data = self._request("PUT", f"/pix/v2/pix/{e2e}/devolucao/{dev_id}", f"refund pix {e2e}",
                             body={"valor": f"{value:.2f}"}, create=True)
        return self._refund(data, txid)

    def get_refund(self, txid: str, refund_id: str) -> Refund:
        _, pix = self._received(txid)
        for p in pix:
            for d in p.get("devolucoes") or []:
                if d.get("id") == refund_id:
                    data = self._request("GET", f"/pix/v2/pix/{p['endToEndId']}/devolucao/{refund_id}",
                                         f"get devolucao {refund_id}")
                    return self._refund(data, txid)
        raise NotFound(f"Banco Inter cob {txid}: no devolução {refund_id}", status=404)

    def list_refunds(self, txid: str) -> list[Refund]:
        _, pix = self._received(txid)
        return [self._refund(d, txid) for p in pix for d in (p.get("devolucoes") or []) if isinstance(d, dict)]

    @staticmethod
    def _refund(d: dict, txid: str) -> Refund:
        if not isinstance(d, dict) or not d.get("id"):
            raise ProviderError(f"Banco Inter: unexpected devolução body {d!r}"[:300])
        status = d.get("status") or ""
        return Refund(id=d["id"], charge_id=txid, amount=_money(d.get("valor", "0")),
                      status=_DEVOLUCAO_STATUS.get(status, REFUND_PENDING), status_detail=status or None,
                      created_at=_dt((d.get("horario") or {}).get("solicitacao")), raw=d)

    def simulate_payment(self, txid: str, amount: Decimal | None = None,
                         payer_cpf: str | None = None, payer_name: str | None = None) -> dict:
        """Inter *sandbox only*: `POST /pix/v2/cob/pagar/{txid}` pays a charge."""
        body = {}
        if amount is not None:
            body["valor"] = f"{Decimal(amount).quantize(Decimal('0.01')):.2f}"
        if payer_cpf:   # emulator extension: who paid (real sandbox: UNVERIFIED)
            body["pagador"] = {"cpf": payer_cpf, "nome": payer_name or "PAGADOR SANDBOX"}
        return self._request("POST", f"/pix/v2/cob/pagar/{txid}", f"pay cob {txid}", body=body)

    def register_webhook(self, url: str, key: str | None = None) -> None:
        """`PUT /pix/v2/webhook/{chave}`: where Inter posts received PIX for our key."""
        self._request("PUT", f"/pix/v2/webhook/{key or self.pix_key}", "register webhook",
                      body={"webhookUrl": url})

    def register_payout_webhook(self, url: str) -> None:
        self._request("PUT", "/banking/v2/webhooks/pix-pagamento", "register banking webhook",
                      body={"webhookUrl": url})

    @staticmethod
    def _charge(c: dict, reference: str | None = None) -> Charge:
        if not isinstance(c, dict) or not c.get("txid"):
            raise ProviderError(f"Banco Inter: unexpected cob body {c!r}"[:300])
        cal = c.get("calendario") or {}
        created = _dt(cal.get("criacao"))
        expires = created + timedelta(seconds=int(cal["expiracao"])) if created and cal.get("expiracao") else None
        status = _COB_STATUS.get(c.get("status"), CHARGE_PENDING)
        if status == CHARGE_PENDING and expires and expires <= datetime.now(timezone.utc):
            status = CHARGE_EXPIRED      # ATIVA past its expiry can no longer be paid
        if reference is None:
            for info in c.get("infoAdicionais") or []:
                if isinstance(info, dict) and info.get("nome") == "referencia":
                    reference = info.get("valor")
        pix = [p for p in (c.get("pix") or []) if isinstance(p, dict)]
        paid = sum((_money(p["valor"]) for p in pix if p.get("valor") is not None), Decimal("0.00")) if pix else None
        # What went back: devoluções not refused (in process counts: the money is leaving).
        devolucoes = [d for p in pix for d in (p.get("devolucoes") or [])
                      if isinstance(d, dict) and d.get("status") != "NAO_REALIZADO"]
        refunded = sum((_money(d.get("valor", "0")) for d in devolucoes), Decimal("0.00")) if devolucoes else None
        if status == CHARGE_APPROVED and devolucoes:
            if any(d.get("natureza") in MED_NATUREZAS for d in devolucoes):
                status = CHARGE_CHARGED_BACK
            elif paid is not None and refunded >= paid:
                status = CHARGE_REFUNDED
        first = pix[0] if pix else {}
        payer = first.get("pagador") or {}
        payer_cpf = payer.get("cpf") if is_cpf(str(payer.get("cpf") or "")) else None
        qr = c.get("pixCopiaECola")
        return Charge(
            provider_id=c["txid"], reference=reference,
            amount=_money((c.get("valor") or {}).get("original", "0")),
            status=status, qr_code=qr, qr_code_base64=_png(qr) if qr and status == CHARGE_PENDING else None,
            expires_at=expires, payer_cpf=payer_cpf, raw=c, status_detail=c.get("status"),
            paid_amount=paid, paid_at=_dt(first.get("horario")), end_to_end_id=first.get("endToEndId"),
            refunded_amount=refunded,
        )

    # ---- payouts (Banking API)
    def payout_body(self, amount: Decimal, key_type: str, key_value: str, description: str) -> dict:
        try:
            key = normalize_pix_key(key_type, key_value)
        except ValueError as exc:
            raise ProviderError(str(exc), code="invalid_key") from None
        if isinstance(amount, float):
            raise TypeError("amount must be a Decimal")
        value = Decimal(amount).quantize(Decimal("0.01"))
        if value <= 0 or value != amount:
            raise ValueError(f"amount must be positive with at most 2 decimal places, got {amount}")
        return {"valor": f"{value:.2f}", "descricao": description[:140],
                "dataPagamento": date.today().isoformat(),
                "destinatario": {"tipo": "CHAVE", "chave": key}}

    def send_pix_payout(self, reference: str, amount: Decimal, key_type: str, key_value: str,
                        notification_url: str | None = None, description: str | None = None) -> Payout:
        """`POST /banking/v2/pix` with `x-id-idempotente` = uuid5(reference). Inter
        notifies through the banking webhook (`register_payout_webhook`), so
        `notification_url` is not used. The result is pending until `get_payout`
        shows a final status."""
        body = self.payout_body(amount, key_type, key_value, description or f"Saque {reference}")
        data = self._request("POST", "/banking/v2/pix", "send pix", body=body, create=True,
                             headers={"x-id-idempotente": idempotency_uuid(reference)})
        if not isinstance(data, dict) or not data.get("codigoSolicitacao"):
            raise ProviderError(f"Banco Inter send pix: answer without codigoSolicitacao: {data!r}"[:300],
                                outcome_unknown=True)
        return Payout(provider_id=data["codigoSolicitacao"], reference=reference,
                      amount=Decimal(body["valor"]), status=PAYOUT_PENDING, failure_reason=None,
                      raw=data, status_detail=data.get("tipoRetorno"))

    recover_payout = send_pix_payout

    def payout_failure_text(self, payout: Payout) -> str:
        return payout_failure_text(PAYOUT_FAILURE_TEXTS, payout)

    def get_payout(self, provider_id: str) -> Payout:
        data = self._request("GET", f"/banking/v2/pix/{provider_id}", f"get pix {provider_id}")
        t = (data or {}).get("transacaoPix") or {}
        status = t.get("status") or ""
        normalized = _PAYOUT_STATUS.get(status, PAYOUT_PENDING)
        failure = None
        if normalized == PAYOUT_FAILED:
            errors = t.get("erros") or []
            reasons = [e.get("descricaoErro") or e.get("mensagem") or json.dumps(e)
                       for e in errors if isinstance(e, dict)]
            failure = status + (": " + "; ".join(reasons) if reasons else "")
        return Payout(provider_id=t.get("codigoSolicitacao") or provider_id, reference=None,
                      amount=_money(t.get("valor", "0")), status=normalized, failure_reason=failure,
                      raw=data, status_detail=status)
