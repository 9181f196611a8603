"""A local Banco Inter (API PJ v2) for development and tests, over real HTTPS
with client-certificate verification (mTLS: `ssl.CERT_REQUIRED`, local CA from
sandbox/certs.py). Follows providers.md E (community-SDK sourced, UNVERIFIED).

Endpoints (all need a Bearer token with the right scope, except the token call):
  POST   /oauth/v2/token                       client credentials (form body)
  PUT    /pix/v2/cob/{txid}                    create a charge (cob.write)
  GET    /pix/v2/cob/{txid}                    query (cob.read)
  PATCH  /pix/v2/cob/{txid}                    {"status":"REMOVIDA_PELO_USUARIO_RECEBEDOR"} (cob.write)
  POST   /pix/v2/cob/pagar/{txid}              sandbox payment {"valor": "…", "pagador"?: {cpf, nome}} (pix.write)
  PUT    /pix/v2/pix/{e2eId}/devolucao/{id}    devolução {"valor": "…", "natureza"?, "descricao"?} (pix.write);
                                               the same id with the same valor answers the same devolução
  GET    /pix/v2/pix/{e2eId}/devolucao/{id}    query (pix.read)
  PUT    /pix/v2/webhook/{chave}               {"webhookUrl": …} (webhook.write)
  POST   /banking/v2/pix                       send PIX, header x-id-idempotente (pagamento-pix.write)
  GET    /banking/v2/pix/{codigoSolicitacao}   query (pagamento-pix.read)
  PUT    /banking/v2/webhooks/pix-pagamento    {"webhookUrl": …} (webhook-banking.write)
Sandbox controls (no token; not part of Inter):
  POST /_sandbox/webhooks/shape {"shape": "object"|"array"}   `{"pix":[…]}` or a bare array
  POST /_sandbox/payouts/mode   {"mode": "approve"|"reject"|"hang"}
  POST /_sandbox/payouts/{codigoSolicitacao}/settle {"outcome": "approve"|"reject"}
  POST /_sandbox/pix/{e2eId}/med   {"valor"?, "natureza"?: MED_FRAUDE|MED_OPERACIONAL, "motivo"?}
                                   the payer's bank took it back (MED): a DEVOLVIDO devolução, webhook sent
  POST /_sandbox/devolucoes/mode   {"mode": "settle"|"hang"|"fail"} what becomes of our devoluções
                                   (settle: DEVOLVIDO after REFUND_SETTLE_SECONDS; hang: EM_PROCESSAMENTO;
                                   fail: NAO_REALIZADO)
  GET  /_sandbox/state

Ids the emulator makes (e2e, rtrId, loc) never repeat, across restarts too
(sandbox/ids.py, `--state-dir`); the txid is the client's.

Run: `python -m sandbox.inter --port 8003 --certs-dir .local/inter-certs
--client-id ID --client-secret SECRET --pix-key KEY` (certificates are created
in --certs-dir when missing); in tests use `start_in_thread(config, certs)`.
"""
from __future__ import annotations

import argparse
import json
import re
import secrets
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.local import LocalProxy

from webapp.pix import brcode, is_cnpj, is_cpf, normalize_pix_key, normalize_phone, parse_decimal
from sandbox import certs as certs_module
from sandbox.ids import IdSource, base36
from sandbox.server import (BackgroundServer, Routes, json_response, make_app, post_with_retries, serve, state_proxy,
                            tls_server_context)

BR_TZ = timezone(timedelta(hours=-3))
TXID_RE = re.compile(r"^[a-zA-Z0-9]{26,35}$")
DEVOLUCAO_ID_RE = re.compile(r"^[a-zA-Z0-9]{1,35}$")
VALOR_RE = re.compile(r"^\d{1,10}\.\d{2}$")
DEVOLUCAO_MODES = ("settle", "hang", "fail")
MED_NATUREZAS = ("MED_FRAUDE", "MED_OPERACIONAL")
PAYOUT_MODES = ("approve", "reject", "hang")

