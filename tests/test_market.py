"""The market desk end to end: the web app (forms, CSRF, login) and the worker's reconciler
talking over real HTTP to the Binance emulator, settling the real ledger from real fills."""
from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
import requests

from tests.conftest import books
from webapp.market import service, tasks
from webapp.providers.binance import BinanceClient
from sandbox.binance import BackgroundServer, create_app as create_sandbox

KEY, SECRET = "market-key", "market-secret"


@pytest.fixture(scope="module")
def sandbox():
    server = BackgroundServer(create_sandbox({"api_key": KEY, "secret_key": SECRET, "seed": 11}))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(sandbox):
    control(sandbox, "reset")


@pytest.fixture
def app(db_url, sandbox):
    """conftest's app, pointed at the emulator (overrides the `app` fixture in this module)."""
    from webapp import create_app
    from webapp.config import role_url
    app = create_app({
        "TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": db_url,
        "APP_DATABASE_URL": role_url(db_url, "exchange_app"), "AUDIT_DATABASE_URL": role_url(db_url, "exchange_auditor"),
        "WORKER_DATABASE_URL": role_url(db_url, "exchange_worker"),
        "RATELIMIT_ENABLED": True, "DB_POOL_MAX": 4,
        "BINANCE_API_KEY": KEY, "BINANCE_SECRET_KEY": SECRET, "BINANCE_BASE_URL": sandbox.url, "BINANCE_TIMEOUT": 1,
    })
    yield app
    from webapp import db
    db.close_pools(app)


@pytest.fixture
def market(app, sandbox, demo):
    """Filters and prices loaded by the worker's own jobs, with frozen prices for exact numbers."""
    control(sandbox, "price", symbol="BTCBRL", price="560000")
    control(sandbox, "price", symbol="ETHBRL", price="20000")
    control(sandbox, "price", symbol="USDTBRL", price="5.4")
    assert tasks.poll_prices(app) == 3
    return demo


def control(sandbox, name, **body):
    resp = requests.post(f"{sandbox.url}/_sandbox/{name}", json=body, timeout=2)
    assert resp.status_code == 200, resp.text
    return resp.json()


def sandbox_orders(sandbox):
    return requests.get(f"{sandbox.url}/_sandbox/orders", timeout=2).json()


def wallet(owner, user_id) -> dict:
    return {r["currency"]: (r["available"], r["locked"])
            for r in owner.execute("select * from api.get_wallet(%s)", (user_id,))}


def ask_quote(forms, side, crypto, amount):
    resp = forms.post("/market", {"side": side, "crypto": crypto, "amount": amount})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:3000]
    assert re.search(r"/market/quote/\d+$", resp.headers["Location"])
    return resp.headers["Location"]


def confirm(forms, quote_url):
    """Confirm a quote on its page, then let the worker send the order (as its job does every second)."""
    resp = forms.post(quote_url, {})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:3000]
    tasks.place_orders(forms.client.application)
    return resp.headers["Location"]


def order_id_of(url: str) -> int:
    return int(url.rsplit("/", 1)[1])


def test_market_page_prices_chart_and_refresh(client, forms, login, market, app, owner):
    tasks.poll_prices(app)  # a second point for the chart
    login("alice@example.com")
    page = client.get("/market")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-testid="price-BTCBRL">R$ 560.000,00' in html and "R$ 5,40" in html
    assert re.search(r'data-testid="change-BTCBRL">\s*<i[^>]*></i>[+−]\d+,\d\d%', html)
    assert 'data-testid="price-chart"' in html and "<polyline points=\"0.0," in html
    assert "Última atualização de preço" in html and "trading-paused" not in html
    assert 'data-refresh-url="/market/panel?symbol=BTCBRL&amp;range=1h"' in html
    assert "cdn" not in html.lower() and "<script>" not in html
    fragment = client.get("/market/panel?symbol=ETHBRL&range=24h").get_data(as_text=True)
    assert "<html" not in fragment and "ETH/BRL" in fragment and "price-chart" in fragment
    assert client.get("/market/panel?symbol=DOGEBRL").status_code == 404
    forms.post("/logout", {}, form_url="/wallet")
    assert client.get("/market").status_code == 302  # logged-in customers only


