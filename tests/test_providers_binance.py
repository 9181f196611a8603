"""Binance client against the Binance emulator over real HTTP (no database).

The emulator runs on a free port in a daemon thread for the whole module and is reset
before each test. Prices are frozen where a test needs exact numbers.
"""
from __future__ import annotations

import threading
import time
import urllib.parse
from decimal import Decimal

import pytest
import requests

from webapp.providers.binance import (
    BinanceAuthError, BinanceClient, BinanceOutcomeUnknown, BinanceRateLimited, BinanceRejected,
    BinanceUnavailable, SymbolInfo, round_to_step, sign,
)
from sandbox.binance import BackgroundServer, SymbolSpec, create_app

KEY, SECRET = "test-key", "test-secret"
D = Decimal


@pytest.fixture(scope="module")
def sandbox():
    server = BackgroundServer(create_app({"api_key": KEY, "secret_key": SECRET, "seed": 7}))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(sandbox):
    control(sandbox, "reset")


@pytest.fixture
def client(sandbox):
    return BinanceClient(KEY, SECRET, base_url=sandbox.url, timeout=2)


def control(sandbox, name, **body):
    resp = requests.post(f"{sandbox.url}/_sandbox/{name}", json=body, timeout=2)
    assert resp.status_code == 200, resp.text
    return resp.json()


def freeze(sandbox, symbol, price):
    control(sandbox, "price", symbol=symbol, price=price)


def requests_to(sandbox, path):
    return requests.get(f"{sandbox.url}/_sandbox/stats", timeout=2).json()["requests"].get(path, 0)


# ---------------------------------------------------------------- signing

def test_documented_signature_vector():
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    payload = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
               "&recvWindow=5000&timestamp=1499827319559")
    assert sign(secret, payload) == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def _signed_get(sandbox, params, key=KEY, secret=SECRET):
    qs = urllib.parse.urlencode(params)
    return requests.get(f"{sandbox.url}/api/v3/order?{qs}&signature={sign(secret, qs)}",
                        headers={"X-MBX-APIKEY": key}, timeout=2)


def test_emulator_checks_signature_key_and_timestamp(sandbox, client):
    now = int(time.time() * 1000)
    ok = {"symbol": "BTCBRL", "origClientOrderId": "nope", "recvWindow": 5000, "timestamp": now}
    assert _signed_get(sandbox, ok).json() == {"code": -2013, "msg": "Order does not exist."}

    bad_sig = _signed_get(sandbox, ok, secret="wrong")
    assert (bad_sig.status_code, bad_sig.json()["code"]) == (400, -1022)
    unknown_key = _signed_get(sandbox, ok, key="who")
    assert (unknown_key.status_code, unknown_key.json()["code"]) == (401, -2015)
    old = _signed_get(sandbox, {**ok, "timestamp": now - 6000})
    assert old.json() == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    ahead = _signed_get(sandbox, {**ok, "timestamp": now + 5000})
    assert ahead.json()["code"] == -1021
    too_wide = _signed_get(sandbox, {**ok, "recvWindow": 60001})
    assert too_wide.json()["code"] == -1131

    # Payload is query string + body: split the parameters across both and it still verifies.
    qs = "symbol=BTCBRL&side=BUY&type=MARKET"
    body = f"quoteOrderQty=50&newClientOrderId=split_1&recvWindow=5000&timestamp={int(time.time() * 1000)}"
    resp = requests.post(f"{sandbox.url}/api/v3/order?{qs}", data=f"{body}&signature={sign(SECRET, qs + body)}",
                         headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"},
                         timeout=2)
    assert resp.status_code == 200 and resp.json()["status"] == "FILLED", resp.text
    assert resp.json()["fills"] and resp.headers["X-MBX-ORDER-COUNT-10S"] == "1"  # FULL is the MARKET default
    ack_body = f"{body.replace('split_1', 'split_2')}&newOrderRespType=ACK"
    ack = requests.post(f"{sandbox.url}/api/v3/order?{qs}", data=f"{ack_body}&signature={sign(SECRET, qs + ack_body)}",
                        headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"},
                        timeout=2)
    assert set(ack.json()) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}

    with pytest.raises(BinanceAuthError) as exc:
        BinanceClient(KEY, "wrong", base_url=sandbox.url).get_order("BTCBRL", "x1")
    assert exc.value.rejected and exc.value.code == -1022
    with pytest.raises(BinanceAuthError) as exc:
        BinanceClient("who", SECRET, base_url=sandbox.url).get_order("BTCBRL", "x1")
    assert exc.value.code == -2015 and exc.value.http_status == 401