DEFAULTS = {
    "CLIENT_ID": "sandbox-client-id",
    "CLIENT_SECRET": "sandbox-client-secret",
    "PIX_KEY": "12345678000195",       # our CNPJ key at the emulated bank (valid check digits)
    "MERCHANT_NAME": "BS MARKET LTDA",
    "MERCHANT_CITY": "SAO PAULO",
    "ACCOUNT": None,                   # when set, x-conta-corrente must match if sent
    "TOKEN_TTL": 3600,
    "WEBHOOK_SHAPE": "object",         # object: {"pix":[…]}; array: bare list
    "WEBHOOK_RETRY_INTERVALS": (0.5, 1, 2),   # real Inter: 20, 30, 60, 120 minutes
    "WEBHOOK_TIMEOUT": 5.0,
    "WEBHOOK_REQUIRE_HTTPS": False,    # real Inter requires https://; local apps run http
    "PAYOUT_MODE": "approve",
    "LOCATION_HOST": "qrcodes-sandbox.inter.local",
    "REFUND_SETTLE_SECONDS": 0,        # our devoluções: EM_PROCESSAMENTO, then DEVOLVIDO after this
    "STATE_DIR": None,                 # id high-water marks survive a restart here (None: clock only)
}


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class InterError(Exception):
    def __init__(self, status: int, title: str, detail: str = "", violacoes=None):
        super().__init__(title)
        self.status, self.title, self.detail, self.violacoes = status, title, detail, violacoes or []

    def response(self) -> Response:
        return json_response({"title": self.title, "detail": self.detail,
                              "timestamp": iso(datetime.now(timezone.utc)),
                              "violacoes": self.violacoes}, self.status)


def violation(prop: str, reason: str, value=None) -> InterError:
    return InterError(400, "Requisição inválida", f"{prop}: {reason}",
                      [{"razao": reason, "propriedade": prop, "valor": None if value is None else str(value)}])


def key_kind(key: str) -> str | None:
    """Which PIX key type a bare key is, or None."""
    for kind in ("CPF", "CNPJ", "EVP", "EMAIL"):
        try:
            if normalize_pix_key(kind, key) == key:
                return kind
        except ValueError:
            pass
    if key.startswith("+"):
        try:
            if normalize_phone(key) == key:
                return "PHONE"
        except ValueError:
            pass
    return None


class State:
    def __init__(self, config: dict):
        self.config = config
        self.lock = threading.RLock()
        self.tokens: dict[str, tuple[set, float]] = {}
        self.cobs: dict[str, dict] = {}
        self.pix_webhooks: dict[str, str] = {}
        self.banking_webhook: str | None = None
        self.payouts: dict[str, dict] = {}
        self.payout_keys: dict[str, tuple[str, str]] = {}    # x-id-idempotente -> (body hash, id)
        self.callbacks: list[dict] = []
        self.webhook_shape = config["WEBHOOK_SHAPE"]
        self.payout_mode = config["PAYOUT_MODE"]
        self.devolucao_mode = "settle"
        self.received: dict[str, tuple[dict, dict]] = {}      # e2eId -> (cob, pix item)
        self.ids = IdSource("inter", config.get("STATE_DIR"))

    def new_e2e(self, prefix: str, at: datetime) -> str:
        """E (a PIX) or D (a devolução's rtrId) + ISPB + yyyyMMddHHmm + 11 characters: 32."""
        return f"{prefix}00416968{at:%Y%m%d%H%M}{base36(self.ids.next('e2e'), 11)}"

    def pix_payload(self, item: dict):
        return {"pix": [pix_view(item)]} if self.webhook_shape == "object" else [pix_view(item)]

    def deliver(self, kind: str, url: str, payload):
        record = {"id": len(self.callbacks) + 1, "tipo": kind, "webhookUrl": url, "payload": payload,
                  "tentativas": [], "sucesso": False}
        with self.lock:
            self.callbacks.append(record)
        threading.Thread(target=self._deliver, args=(record,), daemon=True).start()

    def _deliver(self, record: dict):
        def store(attempt: dict, ok: bool, last: bool):
            with self.lock:
                record["tentativas"].append({"dataHora": iso(datetime.now(timezone.utc)),
                                             "httpStatus": attempt["status_code"], "erro": attempt["error"]})
                record["sucesso"] = ok

        post_with_retries(record["webhookUrl"], json.dumps(record["payload"]),
                          lambda: {"Content-Type": "application/json"}, self.config["WEBHOOK_RETRY_INTERVALS"],
                          self.config["WEBHOOK_TIMEOUT"], store)


