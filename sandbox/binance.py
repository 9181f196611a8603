"""Local Binance Spot emulator over real HTTP (providers.md section F).

Run it:  python -m sandbox.binance --port 8002 --api-key K --secret-key S [--seed N]

What it does like Binance:
- Market data (`ping`, `time`, `ticker/price`, `ticker/24hr`, `exchangeInfo`) from a
  deterministic price walk: the price of a symbol is a pure function of (seed, symbol,
  second), so it moves every second, stays near a realistic BRL level, and the 24h stats
  agree with the ticker. Prices are rounded to tickSize.
- Signed endpoints check `X-MBX-APIKEY` (-2014/-2015), the HMAC-SHA256 of
  "query string + body" (-1022), recvWindow <= 60000 (-1131) and the timestamp rule
  `timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow` (-1021).
- `POST /api/v3/order` (MARKET only) applies LOT_SIZE, MARKET_LOT_SIZE and NOTIONAL
  (-1013 "Filter failure: ..."), too much precision (-1111), answers ACK/RESULT/FULL
  with fills at the current price and a 0.1% commission in the asset received.
  `newClientOrderId` is unique among *open* orders only (-2010 "Duplicate order sent.");
  once the order is filled the id may be reused and a second order is created.
- Request weight per IP per minute with `X-MBX-USED-WEIGHT-1M`; 429 + Retry-After over
  the limit, 418 (escalating ban) when a client keeps calling after 429s.

Test controls under `/_sandbox/...` (no signature, no weight): see "controls" below.
Everything is in memory and guarded by one lock; the server is threaded.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import threading
import time
import zlib
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from urllib.parse import parse_qsl

from flask import Flask, Response, current_app, g, request

from sandbox.server import BackgroundServer as _Server, FaultQueue, Routes, control_body, make_app, serve, state_proxy

EIGHT = Decimal("0.00000001")
DEFAULT_WEIGHT_LIMIT = 6000
MAX_RECV_WINDOW = 60000
CLIENT_ORDER_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
NUMBER_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
SYMBOLS_RE = re.compile(r'^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$')

# Symbol table: realistic BRL levels; filter values in the format of providers.md F.3.
DEFAULT_SYMBOLS: dict[str, dict] = {
    "BTCBRL": {"base_asset": "BTC", "price": "560000", "tick_size": "1", "step_size": "0.00001",
               "max_qty": "9000", "market_max_qty": "20", "volatility": 1.0, "volume_per_min": "0.8"},
    "ETHBRL": {"base_asset": "ETH", "price": "20000", "tick_size": "0.01", "step_size": "0.0001",
               "max_qty": "100000", "market_max_qty": "500", "volatility": 1.3, "volume_per_min": "9"},
    "USDTBRL": {"base_asset": "USDT", "price": "5.40", "tick_size": "0.001", "step_size": "0.1",
                "max_qty": "9000000", "market_max_qty": "1000000", "volatility": 0.15,
                "volume_per_min": "60000"},
}


class ApiError(Exception):
    """Rendered as Binance's `{"code": ..., "msg": ...}` with a 4xx/5xx status."""

    def __init__(self, code: int, msg: str, status: int = 400, headers: dict | None = None):
        super().__init__(msg)
        self.code, self.msg, self.status, self.headers = code, msg, status, headers or {}


def fmt(value: Decimal, places: Decimal = EIGHT) -> str:
    return format(value.quantize(places), "f")