def test_buy_through_the_forms_settles_from_the_real_fills(client, forms, login, market, owner, sandbox):
    alice = market["alice@example.com"]
    login("alice@example.com")
    quote_url = ask_quote(forms, "buy", "BTC", "1.000,00")
    page = client.get(quote_url).get_data(as_text=True)
    assert "data-countdown=" in page and "R$ 992,00" in page and "0,00176823 BTC" in page
    assert 'data-testid="quote-pay">R$ 999,20' in page
    order_url = confirm(forms, quote_url)
    page = client.get(order_url).get_data(as_text=True)
    assert 'data-status="COMPLETED"' in page and "R$ 999,20" in page

    (placed,) = sandbox_orders(sandbox)
    assert placed["clientOrderId"] == f"bsm-{order_id_of(order_url)}" and placed["side"] == "BUY"
    assert placed["origQuoteOrderQty"] == "992.00000000"  # R$ 1000 net of spread (5) and fee (3)
    assert wallet(owner, alice)["BRL"] == (D("9000.80"), 0)  # paid 991.20 + 5.00 + 3.00
    assert wallet(owner, alice)["BTC"] == (D("0.05176823"), 0)  # 0.00177 − 0.1% commission
    fees = owner.execute("select sum(balance) as b from core.accounts where purpose = 'fees' and currency = 'BRL'").fetchone()
    assert fees["b"] == D("8.00")
    assert client.get(quote_url).status_code == 302  # a used quote leads to its order
    books(owner)

    # the portfolio values what alice now holds, with a chart, and lists the order
    page = client.get("/market/portfolio").get_data(as_text=True)
    assert 'data-testid="portfolio-chart"' in page and "stroke-dasharray" in page
    assert 'data-testid="value-BTC">R$ 28.990,21' in page  # 0.05176823 × 560000
    assert "Compra</span> BTC" in page
    assert "R$ 999,20" in client.get("/market/orders").get_data(as_text=True)


def brl(text: str) -> D:
    """R$ 1.234,56 → Decimal('1234.56')."""
    return D(text.replace("R$", "").strip().replace(".", "").replace(",", "."))


def crypto_amount(text: str) -> D:
    return D(text.split()[0].replace(".", "").replace(",", "."))


def quote_lines(page: str) -> tuple[D, D]:
    """The BRL lines of a quote page, summed with their signs, and the total line they must add up to."""
    lines = re.findall(r'data-line="([+=-])"[^>]*>([^<]+)<', page)
    total = sum((brl(v) if sign == "+" else -brl(v)) for sign, v in lines if sign != "=")
    (shown,) = [brl(v) for sign, v in lines if sign == "="]
    return total, shown


@pytest.mark.parametrize("side, crypto, amount", [("buy", "BTC", "1.000,00"), ("buy", "USDT", "777,77"),
                                                   ("sell", "ETH", "0,5"), ("sell", "BTC", "0,00123")])
def test_quote_lines_add_up_to_what_settlement_posts(client, forms, login, market, owner, side, crypto, amount):
    alice = market["alice@example.com"]
    login("alice@example.com")
    quote_url = ask_quote(forms, side, crypto, amount)
    page = client.get(quote_url).get_data(as_text=True)
    total, shown = quote_lines(page)
    assert total == shown and len(re.findall(r'data-line="[+-]"', page)) == (3 if side == "buy" else 4)
    receive = re.search(r'data-testid="quote-receive">([^<]+)<', page).group(1)
    before = wallet(owner, alice)
    confirm(forms, quote_url)
    after = wallet(owner, alice)
    assert owner.execute("select status from core.market_orders order by id desc limit 1").fetchone()["status"] == "COMPLETED"
    brl_delta = after["BRL"][0] - before["BRL"][0]
    crypto_delta = after[crypto][0] - before[crypto][0]
    if side == "buy":
        assert brl_delta == -shown and crypto_delta == crypto_amount(receive)
    else:
        assert brl_delta == shown == brl(receive)
        assert crypto_delta == -crypto_amount(re.search(r'data-testid="quote-sell">([^<]+)<', page).group(1))
    books(owner)