def cob_view(c: dict) -> dict:
    out = {k: v for k, v in c.items() if not k.startswith("_")}
    if "pix" in out:
        out["pix"] = [pix_view(item) for item in c["pix"]]
    if out["status"] == "ATIVA" and c["_expires"] <= datetime.now(timezone.utc):
        out["status"] = "REMOVIDA_PELO_PSP"   # expired: the PSP removes it
        c["status"] = "REMOVIDA_PELO_PSP"
    return out


def devolucao_view(d: dict) -> dict:
    if d["status"] == "EM_PROCESSAMENTO" and d.get("_settle_at") and d["_settle_at"] <= datetime.now(timezone.utc):
        d["status"] = d.pop("_outcome", "DEVOLVIDO")
        d["horario"]["liquidacao"] = iso(datetime.now(timezone.utc))
        if d["status"] == "NAO_REALIZADO":
            d["motivo"] = "Devolução não realizada (sandbox)"
            del d["horario"]["liquidacao"]
    return {k: v for k, v in d.items() if not k.startswith("_")}


def pix_view(item: dict) -> dict:
    out = dict(item)
    out["devolucoes"] = [devolucao_view(d) for d in item.get("devolucoes", [])]
    return out


def payout_view(p: dict) -> dict:
    return {"transacaoPix": {k: v for k, v in p.items() if not k.startswith("_")},
            "historico": list(p["_historico"])}


# --------------------------------------------------------------------------- routes
# Small functions on the shared server library (sandbox/server.py); `state` and `cfg`
# are this request's emulator and its settings.

routes = Routes()
state: State = state_proxy()
cfg = LocalProxy(lambda: state.config)


@routes.errorhandler(InterError)
def _err(e: InterError):
    return e.response()


@routes.errorhandler(HTTPException)
def _http(e: HTTPException):
    return InterError(e.code or 500, e.name, e.description or "").response()


@routes.errorhandler(Exception)
def _crash(e: Exception):
    current_app.logger.exception("inter sandbox crashed")
    return InterError(500, "Erro interno", str(e)).response()


def need(scope: str):
    auth = request.headers.get("Authorization", "")
    tok = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    with state.lock:
        entry = state.tokens.get(tok)
    if not entry or entry[1] < time.time():
        raise InterError(401, "Não autorizado", "token ausente, inválido ou expirado")
    if scope not in entry[0]:
        raise InterError(403, "Acesso negado", f"o token não tem o escopo {scope}")
    account = request.headers.get("x-conta-corrente")
    if cfg["ACCOUNT"] and account and account != cfg["ACCOUNT"]:
        raise InterError(403, "Acesso negado", "conta corrente não pertence à aplicação")


def body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InterError(400, "Requisição inválida", "o corpo deve ser um objeto JSON")
    return data


# ---------------------------------------------------------------- oauth
@routes.post("/oauth/v2/token")
def oauth_token():
    form = request.form
    if form.get("grant_type") != "client_credentials":
        raise InterError(400, "Requisição inválida", "grant_type deve ser client_credentials")
    if not (secrets.compare_digest(form.get("client_id", ""), cfg["CLIENT_ID"])
            and secrets.compare_digest(form.get("client_secret", ""), cfg["CLIENT_SECRET"])):
        raise InterError(401, "Não autorizado", "client_id ou client_secret inválidos")
    scopes = set((form.get("scope") or "").split())
    if not scopes:
        raise InterError(400, "Requisição inválida", "informe ao menos um escopo (scope)")
    tok = str(uuid.uuid4())
    with state.lock:
        state.tokens[tok] = (scopes, time.time() + int(cfg["TOKEN_TTL"]))
    return json_response({"access_token": tok, "token_type": "Bearer",
                          "expires_in": int(cfg["TOKEN_TTL"]), "scope": " ".join(sorted(scopes))})