def _mix64(x: int) -> int:
    """splitmix64 finalizer: a fast, stable integer hash (Python's hash() is salted)."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _unit(*parts: int) -> float:
    """Deterministic uniform number in [0, 1) from integers."""
    h = 0
    for p in parts:
        h = _mix64(h ^ (p & 0xFFFFFFFFFFFFFFFF))
    return (h >> 11) / float(1 << 53)


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


# --------------------------------------------------------------------------- symbols & prices

@dataclass
class SymbolSpec:
    symbol: str
    base_asset: str
    quote_asset: str
    base_price: Decimal
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal = Decimal("10")
    max_notional: Decimal = Decimal("9000000")
    volatility: float = 1.0
    volume_per_min: Decimal = Decimal("1")
    status: str = "TRADING"
    base_precision: int = 8
    quote_precision: int = 8
    # walk parameters, derived from the seed
    phases: list[float] = field(default_factory=list)
    periods: list[float] = field(default_factory=list)
    key: int = 0

    @classmethod
    def build(cls, symbol: str, spec: dict, seed: int) -> "SymbolSpec":
        price = Decimal(str(spec["price"]))
        digits = max(1, len(str(int(price))))
        quote = spec.get("quote_asset", "BRL")
        base = spec.get("base_asset") or (symbol[: -len(quote)] if symbol.endswith(quote) else symbol[:3])
        tick = Decimal(str(spec.get("tick_size") or Decimal(1).scaleb(digits - 6)))
        step = Decimal(str(spec.get("step_size") or Decimal(1).scaleb(-digits)))
        s = cls(
            symbol=symbol, base_asset=base, quote_asset=quote, base_price=price,
            tick_size=tick, step_size=step,
            min_qty=Decimal(str(spec.get("min_qty", step))),
            max_qty=Decimal(str(spec.get("max_qty", "9000000"))),
            market_max_qty=Decimal(str(spec.get("market_max_qty", spec.get("max_qty", "9000000")))),
            min_notional=Decimal(str(spec.get("min_notional", "10"))),
            max_notional=Decimal(str(spec.get("max_notional", "9000000"))),
            volatility=float(spec.get("volatility", 1.0)),
            volume_per_min=Decimal(str(spec.get("volume_per_min", "1"))),
            status=spec.get("status", "TRADING"),
        )
        rng = random.Random(f"{seed}:{symbol}")
        # Periods from ~7 minutes to ~1 day; amplitudes below are per period.
        s.periods = [p * rng.uniform(0.85, 1.15) for p in (420.0, 3180.0, 18000.0, 93600.0)]
        s.phases = [rng.uniform(0, 2 * math.pi) for _ in s.periods]
        s.key = zlib.crc32(f"{seed}:{symbol}".encode())
        return s

    def walk(self, second: int) -> Decimal:
        """Deterministic price at a whole second (epoch seconds), rounded to tickSize."""
        # Floats are fine *here*: this only shapes a synthetic curve; the result becomes a
        # Decimal on the tick grid before any money is computed with it.
        amplitudes = (0.0012, 0.004, 0.01, 0.025)
        x = sum(a * math.sin(2 * math.pi * second / p + ph)
                for a, p, ph in zip(amplitudes, self.periods, self.phases))
        x += (_unit(self.key, second) - 0.5) * 0.0001  # per-second jitter, ±0.005%
        value = float(self.base_price) * math.exp(x * self.volatility)
        return self.to_tick(Decimal(repr(value)))

    def to_tick(self, price: Decimal) -> Decimal:
        ticks = (price / self.tick_size).to_integral_value(rounding=ROUND_HALF_EVEN)
        return max(self.tick_size, ticks * self.tick_size)

    def volume(self, start_s: int, seconds: int) -> Decimal:
        """Deterministic base volume traded in [start, start + seconds)."""
        factor = Decimal(repr(0.3 + 1.4 * _unit(self.key, start_s, seconds)))
        return (self.volume_per_min * Decimal(seconds) / 60 * factor).quantize(EIGHT)


# --------------------------------------------------------------------------- orders

@dataclass
class SandboxOrder:
    symbol: str
    order_id: int
    client_order_id: str
    side: str
    orig_qty: Decimal
    orig_quote_order_qty: Decimal
    status: str
    time_ms: int
    update_ms: int
    fills: list[dict] = field(default_factory=list)  # price, qty, commission, commissionAsset, tradeId

    @property
    def executed_qty(self) -> Decimal:
        return sum((f["qty"] for f in self.fills), Decimal(0)) if self.status != "NEW" else Decimal(0)

    @property
    def cummulative_quote_qty(self) -> Decimal:
        if self.status == "NEW":
            return Decimal(0)
        return sum((f["price"] * f["qty"] for f in self.fills), Decimal(0))

    def _fills_json(self) -> list[dict]:
        if self.status == "NEW":
            return []
        return [{"price": fmt(f["price"]), "qty": fmt(f["qty"]), "commission": fmt(f["commission"]),
                 "commissionAsset": f["commissionAsset"], "tradeId": f["tradeId"]} for f in self.fills]

    def response(self, resp_type: str) -> dict:
        """POST /api/v3/order answer in ACK, RESULT or FULL shape (F.4)."""
        out = {"symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
               "clientOrderId": self.client_order_id, "transactTime": self.time_ms}
        if resp_type == "ACK":
            return out
        out.update({
            "price": "0.00000000", "origQty": fmt(self.orig_qty), "executedQty": fmt(self.executed_qty),
            "origQuoteOrderQty": fmt(self.orig_quote_order_qty),
            "cummulativeQuoteQty": fmt(self.cummulative_quote_qty), "status": self.status,
            "timeInForce": "GTC", "type": "MARKET", "side": self.side, "workingTime": self.time_ms,
            "selfTradePreventionMode": "NONE",
        })
        if resp_type == "FULL":
            out["fills"] = self._fills_json()
        return out

    def query_json(self) -> dict:
        """GET /api/v3/order answer (F.5): no fills."""
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id, "price": "0.00000000", "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty), "cummulativeQuoteQty": fmt(self.cummulative_quote_qty),
            "status": self.status, "timeInForce": "GTC", "type": "MARKET", "side": self.side,
            "stopPrice": "0.00000000", "icebergQty": "0.00000000", "time": self.time_ms,
            "updateTime": self.update_ms, "isWorking": True, "workingTime": self.time_ms,
            "origQuoteOrderQty": fmt(self.orig_quote_order_qty), "selfTradePreventionMode": "NONE",
        }


@dataclass
class IpWeight:
    window: int = -1
    used: int = 0
    over: int = 0  # requests refused with 429 in this window
    banned_until: float = 0.0
    ban_seconds: int = 120


# --------------------------------------------------------------------------- state

class SandboxState:
    def __init__(self, config: dict):
        self.lock = threading.RLock()
        self.seed = int(config.get("seed", 0))
        self.keys: dict[str, str] = dict(config.get("keys") or {})
        if config.get("api_key"):
            self.keys[config["api_key"]] = config["secret_key"]
        self.commission_rate = Decimal(str(config.get("commission_rate", "0.001")))
        self.default_weight_limit = int(config.get("weight_limit", DEFAULT_WEIGHT_LIMIT))
        self.ban_after = int(config.get("ban_after", 5))  # 429s tolerated per window before a 418
        self.symbol_config = {**DEFAULT_SYMBOLS, **(config.get("symbols") or {})}
        self.config = config
        self._last_id = 0  # survives reset(); see next_id()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.symbols = {name: SymbolSpec.build(name, spec, self.seed)
                            for name, spec in self.symbol_config.items()}
            self.frozen: dict[str, Decimal] = {}
            self.orders: dict[int, SandboxOrder] = {}
            from sandbox.binance_capital import WalletState  # the capital/sub-account part
            self.wallet = WalletState(self, self.config)
            self.next_modes = FaultQueue(self.lock)  # /_sandbox/next_order
            self.weight_limit = self.default_weight_limit
            self.ip_weights: dict[str, IpWeight] = {}
            self.order_counts: list[float] = []  # monotonic times of accepted orders
            self.fail_market_data: dict = {"count": 0}
            self.clock_offset_ms = 0
            self.request_counts: dict[str, int] = {}

    # ---- time and prices

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    def symbol(self, name: str | None) -> SymbolSpec:
        if not name:
            raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        spec = self.symbols.get(name)
        if spec is None:
            raise ApiError(-1121, "Invalid symbol.")
        return spec

    def price_at(self, spec: SymbolSpec, second: int, now_s: int | None = None) -> Decimal:
        """Walk price, except that a frozen symbol sits at its frozen price from now on."""
        now_s = now_s if now_s is not None else self.now_ms() // 1000
        if spec.symbol in self.frozen and second >= now_s:
            return self.frozen[spec.symbol]
        return spec.walk(second)

    def current_price(self, spec: SymbolSpec) -> Decimal:
        with self.lock:
            if spec.symbol in self.frozen:
                return self.frozen[spec.symbol]
        return spec.walk(self.now_ms() // 1000)

    # ---- weight (per IP, per clock minute, like Binance)

    def charge(self, ip: str, weight: int) -> None:
        now = self.now_ms() / 1000
        with self.lock:
            rec = self.ip_weights.setdefault(ip, IpWeight())
            if rec.banned_until > now:
                retry = math.ceil(rec.banned_until - now)
                until = self.now_ms() + retry * 1000
                raise ApiError(-1003, f"Way too much request weight used; IP banned until {until}. "
                                      "Please use WebSocket Streams for live updates to avoid bans.",
                               418, {"Retry-After": str(retry)})
            window = int(now // 60)
            if window != rec.window:
                rec.window, rec.used, rec.over = window, 0, 0
            if rec.used + weight > self.weight_limit:
                rec.over += 1
                if rec.over > self.ban_after:
                    rec.banned_until = now + rec.ban_seconds
                    retry = rec.ban_seconds
                    rec.ban_seconds = min(rec.ban_seconds * 2, 3 * 86400)  # bans escalate (F.1)
                    raise ApiError(-1003, f"Way too much request weight used; IP banned until "
                                          f"{self.now_ms() + retry * 1000}. Please use WebSocket Streams "
                                          "for live updates to avoid bans.", 418, {"Retry-After": str(retry)})
                retry = max(1, math.ceil((window + 1) * 60 - now))
                raise ApiError(-1003, f"Too much request weight used; current limit is {self.weight_limit} "
                                      "request weight per 1 MINUTE. Please use WebSocket Streams for live "
                                      "updates to avoid polling the API.", 429, {"Retry-After": str(retry)})
            rec.used += weight

    def used_weight(self, ip: str) -> int:
        with self.lock:
            rec = self.ip_weights.get(ip)
            if rec is None or rec.window != int(self.now_ms() / 1000 // 60):
                return 0
            return rec.used

    # ---- orders

    def next_id(self) -> int:
        """A new id for orders, trades, transfers, deposits and withdrawals.

        Ids start at wall-clock ms x 1000 and only grow, so an emulator restarted later
        never hands out an id that an earlier run (and so our database) already saw,
        as long as it gives out fewer than 1000 ids per millisecond.
        """
        with self.lock:
            self._last_id = max(self._last_id + 1, (time.time_ns() // 1_000_000) * 1000)
            return self._last_id

    def find_order(self, spec: SymbolSpec, order_id: int | None, client_order_id: str | None):
        with self.lock:
            if order_id is not None:
                o = self.orders.get(order_id)
                return o if o and o.symbol == spec.symbol else None
            matches = [o for o in self.orders.values()
                       if o.symbol == spec.symbol and o.client_order_id == client_order_id]
            return max(matches, key=lambda o: o.order_id) if matches else None

    def compute_fills(self, spec: SymbolSpec, side: str, quantity: Decimal | None,
                      quote_qty: Decimal | None, n_fills: int) -> list[dict]:
        """Apply the MARKET filters and split the execution into 1 or 2 fills."""
        price = self.current_price(spec)
        # The second fill (if any) walks one tick into the book: worse for the taker.
        worse = price + spec.tick_size if side == "BUY" else max(spec.tick_size, price - spec.tick_size)
        if quantity is not None:
            for name, lo, hi, step in (("LOT_SIZE", spec.min_qty, spec.max_qty, spec.step_size),
                                       ("MARKET_LOT_SIZE", Decimal(0), spec.market_max_qty, Decimal(0))):
                if (lo > 0 and quantity < lo) or (hi > 0 and quantity > hi) or \
                        (step > 0 and (quantity - lo) % step != 0):
                    raise ApiError(-1013, f"Filter failure: {name}")
            notional = quantity * price
            if notional < spec.min_notional or notional > spec.max_notional:
                raise ApiError(-1013, "Filter failure: NOTIONAL")
            qty = quantity
        else:
            if quote_qty < spec.min_notional or quote_qty > spec.max_notional:
                raise ApiError(-1013, "Filter failure: NOTIONAL")
            # "will not break LOT_SIZE": round the executed quantity down to the step.
            ref = worse if n_fills > 1 and side == "BUY" else price
            qty = ((quote_qty / ref) / spec.step_size).to_integral_value(rounding=ROUND_DOWN) * spec.step_size
            if qty < spec.min_qty or qty <= 0:
                raise ApiError(-1013, "Filter failure: LOT_SIZE")
            if qty > spec.max_qty:
                raise ApiError(-1013, "Filter failure: LOT_SIZE")
            if qty > spec.market_max_qty:
                raise ApiError(-1013, "Filter failure: MARKET_LOT_SIZE")
        parts = [(price, qty)]
        if n_fills > 1:
            first = ((qty * Decimal("0.6")) / spec.step_size).to_integral_value(rounding=ROUND_DOWN) * spec.step_size
            if 0 < first < qty:
                parts = [(price, first), (worse, qty - first)]
        fills = []
        for p, q in parts:
            if side == "BUY":  # commission in the asset received
                commission, asset = (q * self.commission_rate).quantize(EIGHT, ROUND_HALF_UP), spec.base_asset
            else:
                commission, asset = (p * q * self.commission_rate).quantize(EIGHT, ROUND_HALF_UP), spec.quote_asset
            fills.append({"price": p, "qty": q, "commission": commission, "commissionAsset": asset})
        return fills

    def trades_json(self, spec: SymbolSpec, order_id: int | None, limit: int) -> list[dict]:
        with self.lock:
            rows = []
            for o in sorted(self.orders.values(), key=lambda o: o.order_id):
                if o.symbol != spec.symbol or o.status == "NEW" or (order_id is not None and o.order_id != order_id):
                    continue
                for f in o.fills:
                    rows.append({"symbol": o.symbol, "id": f["tradeId"], "orderId": o.order_id, "orderListId": -1,
                                 "price": fmt(f["price"]), "qty": fmt(f["qty"]), "quoteQty": fmt(f["price"] * f["qty"]),
                                 "commission": fmt(f["commission"]), "commissionAsset": f["commissionAsset"],
                                 "time": o.update_ms, "isBuyer": o.side == "BUY", "isMaker": False,
                                 "isBestMatch": True})
            return rows[-limit:]


# --------------------------------------------------------------------------- request helpers

def _params() -> dict[str, str]:
    """Query string and form body; the query string wins on duplicates (F.1)."""
    if "params" not in g:
        body = request.get_data(cache=True).decode("utf-8", "replace")
        qs = request.query_string.decode("utf-8", "replace")
        merged = dict(parse_qsl(body, keep_blank_values=True))
        merged.update(parse_qsl(qs, keep_blank_values=True))
        g.params = merged
    return g.params


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """Remove `signature=` from a raw (still percent-encoded) parameter string."""
    kept, sig = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            sig = sig or part[len("signature="):]
        else:
            kept.append(part)
    return "&".join(kept), sig


def _symbols_list(state: SandboxState, params: dict) -> list[SymbolSpec] | None:
    """`symbol` / `symbols=["A","B"]` → specs; None means all symbols."""
    if params.get("symbol"):
        if params.get("symbols"):
            raise ApiError(-1101, "Parameter 'symbol' and 'symbols' were both sent.")
        return [state.symbol(params["symbol"])]
    if params.get("symbols"):
        raw = params["symbols"]
        if not SYMBOLS_RE.match(raw):
            raise ApiError(-1100, "Illegal characters found in parameter 'symbols'; legal range is "
                                  "'^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.")
        return [state.symbol(s) for s in json.loads(raw)]
    return None


def _int_param(params: dict, name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")


def _amount_param(params: dict, name: str, precision: int) -> Decimal | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if not NUMBER_RE.match(raw):
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                              "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    if _decimals(raw) > precision:
        raise ApiError(-1111, f"Parameter '{name}' has too much precision.")
    value = Decimal(raw)
    if value <= 0:
        raise ApiError(-1013, f"Invalid {name}.")
    return value


# Weight per endpoint (F.3-F.5); a callable gets the parsed params.
def _ticker_24h_weight(p: dict) -> int:
    if p.get("symbol"):
        return 2
    if p.get("symbols"):
        try:
            n = len(json.loads(p["symbols"]))
        except ValueError:
            n = 1
        return 2 if n <= 20 else 40 if n <= 100 else 80
    return 80


WEIGHTS = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/ticker/price"): lambda p: 2 if p.get("symbol") else 4,
    ("GET", "/api/v3/ticker/24hr"): _ticker_24h_weight,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("POST", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("GET", "/api/v3/myTrades"): lambda p: 5 if p.get("orderId") else 20,
    # Wallet / sub-account SAPI (binance_capital.py). Binance documents IP weights for most of
    # them; withdraw/apply (900) and withdraw/history (18000) are UID weights against a UID limit
    # the sandbox does not model, so they cost 1 here like the IP weight the older docs gave.
    ("GET", "/sapi/v1/capital/config/getall"): 10,
    ("POST", "/sapi/v1/sub-account/virtualSubAccount"): 1,
    ("GET", "/sapi/v1/sub-account/list"): 1,
    ("GET", "/sapi/v1/capital/deposit/subAddress"): 1,
    ("GET", "/sapi/v1/capital/deposit/subHisrec"): 1,
    ("POST", "/sapi/v1/sub-account/universalTransfer"): 1,
    ("GET", "/sapi/v1/sub-account/universalTransfer"): 1,
    ("POST", "/sapi/v1/capital/withdraw/apply"): 1,
    ("GET", "/sapi/v1/capital/withdraw/history"): 1,
}
# Endpoints that `/_sandbox/fail_market_data` may break (not /time: clock sync must work).
MARKET_DATA = {"/api/v3/ping", "/api/v3/ticker/price", "/api/v3/ticker/24hr", "/api/v3/exchangeInfo"}


# --------------------------------------------------------------------------- app

# --------------------------------------------------------------------------- routes
# Small functions on the shared server library (sandbox/server.py); `state` is this
# request's emulator. The wallet's routes live in sandbox/binance_capital.py.

routes = Routes()
state: SandboxState = state_proxy()


def verify_signature() -> None:
    params = _params()
    key = request.headers.get("X-MBX-APIKEY")
    if not key:
        raise ApiError(-2014, "API-key format invalid.", 401)
    secret = state.keys.get(key)
    if secret is None:
        raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    qs, sig_q = _strip_signature(request.query_string.decode("utf-8", "replace"))
    body, sig_b = _strip_signature(request.get_data(cache=True).decode("utf-8", "replace"))
    signature = sig_q or sig_b
    if not signature:
        raise ApiError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
    if not params.get("timestamp"):
        raise ApiError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
    try:
        recv_window = Decimal(params.get("recvWindow") or "5000")
        timestamp = int(params["timestamp"])
    except (InvalidOperation, ValueError):
        raise ApiError(-1100, "Illegal characters found in a parameter.")
    if recv_window > MAX_RECV_WINDOW or recv_window <= 0:
        raise ApiError(-1131, "recvWindow must be less than 60000")
    # Payload = query string + body, no separator, as received (F.2). Case-insensitive hex.
    expected = hmac.new(secret.encode(), (qs + body).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise ApiError(-1022, "Signature for this request is not valid.")
    ts_ms = Decimal(timestamp) / 1000 if timestamp > 10**14 else Decimal(timestamp)  # µs accepted
    server = state.now_ms()
    if not ts_ms < server + 1000:
        raise ApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server - ts_ms > recv_window:
        raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")


@routes.errorhandler(ApiError)
def api_error(exc: ApiError):
    resp = current_app.json.response({"code": exc.code, "msg": exc.msg})
    resp.status_code = exc.status
    resp.headers.update(exc.headers)
    return resp


@routes.before_request
def meter():
    path = request.path
    if not path.startswith(("/api/", "/sapi/")):
        return None
    with state.lock:
        state.request_counts[path] = state.request_counts.get(path, 0) + 1
    weight = WEIGHTS.get((request.method, path), 1)
    state.charge(request.remote_addr or "?", weight(_params()) if callable(weight) else weight)
    if path in MARKET_DATA:
        with state.lock:
            fail = state.fail_market_data
            if fail["count"] > 0:
                fail["count"] -= 1
                status = int(fail.get("status", 500))
                if status in (429, 418):
                    raise ApiError(-1003, "Too much request weight used (sandbox injected).", status,
                                   {"Retry-After": str(int(fail.get("retry_after", 1)))})
                raise ApiError(-1001, "Internal error; unable to process your request. Please try again.",
                               status)
    return None


@routes.after_request
def weight_header(resp: Response):
    if request.path.startswith(("/api/", "/sapi/")):
        resp.headers["X-MBX-USED-WEIGHT-1M"] = str(state.used_weight(request.remote_addr or "?"))
    return resp


# ---- market data

@routes.get("/api/v3/ping")
def ping():
    return {}


@routes.get("/api/v3/time")
def server_time():
    return {"serverTime": state.now_ms()}


@routes.get("/api/v3/ticker/price")
def ticker_price():
    params = _params()
    specs = _symbols_list(state, params)
    rows = [{"symbol": s.symbol, "price": fmt(state.current_price(s))}
            for s in (specs if specs is not None else state.symbols.values())]
    return rows[0] if params.get("symbol") else current_app.json.response(rows)


def ticker_24h_row(spec: SymbolSpec, full: bool) -> dict:
    now_ms = state.now_ms()
    now_s = now_ms // 1000
    open_s = now_s - 86400
    samples = [state.price_at(spec, t, now_s) for t in range(open_s, now_s, 600)]
    last = state.current_price(spec)
    samples.append(last)
    open_price = samples[0]
    volume = spec.volume(open_s, 86400)
    vwap = spec.to_tick(sum(samples, Decimal(0)) / len(samples))
    last_id = 10_000_000 + now_s // 3  # deterministic trade ids, ~1 trade per 3 s
    first_id = last_id - 28_800
    row = {"symbol": spec.symbol}
    if full:
        change = last - open_price
        row.update({
            "priceChange": fmt(change),
            "priceChangePercent": fmt(change * 100 / open_price, Decimal("0.001")),
            "weightedAvgPrice": fmt(vwap), "prevClosePrice": fmt(state.price_at(spec, open_s - 1, now_s)),
            "lastPrice": fmt(last), "lastQty": fmt(spec.step_size * (1 + (now_s % 37))),
            "bidPrice": fmt(max(spec.tick_size, last - spec.tick_size)),
            "bidQty": fmt(spec.step_size * (100 + now_s % 900)),
            "askPrice": fmt(last + spec.tick_size), "askQty": fmt(spec.step_size * (100 + now_s % 700)),
        })
    row.update({
        "openPrice": fmt(open_price), "highPrice": fmt(max(samples)), "lowPrice": fmt(min(samples)),
    })
    if not full:
        row["lastPrice"] = fmt(last)
    row.update({
        "volume": fmt(volume), "quoteVolume": fmt(volume * vwap),
        "openTime": open_s * 1000, "closeTime": now_ms, "firstId": first_id, "lastId": last_id,
        "count": last_id - first_id + 1,
    })
    return row


@routes.get("/api/v3/ticker/24hr")
def ticker_24h():
    params = _params()
    kind = params.get("type", "FULL")
    if kind not in ("FULL", "MINI"):
        raise ApiError(-1100, "Illegal characters found in parameter 'type'.")
    specs = _symbols_list(state, params)
    rows = [ticker_24h_row(s, kind == "FULL") for s in (specs if specs is not None else state.symbols.values())]
    return rows[0] if params.get("symbol") else current_app.json.response(rows)


@routes.get("/api/v3/exchangeInfo")
def exchange_info():
    params = _params()
    specs = _symbols_list(state, params)
    specs = specs if specs is not None else list(state.symbols.values())
    if params.get("symbolStatus"):
        specs = [s for s in specs if s.status == params["symbolStatus"]]
    return {
        "timezone": "UTC",
        "serverTime": state.now_ms(),
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": state.weight_limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": [_symbol_json(s) for s in specs],
    }


# ---- trading

def parse_order(params: dict) -> tuple:
    spec = state.symbol(params.get("symbol"))
    side = params.get("side")
    if not side:
        raise ApiError(-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
    if side not in ("BUY", "SELL"):
        raise ApiError(-1100, "Illegal characters found in parameter 'side'; legal range is 'BUY, SELL'.")
    order_type = params.get("type")
    if not order_type:
        raise ApiError(-1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed.")
    if order_type != "MARKET":
        raise ApiError(-1116, "Invalid orderType.")  # the sandbox only speaks MARKET
    quantity = _amount_param(params, "quantity", spec.base_precision)
    quote_qty = _amount_param(params, "quoteOrderQty", spec.quote_precision)
    if quantity is None and quote_qty is None:
        raise ApiError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
    if quantity is not None and quote_qty is not None:
        raise ApiError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
    resp_type = params.get("newOrderRespType") or "FULL"
    if resp_type not in ("ACK", "RESULT", "FULL"):
        raise ApiError(-1100, "Illegal characters found in parameter 'newOrderRespType'; "
                              "legal range is 'ACK, RESULT, FULL'.")
    client_id = params.get("newClientOrderId") or "web_" + secrets.token_hex(12)
    if not CLIENT_ORDER_ID_RE.match(client_id):
        raise ApiError(-1100, "Illegal characters found in parameter 'newClientOrderId'; legal range "
                              "is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
    if spec.status != "TRADING":
        raise ApiError(-2010, "Market is closed.")
    return spec, side, quantity, quote_qty, resp_type, client_id


@routes.post("/api/v3/order")
def new_order():
    verify_signature()
    spec, side, quantity, quote_qty, resp_type, client_id = parse_order(_params())
    fills = state.compute_fills(spec, side, quantity, quote_qty, int((state.next_modes.peek() or {}).get("fills", 1)))
    mode = state.next_modes.take() or {"mode": "fill"}
    kind = mode["mode"]
    with state.lock:
        # newClientOrderId is unique among OPEN orders only (F.4).
        if any(o.symbol == spec.symbol and o.client_order_id == client_id and o.status == "NEW"
               for o in state.orders.values()):
            raise ApiError(-2010, "Duplicate order sent.")
        if kind == "reject":
            raise ApiError(-2010, mode.get("msg") or "Account has insufficient balance for requested action.")
        now = state.now_ms()
        order = SandboxOrder(
            symbol=spec.symbol, order_id=state.next_id(), client_order_id=client_id, side=side,
            orig_qty=sum((f["qty"] for f in fills), Decimal(0)),
            orig_quote_order_qty=quote_qty or Decimal(0), status="NEW", time_ms=now, update_ms=now)
        state.orders[order.order_id] = order

    def fill() -> None:
        with state.lock:
            for f in fills:
                f["tradeId"] = state.next_id()
            order.fills = fills
            order.status = "FILLED"
            order.update_ms = state.now_ms()
            state.order_counts.append(time.monotonic())

    if kind == "delay":
        time.sleep(float(mode.get("delay_seconds", 2)))  # open (NEW) while we sleep
        fill()
    elif kind == "timeout":
        fill()  # executed at once; only the answer is late, past the client's timeout
        time.sleep(float(mode.get("delay_seconds", 12)))
    elif kind == "error500":
        fill()
        raise ApiError(-1007, "Timeout waiting for response from backend server. Send status unknown; "
                              "execution status unknown.", 500)
    else:
        fill()
    resp = current_app.json.response(order.response(resp_type))
    with state.lock:
        mono = time.monotonic()
        state.order_counts = [t for t in state.order_counts if mono - t < 86400]
        resp.headers["X-MBX-ORDER-COUNT-10S"] = str(sum(1 for t in state.order_counts if mono - t < 10))
        resp.headers["X-MBX-ORDER-COUNT-1D"] = str(len(state.order_counts))
    return resp


@routes.get("/api/v3/order")
def query_order():
    verify_signature()
    params = _params()
    spec = state.symbol(params.get("symbol"))
    order_id = _int_param(params, "orderId")
    client_id = params.get("origClientOrderId")
    if order_id is None and not client_id:
        raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
    order = state.find_order(spec, order_id, client_id)
    if order is None:
        raise ApiError(-2013, "Order does not exist.")
    with state.lock:
        return order.query_json()


@routes.get("/api/v3/myTrades")
def my_trades():
    verify_signature()
    params = _params()
    spec = state.symbol(params.get("symbol"))
    limit = _int_param(params, "limit", 500)
    if not 1 <= limit <= 1000:
        raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
    return current_app.json.response(state.trades_json(spec, _int_param(params, "orderId"), limit))


def create_app(config: dict | None = None) -> Flask:
    """config: api_key, secret_key (or keys={key: secret}), seed, weight_limit,
    commission_rate, ban_after, symbols={SYMBOL: {price, tick_size, step_size, ...}}."""
    from sandbox.binance_capital import routes as wallet_routes
    config = {"api_key": "sandbox-key", "secret_key": "sandbox-secret", **(config or {})}
    return make_app(__name__, SandboxState(config), routes, wallet_routes, extension="binance_sandbox")


def _symbol_json(s: SymbolSpec) -> dict:
    return {
        "symbol": s.symbol, "status": s.status, "baseAsset": s.base_asset,
        "baseAssetPrecision": s.base_precision, "quoteAsset": s.quote_asset, "quotePrecision": s.quote_precision,
        "quoteAssetPrecision": s.quote_precision, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fmt(s.tick_size), "maxPrice": fmt(s.base_price * 100),
             "tickSize": fmt(s.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": fmt(s.min_qty), "maxQty": fmt(s.max_qty),
             "stepSize": fmt(s.step_size)},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": fmt(s.market_max_qty),
             "stepSize": "0.00000000"},
            {"filterType": "NOTIONAL", "minNotional": fmt(s.min_notional), "applyMinToMarket": True,
             "maxNotional": fmt(s.max_notional), "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ],
        "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "NONE"],
    }


# --------------------------------------------------------------------------- controls
# Test controls, no signature and no weight:
#   POST /_sandbox/next_order      {"mode": "fill"|"reject"|"delay"|"timeout"|"error500",
#                                   "delay_seconds": s, "count": n=1, "fills": 1|2, "msg": reject text}
#   POST /_sandbox/price           {"symbol", "price"}   freeze (price null → unfreeze)
#   POST /_sandbox/weight_limit    {"limit": n|null, "reset_counters": bool}
#   POST /_sandbox/fail_market_data {"count": n, "status": 500|429|418, "retry_after": s}
#   POST /_sandbox/clock           {"offset_ms": n}     skew the server clock
#   POST /_sandbox/symbol_status   {"symbol", "status"} e.g. "BREAK" → orders get -2010 Market is closed.
#   GET  /_sandbox/orders[?symbol=]                      every order, newest last
#   GET  /_sandbox/stats                                 request counts per path, weight per IP
#   POST /_sandbox/reset                                 back to the initial state

def bad(msg: str):
    resp = current_app.json.response({"error": msg})
    resp.status_code = 400
    return resp


@routes.post("/_sandbox/next_order")
def control_next_order():
    data = control_body()
    mode = data.get("mode", "fill")
    if mode not in ("fill", "reject", "delay", "timeout", "error500"):
        return bad(f"unknown mode {mode!r}")
    entry = {"mode": mode, "fills": int(data.get("fills", 1))}
    if "delay_seconds" in data:
        entry["delay_seconds"] = float(data["delay_seconds"])
    if data.get("msg"):
        entry["msg"] = str(data["msg"])
    return {"queued": state.next_modes.push(entry, int(data.get("count", 1)))}


@routes.post("/_sandbox/price")
def control_price():
    data = control_body()
    if data.get("symbol") not in state.symbols:
        return bad("unknown symbol")
    spec = state.symbols[data["symbol"]]
    with state.lock:
        if data.get("price") is None:
            state.frozen.pop(spec.symbol, None)
            return {"symbol": spec.symbol, "frozen": False}
        try:
            price = spec.to_tick(Decimal(str(data["price"])))
        except InvalidOperation:
            return bad("price must be a number")
        state.frozen[spec.symbol] = price
    return {"symbol": spec.symbol, "price": fmt(price), "frozen": True}


@routes.post("/_sandbox/weight_limit")
def control_weight_limit():
    data = control_body()
    with state.lock:
        state.weight_limit = int(data["limit"]) if data.get("limit") is not None else state.default_weight_limit
        if data.get("reset_counters", True):
            state.ip_weights.clear()
    return {"limit": state.weight_limit}


@routes.post("/_sandbox/fail_market_data")
def control_fail():
    data = control_body()
    status = int(data.get("status", 500))
    if status not in (500, 502, 503, 429, 418):
        return bad("status must be 500, 502, 503, 429 or 418")
    with state.lock:
        state.fail_market_data = {"count": int(data.get("count", 1)), "status": status,
                                  "retry_after": int(data.get("retry_after", 1))}
    return state.fail_market_data


@routes.post("/_sandbox/clock")
def control_clock():
    with state.lock:
        state.clock_offset_ms = int(control_body().get("offset_ms", 0))
    return {"offset_ms": state.clock_offset_ms, "serverTime": state.now_ms()}


@routes.post("/_sandbox/symbol_status")
def control_symbol_status():
    data = control_body()
    if data.get("symbol") not in state.symbols:
        return bad("unknown symbol")
    with state.lock:
        state.symbols[data["symbol"]].status = str(data.get("status", "TRADING"))
    return {"symbol": data["symbol"], "status": state.symbols[data["symbol"]].status}


@routes.get("/_sandbox/orders")
def control_orders():
    symbol = request.args.get("symbol")
    with state.lock:
        rows = [{**o.query_json(), "fills": o._fills_json()}
                for o in sorted(state.orders.values(), key=lambda o: o.order_id)
                if not symbol or o.symbol == symbol]
    return current_app.json.response(rows)


@routes.get("/_sandbox/stats")
def control_stats():
    with state.lock:
        return {"requests": dict(state.request_counts), "weight_limit": state.weight_limit,
                "weights": {ip: {"used": r.used, "over": r.over, "banned_until": r.banned_until}
                            for ip, r in state.ip_weights.items()}}


@routes.post("/_sandbox/reset")
def control_reset():
    state.reset()
    return {"reset": True}


# --------------------------------------------------------------------------- serving

class BackgroundServer(_Server):
    """The emulator on a real socket in a daemon thread (tests, dev tooling), no access log."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        super().__init__(app, host, port, quiet=quiet)


