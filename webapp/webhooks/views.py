"""Webhook endpoints. Each one authenticates the notification (Mercado Pago's
x-signature) and queues the resource it names (api.record_provider_notification);
the worker then fetches the resource from the provider's API — the body is
never trusted — and books it (deposits/tasks.py process_notifications), as
exchange_worker: the web's role cannot book money. Replays and concurrent
duplicates are harmless: one queue row per pending resource, and the booking
locks its row and checks its state.

Answers: 200 queued or ignored, 401 bad signature, 400 unreadable body,
404 a provider this app is not set up for, 503 the webhook secret is missing.
"""
from __future__ import annotations

import logging

from flask import abort, current_app, request

from .. import csrf, db, limiter
from ..errors import DomainError
from ..providers import pix_provider_name
from ..providers.inter import parse_pix_webhook
from ..providers.mercadopago import WebhookSignatureError, check_webhook_signature
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
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    kind = request.args.get("type") or body.get("type")
    if not data_id:
        return {"status": "ignored", "reason": "no data.id"}, 200
    topic = {"payment": "payment", "transaction_intent": "payout"}.get(kind)
    if topic is None:
        return {"status": "ignored", "reason": f"type {kind!r}"}, 200
    try:
        queued = db.call_one("api.record_provider_notification", provider="mercadopago", topic=topic,
                             resource_id=data_id)
    except DomainError as exc:
        log.warning("mercadopago webhook %s %r refused: %s", kind, data_id, exc.message)
        return {"status": "ignored", "reason": exc.message}, 200
    return {"status": "queued", "notification": queued["record_provider_notification"]}, 200


@bp.post("/webhooks/inter")
@limiter.limit("600 per minute")
@csrf.exempt
def inter():
    # Inter does not sign its notifications: each txid is only a hint for the
    # worker to fetch the charge from Inter's API (mTLS) and act on what that says.
    if pix_provider_name(current_app.config) != "inter" or not current_app.config.get("INTER_CLIENT_ID"):
        abort(404)  # not set up for Inter: there is nothing here
    try:
        items = parse_pix_webhook(request.get_data())
    except ValueError as exc:
        log.warning("inter webhook from %s: unreadable body: %s", _remote(), exc)
        return {"error": "unreadable body"}, 400
    outcomes = []
    for txid in dict.fromkeys(item.txid for item in items):
        if not txid:
            log.warning("inter webhook: a PIX to our key without a charge (txid) arrived; ignored")
            outcomes.append("no_txid")
            continue
        try:
            db.call("api.record_provider_notification", provider="inter", topic="payment", resource_id=txid)
            outcomes.append("queued")
        except DomainError as exc:
            log.warning("inter webhook txid %r refused: %s", txid, exc.message)
            outcomes.append("ignored")
    return {"status": outcomes}, 200