# ---------------------------------------------------------------- cob
def _cob(txid: str) -> dict:
    c = state.cobs.get(txid)
    if c is None:
        raise InterError(404, "Cobrança não encontrada", f"não há cobrança com txid {txid}")
    return c


@routes.put("/pix/v2/cob/<txid>")
def cob_create(txid):
    need("cob.write")
    if not TXID_RE.match(txid):
        raise violation("txid", "deve ter de 26 a 35 letras ou dígitos", txid)
    data = body()
    cal = data.get("calendario") or {}
    expiracao = cal.get("expiracao", 86400)
    if not isinstance(expiracao, int) or isinstance(expiracao, bool) or expiracao <= 0:
        raise violation("calendario.expiracao", "deve ser um inteiro positivo (segundos)", expiracao)
    original = (data.get("valor") or {}).get("original")
    if not isinstance(original, str) or not re.fullmatch(r"\d{1,10}\.\d{2}", original) or Decimal(original) <= 0:
        raise violation("valor.original", "deve ser um texto com duas casas decimais, ex. 10.00", original)
    if data.get("chave") != cfg["PIX_KEY"]:
        raise violation("chave", "a chave não pertence a esta conta", data.get("chave"))
    devedor = data.get("devedor")
    if devedor is not None:
        if not isinstance(devedor, dict) or not devedor.get("nome"):
            raise violation("devedor.nome", "obrigatório quando há devedor")
        if "cpf" in devedor and not is_cpf(str(devedor["cpf"])):
            raise violation("devedor.cpf", "CPF inválido", devedor["cpf"])
        if "cnpj" in devedor and not is_cnpj(str(devedor["cnpj"])):
            raise violation("devedor.cnpj", "CNPJ inválido", devedor["cnpj"])
        if ("cpf" in devedor) == ("cnpj" in devedor):
            raise violation("devedor", "informe cpf ou cnpj (um deles)")
    if len(str(data.get("solicitacaoPagador") or "")) > 140:
        raise violation("solicitacaoPagador", "no máximo 140 caracteres")
    now = datetime.now(timezone.utc)
    with state.lock:
        if txid in state.cobs:
            raise InterError(409, "Cobrança já existe", f"o txid {txid} já foi utilizado")
        loc_id = state.ids.next("loc", 1000)
        location = f"{cfg['LOCATION_HOST']}/pj/v2/cob/{uuid.uuid4().hex}"
        c = {
            "calendario": {"criacao": iso(now), "expiracao": expiracao},
            "txid": txid, "revisao": 0,
            "loc": {"id": loc_id, "location": location, "tipoCob": "cob", "criacao": iso(now)},
            "location": location, "status": "ATIVA",
            "valor": {"original": original, "modalidadeAlteracao": 0},
            "chave": cfg["PIX_KEY"],
            "solicitacaoPagador": data.get("solicitacaoPagador"),
            "infoAdicionais": data.get("infoAdicionais") or [],
            "pixCopiaECola": brcode(None, Decimal(original), cfg["MERCHANT_NAME"], cfg["MERCHANT_CITY"],
                                    url=location),
            "_expires": now + timedelta(seconds=expiracao),
        }
        if devedor:
            c["devedor"] = devedor
        state.cobs[txid] = c
        return json_response(cob_view(c), 201)


@routes.get("/pix/v2/cob/<txid>")
def cob_get(txid):
    need("cob.read")
    with state.lock:
        return json_response(cob_view(_cob(txid)))


@routes.patch("/pix/v2/cob/<txid>")
def cob_patch(txid):
    need("cob.write")
    data = body()
    with state.lock:
        c = _cob(txid)
        cob_view(c)   # applies a due expiry first
        if data.get("status") != "REMOVIDA_PELO_USUARIO_RECEBEDOR":
            raise violation("status", "só é aceito REMOVIDA_PELO_USUARIO_RECEBEDOR", data.get("status"))
        if c["status"] != "ATIVA":
            raise InterError(400, "Cobrança não pode ser alterada", f"status atual {c['status']}")
        c["status"] = "REMOVIDA_PELO_USUARIO_RECEBEDOR"
        c["revisao"] += 1
        return json_response(cob_view(c))


