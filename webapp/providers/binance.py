"""Binance Spot REST client (plain `requests`, no SDK).

Follows providers.md section F. What callers must know:

- Every amount is a `Decimal`; JSON is parsed with ``parse_float=Decimal`` and
  Binance's string prices/quantities are converted field by field. Passing a
  float for an amount is a `TypeError`.
- Signed requests (F.2): payload = query string + body, HMAC-SHA256 hex with the
  secret key, ``signature`` appended last, key in ``X-MBX-APIKEY``.
- Errors are `BinanceError` with three flags a caller branches on:
    * ``rejected``: a 4xx with a definite reason (filters, precision, balance,
      duplicate id, bad key...). The order was **not** placed; ``msg`` is readable.
    * ``outcome_unknown``: a 5xx, ``-1007 TIMEOUT``, or a timeout/connection error
      while placing an order. The order may or may not exist: look it up with
      `get_order(symbol, client_order_id)`; never resend blindly, because
      ``newClientOrderId`` is only unique among *open* orders (F.4).
    * ``rate_limited``: HTTP 429/418. ``retry_after`` is in seconds; until it has
      passed this client refuses calls locally (no request is sent).
  Reads that fail with a 5xx or a network error raise `BinanceUnavailable`
  (``retryable``), since there is no side effect to be unsure about.
- ``-1021`` (timestamp outside recvWindow) re-measures the clock offset with
  ``/api/v3/time`` once and retries; this is safe even for orders, because a
  -1021 request never reached the matching engine.
- ``used_weight`` holds the last ``X-MBX-USED-WEIGHT-1M`` seen.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, Iterable

import requests

PRODUCTION_URL = "https://api.binance.com"
TESTNET_URL = "https://testnet.binance.vision"

#: Our own, stricter rule for newClientOrderId (providers.md F.4 "UNVERIFIED").
CLIENT_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")

#: Codes that say "your key/signature is wrong": still a definite rejection,
#: but an operator problem rather than a customer one.
AUTH_ERROR_CODES = frozenset({-1022, -2014, -2015})

TICKER_24H_DECIMAL_FIELDS = (
    "priceChange", "priceChangePercent", "weightedAvgPrice", "prevClosePrice",
    "lastPrice", "lastQty", "bidPrice", "bidQty", "askPrice", "askQty",
    "openPrice", "highPrice", "lowPrice", "volume", "quoteVolume",
)

#: Used when a 429/418 arrives without a Retry-After header.
DEFAULT_RETRY_AFTER = {429: 60, 418: 120}


# --------------------------------------------------------------------------- errors

class BinanceError(Exception):
    """An error from Binance (or on the way to it). Branch on the flags."""

    rejected = False
    outcome_unknown = False
    rate_limited = False
    retryable = False

    def __init__(self, code: int | None, msg: str, http_status: int | None = None,
                 retry_after: int | None = None):
        super().__init__(f"Binance error {code}: {msg}" + (f" (HTTP {http_status})" if http_status else ""))
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.retry_after = retry_after


class BinanceRejected(BinanceError):
    """Definite 4xx rejection: nothing was executed; `msg` says why."""

    rejected = True


class BinanceAuthError(BinanceRejected):
    """Bad API key, permissions or signature (-1022, -2014, -2015)."""


class BinanceOutcomeUnknown(BinanceError):
    """An order request whose result is unknown: look it up by client order id."""

    outcome_unknown = True


class BinanceUnavailable(BinanceError):
    """A read failed (5xx or network): nothing happened, try again later."""

    retryable = True


class BinanceRateLimited(BinanceError):
    """HTTP 429/418, or our own back-off still running: wait `retry_after` seconds."""

    rate_limited = True
    retryable = True


# --------------------------------------------------------------------------- helpers

def sign(secret: str, payload: str) -> str:
    """hex(HMAC_SHA256(secret, payload)) as in providers.md F.2."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def round_to_step(qty: Decimal, step: Decimal) -> Decimal:
    """Round `qty` down to a multiple of `step` (a zero step means no rule)."""
    _require_decimal("qty", qty)
    _require_decimal("step", step)
    if step <= 0:
        return qty
    units = (qty / step).to_integral_value(rounding=ROUND_DOWN)
    # quantize keeps the step's exponent, so 0.00026 with step 0.00001000 prints as 0.00026000
    return (units * step).quantize(step)


def format_decimal(value: Decimal) -> str:
    """Plain notation for a request parameter (never '1E-8')."""
    return format(value, "f")


