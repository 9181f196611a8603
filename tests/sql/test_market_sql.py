"""Market desk SQL (sql/market.sql) straight from psql's point of view: quotes, execution,
settlement from fills with exact ledger movements, failures, limits, stale prices."""
from __future__ import annotations

import json
from decimal import Decimal as D

import psycopg
import pytest

from tests.conftest import books
from sandbox.binance import DEFAULT_SYMBOLS, SymbolSpec, _symbol_json


def binance_filters(status: str = "TRADING") -> dict:
    """exchangeInfo of our pairs as the emulator (and Binance) describe them, keyed like the poller sends them."""
    out = {}
    for symbol, spec in DEFAULT_SYMBOLS.items():
        info = _symbol_json(SymbolSpec.build(symbol, spec, 0))
        out[symbol] = {"status": status, "baseAsset": info["baseAsset"], "quoteAsset": info["quoteAsset"],
                       "filters": {f["filterType"]: f for f in info["filters"]}}
    return out


def setup_market(owner, prices: dict | None = None, age_seconds: int = 0):
    owner.execute("select admin.record_market_filters(%s)", (json.dumps(binance_filters()),))
    set_prices(owner, prices or {"BTCBRL": "560000", "ETHBRL": "20000.01", "USDTBRL": "5.401"}, age_seconds)


def set_prices(owner, prices: dict, age_seconds: int = 0):
    owner.execute("select admin.record_prices(%s, now() - make_interval(secs => %s))",
                  (json.dumps(prices), age_seconds))


def one(owner, query: str, *args):
    return owner.execute(query, args).fetchone()


def fails(owner, code: str, query: str, *args) -> str:
    with pytest.raises(psycopg.Error) as exc:
        owner.execute(query, args)
    assert exc.value.sqlstate == code, exc.value
    return exc.value.diag.message_primary


def balances(owner, user_id: int) -> dict:
    return {r["currency"]: (r["available"], r["locked"])
            for r in owner.execute("select * from api.get_wallet(%s)", (user_id,))}


def system(owner, purpose: str, currency: str) -> D:
    return one(owner, "select coalesce(sum(balance), 0) as b from core.accounts where user_id is null "
                      "and purpose = %s and currency = %s", purpose, currency)["b"]


def quote(owner, user_id, side, crypto, amount):
    return one(owner, "select * from api.create_quote(%s, %s, %s, %s)", user_id, side, crypto, D(amount))["quote_id"]


def execute(owner, user_id, quote_id, key="k1"):
    return one(owner, "select * from api.execute_quote(%s, %s, %s)", user_id, quote_id, key)


def settle(owner, order_id, binance_id, executed, cumm, fills):
    return one(owner, "select * from admin.settle_market_order(%s, %s, %s, %s, %s)",
               order_id, binance_id, D(executed), D(cumm), json.dumps(fills))


def fill(price, qty, commission, asset, trade_id=1):
    return {"price": price, "qty": qty, "commission": commission, "commissionAsset": asset, "tradeId": trade_id}


def test_prices_filters_stats_and_overview(owner):
    assert one(owner, "select admin.record_market_filters(%s) as n", json.dumps(binance_filters()))["n"] == 3
    pair = one(owner, "select * from core.market_pairs where symbol = 'BTCBRL'")
    assert pair["status"] == "TRADING" and pair["filters"]["LOT_SIZE"]["stepSize"] == "0.00001000"
    stored = one(owner, "select admin.record_prices(%s) as n",
                 json.dumps({"BTCBRL": "560000.00", "ETHBRL": "20000", "DOGEBRL": "1.2"}))["n"]
    assert stored == 2  # unknown symbols are ignored
    set_prices(owner, {"BTCBRL": "570000"})  # history is kept: the latest wins
    assert one(owner, "select count(*) as n from core.prices where symbol = 'BTCBRL'")["n"] == 2
    fails(owner, "BSV01", "select admin.record_prices(%s)", json.dumps({"BTCBRL": "-1"}))
    fails(owner, "BSV01", "select admin.record_prices(%s)", json.dumps({"BTCBRL": "abc"}))

    owner.execute("select admin.record_market_stats(%s)", (json.dumps(
        {"BTCBRL": {"openPrice": "550000", "highPrice": "575000", "lowPrice": "548000", "volume": "10",
                    "quoteVolume": "5600000"}}),))
    rows = {r["symbol"]: r for r in owner.execute("select * from api.market_overview()")}
    btc = rows["BTCBRL"]
    assert btc["price"] == D("570000") and btc["tradable"] and btc["reason"] is None
    assert btc["change_percent"] == D("3.64")  # (570000 − 550000) / 550000
    assert rows["ETHBRL"]["change_percent"] is None and rows["ETHBRL"]["tradable"]
    assert not rows["USDTBRL"]["tradable"] and rows["USDTBRL"]["reason"] == "Ainda não temos cotação."
    assert (btc["spread_percent"], btc["fee_percent"], btc["quote_ttl_seconds"]) == (D("0.5"), D("0.3"), 10)

    # Binance halts a pair: no more quotes for it
    halted = binance_filters()
    halted["BTCBRL"]["status"] = "BREAK"
    owner.execute("select admin.record_market_filters(%s)", (json.dumps(halted),))
    assert "suspensa" in one(owner, "select reason from api.market_overview() where symbol = 'BTCBRL'")["reason"]