def test_sell_with_two_fills(client, forms, login, market, owner, sandbox):
    alice = market["alice@example.com"]
    control(sandbox, "next_order", mode="fill", fills=2)
    login("alice@example.com")
    order_url = confirm(forms, ask_quote(forms, "sell", "ETH", "0,5"))
    (placed,) = sandbox_orders(sandbox)
    assert placed["origQty"] == "0.50000000" and len(placed["fills"]) == 2
    # 0.3 @ 20000 + 0.2 @ 19999.99 = 9999.998, commission 9.999998 BRL → 9989.99 gross,
    # spread 49.95, fee 29.97 → 9910.07 for alice
    assert "R$ 9.910,07" in client.get(order_url).get_data(as_text=True)
    assert wallet(owner, alice)["BRL"] == (D("19910.07"), 0)
    assert wallet(owner, alice)["ETH"] == (D("1.0"), 0)
    books(owner)


def test_rejection_releases_the_hold_with_a_readable_reason(client, forms, login, market, owner, sandbox):
    alice = market["alice@example.com"]
    control(sandbox, "next_order", mode="reject")
    login("alice@example.com")
    page = client.get(confirm(forms, ask_quote(forms, "buy", "USDT", "500"))).get_data(as_text=True)
    assert 'data-status="FAILED"' in page and "sem liquidez" in page
    assert wallet(owner, alice)["BRL"] == (D("10000.00"), 0)
    note = owner.execute("select * from core.notifications where user_id = %s and kind = 'market.failed'",
                         (alice,)).fetchone()
    assert "Seu saldo foi liberado" in note["message"]
    failed = owner.execute("select provider_message from core.market_orders").fetchone()
    assert failed["provider_message"] == "-2010: Account has insufficient balance for requested action."
    books(owner)


def test_closed_market_on_binance_fails_the_order(client, forms, login, market, owner, sandbox):
    login("bob@example.com")
    quote_url = ask_quote(forms, "sell", "BTC", "0.01")
    control(sandbox, "symbol_status", symbol="BTCBRL", status="BREAK")  # between quote and confirm
    page = client.get(confirm(forms, quote_url)).get_data(as_text=True)
    assert "O mercado está fechado na Binance" in page
    assert wallet(owner, market["bob@example.com"])["BTC"] == (D("0.12"), 0)
    books(owner)


def test_timeout_is_looked_up_never_resent(client, forms, login, market, owner, sandbox):
    alice = market["alice@example.com"]
    control(sandbox, "next_order", mode="timeout", delay_seconds=1.5)  # client timeout is 1 s
    login("alice@example.com")
    order_url = confirm(forms, ask_quote(forms, "buy", "ETH", "200"))
    assert 'data-status="COMPLETED"' in client.get(order_url).get_data(as_text=True)
    assert len(sandbox_orders(sandbox)) == 1  # found by origClientOrderId, not sent twice
    assert wallet(owner, alice)["ETH"][0] == D("1.50989010")  # 0.0099 ETH − 0.1%
    books(owner)


def test_error_500_is_looked_up_and_settled(app, market, owner, sandbox):
    alice = market["alice@example.com"]
    control(sandbox, "next_order", mode="error500")
    q = owner.execute("select * from api.create_quote(%s, 'buy', 'BTC', 300)", (alice,)).fetchone()
    owner.execute("select * from api.execute_quote(%s, %s, 'k-500')", (alice, q["quote_id"]))
    with app.app_context():
        assert tasks.place_orders(app) == {"COMPLETED": 1}
    assert len(sandbox_orders(sandbox)) == 1
    books(owner)


