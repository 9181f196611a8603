"""Webhook endpoints. Each one authenticates the notification (Mercado Pago's
x-signature), then fetches the resource from the provider's API — the body is
never trusted — and books it through one SQL function (deposits.service.confirm
→ admin.confirm_pix_charge; withdrawals.service.settle). Replays and concurrent
duplicates are harmless: the SQL locks the row and checks its state.

Answers: 200 handled or ignored (unknown payment, not ours), 401 bad signature,
400 unreadable body, 503 the provider could not be asked (the sender retries).
"""
from __future__ import annotations

import logging

from flask import current_app, request

from .. import csrf, limiter
from ..deposits import service as deposits
from ..errors import DomainError
from ..providers.base import ProviderError
from ..providers.inter import parse_pix_webhook
from ..providers.mercadopago import WebhookSignatureError, check_webhook_signature
from ..withdrawals import service as withdrawals
from . import bp

log = logging.getLogger("bs-market.webhooks")


def _remote() -> str:
    return request.headers.get("X-Forwarded-For", request.remote_addr or "?")


@bp.post("/webhooks/mercadopago")
@limiter.limit("600 per minute")
@csrf.exempt
def mercadopago():
    data_id = request.args.get("data.id")
    try:
        check_webhook_signature(request.headers.get("x-signature"), request.headers.get("x-request-id"), data_id,
                                current_app.config["MERCADO_PAGO_WEBHOOK_SECRET"])
    except WebhookSignatureError as exc:
        log.warning("mercadopago webhook refused from %s: %s (data.id=%r)", _remote(), exc.reason, data_id)
        return {"error": "invalid signature", "reason": exc.reason}, 401
    except ValueError:
        log.error("MERCADO_PAGO_WEBHOOK_SECRET is not set: notifications cannot be verified")
        return {"error": "webhook secret not configured"}, 503
    body = request.get_json(silent=True) or {}
    kind = request.args.get("type") or body.get("type")
    if not data_id:
        return {"status": "ignored", "reason": "no data.id"}, 200
    try:
        if kind == "payment":
            outcome = deposits.handle_notification(current_app, "mercadopago", data_id)
        elif kind == "transaction_intent":
            outcome = withdrawals.handle_notification(current_app, "mercadopago", data_id)
        else:
            return {"status": "ignored", "reason": f"type {kind!r}"}, 200
    except ProviderError as exc:
        log.warning("mercadopago webhook %s %s: provider unavailable: %s", kind, data_id, exc)
        return {"error": "provider unavailable, retry later"}, 503
    except DomainError as exc:
        log.error("mercadopago webhook %s %s: %r", kind, data_id, exc)
        return {"status": "error", "reason": exc.message}, 200 if exc.status < 500 else 500
    return {"status": outcome}, 200


@bp.post("/webhooks/inter")
@limiter.limit("600 per minute")
@csrf.exempt
def inter():
    # Inter does not sign its notifications: each txid is only a hint to fetch
    # the charge from Inter's API (mTLS) and act on what that says.
    try:
        items = parse_pix_webhook(request.get_data())
    except ValueError as exc:
        log.warning("inter webhook from %s: unreadable body: %s", _remote(), exc)
        return {"error": "unreadable body"}, 400
    outcomes = []
    try:
        for txid in dict.fromkeys(item.txid for item in items):
            if not txid:
                log.warning("inter webhook: a PIX to our key without a charge (txid) arrived; ignored")
                outcomes.append("no_txid")
                continue
            outcomes.append(deposits.handle_notification(current_app, "inter", txid))
    except ProviderError as exc:
        log.warning("inter webhook: provider unavailable: %s", exc)
        return {"error": "provider unavailable, retry later"}, 503
    except DomainError as exc:
        log.error("inter webhook: %r", exc)
        return {"status": "error", "reason": exc.message}, 200 if exc.status < 500 else 500
    return {"status": outcomes}, 200