@routes.post("/pix/v2/cob/pagar/<txid>")
def cob_pay(txid):
    need("pix.write")
    data = body()
    with state.lock:
        c = _cob(txid)
        cob_view(c)
        if c["status"] != "ATIVA":
            raise InterError(400, "Cobrança não pode ser paga", f"status atual {c['status']}")
        try:
            valor = parse_decimal(data.get("valor", c["valor"]["original"])).quantize(Decimal("0.01"))
        except ValueError:
            raise violation("valor", "valor inválido", data.get("valor")) from None
        if valor <= 0:
            raise violation("valor", "deve ser positivo", valor)
        pagador = data.get("pagador") or {"cpf": "19119119100", "nome": "PAGADOR SANDBOX"}
        if "cpf" in pagador and not is_cpf(str(pagador["cpf"])):
            raise violation("pagador.cpf", "CPF inválido", pagador["cpf"])
        now = datetime.now(timezone.utc)
        item = {"endToEndId": state.new_e2e("E", now),
                "txid": txid, "valor": f"{valor:.2f}", "chave": c["chave"],
                "horario": iso(now), "infoPagador": data.get("infoPagador") or "pagamento sandbox",
                "pagador": pagador, "devolucoes": []}
        c["status"] = "CONCLUIDA"
        c.setdefault("pix", []).append(item)
        state.received[item["endToEndId"]] = (c, item)
        url = state.pix_webhooks.get(c["chave"])
        payload = state.pix_payload(item)
    if url:
        state.deliver("pix", url, payload)
    return json_response({"status": "CONCLUIDA", "txid": txid, "pix": pix_view(item)})


# ---------------------------------------------------------------- pix recebidos, devoluções
def _received(e2e: str) -> tuple[dict, dict]:
    found = state.received.get(e2e)
    if found is None:
        raise InterError(404, "Pix não encontrado", f"nenhum PIX recebido com endToEndId {e2e}")
    return found


def _left(item: dict) -> Decimal:
    back = sum((Decimal(devolucao_view(d)["valor"]) for d in item["devolucoes"]
                if d["status"] != "NAO_REALIZADO"), Decimal("0.00"))
    return Decimal(item["valor"]) - back


@routes.put("/pix/v2/pix/<e2e>/devolucao/<dev_id>")
def devolucao_put(e2e, dev_id):
    need("pix.write")
    if not DEVOLUCAO_ID_RE.match(dev_id):
        raise violation("id", "deve ter de 1 a 35 letras ou dígitos", dev_id)
    data = body()
    valor = data.get("valor")
    if not isinstance(valor, str) or not VALOR_RE.match(valor) or Decimal(valor) <= 0:
        raise violation("valor", "deve ser um texto com duas casas decimais, ex. 10.00", valor)
    natureza = data.get("natureza", "ORIGINAL")
    if natureza not in ("ORIGINAL", "RETIRADA"):
        raise violation("natureza", "use ORIGINAL ou RETIRADA", natureza)
    if len(str(data.get("descricao") or "")) > 140:
        raise violation("descricao", "no máximo 140 caracteres")
    with state.lock:
        c, item = _received(e2e)
        for d in item["devolucoes"]:
            if d["id"] == dev_id:      # the same id: the same devolução, or a conflict
                if d["valor"] != valor:
                    raise InterError(409, "Devolução já existe",
                                     f"o id {dev_id} já foi usado com o valor {d['valor']}")
                return json_response(devolucao_view(d), 201)
        if Decimal(valor) > _left(item):
            raise violation("valor", f"maior que o disponível para devolução ({_left(item):.2f})", valor)
        now = datetime.now(timezone.utc)
        d = {"id": dev_id, "rtrId": state.new_e2e("D", now), "valor": valor, "natureza": natureza,
             "horario": {"solicitacao": iso(now)}, "status": "EM_PROCESSAMENTO"}
        if data.get("descricao"):
            d["descricao"] = data["descricao"]
        if state.devolucao_mode != "hang":
            d["_settle_at"] = now + timedelta(seconds=float(cfg["REFUND_SETTLE_SECONDS"]))
            d["_outcome"] = "DEVOLVIDO" if state.devolucao_mode == "settle" else "NAO_REALIZADO"
        answer = {k: v for k, v in d.items() if not k.startswith("_")}   # as asked: in process
        answer["horario"] = dict(d["horario"])
        item["devolucoes"].append(d)
        return json_response(answer, 201)