def test_stale_price_blocks_quote_and_execute(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner, {"BTCBRL": "560000"}, age_seconds=120)  # older than price_stale_seconds (30)
    msg = fails(owner, "BSP01", "select * from api.create_quote(%s, 'buy', 'BTC', 100)", alice)
    assert "desatualizada" in msg
    row = one(owner, "select tradable, reason from api.market_overview() where symbol = 'BTCBRL'")
    assert not row["tradable"] and "Negociação pausada" in row["reason"]

    set_prices(owner, {"BTCBRL": "560000"})
    quote_id = quote(owner, alice, "buy", "BTC", "100")
    owner.execute("update core.settings set value = '0' where name = 'price_stale_seconds'")  # goes stale now
    fails(owner, "BSP01", "select * from api.execute_quote(%s, %s, 'k')", alice, quote_id)
    assert balances(owner, alice)["BRL"] == (D("10000.00"), 0)
    books(owner)


def test_buy_settles_from_fills_with_spread_and_fee(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner)
    quote_id = quote(owner, alice, "buy", "BTC", "1000.00")
    q = one(owner, "select * from api.get_quote(%s, %s)", alice, quote_id)
    # spread 0.5% and fee 0.3% of R$ 1000 come off; R$ 992 go to Binance
    assert (q["spread_amount"], q["fee_amount"], q["quote_order_qty"]) == (D("5.00"), D("3.00"), D("992.00"))
    assert q["estimated_crypto"] == D("0.00176823")  # 0.00177 (LOT_SIZE step) minus 0.1% commission
    assert q["estimated_brl"] == D("999.20")  # 0.00177 × 560000 + the same percentages of it
    assert not q["expired"] and 0 < q["seconds_left"] <= 10

    order = execute(owner, alice, quote_id)
    assert order["status"] == "EXECUTING" and order["client_order_id"] == f"bsm-{order['order_id']}"
    assert order["quote_order_qty"] == D("992.00") and not order["replayed"]
    assert balances(owner, alice)["BRL"] == (D("9000.00"), D("1000.00"))
    books(owner)

    # Binance bought 0.00177 BTC for R$ 991.20 and kept 0.00000177 BTC of commission
    result = settle(owner, order["order_id"], 28, "0.00177", "991.20",
                    [fill("560000.00", "0.00177000", "0.00000177", "BTC", 56)])
    assert (result["status"], result["replayed"]) == ("COMPLETED", False)
    # pays what Binance spent + the quoted percentages of it: 991.20 + 5.00 + 3.00
    assert (result["brl_amount"], result["spread_charged"], result["fee_charged"]) == (D("999.20"), D("5.00"), D("3.00"))
    assert result["crypto_amount"] == D("0.00176823")
    assert balances(owner, alice)["BRL"] == (D("9000.80"), 0)  # the unused R$ 0.80 released
    assert balances(owner, alice)["BTC"] == (D("0.05176823"), 0)
    assert system(owner, "binance_omnibus", "BRL") == D("991.20")
    assert system(owner, "binance_omnibus", "BTC") == D("-0.00176823")
    assert system(owner, "fees", "BRL") == D("8.00")
    entry = owner.execute("select * from reporting.journal where entry_id = %s order by leg", (result["entry_id"],)).fetchall()
    assert {e["kind"] for e in entry} == {"market_buy"} and len(entry) == 6
    hold = one(owner, "select h.* from core.holds h join core.market_orders o on o.hold_id = h.id where o.id = %s",
               order["order_id"])
    assert (hold["status"], hold["captured"], hold["resolved_entry_id"]) == ("captured", D("999.20"), result["entry_id"])
    note = one(owner, "select * from core.notifications where user_id = %s and kind = 'market.completed'", alice)
    assert "0,00176823 BTC" in note["message"] and "R$ 999,20" in note["message"]
    books(owner)

    # settling again (the reconciler racing the web request) books nothing twice
    again = settle(owner, order["order_id"], 28, "0.00177", "991.20",
                   [fill("560000.00", "0.00177000", "0.00000177", "BTC", 56)])
    assert again["replayed"] and again["entry_id"] == result["entry_id"]
    fails(owner, "BSS01", "select * from admin.settle_market_order(%s, 999, 1, 1, '[]')", order["order_id"])
    fails(owner, "BSS01", "select * from admin.fail_market_order(%s, 'x')", order["order_id"])
    books(owner)