def test_crash_between_binance_and_settlement_is_repaired_by_the_reconciler(app, market, owner, sandbox):
    alice = market["alice@example.com"]
    q = owner.execute("select * from api.create_quote(%s, 'buy', 'BTC', 1000)", (alice,)).fetchone()
    owner.execute("select * from api.execute_quote(%s, %s, 'crash-1')", (alice, q["quote_id"]))
    order = owner.execute("select * from admin.market_orders_to_place()").fetchone()   # the worker claims it
    assert owner.execute("select * from admin.market_orders_to_place()").fetchone() is None  # once
    # … sends the order to Binance… and dies before recording the outcome
    BinanceClient(KEY, SECRET, base_url=sandbox.url).place_market_order(
        "BTCBRL", "BUY", order["client_order_id"], quote_order_qty=order["quote_order_qty"])
    assert wallet(owner, alice)["BRL"] == (D("9000.00"), D("1000.00"))
    assert tasks.reconcile_orders(app) == {}  # too young: the worker that sent it may still record it
    owner.execute("update core.settings set value = '0' where name = 'market_reconcile_after_seconds'")
    assert tasks.reconcile_orders(app) == {"COMPLETED": 1}
    assert wallet(owner, alice)["BRL"] == (D("9000.80"), 0)
    assert wallet(owner, alice)["BTC"] == (D("0.05176823"), 0)
    assert tasks.reconcile_orders(app) == {}  # nothing left, nothing booked twice
    # the crashed worker's answer coming back late settles nothing twice either
    found = BinanceClient(KEY, SECRET, base_url=sandbox.url).get_order("BTCBRL", order["client_order_id"], with_fills=True)
    with app.app_context():
        assert service.record(app, {**order, "order_id": order["order_id"]}, found) == "COMPLETED"
    assert owner.execute("select count(*) as n from core.entries where kind = 'market_buy'").fetchone()["n"] == 1
    assert len(sandbox_orders(sandbox)) == 1
    books(owner)


def test_order_that_never_reached_binance_is_failed_once_lost(app, market, owner, sandbox):
    alice = market["alice@example.com"]
    q = owner.execute("select * from api.create_quote(%s, 'sell', 'USDT', 100)", (alice,)).fetchone()
    order = owner.execute("select * from api.execute_quote(%s, %s, 'lost-1')", (alice, q["quote_id"])).fetchone()
    # crash after the commit, before the Binance call
    owner.execute("update core.settings set value = '0' where name = 'market_reconcile_after_seconds'")
    assert tasks.reconcile_orders(app) == {"EXECUTING": 1}  # not found yet: Binance may still get it
    row = owner.execute("select status, checks, last_note from core.market_orders").fetchone()
    assert (row["status"], row["checks"], row["last_note"]) == ("EXECUTING", 1, "ainda não encontrada na Binance")
    owner.execute("update core.settings set value = '0' where name = 'market_order_lost_seconds'")
    assert tasks.reconcile_orders(app) == {"FAILED": 1}
    assert wallet(owner, alice)["USDT"] == (D("2000"), 0)
    assert sandbox_orders(sandbox) == []  # never (re)sent
    assert order["client_order_id"] in owner.execute("select message from core.notifications "
                                                     "where kind = 'market.failed'").fetchone()["message"]
    books(owner)


def test_double_confirm_places_one_order(client, forms, login, market, owner, sandbox):
    login("alice@example.com")
    quote_url = ask_quote(forms, "buy", "BTC", "100")
    html = client.get(quote_url).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', html).group(1)
    first = client.post(quote_url, data={"csrf_token": token, "idempotency_key": key})
    second = client.post(quote_url, data={"csrf_token": token, "idempotency_key": key})
    assert first.headers["Location"] == second.headers["Location"]
    tasks.place_orders(client.application)
    tasks.place_orders(client.application)
    assert len(sandbox_orders(sandbox)) == 1
    assert owner.execute("select count(*) as n from core.market_orders").fetchone()["n"] == 1
    books(owner)


def test_expired_quote_on_the_form(client, forms, login, market, owner):
    login("alice@example.com")
    quote_url = ask_quote(forms, "buy", "BTC", "100")
    html = client.get(quote_url).get_data(as_text=True)
    owner.execute("update core.market_quotes set expires_at = now() - interval '1 second'")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', html).group(1)
    resp = client.post(quote_url, data={"csrf_token": token, "idempotency_key": key})
    assert resp.status_code == 409
    body = resp.get_data(as_text=True)
    assert "Esta cotação expirou" in body and "Pedir nova cotação" in body
    assert wallet(owner, market["alice@example.com"])["BRL"] == (D("10000.00"), 0)


def test_stale_price_disables_trading_on_the_page_and_in_sql(client, forms, login, app, demo, owner, sandbox):
    tasks.poll_prices(app)
    owner.execute("update core.prices set fetched_at = now() - interval '5 minutes'")  # the poller stopped
    login("alice@example.com")
    html = client.get("/market").get_data(as_text=True)
    assert 'data-testid="trading-paused"' in html and "Cotação desatualizada desde" in html
    resp = forms.post("/market", {"side": "buy", "crypto": "BTC", "amount": "100"})
    assert resp.status_code == 503
    assert "está desatualizada" in resp.get_data(as_text=True)