@routes.get("/pix/v2/pix/<e2e>/devolucao/<dev_id>")
def devolucao_get(e2e, dev_id):
    need("pix.read")
    with state.lock:
        _, item = _received(e2e)
        for d in item["devolucoes"]:
            if d["id"] == dev_id:
                return json_response(devolucao_view(d))
    raise InterError(404, "Devolução não encontrada", f"nenhuma devolução {dev_id} do PIX {e2e}")


# ---------------------------------------------------------------- webhooks
def _webhook_url(data: dict) -> str:
    url = data.get("webhookUrl")
    schemes = ("https://",) if cfg["WEBHOOK_REQUIRE_HTTPS"] else ("https://", "http://")
    if not isinstance(url, str) or not url.startswith(schemes):
        raise violation("webhookUrl", "deve ser uma URL " + " ou ".join(s.rstrip(":/") for s in schemes), url)
    return url


@routes.put("/pix/v2/webhook/<chave>")
def webhook(chave):
    need("webhook.write")
    if chave != cfg["PIX_KEY"]:
        raise violation("chave", "a chave não pertence a esta conta", chave)
    with state.lock:
        state.pix_webhooks[chave] = _webhook_url(body())
    return Response(status=204)


@routes.put("/banking/v2/webhooks/pix-pagamento")
def banking_webhook():
    need("webhook-banking.write")
    state.banking_webhook = _webhook_url(body())
    return Response(status=204)


# ---------------------------------------------------------------- banking
def settle(p: dict, outcome: str):
    now = datetime.now(timezone.utc)
    if outcome == "approve":
        p["status"] = "PAGO"
        p["endToEnd"] = state.new_e2e("E", now)
    else:
        p["status"] = "REPROVADO"
        p["erros"] = [{"codigoErro": "CHAVE_NAO_ENCONTRADA", "descricaoErro": "Chave PIX não encontrada"}]
    p["dataHoraMovimento"] = iso(now)
    p["_historico"].append({"status": p["status"], "dataHora": iso(now)})
    if state.banking_webhook:
        state.deliver("pix-pagamento", state.banking_webhook, [{
            "chave": p["chave"], "codigoSolicitacao": p["codigoSolicitacao"],
            "dataHoraMovimento": p["dataHoraMovimento"], "dataHoraSolicitacao": p["dataHoraSolicitacao"],
            "endToEnd": p.get("endToEnd"), "status": "EFETIVADO" if outcome == "approve" else "NAO_EFETIVADO",
            "tipoMovimentacao": "PAGAMENTO", "valor": p["valor"], "recebedor": p["recebedor"]}])


