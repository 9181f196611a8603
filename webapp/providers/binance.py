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

Wallet (SAPI, for on-chain deposits and withdrawals through per-customer virtual
sub-accounts): `coin_configs`, `create_virtual_sub_account`, `deposit_address`,
`sub_deposit_history`, `sweep_to_master`/`universal_transfer` (+ `get_universal_transfer`),
`withdraw` (+ `get_withdrawal`, `withdraw_history`). The two calls that move coins carry
*our* id (``clientTranId``, ``withdrawOrderId``); after ``outcome_unknown`` look the
operation up by that id. A refusal while an operation with that id exists returns the
existing one, so a resend after a crash never moves coins twice.
UNVERIFIED: whether the history ``amount`` of a withdrawal is gross or net of
``transactionFee`` (the sandbox reports it net); reconcile with both fields.
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
from datetime import datetime, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any, Iterable

import requests

from webapp.formatting import N_

PRODUCTION_URL = "https://api.binance.com"
TESTNET_URL = "https://testnet.binance.vision"

#: Our own, stricter rule for newClientOrderId (providers.md F.4 "UNVERIFIED").
CLIENT_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
#: Same rule for our withdrawOrderId (Binance documents no charset: UNVERIFIED).
WITHDRAW_ORDER_ID_RE = CLIENT_ORDER_ID_RE

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


# --------------------------------------------------------------------------- wallet data

# Sub-account deposit status (GET /sapi/v1/capital/deposit/subHisrec).
DEPOSIT_PENDING = 0
DEPOSIT_SUCCESS = 1
DEPOSIT_CREDITED_CANNOT_WITHDRAW = 6
DEPOSIT_WRONG = 7
DEPOSIT_WAITING_USER_CONFIRM = 8

# Withdrawal status (GET /sapi/v1/capital/withdraw/history).
WITHDRAW_EMAIL_SENT = 0
WITHDRAW_CANCELLED = 1
WITHDRAW_AWAITING_APPROVAL = 2
WITHDRAW_REJECTED = 3
WITHDRAW_PROCESSING = 4
WITHDRAW_FAILURE = 5
WITHDRAW_COMPLETED = 6
WITHDRAW_FAILED_STATUSES = frozenset({WITHDRAW_CANCELLED, WITHDRAW_REJECTED, WITHDRAW_FAILURE})

# Those statuses as a person reads them (translated when shown: `tr()`).
DEPOSIT_STATUS_TEXTS = {
    DEPOSIT_PENDING: N_("aguardando confirmações"), DEPOSIT_SUCCESS: N_("creditado"),
    DEPOSIT_CREDITED_CANNOT_WITHDRAW: N_("creditado, ainda bloqueado"), DEPOSIT_WRONG: N_("depósito errado"),
    DEPOSIT_WAITING_USER_CONFIRM: N_("aguardando confirmação do usuário"),
}
WITHDRAW_STATUS_TEXTS = {
    WITHDRAW_EMAIL_SENT: N_("e-mail de confirmação enviado"), WITHDRAW_CANCELLED: N_("cancelado"),
    WITHDRAW_AWAITING_APPROVAL: N_("aguardando aprovação"), WITHDRAW_REJECTED: N_("recusado"),
    WITHDRAW_PROCESSING: N_("processando"), WITHDRAW_FAILURE: N_("falhou"), WITHDRAW_COMPLETED: N_("concluído"),
}


def deposit_status_text(status) -> str:
    """A sub-account deposit status (number, or its text) in words; unknown ones as they are."""
    return _status_text(DEPOSIT_STATUS_TEXTS, status)


def withdraw_status_text(status) -> str:
    return _status_text(WITHDRAW_STATUS_TEXTS, status)


def _status_text(texts: dict[int, str], status) -> str:
    try:
        return texts.get(int(status), str(status))
    except (TypeError, ValueError):
        return "" if status is None else str(status)


def _utc_text(value: Any) -> datetime | None:
    """Binance's "2019-10-12 11:12:02" (UTC) → aware datetime."""
    if not value:
        return None
    return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


def _ms(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value) / 1000, timezone.utc)