def _parse_symbol_spec(text: str) -> tuple[str, dict]:
    """`SOLBRL=850` or `SOLBRL=850:tick=0.01:step=0.001:min_notional=10`."""
    name, _, rest = text.partition("=")
    price, *options = rest.split(":")
    spec: dict = {"price": price}
    aliases = {"tick": "tick_size", "step": "step_size"}
    for opt in options:
        k, _, v = opt.partition("=")
        spec[aliases.get(k, k)] = v
    return name.upper(), spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Binance Spot emulator (bs-market sandbox)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--secret-key", default="sandbox-secret")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight-limit", type=int, default=DEFAULT_WEIGHT_LIMIT)
    parser.add_argument("--commission-rate", default="0.001")
    parser.add_argument("--symbol", action="append", default=[], metavar="SYMBOL=PRICE[:tick=..:step=..]",
                        help="extra symbol (repeatable), e.g. SOLBRL=850:tick=0.1:step=0.001")
    args = parser.parse_args(argv)
    app = create_app({
        "api_key": args.api_key, "secret_key": args.secret_key, "seed": args.seed,
        "weight_limit": args.weight_limit, "commission_rate": args.commission_rate,
        "symbols": dict(_parse_symbol_spec(s) for s in args.symbol),
    })
    serve(app, args.host, args.port, f"Binance sandbox on http://{args.host}:{args.port} "
          f"(symbols: {', '.join(app.extensions['binance_sandbox'].symbols)})")


if __name__ == "__main__":
    main()