def _require_decimal(name: str, value: Any) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")


def _dec(value: Any) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):  # cannot happen with parse_float=Decimal; refuse rather than guess
        raise TypeError("float in Binance payload")
    return Decimal(str(value))


def _symbols_param(symbols: Iterable[str] | str | None) -> dict[str, str]:
    """`symbol=X` for one symbol, `symbols=["X","Y"]` (compact JSON) for several."""
    if symbols is None:
        return {}
    if isinstance(symbols, str):
        return {"symbol": symbols}
    symbols = list(symbols)
    if len(symbols) == 1:
        return {"symbol": symbols[0]}
    return {"symbols": json.dumps(symbols, separators=(",", ":"))}


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class Fill:
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int | None = None

    @classmethod
    def from_json(cls, data: dict) -> "Fill":
        return cls(
            price=_dec(data.get("price")),
            qty=_dec(data.get("qty")),
            commission=_dec(data.get("commission")),
            commission_asset=data.get("commissionAsset", ""),
            trade_id=data.get("tradeId", data.get("id")),
        )


@dataclass(frozen=True)
class Order:
    """An order as returned by POST (FULL) or GET /api/v3/order (no fills there)."""

    order_id: int
    client_order_id: str
    status: str
    executed_qty: Decimal
    cummulative_quote_qty: Decimal  # Binance's spelling
    fills: list[Fill]
    raw: dict
    symbol: str = ""
    side: str = ""
    orig_qty: Decimal = Decimal(0)
    orig_quote_order_qty: Decimal = Decimal(0)
    transact_time: int | None = None

    @classmethod
    def from_json(cls, data: dict) -> "Order":
        return cls(
            order_id=int(data["orderId"]),
            client_order_id=data.get("clientOrderId", ""),
            status=data.get("status", ""),
            executed_qty=_dec(data.get("executedQty")),
            cummulative_quote_qty=_dec(data.get("cummulativeQuoteQty")),
            fills=[Fill.from_json(f) for f in data.get("fills", [])],
            raw=data,
            symbol=data.get("symbol", ""),
            side=data.get("side", ""),
            orig_qty=_dec(data.get("origQty")),
            orig_quote_order_qty=_dec(data.get("origQuoteOrderQty")),
            transact_time=data.get("transactTime", data.get("updateTime")),
        )

    @property
    def is_filled(self) -> bool:
        return self.status == "FILLED"

    @property
    def average_price(self) -> Decimal | None:
        if not self.executed_qty:
            return None
        return self.cummulative_quote_qty / self.executed_qty

    def commissions(self) -> dict[str, Decimal]:
        """Total commission per asset over the fills."""
        totals: dict[str, Decimal] = {}
        for f in self.fills:
            totals[f.commission_asset] = totals.get(f.commission_asset, Decimal(0)) + f.commission
        return totals


@dataclass(frozen=True)
class LotSize:
    min_qty: Decimal
    max_qty: Decimal
    step_size: Decimal


@dataclass(frozen=True)
class PriceFilter:
    min_price: Decimal
    max_price: Decimal
    tick_size: Decimal