def test_clock_skew_is_resynced_once(sandbox, client):
    control(sandbox, "clock", offset_ms=30_000)  # server clock 30 s ahead → our timestamps are "old"
    assert client.get_order("BTCBRL", "never-placed") is None
    assert 29_000 < client.time_offset_ms < 31_000
    assert requests_to(sandbox, "/api/v3/order") == 2 and requests_to(sandbox, "/api/v3/time") == 1


# ---------------------------------------------------------------- market data

def test_ticker_prices_and_24h_are_decimals(sandbox, client):
    freeze(sandbox, "BTCBRL", "561234.4")  # rounded to tickSize 1
    prices = client.ticker_prices(["BTCBRL", "ETHBRL", "USDTBRL"])
    assert set(prices) == {"BTCBRL", "ETHBRL", "USDTBRL"}
    assert prices["BTCBRL"] == D("561234") and all(isinstance(p, Decimal) for p in prices.values())
    assert D("15000") < prices["ETHBRL"] < D("25000") and D("5") < prices["USDTBRL"] < D("6")
    assert client.ticker_prices("BTCBRL") == {"BTCBRL": D("561234")}

    rows = client.ticker_24h(["BTCBRL", "USDTBRL"])
    assert [r["symbol"] for r in rows] == ["BTCBRL", "USDTBRL"]
    btc = rows[0]
    for name in ("priceChange", "priceChangePercent", "weightedAvgPrice", "lastPrice", "bidPrice", "askPrice",
                 "openPrice", "highPrice", "lowPrice", "volume", "quoteVolume"):
        assert isinstance(btc[name], Decimal), name
    assert btc["lastPrice"] == D("561234") and btc["lowPrice"] <= btc["lastPrice"] <= btc["highPrice"]
    assert btc["priceChange"] == btc["lastPrice"] - btc["openPrice"]
    assert btc["bidPrice"] < btc["askPrice"] and isinstance(btc["count"], int)

    with pytest.raises(BinanceRejected) as exc:
        client.ticker_prices("DOGEXYZ")
    assert exc.value.code == -1121


def test_price_walk_is_deterministic_and_moves():
    a = SymbolSpec.build("BTCBRL", {"price": "560000", "tick_size": "1", "step_size": "0.00001"}, seed=3)
    b = SymbolSpec.build("BTCBRL", {"price": "560000", "tick_size": "1", "step_size": "0.00001"}, seed=3)
    t0 = 1_760_000_000
    walk = [a.walk(t) for t in range(t0, t0 + 120)]
    assert walk == [b.walk(t) for t in range(t0, t0 + 120)]
    assert len(set(walk)) > 60  # moves nearly every second
    assert all(abs(y - x) < D("600") for x, y in zip(walk, walk[1:]))  # small steps
    assert all(D("500000") < p < D("620000") and p == p.to_integral_value() for p in walk)