@routes.post("/banking/v2/pix")
def banking_send():
    need("pagamento-pix.write")
    key = request.headers.get("x-id-idempotente", "")
    try:
        uuid.UUID(key)
    except ValueError:
        raise violation("x-id-idempotente", "cabeçalho obrigatório, no formato UUID", key or None) from None
    data = body()
    digest = json.dumps(data, sort_keys=True)
    with state.lock:
        seen = state.payout_keys.get(key)
        if seen:
            if seen[0] != digest:
                raise InterError(409, "Conflito de idempotência",
                                 "x-id-idempotente já usado com outro conteúdo")
            return json_response(state.payouts[seen[1]]["_retorno"])
        try:
            valor = parse_decimal(data.get("valor"))
        except ValueError:
            raise violation("valor", "valor inválido", data.get("valor")) from None
        if valor <= 0 or valor != valor.quantize(Decimal("0.01")):
            raise violation("valor", "deve ser positivo, com até duas casas", valor)
        if len(str(data.get("descricao") or "")) > 140:
            raise violation("descricao", "no máximo 140 caracteres")
        dest = data.get("destinatario") or {}
        if dest.get("tipo") != "CHAVE":
            raise violation("destinatario.tipo", "este sandbox aceita apenas CHAVE", dest.get("tipo"))
        chave = str(dest.get("chave") or "")
        kind = key_kind(chave)
        if kind is None:
            raise violation("destinatario.chave", "chave PIX inválida", chave)
        now = datetime.now(timezone.utc)
        code = str(uuid.uuid4())
        p = {"codigoSolicitacao": code, "chave": chave, "valor": f"{valor:.2f}", "status": "ENVIADO",
             "contaCorrente": cfg["ACCOUNT"] or "12345678", "erros": [], "endToEnd": None,
             "recebedor": {"nome": "RECEBEDOR SANDBOX",
                           "cpfCnpj": chave if kind in ("CPF", "CNPJ") else "19119119100"},
             "dataHoraSolicitacao": iso(now), "dataHoraMovimento": None,
             "_historico": [{"status": "CRIADO", "dataHora": iso(now)},
                            {"status": "ENVIADO", "dataHora": iso(now)}]}
        p["_retorno"] = {"tipoRetorno": "PROCESSADO", "codigoSolicitacao": code,
                         "dataPagamento": now.astimezone(BR_TZ).date().isoformat(),
                         "dataOperacao": now.astimezone(BR_TZ).date().isoformat()}
        state.payouts[code] = p
        state.payout_keys[key] = (digest, code)
        if state.payout_mode != "hang":
            settle(p, state.payout_mode)
        return json_response(p["_retorno"])


def _payout(code: str) -> dict:
    p = state.payouts.get(code)
    if p is None:
        raise InterError(404, "Pagamento não encontrado", f"nenhum PIX com codigoSolicitacao {code}")
    return p


@routes.get("/banking/v2/pix/<code>")
def banking_get(code):
    need("pagamento-pix.read")
    with state.lock:
        return json_response(payout_view(_payout(code)))


# ---------------------------------------------------------------- sandbox controls
@routes.post("/_sandbox/webhooks/shape")
def sandbox_shape():
    shape = (request.get_json(silent=True) or {}).get("shape")
    if shape not in ("object", "array"):
        raise violation("shape", "use object ou array", shape)
    state.webhook_shape = shape
    return json_response({"shape": shape})


@routes.post("/_sandbox/payouts/mode")
def sandbox_mode():
    mode = (request.get_json(silent=True) or {}).get("mode")
    if mode not in PAYOUT_MODES:
        raise violation("mode", "use " + ", ".join(PAYOUT_MODES), mode)
    state.payout_mode = mode
    return json_response({"mode": mode})


@routes.post("/_sandbox/payouts/<code>/settle")
def sandbox_settle(code):
    outcome = (request.get_json(silent=True) or {}).get("outcome", "approve")
    if outcome not in ("approve", "reject"):
        raise violation("outcome", "use approve ou reject", outcome)
    with state.lock:
        p = _payout(code)
        if p["status"] != "ENVIADO":
            raise InterError(409, "Pagamento já finalizado", f"status {p['status']}")
        settle(p, outcome)
        return json_response(payout_view(p))


@routes.post("/_sandbox/pix/<e2e>/med")
def sandbox_med(e2e):
    """The payer's bank took the money back through BACEN's MED."""
    params = request.get_json(silent=True) or {}
    natureza = params.get("natureza", "MED_FRAUDE")
    if natureza not in MED_NATUREZAS:
        raise violation("natureza", "use " + " ou ".join(MED_NATUREZAS), natureza)
    with state.lock:
        c, item = _received(e2e)
        left = _left(item)
        try:
            valor = parse_decimal(params.get("valor", f"{left:.2f}")).quantize(Decimal("0.01"))
        except ValueError:
            raise violation("valor", "valor inválido", params.get("valor")) from None
        if valor <= 0 or valor > left:
            raise violation("valor", f"deve ser positivo e até {left:.2f}", valor)
        now = datetime.now(timezone.utc)
        d = {"id": f"MED{base36(state.ids.next('med'), 12)}", "rtrId": state.new_e2e("D", now),
             "valor": f"{valor:.2f}", "natureza": natureza,
             "horario": {"solicitacao": iso(now), "liquidacao": iso(now)}, "status": "DEVOLVIDO",
             "motivo": params.get("motivo") or "Devolução por MED (sandbox)"}
        item["devolucoes"].append(d)
        url = state.pix_webhooks.get(c["chave"])
        payload = state.pix_payload(item)
        view = pix_view(item)
    if url:
        state.deliver("pix", url, payload)
    return json_response(view)