@dataclass(frozen=True)
class NotionalFilter:
    """NOTIONAL, or the older MIN_NOTIONAL mapped onto the same shape."""

    filter_type: str
    min_notional: Decimal
    apply_min_to_market: bool
    max_notional: Decimal | None
    apply_max_to_market: bool
    avg_price_mins: int | None


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    base_asset_precision: int
    quote_asset_precision: int
    order_types: tuple[str, ...]
    quote_order_qty_market_allowed: bool
    price_filter: PriceFilter | None
    lot_size: LotSize | None
    market_lot_size: LotSize | None  # same shape as LOT_SIZE
    notional: NotionalFilter | None
    filters: dict[str, dict] = field(default_factory=dict)  # raw, by filterType
    raw: dict = field(default_factory=dict)

    @property
    def is_trading(self) -> bool:
        return self.status == "TRADING"

    @property
    def market_step_size(self) -> Decimal:
        """Step for a MARKET `quantity`: MARKET_LOT_SIZE's when set, else LOT_SIZE's."""
        if self.market_lot_size and self.market_lot_size.step_size > 0:
            return self.market_lot_size.step_size
        return self.lot_size.step_size if self.lot_size else Decimal(0)

    @property
    def min_notional(self) -> Decimal:
        return self.notional.min_notional if self.notional else Decimal(0)

    @classmethod
    def from_json(cls, data: dict) -> "SymbolInfo":
        filters = {f["filterType"]: f for f in data.get("filters", [])}

        def lot(name: str) -> LotSize | None:
            f = filters.get(name)
            return f and LotSize(_dec(f.get("minQty")), _dec(f.get("maxQty")), _dec(f.get("stepSize")))

        pf = filters.get("PRICE_FILTER")
        notional = None
        if "NOTIONAL" in filters:
            f = filters["NOTIONAL"]
            notional = NotionalFilter(
                "NOTIONAL", _dec(f.get("minNotional")), bool(f.get("applyMinToMarket", True)),
                _dec(f["maxNotional"]) if f.get("maxNotional") is not None else None,
                bool(f.get("applyMaxToMarket", False)), f.get("avgPriceMins"))
        elif "MIN_NOTIONAL" in filters:
            f = filters["MIN_NOTIONAL"]
            notional = NotionalFilter(
                "MIN_NOTIONAL", _dec(f.get("minNotional")), bool(f.get("applyToMarket", True)),
                None, False, f.get("avgPriceMins"))
        return cls(
            symbol=data["symbol"],
            status=data.get("status", ""),
            base_asset=data.get("baseAsset", ""),
            quote_asset=data.get("quoteAsset", ""),
            base_asset_precision=int(data.get("baseAssetPrecision", 8)),
            quote_asset_precision=int(data.get("quoteAssetPrecision", data.get("quotePrecision", 8))),
            order_types=tuple(data.get("orderTypes", ())),
            quote_order_qty_market_allowed=bool(data.get("quoteOrderQtyMarketAllowed", False)),
            price_filter=pf and PriceFilter(_dec(pf.get("minPrice")), _dec(pf.get("maxPrice")), _dec(pf.get("tickSize"))),
            lot_size=lot("LOT_SIZE"),
            market_lot_size=lot("MARKET_LOT_SIZE"),
            notional=notional,
            filters=filters,
            raw=data,
        )


@dataclass(frozen=True)
class Kline:
    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    close_time: int
    quote_volume: Decimal
    trades: int
    taker_buy_base_volume: Decimal
    taker_buy_quote_volume: Decimal

    @classmethod
    def from_row(cls, row: list) -> "Kline":
        return cls(int(row[0]), _dec(row[1]), _dec(row[2]), _dec(row[3]), _dec(row[4]), _dec(row[5]),
                   int(row[6]), _dec(row[7]), int(row[8]), _dec(row[9]), _dec(row[10]))


# --------------------------------------------------------------------------- client

