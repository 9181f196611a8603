"""The market desk's worker jobs against the Binance emulator over real HTTP:
prices into core.prices, exchangeInfo filters, 24 h stats, errors, 429 and weight back-off."""
from __future__ import annotations

import logging
import time

import pytest
import requests

from webapp import jobs
from webapp.market import tasks
from sandbox.binance import BackgroundServer, create_app as create_sandbox

KEY, SECRET = "poller-key", "poller-secret"


@pytest.fixture(scope="module")
def sandbox():
    server = BackgroundServer(create_sandbox({"api_key": KEY, "secret_key": SECRET, "seed": 5}))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(sandbox):
    control(sandbox, "reset")


@pytest.fixture
def app(db_url, sandbox):
    from webapp import create_app
    from webapp.config import role_url
    app = create_app({
        "TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": db_url,
        "APP_DATABASE_URL": role_url(db_url, "exchange_app"), "AUDIT_DATABASE_URL": role_url(db_url, "exchange_auditor"),
        "WORKER_DATABASE_URL": role_url(db_url, "exchange_worker"),
        "DB_POOL_MAX": 4, "BINANCE_API_KEY": KEY, "BINANCE_SECRET_KEY": SECRET, "BINANCE_BASE_URL": sandbox.url,
        "BINANCE_TIMEOUT": 2,
    })
    yield app
    from webapp import db
    db.close_pools(app)


def control(sandbox, name, **body):
    resp = requests.post(f"{sandbox.url}/_sandbox/{name}", json=body, timeout=2)
    assert resp.status_code == 200, resp.text
    return resp.json()


def requests_to(sandbox, path):
    return requests.get(f"{sandbox.url}/_sandbox/stats", timeout=2).json()["requests"].get(path, 0)


def price_rows(owner, symbol=None):
    return owner.execute("select * from core.prices where %s::text is null or symbol = %s order by id",
                         (symbol, symbol)).fetchall()


def test_market_jobs_are_collected():
    names = {f.__name__ for f, _ in jobs.collect_jobs()}
    assert {"poll_prices", "refresh_filters", "reconcile_orders", "prune_prices"} <= names
    assert dict((f.__name__, s) for f, s in tasks.JOBS)["poll_prices"] <= 5


def test_poller_loads_filters_then_writes_prices_and_24h_stats(app, owner, sandbox):
    control(sandbox, "price", symbol="BTCBRL", price="561000")
    assert tasks.poll_prices(app) == 3  # first run learns what is TRADING from exchangeInfo
    pairs = {r["symbol"]: r for r in owner.execute("select * from core.market_pairs")}
    assert all(p["status"] == "TRADING" for p in pairs.values())
    assert set(pairs["BTCBRL"]["filters"]) >= {"LOT_SIZE", "MARKET_LOT_SIZE", "PRICE_FILTER", "NOTIONAL"}
    assert pairs["ETHBRL"]["filters"]["LOT_SIZE"]["stepSize"] == "0.00010000"
    assert [r["price"] for r in price_rows(owner, "BTCBRL")] == [561000]
    stats = owner.execute("select * from core.market_stats order by symbol").fetchall()
    assert [s["symbol"] for s in stats] == ["BTCBRL", "ETHBRL", "USDTBRL"] and all(s["open_price"] > 0 for s in stats)

    assert tasks.poll_prices(app) == 3  # history is kept
    assert len(price_rows(owner)) == 6
    assert requests_to(sandbox, "/api/v3/ticker/24hr") == 1  # the 24 h ticker only about once a minute
    overview = {r["symbol"]: r for r in owner.execute("select * from api.market_overview()")}
    assert overview["BTCBRL"]["tradable"] and overview["BTCBRL"]["change_percent"] is not None


def test_poller_survives_server_errors(app, owner, sandbox, caplog):
    assert tasks.refresh_filters(app) == 3
    control(sandbox, "fail_market_data", count=1, status=500)
    with caplog.at_level(logging.WARNING, logger="bs-market.market.poller"):
        assert tasks.poll_prices(app) is None
    assert "Internal error" in caplog.text and price_rows(owner) == []
    assert tasks.poll_prices(app) == 3  # and keeps going


def test_poller_backs_off_on_429_with_retry_after(app, owner, sandbox, caplog):
    tasks.refresh_filters(app)
    control(sandbox, "fail_market_data", count=1, status=429, retry_after=1)
    with caplog.at_level(logging.INFO, logger="bs-market.market.poller"):
        assert tasks.poll_prices(app) is None
    assert "rate limited" in caplog.text
    sent = requests_to(sandbox, "/api/v3/ticker/price")
    assert tasks.poll_prices(app) is None  # skipped quietly, nothing sent during Retry-After
    assert requests_to(sandbox, "/api/v3/ticker/price") == sent
    time.sleep(1.1)
    assert tasks.poll_prices(app) == 3
    assert len(price_rows(owner)) == 3


def test_poller_pauses_when_the_weight_nears_the_limit(app, owner, sandbox, caplog):
    control(sandbox, "weight_limit", limit=40)
    tasks.refresh_filters(app)  # weight 20; exchangeInfo tells the client the limit is 40
    poller = tasks.poller_for(app)
    assert poller.weight_limit() == 40
    polled = 0
    with caplog.at_level(logging.WARNING, logger="bs-market.market.poller"):
        for _ in range(5):
            if tasks.poll_prices(app):
                polled += 1
    assert 1 <= polled <= 3  # stops before Binance would answer 429
    assert "used weight" in caplog.text and poller.paused_until > time.monotonic()
    assert sandbox.state.ip_weights["127.0.0.1"].over == 0  # never refused by Binance


def test_halted_pair_is_not_polled_nor_traded(app, owner, sandbox):
    control(sandbox, "symbol_status", symbol="ETHBRL", status="BREAK")
    tasks.refresh_filters(app)
    assert tasks.poll_prices(app) == 2
    assert price_rows(owner, "ETHBRL") == []
    eth = owner.execute("select * from api.market_overview() where symbol = 'ETHBRL'").fetchone()
    assert not eth["tradable"] and "BREAK" in eth["reason"]


def test_prune_keeps_recent_history_and_the_latest_price(app, owner):
    owner.execute("select admin.record_prices('{\"BTCBRL\": \"500000\"}', now() - interval '40 days')")
    owner.execute("select admin.record_prices('{\"BTCBRL\": \"510000\"}', now() - interval '35 days')")
    owner.execute("select admin.record_prices('{\"ETHBRL\": \"19000\"}', now() - interval '40 days')")
    owner.execute("select admin.record_prices('{\"BTCBRL\": \"560000\"}', now())")
    assert tasks.prune_prices(app) == 2  # the two old BTC prices; ETH's only price stays
    assert [r["price"] for r in price_rows(owner)] == [19000, 560000]