@routes.post("/_sandbox/devolucoes/mode")
def sandbox_devolucao_mode():
    mode = (request.get_json(silent=True) or {}).get("mode")
    if mode not in DEVOLUCAO_MODES:
        raise violation("mode", "use " + ", ".join(DEVOLUCAO_MODES), mode)
    state.devolucao_mode = mode
    return json_response({"mode": mode})


@routes.get("/_sandbox/state")
def sandbox_state():
    with state.lock:
        return json_response({"cobs": [cob_view(c) for c in state.cobs.values()],
                              "payouts": [payout_view(p) for p in state.payouts.values()],
                              "pix_webhooks": state.pix_webhooks, "banking_webhook": state.banking_webhook,
                              "callbacks": state.callbacks, "webhook_shape": state.webhook_shape,
                              "payout_mode": state.payout_mode})


def create_app(config: dict | None = None) -> Flask:
    return make_app(__name__, State({**DEFAULTS, **(config or {})}), routes, extension="inter_sandbox")


def server_ssl_context(cert_paths: certs_module.CertPaths):
    """TLS server context that demands a client certificate signed by our CA."""
    return tls_server_context(str(cert_paths.server_crt), str(cert_paths.server_key), str(cert_paths.ca_crt))


def start_in_thread(config: dict | None, cert_paths: certs_module.CertPaths,
                    host: str = "127.0.0.1", port: int = 0) -> BackgroundServer:
    """The emulator on a real HTTPS socket (mTLS) in a daemon thread (tests); `.url`, `.state`, `.shutdown()`."""
    server = BackgroundServer(create_app(config), host, port, ssl_context=server_ssl_context(cert_paths))
    server.certs = cert_paths
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.inter",
                                     description="Local Banco Inter emulator (mTLS, PIX cob, banking PIX).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--certs-dir", default=".local/inter-certs",
                        help="CA/server/client certificates; created when missing")
    parser.add_argument("--client-id", default=DEFAULTS["CLIENT_ID"])
    parser.add_argument("--client-secret", default=DEFAULTS["CLIENT_SECRET"])
    parser.add_argument("--pix-key", default=DEFAULTS["PIX_KEY"])
    parser.add_argument("--account", default=None, help="x-conta-corrente to accept")
    parser.add_argument("--webhook-shape", choices=("object", "array"), default="object")
    parser.add_argument("--payout-mode", choices=PAYOUT_MODES, default="approve")
    parser.add_argument("--retry-intervals", default="5,15,60",
                        help="seconds between webhook retries, comma-separated")
    parser.add_argument("--state-dir", default=None,
                        help="keep the id high-water marks here, so ids never repeat after a restart")
    args = parser.parse_args(argv)
    cert_paths = certs_module.generate(args.certs_dir)
    app = create_app({
        "CLIENT_ID": args.client_id, "CLIENT_SECRET": args.client_secret, "PIX_KEY": args.pix_key,
        "ACCOUNT": args.account, "WEBHOOK_SHAPE": args.webhook_shape, "PAYOUT_MODE": args.payout_mode,
        "WEBHOOK_RETRY_INTERVALS": [float(x) for x in args.retry_intervals.split(",") if x.strip()],
        "STATE_DIR": args.state_dir,
    })
    serve(app, args.host, args.port, f"Banco Inter sandbox on https://{args.host}:{args.port} (mTLS; client cert "
          f"{cert_paths.client_crt} + {cert_paths.client_key}, CA {cert_paths.ca_crt})",
          ssl_context=server_ssl_context(cert_paths))


if __name__ == "__main__":
    main()