class BinanceClient:
    """One client per process is enough: weight, back-off and clock offset are lock-guarded."""

    ORDER_PATH = "/api/v3/order"

    def __init__(self, api_key: str, secret_key: str, base_url: str = PRODUCTION_URL,
                 timeout: float = 10, recv_window: int = 5000,
                 session: requests.Session | None = None):
        if not 0 < recv_window <= 60000:
            raise ValueError("recv_window must be in (0, 60000] ms")
        self.api_key = api_key
        self.secret_key = secret_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.recv_window = recv_window
        self.session = session or requests.Session()
        self.used_weight: int | None = None
        self.rate_limits: list[dict] = []  # from the last exchange_info()
        self.time_offset_ms = 0  # serverTime - our clock, measured on -1021
        self._blocked_until = 0.0  # time.monotonic() before which we refuse to call
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: dict, **kwargs) -> "BinanceClient":
        """Build from the app config names of DESIGN.md §6."""
        return cls(config["BINANCE_API_KEY"], config["BINANCE_SECRET_KEY"],
                   base_url=config.get("BINANCE_BASE_URL") or PRODUCTION_URL, **kwargs)

    # ---- market data (security NONE)

    def ping(self) -> None:
        self._request("GET", "/api/v3/ping")

    def server_time(self) -> int:
        """Binance server time in ms."""
        return int(self._request("GET", "/api/v3/time")["serverTime"])

    def sync_time(self) -> int:
        """Measure and store the offset between Binance's clock and ours (ms)."""
        before = time.time_ns() // 1_000_000
        server = self.server_time()
        after = time.time_ns() // 1_000_000
        offset = server - (before + after) // 2
        with self._lock:
            self.time_offset_ms = offset
        return offset

    def ticker_prices(self, symbols: Iterable[str] | str | None = None) -> dict[str, Decimal]:
        data = self._request("GET", "/api/v3/ticker/price", _symbols_param(symbols))
        rows = data if isinstance(data, list) else [data]
        return {row["symbol"]: _dec(row["price"]) for row in rows}

    def ticker_24h(self, symbols: Iterable[str] | str | None = None) -> list[dict]:
        """FULL 24h tickers, Binance field names, prices/quantities as Decimal."""
        data = self._request("GET", "/api/v3/ticker/24hr", {**_symbols_param(symbols), "type": "FULL"})
        rows = data if isinstance(data, list) else [data]
        out = []
        for row in rows:
            row = dict(row)
            for name in TICKER_24H_DECIMAL_FIELDS:
                if name in row:
                    row[name] = _dec(row[name])
            out.append(row)
        return out

    def klines(self, symbol: str, interval: str, limit: int = 500,
               start_time: int | None = None, end_time: int | None = None) -> list[Kline]:
        params = {"symbol": symbol, "interval": interval, "limit": limit,
                  "startTime": start_time, "endTime": end_time}
        return [Kline.from_row(row) for row in self._request("GET", "/api/v3/klines", params)]

    def exchange_info(self, symbols: Iterable[str] | str | None = None) -> dict[str, SymbolInfo]:
        data = self._request("GET", "/api/v3/exchangeInfo", _symbols_param(symbols))
        self.rate_limits = list(data.get("rateLimits", []))
        return {s["symbol"]: SymbolInfo.from_json(s) for s in data.get("symbols", [])}

    # ---- trading (signed)

    def place_market_order(self, symbol: str, side: str, client_order_id: str,
                           quote_order_qty: Decimal | None = None,
                           quantity: Decimal | None = None) -> Order:
        """MARKET order with FULL response. See the module docstring for errors."""
        params = self._market_order_params(symbol, side, client_order_id, quote_order_qty, quantity)
        data = self._request("POST", self.ORDER_PATH, params, signed=True, side_effect=True)
        return Order.from_json(data)

    def test_market_order(self, symbol: str, side: str, client_order_id: str,
                          quote_order_qty: Decimal | None = None,
                          quantity: Decimal | None = None) -> None:
        """POST /api/v3/order/test: validated by Binance, never executed."""
        params = self._market_order_params(symbol, side, client_order_id, quote_order_qty, quantity)
        self._request("POST", self.ORDER_PATH + "/test", params, signed=True)

    def get_order(self, symbol: str, orig_client_order_id: str | None = None, *,
                  order_id: int | None = None, with_fills: bool = False) -> Order | None:
        """The order, or None if Binance does not know it (-2013).

        GET /api/v3/order has no fills; `with_fills=True` adds them from myTrades.
        With a reused client order id Binance answers with the latest such order.
        """
        if orig_client_order_id is None and order_id is None:
            raise ValueError("give orig_client_order_id or order_id")
        params = {"symbol": symbol, "orderId": order_id, "origClientOrderId": orig_client_order_id}
        try:
            data = self._request("GET", self.ORDER_PATH, params, signed=True)
        except BinanceRejected as exc:
            if exc.code == -2013:
                return None
            raise
        order = Order.from_json(data)
        if with_fills and order.executed_qty > 0:
            fills = self.my_trades(symbol, order_id=order.order_id)
            order = dataclasses.replace(order, fills=fills)
        return order

    def my_trades(self, symbol: str, order_id: int | None = None, limit: int = 500) -> list[Fill]:
        rows = self._request("GET", "/api/v3/myTrades",
                             {"symbol": symbol, "orderId": order_id, "limit": limit}, signed=True)
        return [Fill.from_json(row) for row in rows]

    # ---- internals

    @staticmethod
    def _market_order_params(symbol, side, client_order_id, quote_order_qty, quantity) -> dict:
        side = (side or "").upper()
        if side not in ("BUY", "SELL"):
            raise ValueError("side must be BUY or SELL")
        if not isinstance(client_order_id, str) or not CLIENT_ORDER_ID_RE.fullmatch(client_order_id):
            raise ValueError("client_order_id must match ^[A-Za-z0-9_-]{1,36}$")
        if (quote_order_qty is None) == (quantity is None):
            raise ValueError("give exactly one of quote_order_qty and quantity")
        amount_name, amount = ("quoteOrderQty", quote_order_qty) if quantity is None else ("quantity", quantity)
        _require_decimal(amount_name, amount)
        if not amount.is_finite() or amount <= 0:
            raise ValueError(f"{amount_name} must be positive")
        return {"symbol": symbol, "side": side, "type": "MARKET", amount_name: format_decimal(amount),
                "newClientOrderId": client_order_id, "newOrderRespType": "FULL"}

    def _check_backoff(self) -> None:
        with self._lock:
            remaining = self._blocked_until - time.monotonic()
        if remaining > 0:
            # Calling during a ban only lengthens it (418 bans escalate): refuse locally.
            raise BinanceRateLimited(-1003, f"client back-off after a 429/418; retry in {remaining:.1f}s",
                                     None, max(1, int(remaining + 0.999)))

    def _build(self, params: dict | None, signed: bool) -> str:
        pairs = [(k, v) for k, v in (params or {}).items() if v is not None]
        if signed:
            with self._lock:
                now = time.time_ns() // 1_000_000 + self.time_offset_ms
            pairs += [("recvWindow", self.recv_window), ("timestamp", now)]
        payload = urllib.parse.urlencode(pairs)
        if signed:
            # All parameters travel in one place (query for GET, body for POST), so the
            # signed payload "query + body" is just that string.
            payload = f"{payload}&signature={sign(self.secret_key, payload)}"
        return payload

    def _request(self, method: str, path: str, params: dict | None = None, *,
                 signed: bool = False, side_effect: bool = False) -> Any:
        self._check_backoff()
        for attempt in (1, 2):
            payload = self._build(params, signed)
            url = self.base_url + path
            headers = {"X-MBX-APIKEY": self.api_key} if signed else {}
            kwargs: dict[str, Any] = {"headers": headers, "timeout": self.timeout}
            if method == "GET" or method == "DELETE":
                if payload:
                    url = f"{url}?{payload}"
            else:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                kwargs["data"] = payload
            try:
                resp = self.session.request(method, url, **kwargs)
            except requests.RequestException as exc:
                kind = type(exc).__name__
                if side_effect:
                    raise BinanceOutcomeUnknown(None, f"{kind} while sending the order; look it up "
                                                      f"by origClientOrderId before retrying: {exc}") from exc
                raise BinanceUnavailable(None, f"{kind}: {exc}") from exc
            self._track_weight(resp)
            data, code, msg = self._parse(resp)
            if resp.status_code < 400:
                if data is None and resp.text:
                    # A 2xx we cannot read: for an order it may well have executed.
                    cls = BinanceOutcomeUnknown if side_effect else BinanceUnavailable
                    raise cls(None, f"unreadable response: {resp.text[:200]}", resp.status_code)
                return data
            status = resp.status_code
            if status in (429, 418):
                retry_after = self._retry_after(resp)
                with self._lock:
                    self._blocked_until = max(self._blocked_until, time.monotonic() + retry_after)
                raise BinanceRateLimited(code or -1003, msg, status, retry_after)
            if status >= 500 or code == -1007:
                cls = BinanceOutcomeUnknown if side_effect else BinanceUnavailable
                raise cls(code, msg, status)
            if code == -1021 and attempt == 1:
                # Our clock drifted; the request was refused before matching, so resend.
                self.sync_time()
                continue
            cls = BinanceAuthError if code in AUTH_ERROR_CODES or status in (401, 403) else BinanceRejected
            raise cls(code, msg, status)
        raise AssertionError("unreachable")

    @staticmethod
    def _parse(resp: requests.Response) -> tuple[Any, int | None, str]:
        try:
            data = json.loads(resp.text, parse_float=Decimal) if resp.text else None
        except ValueError:
            data = None
        if isinstance(data, dict) and "code" in data and resp.status_code >= 400:
            return data, data.get("code"), str(data.get("msg", ""))
        if resp.status_code >= 400:
            return data, None, f"HTTP {resp.status_code}: {resp.text[:200]}"
        return data, None, ""

    def _retry_after(self, resp: requests.Response) -> int:
        value = resp.headers.get("Retry-After")
        try:
            return max(0, int(value))
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER[resp.status_code]

    def _track_weight(self, resp: requests.Response) -> None:
        value = resp.headers.get("X-MBX-USED-WEIGHT-1M")
        if value is not None:
            try:
                weight = int(value)
            except ValueError:
                return
            with self._lock:
                self.used_weight = weight


__all__ = [
    "AUTH_ERROR_CODES", "BinanceAuthError", "BinanceClient", "BinanceError", "BinanceOutcomeUnknown",
    "BinanceRateLimited", "BinanceRejected", "BinanceUnavailable", "CLIENT_ORDER_ID_RE", "Fill", "Kline",
    "LotSize", "NotionalFilter", "Order", "PriceFilter", "PRODUCTION_URL", "SymbolInfo", "TESTNET_URL",
    "format_decimal", "round_to_step", "sign",
]