def test_buy_with_sub_centavo_cost_rounds_for_the_house(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner)
    order = execute(owner, alice, quote(owner, alice, "buy", "ETH", "500"))
    assert order["quote_order_qty"] == D("496.00")
    # 0.0247 ETH × 20000.01 = 494.000247: the customer pays the centavo above
    result = settle(owner, order["order_id"], 77, "0.0247", "494.000247",
                    [fill("20000.01", "0.0247", "0.0000247", "ETH")])
    assert (result["brl_amount"], result["spread_charged"], result["fee_charged"]) == (D("497.99"), D("2.49"), D("1.49"))
    assert result["crypto_amount"] == D("0.0246753")
    row = one(owner, "select dust_brl, dust_crypto from reporting.market_orders where order_id = %s", order["order_id"])
    assert (row["dust_brl"], row["dust_crypto"]) == (D("0.009753"), 0)
    assert balances(owner, alice)["BRL"] == (D("9502.01"), 0)
    assert balances(owner, alice)["ETH"] == (D("1.5246753"), 0)
    assert system(owner, "binance_omnibus", "BRL") == D("494.01")
    books(owner)


def test_sell_settles_from_two_fills(owner, demo):
    bob = demo["bob@example.com"]
    setup_market(owner)
    quote_id = quote(owner, bob, "sell", "BTC", "0.0123456")
    q = one(owner, "select * from api.get_quote(%s, %s)", bob, quote_id)
    assert q["quantity"] == D("0.01234")  # rounded down to the 0.00001 market step
    assert (q["estimated_brl"], q["spread_amount"], q["fee_amount"]) == (D("6848.25"), D("34.52"), D("20.71"))
    order = execute(owner, bob, quote_id)
    assert order["quantity"] == D("0.01234")
    assert balances(owner, bob)["BTC"] == (D("0.10766"), D("0.01234"))

    result = settle(owner, order["order_id"], 91, "0.01234", "6910.39506",
                    [fill("560000", "0.00740", "4.14400000", "BRL", 1),
                     fill("559999", "0.00494", "2.76639506", "BRL", 2)])
    # Binance credited 6910.39506 − 6.91039506 = 6903.48466494 → 6903.48 (centavo below)
    assert (result["brl_amount"], result["spread_charged"], result["fee_charged"]) == (D("6848.25"), D("34.52"), D("20.71"))
    assert result["crypto_amount"] == D("0.01234")
    assert balances(owner, bob)["BRL"] == (D("11848.25"), 0)
    assert balances(owner, bob)["BTC"] == (D("0.10766"), 0)
    assert system(owner, "binance_omnibus", "BTC") == D("0.01234")
    assert system(owner, "binance_omnibus", "BRL") == D("-6903.48")
    assert system(owner, "fees", "BRL") == D("55.23")
    assert one(owner, "select dust_brl from core.market_orders where id = %s", order["order_id"])["dust_brl"] == D("0.00466494")
    books(owner)


def test_partial_sell_releases_the_rest(owner, demo):
    bob = demo["bob@example.com"]
    setup_market(owner)
    order = execute(owner, bob, quote(owner, bob, "sell", "ETH", "1"))
    result = settle(owner, order["order_id"], 5, "0.6", "12000.006",
                    [fill("20000.01", "0.6", "12.000006", "BRL")])
    assert result["crypto_amount"] == D("0.6")
    assert balances(owner, bob)["ETH"] == (D("1.65"), 0)  # 2.25 − 0.6: the unsold 0.4 came back
    books(owner)


