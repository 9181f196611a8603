"""Worker jobs of the market desk (collected by webapp/jobs.py; only the leader runs them).

- poll_prices (every 3 s): Binance ticker prices of the pairs Binance reports
  TRADING → admin.record_prices; about once a minute the 24 h ticker too →
  admin.record_market_stats. Respects the weight header (pauses until the next
  minute when X-MBX-USED-WEIGHT-1M nears the limit), skips quietly while the
  client is backing off after a 429/418 (Retry-After), and survives errors.
- refresh_filters (every 10 min): exchangeInfo status and filters
  (LOT_SIZE, MARKET_LOT_SIZE, PRICE_FILTER, NOTIONAL) → admin.record_market_filters.
- place_orders (every second): orders customers confirmed are sent to Binance once and settled.
- reconcile_orders (every 5 s): orders stuck EXECUTING are looked up and settled or failed.
- prune_prices (hourly): price history older than price_history_days.
"""
from __future__ import annotations

import logging
import threading
import time

from psycopg.types.json import Jsonb

from .. import db
from ..errors import DomainError
from ..providers.binance import BinanceError, BinanceRejected
from . import service

log = logging.getLogger("bs-market.market.poller")

DEFAULT_WEIGHT_LIMIT = 6000


class PricePoller:
    """State kept between runs of the price job (one per process)."""

    def __init__(self, app, stats_every: float = 60, weight_fraction: float = 0.8):
        self.app = app
        self.stats_every = stats_every
        self.weight_fraction = weight_fraction
        self.paused_until = 0.0  # time.monotonic()
        self.last_stats = 0.0
        self.lock = threading.Lock()

    @property
    def client(self):
        return service.binance_client(self.app)

    def weight_limit(self) -> int:
        for limit in self.client.rate_limits:
            if limit.get("rateLimitType") == "REQUEST_WEIGHT" and limit.get("interval") == "MINUTE" \
                    and int(limit.get("intervalNum", 1)) == 1:
                return int(limit["limit"])
        return DEFAULT_WEIGHT_LIMIT

    def pause(self, seconds: float, why: str) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)
        log.warning("price poller paused for %.0f s: %s", seconds, why)

    def trading_symbols(self) -> list[str]:
        pairs = [p for p in db.worker_call(self.app, "admin.list_market_pairs") if p["enabled"]]
        if pairs and all(p["filters_updated_at"] is None for p in pairs):
            refresh_filters(self.app)  # first run: learn from exchangeInfo what is TRADING
            pairs = [p for p in db.worker_call(self.app, "admin.list_market_pairs") if p["enabled"]]
        return [p["symbol"] for p in pairs if p["status"] == "TRADING"]

    def run(self) -> int | None:
        """One poll. Returns how many prices were stored, or None when skipped or failed."""
        with self.lock:
            remaining = self.paused_until - time.monotonic()
            if remaining > 0:
                log.debug("price poller: paused %.1f s more", remaining)
                return None
            used = self.client.used_weight
            limit = self.weight_limit()
            if used is not None and used >= limit * self.weight_fraction:
                # Binance counts weight per clock minute: wait for the next one.
                self.pause(60 - time.time() % 60 + 1, f"used weight {used} of {limit}")
                return None
            try:
                symbols = self.trading_symbols()
                if not symbols:
                    log.info("price poller: no pair is TRADING")
                    return 0
                prices = Jsonb({s: format(p, "f") for s, p in self.client.ticker_prices(symbols).items()})
                stored = db.worker_call(self.app, "admin.record_prices", prices=prices)[0]["record_prices"]
                if time.monotonic() - self.last_stats >= self.stats_every:
                    self.record_stats(symbols)
                return stored
            except BinanceError as exc:
                if exc.rate_limited:
                    # The client refuses calls until Retry-After has passed: skip quietly.
                    self.paused_until = max(self.paused_until, time.monotonic() + (exc.retry_after or 1))
                    log.info("price poller: rate limited by Binance, retry in %s s", exc.retry_after)
                else:
                    log.warning("price poller: %s", exc)
                return None
            except DomainError as exc:
                log.warning("price poller: database refused the prices: %s", exc.message)
                return None

    def record_stats(self, symbols: list[str]) -> None:
        rows = self.client.ticker_24h(symbols)
        stats = {r["symbol"]: {k: format(r[k], "f") for k in ("openPrice", "highPrice", "lowPrice", "volume",
                                                             "quoteVolume") if k in r}
                 for r in rows}
        db.worker_call(self.app, "admin.record_market_stats", stats=Jsonb(stats))
        self.last_stats = time.monotonic()


def poller_for(app) -> PricePoller:
    poller = app.extensions.get("market_poller")
    if poller is None:
        poller = app.extensions["market_poller"] = PricePoller(app)
    return poller


def poll_prices(app):
    return poller_for(app).run()


def refresh_filters(app) -> int | None:
    """exchangeInfo of our pairs → core.market_pairs (status and filters)."""
    client = service.binance_client(app)
    symbols = [p["symbol"] for p in db.worker_call(app, "admin.list_market_pairs") if p["enabled"]]
    if not symbols:
        return 0
    try:
        try:
            infos = client.exchange_info(symbols)
        except BinanceRejected as exc:
            if exc.code != -1121:
                raise
            # One of our symbols is unknown to Binance: ask one by one.
            infos = {}
            for symbol in symbols:
                try:
                    infos.update(client.exchange_info(symbol))
                except BinanceRejected as inner:
                    if inner.code != -1121:
                        raise
    except BinanceError as exc:
        log.warning("exchangeInfo refresh failed: %s", exc)
        return None
    payload = {s: {"status": i.status, "baseAsset": i.base_asset, "quoteAsset": i.quote_asset,
                   "filters": {name: {k: (format(v, "f") if hasattr(v, "as_tuple") else v) for k, v in f.items()}
                               for name, f in i.filters.items()}}
               for s, i in infos.items() if s in symbols}
    payload["_complete"] = True  # pairs Binance did not return become NOT_LISTED
    return db.worker_call(app, "admin.record_market_filters", symbols=Jsonb(payload))[0]["record_market_filters"]


def reconcile_orders(app):
    return service.reconcile(app)


def prune_prices(app):
    return db.worker_call(app, "admin.prune_prices")[0]["prune_prices"]


def place_orders(app):
    return service.place_confirmed(app)


JOBS = [(poll_prices, 3), (refresh_filters, 600), (place_orders, 1), (reconcile_orders, 5), (prune_prices, 3600)]