def test_exchange_info_filters(client):
    info = client.exchange_info(["BTCBRL", "USDTBRL"])
    assert set(info) == {"BTCBRL", "USDTBRL"}
    btc = info["BTCBRL"]
    assert isinstance(btc, SymbolInfo) and btc.status == "TRADING"
    assert (btc.base_asset, btc.quote_asset) == ("BTC", "BRL")
    assert btc.price_filter.tick_size == D("1")
    assert btc.lot_size.step_size == D("0.00001") and btc.lot_size.min_qty == D("0.00001")
    assert btc.market_lot_size.max_qty == D("20") and btc.market_step_size == D("0.00001")
    assert btc.notional.filter_type == "NOTIONAL" and btc.min_notional == D("10")
    assert btc.notional.apply_min_to_market and btc.quote_order_qty_market_allowed
    assert client.rate_limits[0] == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                     "intervalNum": 1, "limit": 6000}
    assert set(client.exchange_info()) >= {"BTCBRL", "ETHBRL", "USDTBRL"}


def test_old_min_notional_filter_is_understood():
    raw = {"symbol": "LTCBRL", "status": "TRADING", "baseAsset": "LTC", "quoteAsset": "BRL", "filters": [
        {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True, "avgPriceMins": 5}]}
    info = SymbolInfo.from_json(raw)
    assert info.notional.filter_type == "MIN_NOTIONAL" and info.min_notional == D("10")
    assert info.notional.apply_min_to_market and info.lot_size is None and info.market_step_size == 0


# ---------------------------------------------------------------- orders

def test_market_buy_by_quote_amount(sandbox, client):
    freeze(sandbox, "BTCBRL", "560000")
    order = client.place_market_order("BTCBRL", "BUY", "dep_01J9ZQ7B8K3_buy", quote_order_qty=D("150"))
    assert order.status == "FILLED" and order.client_order_id == "dep_01J9ZQ7B8K3_buy"
    assert order.executed_qty == D("0.00026")  # 150 / 560000 rounded down to the 0.00001 step
    assert order.cummulative_quote_qty == D("145.6")
    assert order.orig_quote_order_qty == D("150")
    (fill,) = order.fills
    assert (fill.price, fill.qty, fill.commission, fill.commission_asset) == \
           (D("560000"), D("0.00026"), D("0.00000026"), "BTC")
    assert all(isinstance(v, Decimal) for v in (order.executed_qty, fill.price, fill.commission))


def test_market_sell_by_quantity_with_two_fills(sandbox, client):
    freeze(sandbox, "BTCBRL", "560000")
    step = client.exchange_info("BTCBRL")["BTCBRL"].market_step_size
    qty = round_to_step(D("0.0123456"), step)
    assert qty == D("0.01234")
    control(sandbox, "next_order", mode="fill", fills=2)
    order = client.place_market_order("BTCBRL", "SELL", "wd_42_sell", quantity=qty)
    assert order.status == "FILLED" and order.executed_qty == qty and len(order.fills) == 2
    assert sum(f.qty for f in order.fills) == qty
    assert [f.price for f in order.fills] == [D("560000"), D("559999")]  # second fill one tick worse
    assert order.cummulative_quote_qty == sum(f.price * f.qty for f in order.fills)
    assert all(f.commission_asset == "BRL" for f in order.fills)
    assert [f.commission for f in order.fills] == [(f.price * f.qty * D("0.001")).quantize(D("1e-8"))
                                                   for f in order.fills]


def test_filter_and_precision_failures_are_rejected(sandbox, client):
    freeze(sandbox, "BTCBRL", "560000")
    cases = [
        ({"quote_order_qty": D("5")}, -1013, "Filter failure: NOTIONAL"),
        ({"quantity": D("0.000015")}, -1013, "Filter failure: LOT_SIZE"),
        ({"quantity": D("21")}, -1013, "Filter failure: MARKET_LOT_SIZE"),
        ({"quantity": D("0.000000001")}, -1111, "Parameter 'quantity' has too much precision."),
    ]
    for kwargs, code, msg in cases:
        with pytest.raises(BinanceRejected) as exc:
            client.place_market_order("BTCBRL", "BUY", "f_1", **kwargs)
        assert (exc.value.code, exc.value.msg, exc.value.http_status) == (code, msg, 400)
        assert exc.value.rejected and not exc.value.outcome_unknown
    assert client.get_order("BTCBRL", "f_1") is None  # nothing was created


