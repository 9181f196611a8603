"""Market desk orchestration, outside any transaction (DESIGN.md §1).

    quote   api.create_quote                      (web view)
    confirm api.execute_quote → hold + order EXECUTING, committed   (web view)
    place   the worker claims it (admin.market_orders_to_place, placed_at committed),
            then sends a MARKET order on Binance, newClientOrderId = the order's client_order_id
    settle  admin.settle_market_order from the real fills    (or admin.fail_market_order)

Placing and settling run in the worker, as exchange_worker: the web's role can
confirm an order but cannot book its fills.

What happens on each Binance answer when placing:

- FILLED (or a final status with something executed): settle from the fills.
- rejected (-2010, -1013, …, bad key), rate limited (nothing was sent or the
  request was refused), or our own parameters refused before sending: the
  order is failed, the hold released, the customer told why.
- outcome unknown (timeout, 5xx, -1007, connection dropped): the order stays
  EXECUTING; we look it up once by origClientOrderId right away, and the
  reconciler keeps looking. It is never sent again: newClientOrderId is only
  unique among open orders, so a resend after a fill would buy twice.
- anything else (a bug, the database away): the order stays EXECUTING for the
  reconciler.

The reconciler looks up every order EXECUTING for longer than
market_reconcile_after_seconds and settles it from Binance's fills, or fails
it once Binance still does not know it after market_order_lost_seconds (an
order request older than recvWindow can no longer be accepted by Binance, so
"not found" is then final).
"""
from __future__ import annotations

import logging
from decimal import Decimal

from psycopg.types.json import Jsonb

from .. import db
from ..errors import DomainError
from ..formatting import N_
from ..providers.binance import (
    BinanceAuthError, BinanceClient, BinanceError, BinanceOutcomeUnknown, BinanceRateLimited, BinanceRejected, Order,
)

log = logging.getLogger("bs-market.market")

#: Binance order statuses after which nothing more will execute.
FINAL_STATUSES = {"FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"}

REASON_LOST = N_("A ordem não chegou à Binance.")
REASON_BUSY = N_("A Binance está limitando pedidos agora; tente de novo em instantes.")
REASON_UNAVAILABLE = N_("A mesa está temporariamente indisponível; tente mais tarde.")


def binance_client(app) -> BinanceClient:
    """One client per process (weight, back-off and clock offset are shared)."""
    client = app.extensions.get("binance")
    if client is None:
        client = BinanceClient.from_config(app.config, timeout=float(app.config.get("BINANCE_TIMEOUT", 10)))
        app.extensions["binance"] = client
    return client


def _plain(value: Decimal) -> str:
    return format(value, "f")


def fills_json(order: Order) -> Jsonb:
    """Binance's fills in Binance's field names, amounts as exact strings."""
    return Jsonb([{"price": _plain(f.price), "qty": _plain(f.qty), "commission": _plain(f.commission),
                   "commissionAsset": f.commission_asset, "tradeId": f.trade_id} for f in order.fills])


def readable_reason(exc: BinanceError) -> str:
    """A Binance refusal as a sentence for the customer (Portuguese)."""
    msg = exc.msg or ""
    if isinstance(exc, BinanceAuthError):
        log.error("ALERT Binance refused our credentials: %s", exc)
        return REASON_UNAVAILABLE
    if exc.rate_limited:
        return REASON_BUSY
    if exc.code == -2010:
        if "insufficient balance" in msg:
            return N_("A mesa está sem liquidez para esta ordem no momento.")
        if "Market is closed" in msg:
            return N_("O mercado está fechado na Binance no momento.")
        if "not supported" in msg:
            return N_("A Binance não aceita ordens a mercado neste par agora.")
        return N_("A Binance recusou a ordem.")
    if exc.code == -1013:
        if "NOTIONAL" in msg:
            return N_("O valor está fora dos limites aceitos pela Binance.")
        if "LOT_SIZE" in msg:
            return N_("A quantidade está fora dos limites aceitos pela Binance.")
        return N_("A Binance recusou os parâmetros da ordem.")
    if exc.code in (-1100, -1102, -1106, -1111, -1116, -1121):
        return N_("A Binance recusou os parâmetros da ordem.")
    return N_("A Binance recusou a ordem.")


def fail(app, order_id: int, reason: str, provider_message: str | None = None) -> str:
    try:
        db.worker_call(app, "admin.fail_market_order", order_id=order_id, reason=reason,
                       provider_message=provider_message)
    except DomainError as exc:  # settled meanwhile by a concurrent lookup
        log.warning("market order %s not failed: %s", order_id, exc.message)
        return "EXECUTING"
    log.info("market order %s failed: %s (%s)", order_id, reason, provider_message)
    return "FAILED"


def note(app, order_id: int, text: str) -> None:
    try:
        db.worker_call(app, "admin.note_market_order", order_id=order_id, note=text)
    except Exception:  # a note is best effort
        log.exception("could not note market order %s", order_id)