def test_rejection_releases_the_hold_and_notifies(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner)
    order = execute(owner, alice, quote(owner, alice, "buy", "USDT", "200"))
    assert balances(owner, alice)["BRL"] == (D("9800.00"), D("200.00"))
    row = one(owner, "select * from admin.fail_market_order(%s, %s, %s)", order["order_id"],
              "A mesa está sem liquidez para esta ordem no momento.",
              "-2010: Account has insufficient balance for requested action.")
    assert (row["status"], row["replayed"]) == ("FAILED", False)
    assert balances(owner, alice)["BRL"] == (D("10000.00"), 0)
    got = one(owner, "select * from api.get_market_order(%s, %s)", alice, order["order_id"])
    assert got["status"] == "FAILED" and "liquidez" in got["failure_reason"]
    note = one(owner, "select * from core.notifications where user_id = %s and kind = 'market.failed'", alice)
    assert "não foi executada" in note["message"] and note["link"] == f"/market/orders/{order['order_id']}"
    assert one(owner, "select * from admin.fail_market_order(%s, 'again')", order["order_id"])["replayed"]
    # Binance executing a failed order is refused loudly (manual review), never booked
    fails(owner, "BSS01", "select * from admin.settle_market_order(%s, 1, 1, 5, %s)", order["order_id"],
          json.dumps([fill("5", "1", "0", "USDT")]))
    books(owner)


def test_execute_is_idempotent_and_a_quote_is_one_order(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner)
    quote_id = quote(owner, alice, "buy", "BTC", "300")
    first = execute(owner, alice, quote_id, "key-1")
    again = execute(owner, alice, quote_id, "key-1")
    assert again["order_id"] == first["order_id"] and again["replayed"]
    other_key = execute(owner, alice, quote_id, "key-2")  # a second tab
    assert other_key["order_id"] == first["order_id"] and other_key["replayed"]
    fails(owner, "BSI01", "select * from api.execute_quote(%s, %s, 'key-1')", alice, quote(owner, alice, "buy", "BTC", "300"))
    assert one(owner, "select count(*) as n from core.holds where user_id = %s and purpose = 'market_order'", alice)["n"] == 1
    assert balances(owner, alice)["BRL"] == (D("9700.00"), D("300.00"))
    # someone else's quote does not exist for you
    fails(owner, "BSN01", "select * from api.execute_quote(%s, %s, 'x')", demo["bob@example.com"], quote_id)
    assert one(owner, "select count(*) as n from api.get_quote(%s, %s)", demo["bob@example.com"], quote_id)["n"] == 0
    books(owner)


def test_expired_quote_is_refused(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner)
    quote_id = quote(owner, alice, "buy", "BTC", "300")
    owner.execute("update core.market_quotes set expires_at = now() - interval '1 second' where id = %s", (quote_id,))
    assert "expirou" in fails(owner, "BSS01", "select * from api.execute_quote(%s, %s, 'k')", alice, quote_id)
    assert one(owner, "select expired from api.get_quote(%s, %s)", alice, quote_id)["expired"]
    assert balances(owner, alice)["BRL"] == (D("10000.00"), 0)
    books(owner)


def test_minimums_balance_and_input_checks(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner)
    assert "R$ 10,09" in fails(owner, "BSV01", "select * from api.create_quote(%s, 'buy', 'BTC', 5)", alice)
    assert "mínima de venda" in fails(owner, "BSV01", "select * from api.create_quote(%s, 'sell', 'BTC', 0.00001)", alice)
    fails(owner, "BSV02", "select * from api.create_quote(%s, 'buy', 'BTC', 10.001)", alice)
    fails(owner, "BSV03", "select * from api.create_quote(%s, 'buy', 'BTC', 0)", alice)
    fails(owner, "BSV01", "select * from api.create_quote(%s, 'hold', 'BTC', 10)", alice)
    fails(owner, "BSV01", "select * from api.create_quote(%s, 'buy', 'DOGE', 10)", alice)
    assert "R$ 10.000,00" in fails(owner, "BSF01", "select * from api.create_quote(%s, 'buy', 'BTC', 20000)", alice)
    fails(owner, "BSF01", "select * from api.create_quote(%s, 'sell', 'BTC', 1)", alice)
    # the funds can go between quote and confirmation: the hold refuses then
    quote_id = quote(owner, alice, "buy", "ETH", "6000")
    execute(owner, alice, quote(owner, alice, "buy", "ETH", "6000"), "first")
    fails(owner, "BSF01", "select * from api.execute_quote(%s, %s, 'second')", alice, quote_id)
    books(owner)