def test_insufficient_balance_rejection_is_readable(sandbox, client):
    control(sandbox, "next_order", mode="reject")
    with pytest.raises(BinanceRejected) as exc:
        client.place_market_order("ETHBRL", "BUY", "r_1", quote_order_qty=D("100"))
    assert exc.value.code == -2010
    assert exc.value.msg == "Account has insufficient balance for requested action."


def test_client_validates_arguments(client):
    with pytest.raises(TypeError):
        client.place_market_order("BTCBRL", "BUY", "ok_1", quote_order_qty=150.0)
    with pytest.raises(ValueError):
        client.place_market_order("BTCBRL", "BUY", "has space", quote_order_qty=D("150"))
    with pytest.raises(ValueError):
        client.place_market_order("BTCBRL", "BUY", "x" * 37, quote_order_qty=D("150"))
    with pytest.raises(ValueError):
        client.place_market_order("BTCBRL", "BUY", "ok_1", quote_order_qty=D("150"), quantity=D("1"))


def test_duplicate_only_while_open_then_id_reuse_creates_a_second_order(sandbox, client):
    control(sandbox, "next_order", mode="delay", delay_seconds=0.6)
    first: dict = {}
    t = threading.Thread(target=lambda: first.setdefault(
        "order", client.place_market_order("BTCBRL", "BUY", "dup_1", quote_order_qty=D("100"))))
    t.start()
    deadline = time.monotonic() + 2
    while client.get_order("BTCBRL", "dup_1") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.get_order("BTCBRL", "dup_1").status == "NEW"
    with pytest.raises(BinanceRejected) as exc:
        client.place_market_order("BTCBRL", "BUY", "dup_1", quote_order_qty=D("100"))
    assert (exc.value.code, exc.value.msg) == (-2010, "Duplicate order sent.")
    t.join(3)
    assert first["order"].status == "FILLED"
    # As on the real Binance: after the fill the id is free again, so a blind resend doubles.
    second = client.place_market_order("BTCBRL", "BUY", "dup_1", quote_order_qty=D("100"))
    assert second.order_id != first["order"].order_id
    assert client.get_order("BTCBRL", "dup_1").order_id == second.order_id  # the latest one


def test_timeout_is_outcome_unknown_and_order_is_found(sandbox):
    quick = BinanceClient(KEY, SECRET, base_url=sandbox.url, timeout=0.3)
    control(sandbox, "next_order", mode="timeout", delay_seconds=1)
    with pytest.raises(BinanceOutcomeUnknown) as exc:
        quick.place_market_order("USDTBRL", "BUY", "t_1", quote_order_qty=D("540"))
    assert exc.value.outcome_unknown and not exc.value.rejected and exc.value.code is None
    found = quick.get_order("USDTBRL", "t_1")
    assert found is not None and found.status == "FILLED" and found.executed_qty > 0


def test_error500_is_outcome_unknown_and_order_is_found_with_fills(sandbox, client):
    freeze(sandbox, "ETHBRL", "20000")
    control(sandbox, "next_order", mode="error500")
    with pytest.raises(BinanceOutcomeUnknown) as exc:
        client.place_market_order("ETHBRL", "BUY", "e_1", quote_order_qty=D("100"))
    assert (exc.value.code, exc.value.http_status) == (-1007, 500)
    found = client.get_order("ETHBRL", "e_1", with_fills=True)
    assert found.status == "FILLED" and found.executed_qty == D("0.005")
    assert found.cummulative_quote_qty == D("100") and found.fills[0].commission == D("0.000005")
    assert client.get_order("ETHBRL", order_id=found.order_id).client_order_id == "e_1"