def record(app, order_row: dict, order: Order) -> str:
    """Record what Binance says about an order: settle, fail, or leave EXECUTING."""
    order_id = order_row["order_id"]
    if order.executed_qty > 0 and order.status in FINAL_STATUSES:
        if not order.fills:  # an ACK/RESULT answer or GET /order: fetch the fills
            try:
                found = binance_client(app).get_order(order_row["symbol"], order_row["client_order_id"],
                                                      with_fills=True)
            except BinanceError as exc:
                note(app, order_id, f"consulta das execuções falhou: {exc.msg}")
                return "EXECUTING"
            if found is None or not found.fills:
                note(app, order_id, "executada, aguardando as execuções (fills)")
                return "EXECUTING"
            order = found
        try:
            row = db.worker_call(app, "admin.settle_market_order", order_id=order_id, binance_order_id=order.order_id,
                                 executed_qty=order.executed_qty, cummulative_quote_qty=order.cummulative_quote_qty,
                                 fills=fills_json(order), binance_status=order.status)[0]
        except DomainError as exc:
            log.error("ALERT market order %s executed on Binance (%s) but cannot be settled: %s",
                      order_row.get("client_order_id"), order.order_id, exc.message)
            note(app, order_id, f"não liquidada: {exc.message}")
            return "EXECUTING"
        log.info("market order %s settled: %s BRL, %s crypto%s", order_id, row["brl_amount"], row["crypto_amount"],
                 " (replayed)" if row["replayed"] else "")
        return "COMPLETED"
    if order.status in FINAL_STATUSES:
        return fail(app, order_id, N_("A ordem não foi executada pela Binance."), f"status {order.status}")
    note(app, order_id, f"na Binance com status {order.status}")
    return "EXECUTING"


def place_order(app, order_row: dict) -> str:
    """Send an EXECUTING order to Binance once and record the outcome. Returns the order's status."""
    order_id = order_row["order_id"]
    if order_row["side"] == "buy":
        amount = {"quote_order_qty": order_row["quote_order_qty"]}
    else:
        amount = {"quantity": order_row["quantity"]}
    client = binance_client(app)
    try:
        result = client.place_market_order(order_row["symbol"], order_row["side"].upper(),
                                           order_row["client_order_id"], **amount)
    except BinanceOutcomeUnknown as exc:
        log.warning("market order %s: outcome unknown (%s); looking it up", order_row["client_order_id"], exc)
        note(app, order_id, f"resultado desconhecido: {exc.msg}")
        return lookup(app, order_row, lost=False)
    except (BinanceRejected, BinanceRateLimited) as exc:
        return fail(app, order_id, readable_reason(exc), f"{exc.code}: {exc.msg}")
    except (TypeError, ValueError) as exc:  # refused by the client before anything was sent
        log.error("market order %s: invalid parameters %s", order_row["client_order_id"], exc)
        return fail(app, order_id, N_("A Binance recusou os parâmetros da ordem."), str(exc))
    except Exception:
        log.exception("market order %s: unexpected error while placing; left for the reconciler", order_id)
        return "EXECUTING"
    return record(app, order_row, result)


def lookup(app, order_row: dict, lost: bool) -> str:
    """Ask Binance about an order by origClientOrderId; never resends it."""
    order_id = order_row["order_id"]
    try:
        found = binance_client(app).get_order(order_row["symbol"], order_row["client_order_id"], with_fills=True)
    except BinanceError as exc:
        note(app, order_id, f"consulta falhou: {exc.msg}")
        return "EXECUTING"
    if found is None:
        if lost:
            return fail(app, order_id, REASON_LOST, "-2013 Order does not exist (after market_order_lost_seconds)")
        note(app, order_id, "ainda não encontrada na Binance")
        return "EXECUTING"
    return record(app, order_row, found)


def place_confirmed(app, max_rows: int = 20) -> dict:
    """Worker: send the orders customers confirmed (admin.market_orders_to_place marks each placed,
    committed, before it is sent once). Returns {status: count}."""
    counts: dict[str, int] = {}
    # One at a time: each order is stamped placed_at just before it is sent, so the reconciler's
    # "lost" clock starts when Binance could first see it, not while it waits behind a slow call.
    for _ in range(max_rows):
        rows = db.worker_call(app, "admin.market_orders_to_place", max_rows=1)
        if not rows:
            break
        row = rows[0]
        try:
            status = place_order(app, row)
        except Exception:  # placed: the reconciler finishes it
            log.exception("market order %s: recording the outcome failed; left for the reconciler", row["order_id"])
            status = "EXECUTING"
        counts[status] = counts.get(status, 0) + 1
    return counts


def reconcile(app) -> dict:
    """Finish orders stuck EXECUTING. Returns {status: count}."""
    counts: dict[str, int] = {}
    for row in db.worker_call(app, "admin.list_stuck_market_orders"):
        try:
            status = lookup(app, row, lost=row["lost"])
        except Exception:
            log.exception("reconciling market order %s", row["order_id"])
            status = "ERROR"
        counts[status] = counts.get(status, 0) + 1
    if counts:
        log.info("market reconciler: %s", counts)
    return counts