def test_form_errors_are_shown_on_the_form(client, forms, login, market, owner):
    login("alice@example.com")
    cases = [({"side": "buy", "crypto": "BTC", "amount": "abc"}, 422, "O valor decimal não é válido"),
             ({"side": "buy", "crypto": "BTC", "amount": "5"}, 422, "O valor mínimo de compra de BTC é R$ 10,09"),
             ({"side": "buy", "crypto": "BTC", "amount": "50000"}, 422, "Saldo insuficiente"),
             ({"side": "sell", "crypto": "BTC", "amount": "0,000001"}, 422, "quantidade mínima de venda"),
             ({"side": "buy", "crypto": "BTC", "amount": "10,123"}, 422, "casas decimais demais")]
    for data, status, message in cases:
        resp = forms.post("/market", data)
        assert resp.status_code == status, (data, resp.status_code)
        assert message in resp.get_data(as_text=True), data
    owner.execute("update core.users set kyc_level = 0 where email = 'alice@example.com'")
    resp = forms.post("/market", {"side": "buy", "crypto": "BTC", "amount": "600"})
    assert resp.status_code == 422 and "O valor máximo por operação no nível 0 é R$ 500,00" in resp.get_data(as_text=True)
    assert client.post("/market", data={"side": "buy", "crypto": "BTC", "amount": "100"}).status_code == 400  # no CSRF
    assert owner.execute("select count(*) as n from core.market_quotes").fetchone()["n"] == 0


def test_other_customers_quotes_and_orders_are_hidden(client, forms, login, market, owner):
    login("alice@example.com")
    quote_url = ask_quote(forms, "buy", "BTC", "100")
    order_url = confirm(forms, quote_url)
    forms.post("/logout", {}, form_url="/wallet")
    login("bob@example.com")
    assert client.get(quote_url).status_code == 404
    assert client.get(order_url).status_code == 404
    assert client.get(order_url + "/status").status_code == 404


def test_an_order_queued_behind_a_slow_one_is_not_taken_for_lost(app, market, owner, sandbox):
    """Found by `make chaos` (docs/RELIABILITY.md): the worker used to stamp a whole batch placed before
    sending the first, and the reconciler counted "lost" from the customer's confirmation; an order
    queued behind a slow Binance call was failed as lost (hold released), then sent and filled at
    Binance with no ledger effect. Now each order is stamped just before it is sent, and lost counts
    from then."""
    import threading
    import time
    alice = market["alice@example.com"]
    for n in range(3):
        q = owner.execute("select * from api.create_quote(%s, 'buy', 'BTC', 100)", (alice,)).fetchone()
        owner.execute("select * from api.execute_quote(%s, %s, %s)", (alice, q["quote_id"], f"slow-{n}"))
    control(sandbox, "next_order", mode="delay", delay_seconds=2)   # the first answer outlives the 1 s timeout
    done = {}

    def place():
        with app.app_context():
            done.update(tasks.place_orders(app))
    worker = threading.Thread(target=place)
    worker.start()
    time.sleep(0.5)                                    # the worker is waiting on Binance for the first order
    sent = owner.execute("select count(*) as n from core.market_orders where placed_at is not null").fetchone()["n"]
    worker.join(timeout=30)
    assert sent == 1                                   # the two others are not stamped sent while they wait
    assert done == {"EXECUTING": 1, "COMPLETED": 2}    # the slow one is left to the reconciler
    # confirmed an hour ago but sent just now: not lost
    owner.execute("update core.market_orders set created_at = now() - interval '1 hour' where status = 'EXECUTING'")
    stuck = owner.execute("select * from admin.list_stuck_market_orders(0)").fetchall()
    assert len(stuck) == 1 and not stuck[0]["lost"]
    time.sleep(2)                                      # Binance fills it
    assert tasks.reconcile_orders(app) == {"COMPLETED": 1}
    assert [o["status"] for o in sandbox_orders(sandbox)] == ["FILLED"] * 3
    assert owner.execute("select count(*) as n from core.entries where kind = 'market_buy'").fetchone()["n"] == 3
    books(owner)