def test_unknown_order_is_none(client):
    assert client.get_order("BTCBRL", "never_sent") is None
    assert client.get_order("BTCBRL", order_id=999_999) is None


def test_network_failure_on_order_is_outcome_unknown():
    dead = BinanceClient(KEY, SECRET, base_url="http://127.0.0.1:9", timeout=0.5)  # nothing listens
    with pytest.raises(BinanceOutcomeUnknown):
        dead.place_market_order("BTCBRL", "BUY", "n_1", quote_order_qty=D("50"))
    with pytest.raises(BinanceUnavailable) as exc:
        dead.ticker_prices("BTCBRL")
    assert exc.value.retryable and not exc.value.outcome_unknown


# ---------------------------------------------------------------- weight and rate limits

def test_used_weight_is_tracked(client):
    assert client.used_weight is None
    client.ticker_prices("BTCBRL")
    assert client.used_weight == 2
    client.exchange_info()
    assert client.used_weight in (22, 20)  # 20 if a clock minute rolled over in between


def test_market_data_500_is_unavailable(sandbox, client):
    control(sandbox, "fail_market_data", count=1, status=500)
    with pytest.raises(BinanceUnavailable) as exc:
        client.ticker_prices("BTCBRL")
    assert exc.value.http_status == 500 and exc.value.retryable
    assert client.ticker_prices("BTCBRL")["BTCBRL"] > 0


def test_429_backs_off_locally_until_retry_after(sandbox, client):
    control(sandbox, "fail_market_data", count=1, status=429, retry_after=1)
    with pytest.raises(BinanceRateLimited) as exc:
        client.ticker_prices("BTCBRL")
    assert (exc.value.http_status, exc.value.retry_after, exc.value.code) == (429, 1, -1003)
    sent = requests_to(sandbox, "/api/v3/ticker/price")
    with pytest.raises(BinanceRateLimited) as exc:
        client.ticker_prices("BTCBRL")
    assert exc.value.http_status is None and exc.value.retry_after == 1
    assert requests_to(sandbox, "/api/v3/ticker/price") == sent  # refused without calling
    time.sleep(1.05)
    assert "BTCBRL" in client.ticker_prices("BTCBRL")
    assert requests_to(sandbox, "/api/v3/ticker/price") == sent + 1


def test_weight_limit_gives_429_then_418(sandbox, client):
    control(sandbox, "weight_limit", limit=10)
    with pytest.raises(BinanceRateLimited) as exc:
        client.exchange_info()  # weight 20 > 10
    assert exc.value.http_status == 429 and 1 <= exc.value.retry_after <= 60
    # Keep calling: 5 refusals in the window are tolerated (ban_after), then an escalating 418 ban.
    statuses = [requests.get(f"{sandbox.url}/api/v3/exchangeInfo", timeout=2) for _ in range(6)]
    assert [r.status_code for r in statuses] == [429] * 4 + [418] * 2
    assert statuses[4].json()["code"] == -1003 and int(statuses[4].headers["Retry-After"]) == 120
    assert requests.get(f"{sandbox.url}/api/v3/ping", timeout=2).status_code == 418  # the IP is banned
    assert all("X-MBX-USED-WEIGHT-1M" in r.headers for r in statuses)


def test_status_texts_live_in_the_client():
    from webapp.providers.binance import (DEPOSIT_CREDITED_CANNOT_WITHDRAW, WITHDRAW_COMPLETED, deposit_status_text,
                                          withdraw_status_text)
    assert deposit_status_text(DEPOSIT_CREDITED_CANNOT_WITHDRAW) == "creditado, ainda bloqueado"
    assert deposit_status_text("7") == "depósito errado" and deposit_status_text(99) == "99"
    assert withdraw_status_text(WITHDRAW_COMPLETED) == "concluído" and withdraw_status_text(None) == ""