@dataclass(frozen=True)
class NetworkConfig:
    """One entry of a coin's networkList (capital/config/getall)."""

    coin: str
    network: str              # Binance's code: "BTC", "ETH", "BSC", "TRX"
    name: str                 # "Tron (TRC20)"
    is_default: bool
    deposit_enable: bool
    withdraw_enable: bool
    withdraw_fee: Decimal
    withdraw_min: Decimal
    withdraw_max: Decimal
    withdraw_integer_multiple: Decimal
    min_confirm: int          # confirmations before the deposit is credited
    unlock_confirm: int       # confirmations before it can be withdrawn
    address_regex: str
    memo_regex: str
    same_address: bool
    withdraw_tag: bool
    deposit_desc: str = ""
    withdraw_desc: str = ""
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: dict) -> "NetworkConfig":
        return cls(
            coin=data.get("coin", ""), network=data["network"], name=data.get("name", ""),
            is_default=bool(data.get("isDefault")), deposit_enable=bool(data.get("depositEnable")),
            withdraw_enable=bool(data.get("withdrawEnable")), withdraw_fee=_dec(data.get("withdrawFee")),
            withdraw_min=_dec(data.get("withdrawMin")), withdraw_max=_dec(data.get("withdrawMax")),
            withdraw_integer_multiple=_dec(data.get("withdrawIntegerMultiple")),
            min_confirm=int(data.get("minConfirm") or 0), unlock_confirm=int(data.get("unLockConfirm") or 0),
            address_regex=data.get("addressRegex") or "", memo_regex=data.get("memoRegex") or "",
            same_address=bool(data.get("sameAddress")), withdraw_tag=bool(data.get("withdrawTag")),
            deposit_desc=data.get("depositDesc") or "", withdraw_desc=data.get("withdrawDesc") or "", raw=data)


@dataclass(frozen=True)
class CoinConfig:
    coin: str
    name: str
    free: Decimal             # the master account's free balance of the coin
    locked: Decimal
    withdrawing: Decimal
    deposit_all_enable: bool
    withdraw_all_enable: bool
    networks: dict[str, NetworkConfig]
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: dict) -> "CoinConfig":
        nets = [NetworkConfig.from_json({"coin": data["coin"], **n}) for n in data.get("networkList", [])]
        return cls(coin=data["coin"], name=data.get("name", ""), free=_dec(data.get("free")),
                   locked=_dec(data.get("locked")), withdrawing=_dec(data.get("withdrawing")),
                   deposit_all_enable=bool(data.get("depositAllEnable")),
                   withdraw_all_enable=bool(data.get("withdrawAllEnable")),
                   networks={n.network: n for n in nets}, raw=data)


@dataclass(frozen=True)
class DepositAddress:
    email: str
    coin: str
    network: str
    address: str
    tag: str
    url: str


@dataclass(frozen=True)
class SubDeposit:
    """A row of a sub-account's deposit history. Key it by `id` (or tx_id + address)."""

    id: str
    email: str
    coin: str
    network: str
    amount: Decimal
    status: int               # DEPOSIT_*
    address: str
    address_tag: str
    tx_id: str
    insert_time: datetime | None
    confirmations: int        # "x/y" → x
    required_confirmations: int  # "x/y" → y
    unlock_confirm: int
    transfer_type: int        # 0 on-chain, 1 internal
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_credited(self) -> bool:
        """The coins are on the sub-account (status 6 or 1)."""
        return self.status in (DEPOSIT_SUCCESS, DEPOSIT_CREDITED_CANNOT_WITHDRAW)

    @classmethod
    def from_json(cls, data: dict, email: str) -> "SubDeposit":
        done, _, need = str(data.get("confirmTimes") or "0/0").partition("/")
        return cls(
            id=str(data.get("id", "")), email=email, coin=data.get("coin", ""), network=data.get("network", ""),
            amount=_dec(data.get("amount")), status=int(data.get("status", -1)),
            address=data.get("address", ""), address_tag=data.get("addressTag") or "",
            tx_id=data.get("txId") or "", insert_time=_ms(data.get("insertTime")),
            confirmations=int(done or 0), required_confirmations=int(need or 0),
            unlock_confirm=int(data.get("unlockConfirm") or 0), transfer_type=int(data.get("transferType") or 0),
            raw=data)