def test_kyc_limits(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner)
    owner.execute("update core.users set kyc_level = 0 where id = %s", (alice,))  # R$ 500 per trade, R$ 1000 a day
    msg = fails(owner, "BSL01", "select * from api.create_quote(%s, 'buy', 'BTC', 600)", alice)
    assert "R$ 500,00" in msg
    execute(owner, alice, quote(owner, alice, "buy", "BTC", "400"), "a")
    execute(owner, alice, quote(owner, alice, "sell", "ETH", "0.02"), "b")  # ≈ R$ 400
    # a quote taken while it still fitted is checked again on execution
    q3 = quote(owner, alice, "buy", "USDT", "150")  # R$ 800 used so far
    execute(owner, alice, quote(owner, alice, "buy", "USDT", "150"), "c")  # R$ 950 used
    assert "restam R$ 50,00" in fails(owner, "BSL01", "select * from api.execute_quote(%s, %s, 'd')", alice, q3)
    books(owner)


def test_portfolio_values_holdings_at_latest_prices(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner, {"BTCBRL": "560000", "ETHBRL": "20000", "USDTBRL": "5.4"})
    execute(owner, alice, quote(owner, alice, "buy", "BTC", "1000"))  # R$ 1000 locked still counts
    rows = {r["currency"]: r for r in owner.execute("select * from api.get_portfolio(%s)", (alice,))}
    assert rows["BRL"]["value_brl"] == D("10000.00") and rows["BRL"]["locked"] == D("1000.00")
    assert rows["BTC"]["value_brl"] == D("28000.00")  # 0.05 × 560000
    assert rows["ETH"]["value_brl"] == D("30000.00")
    assert rows["USDT"]["value_brl"] == D("10800.00")
    assert rows["BTC"]["total_value_brl"] == D("78800.00")
    assert sum(r["share_percent"] for r in rows.values()) == D("100.00")
    assert not rows["BTC"]["stale"]


def test_chart_points_fit_the_box(owner):
    setup_market(owner)
    for age, price in ((300, "550000"), (200, "570000"), (100, "560000")):
        set_prices(owner, {"BTCBRL": price}, age)
    rows = owner.execute("select * from api.market_chart('BTCBRL', 1, 600, 200, 120)").fetchall()
    assert len(rows) == 4
    assert (rows[0]["x"], rows[0]["y"]) == (D("0.0"), D("200.0"))     # oldest, lowest: bottom left
    assert rows[1]["y"] == D("0.0") and rows[-1]["x"] == D("600.0")  # highest at the top; newest at the right
    assert rows[0]["min_price"] == D("550000") and rows[0]["max_price"] == D("570000")
    assert owner.execute("select * from api.market_chart('ETHBRL', 1)").fetchall()[0]["x"] == D("600")  # one point


def test_settlement_needs_consistent_fills(owner, demo):
    alice = demo["alice@example.com"]
    setup_market(owner)
    order = execute(owner, alice, quote(owner, alice, "buy", "BTC", "1000"))
    fails(owner, "BSV01", "select * from admin.settle_market_order(%s, 1, 0.00177, 991.2, '[]')", order["order_id"])
    fails(owner, "BSV01", "select * from admin.settle_market_order(%s, 1, 0.00177, 991.2, %s)", order["order_id"],
          json.dumps([fill("560000", "0.001", "0", "BTC")]))
    fails(owner, "BSX01", "select * from admin.settle_market_order(%s, 1, 0.002, 1120, %s)", order["order_id"],
          json.dumps([fill("560000", "0.002", "0", "BTC")]))  # more than the R$ 992 asked
    assert one(owner, "select status from core.market_orders where id = %s", order["order_id"])["status"] == "EXECUTING"
    stuck = owner.execute("select * from admin.list_stuck_market_orders(0)").fetchall()
    assert [r["client_order_id"] for r in stuck] == [order["client_order_id"]] and not stuck[0]["lost"]
    books(owner)