@dataclass(frozen=True)
class UniversalTransfer:
    tran_id: int
    client_tran_id: str
    asset: str
    amount: Decimal | None    # None when only the POST answer is known
    from_email: str | None
    to_email: str | None
    status: str               # "SUCCESS", "PROCESS", "FAILURE"; "" when only the POST answer is known
    create_time: datetime | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: dict) -> "UniversalTransfer":
        return cls(tran_id=int(data["tranId"]), client_tran_id=data.get("clientTranId") or "",
                   asset=data.get("asset", ""), amount=_dec(data["amount"]) if "amount" in data else None,
                   from_email=data.get("fromEmail"), to_email=data.get("toEmail"), status=data.get("status", ""),
                   create_time=_ms(data.get("createTimeStamp")), raw=data)


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal as GET /sapi/v1/capital/withdraw/history shows it."""

    id: str                   # Binance's id
    withdraw_order_id: str    # ours
    coin: str
    network: str
    address: str
    address_tag: str
    amount: Decimal           # as Binance reports it (see UNVERIFIED note on fees in the module doc)
    transaction_fee: Decimal
    status: int               # WITHDRAW_*
    tx_id: str                # on-chain id, once completed
    apply_time: datetime | None
    complete_time: datetime | None
    info: str                 # failure reason
    confirm_no: int
    transfer_type: int        # 0 external, 1 internal
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_completed(self) -> bool:
        return self.status == WITHDRAW_COMPLETED

    @property
    def is_failed(self) -> bool:
        """Definitely not sent (rejected, failed or cancelled): the coins are back."""
        return self.status in WITHDRAW_FAILED_STATUSES

    @classmethod
    def from_json(cls, data: dict) -> "Withdrawal":
        return cls(
            id=str(data["id"]), withdraw_order_id=data.get("withdrawOrderId") or "", coin=data.get("coin", ""),
            network=data.get("network", ""), address=data.get("address", ""),
            address_tag=data.get("addressTag") or "", amount=_dec(data.get("amount")),
            transaction_fee=_dec(data.get("transactionFee")), status=int(data.get("status", -1)),
            tx_id=data.get("txId") or "", apply_time=_utc_text(data.get("applyTime")),
            complete_time=_utc_text(data.get("completeTime")), info=data.get("info") or "",
            confirm_no=int(data.get("confirmNo") or 0), transfer_type=int(data.get("transferType") or 0),
            raw=data)


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

    # ---- wallet: coins, sub-accounts, deposits, sweeps, withdrawals (signed SAPI)

    def coin_configs(self, coins: Iterable[str] | None = None) -> dict[str, CoinConfig]:
        """GET /sapi/v1/capital/config/getall (weight 10), optionally only `coins`."""
        rows = self._request("GET", "/sapi/v1/capital/config/getall", signed=True)
        wanted = set(coins) if coins is not None else None
        return {r["coin"]: CoinConfig.from_json(r) for r in rows if wanted is None or r["coin"] in wanted}

    def create_virtual_sub_account(self, sub_account_string: str) -> str:
        """POST /sapi/v1/sub-account/virtualSubAccount → the new sub-account's email.

        Not idempotent: after an outcome-unknown error, look for the account in
        `sub_account_emails()` (the email is returned only by this call)."""
        if not sub_account_string:
            raise ValueError("sub_account_string is required")
        data = self._request("POST", "/sapi/v1/sub-account/virtualSubAccount",
                             {"subAccountString": sub_account_string}, signed=True, side_effect=True)
        return str(data["email"])

    def sub_account_emails(self, page: int = 1, limit: int = 200) -> list[str]:
        """One page of the master's sub-account emails (GET /sapi/v1/sub-account/list)."""
        data = self._request("GET", "/sapi/v1/sub-account/list", {"page": page, "limit": limit}, signed=True)
        return [str(row["email"]) for row in data.get("subAccounts", []) if row.get("email")]

    def deposit_address(self, email: str, coin: str, network: str) -> DepositAddress:
        """GET /sapi/v1/capital/deposit/subAddress: the sub-account's address (stable)."""
        data = self._request("GET", "/sapi/v1/capital/deposit/subAddress",
                             {"email": email, "coin": coin, "network": network}, signed=True)
        return DepositAddress(email=email, coin=data.get("coin", coin), network=network,
                              address=data["address"], tag=data.get("tag") or "", url=data.get("url") or "")

    def sub_deposit_history(self, email: str, coin: str | None = None, status: int | None = None,
                            start_time: int | None = None, end_time: int | None = None,
                            limit: int | None = None, offset: int = 0,
                            tx_id: str | None = None) -> list[SubDeposit]:
        """GET /sapi/v1/capital/deposit/subHisrec. A row may appear more than once: dedupe by id."""
        params = {"email": email, "coin": coin, "status": status, "startTime": start_time,
                  "endTime": end_time, "limit": limit, "offset": offset or None, "txId": tx_id}
        rows = self._request("GET", "/sapi/v1/capital/deposit/subHisrec", params, signed=True)
        return [SubDeposit.from_json(r, email) for r in rows]

    def universal_transfer(self, asset: str, amount: Decimal, client_tran_id: str, *,
                           from_email: str | None = None, to_email: str | None = None) -> UniversalTransfer:
        """POST /sapi/v1/sub-account/universalTransfer, SPOT to SPOT (no email = the master).

        `client_tran_id` (ours, unique) makes it safe: if Binance refuses the request and a
        transfer with that id already exists, that transfer is returned instead of an error.
        A timeout/5xx raises `BinanceOutcomeUnknown`: call `get_universal_transfer` then."""
        _require_decimal("amount", amount)
        if not amount.is_finite() or amount <= 0:
            raise ValueError("amount must be positive")
        if not client_tran_id:
            raise ValueError("client_tran_id is required")
        if not from_email and not to_email:
            raise ValueError("give from_email or to_email")
        params = {"fromEmail": from_email, "toEmail": to_email, "fromAccountType": "SPOT",
                  "toAccountType": "SPOT", "clientTranId": client_tran_id, "asset": asset,
                  "amount": format_decimal(amount)}
        try:
            data = self._request("POST", "/sapi/v1/sub-account/universalTransfer", params,
                                 signed=True, side_effect=True)
        except BinanceRejected as exc:
            if isinstance(exc, BinanceAuthError):
                raise
            existing = self.get_universal_transfer(client_tran_id, from_email=from_email, to_email=to_email)
            if existing is not None:
                return existing
            raise
        return UniversalTransfer(tran_id=int(data["tranId"]), client_tran_id=data.get("clientTranId") or client_tran_id,
                                 asset=asset, amount=amount, from_email=from_email, to_email=to_email,
                                 status="", raw=data)

    def sweep_to_master(self, from_email: str, asset: str, amount: Decimal,
                        client_tran_id: str) -> UniversalTransfer:
        """Move a sub-account's free coins to the master (SPOT → SPOT)."""
        return self.universal_transfer(asset, amount, client_tran_id, from_email=from_email)

    def universal_transfers(self, *, from_email: str | None = None, to_email: str | None = None,
                            client_tran_id: str | None = None, start_time: int | None = None,
                            end_time: int | None = None, page: int = 1,
                            limit: int = 500) -> list[UniversalTransfer]:
        """GET /sapi/v1/sub-account/universalTransfer (7 days at most; without emails:
        transfers *from the master*)."""
        if from_email and to_email:
            raise ValueError("Binance takes from_email or to_email, not both")
        params = {"fromEmail": from_email, "toEmail": to_email, "clientTranId": client_tran_id,
                  "startTime": start_time, "endTime": end_time, "page": page, "limit": limit}
        data = self._request("GET", "/sapi/v1/sub-account/universalTransfer", params, signed=True)
        return [UniversalTransfer.from_json(r) for r in data.get("result", [])]

    def get_universal_transfer(self, client_tran_id: str, *, from_email: str | None = None,
                               to_email: str | None = None) -> UniversalTransfer | None:
        """The transfer with our client_tran_id in the last 7 days, or None.

        Give the same from_email as the transfer (a sweep's sub-account): Binance lists
        transfers by sender, and by default from the master."""
        rows = self.universal_transfers(from_email=from_email, to_email=None if from_email else to_email,
                                        client_tran_id=client_tran_id)
        return next((r for r in rows if r.client_tran_id == client_tran_id), None)

    def withdraw(self, coin: str, network: str, address: str, amount: Decimal, withdraw_order_id: str,
                 address_tag: str | None = None) -> str:
        """POST /sapi/v1/capital/withdraw/apply → Binance's withdrawal id.

        `withdraw_order_id` is ours (the withdrawal row id). If Binance refuses the
        request but a withdrawal with that id exists (a repeat), its id is returned.
        Timeout, connection drop or 5xx: `BinanceOutcomeUnknown` (`outcome_unknown`):
        look it up with `get_withdrawal(withdraw_order_id)`, never resend blindly."""
        _require_decimal("amount", amount)
        if not amount.is_finite() or amount <= 0:
            raise ValueError("amount must be positive")
        if not withdraw_order_id or not WITHDRAW_ORDER_ID_RE.fullmatch(withdraw_order_id):
            raise ValueError("withdraw_order_id must match ^[A-Za-z0-9_-]{1,36}$")
        params = {"coin": coin, "network": network, "address": address, "addressTag": address_tag or None,
                  "amount": format_decimal(amount), "withdrawOrderId": withdraw_order_id}
        try:
            data = self._request("POST", "/sapi/v1/capital/withdraw/apply", params,
                                 signed=True, side_effect=True)
        except BinanceRejected as exc:
            if isinstance(exc, BinanceAuthError):
                raise
            existing = self.get_withdrawal(withdraw_order_id, coin=coin)
            if existing is not None:
                return existing.id
            raise
        return str(data["id"])

    def withdraw_history(self, coin: str | None = None, withdraw_order_id: str | None = None,
                         status: int | None = None, start_time: int | None = None,
                         end_time: int | None = None, offset: int | None = None,
                         limit: int | None = None, ids: Iterable[str] | None = None) -> list[Withdrawal]:
        """GET /sapi/v1/capital/withdraw/history (90 days; 7 with withdraw_order_id)."""
        params = {"coin": coin, "withdrawOrderId": withdraw_order_id, "status": status,
                  "startTime": start_time, "endTime": end_time, "offset": offset, "limit": limit,
                  "idList": ",".join(ids) if ids else None}
        rows = self._request("GET", "/sapi/v1/capital/withdraw/history", params, signed=True)
        return [Withdrawal.from_json(r) for r in rows]

    def get_withdrawal(self, withdraw_order_id: str, coin: str | None = None) -> Withdrawal | None:
        """Our withdrawal by its withdrawOrderId (last 7 days), or None if Binance has none."""
        rows = [w for w in self.withdraw_history(coin=coin, withdraw_order_id=withdraw_order_id)
                if w.withdraw_order_id == withdraw_order_id]
        return rows[0] if rows else None

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
    "BinanceRateLimited", "BinanceRejected", "BinanceUnavailable", "CLIENT_ORDER_ID_RE", "Fill",
    "LotSize", "NotionalFilter", "Order", "PriceFilter", "PRODUCTION_URL", "SymbolInfo", "TESTNET_URL",
    "format_decimal", "round_to_step", "sign",
    "CoinConfig", "DepositAddress", "NetworkConfig", "SubDeposit", "UniversalTransfer", "Withdrawal",
    "DEPOSIT_PENDING", "DEPOSIT_SUCCESS", "DEPOSIT_CREDITED_CANNOT_WITHDRAW", "DEPOSIT_WRONG",
    "DEPOSIT_WAITING_USER_CONFIRM", "WITHDRAW_EMAIL_SENT", "WITHDRAW_CANCELLED", "WITHDRAW_AWAITING_APPROVAL",
    "WITHDRAW_REJECTED", "WITHDRAW_PROCESSING", "WITHDRAW_FAILURE", "WITHDRAW_COMPLETED",
    "DEPOSIT_STATUS_TEXTS", "WITHDRAW_STATUS_TEXTS", "deposit_status_text", "withdraw_status_text",
]
