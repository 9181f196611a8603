"""A customer buys and sells at the market desk in a real browser (Chromium via Playwright),
with the web app (tests/e2e/conftest.py's live_server) and the Binance emulator on real sockets."""
from __future__ import annotations

from decimal import Decimal as D

import pytest
import requests

from tests.conftest import DEMO_PASSWORD, books

KEY, SECRET = "e2e-key", "e2e-secret"


@pytest.fixture
def sandbox():
    from sandbox.binance import BackgroundServer, create_app as create_sandbox
    server = BackgroundServer(create_sandbox({"api_key": KEY, "secret_key": SECRET, "seed": 21}))
    requests.post(f"{server.url}/_sandbox/price", json={"symbol": "BTCBRL", "price": "560000"}, timeout=2)
    yield server
    server.stop()


@pytest.fixture
def app(db_url, sandbox, demo):
    """tests/conftest.py's app, pointed at the emulator, with prices polled by the worker's job."""
    from webapp import create_app
    from webapp.config import role_url
    from webapp.market import tasks
    app = create_app({
        "TESTING": True, "SECRET_KEY": "e2e-secret", "DATABASE_URL": db_url, "DB_POOL_MAX": 4,
        "APP_DATABASE_URL": role_url(db_url, "exchange_app"), "AUDIT_DATABASE_URL": role_url(db_url, "exchange_auditor"),
        "WORKER_DATABASE_URL": role_url(db_url, "exchange_worker"),
        "BINANCE_API_KEY": KEY, "BINANCE_SECRET_KEY": SECRET, "BINANCE_BASE_URL": sandbox.url, "BINANCE_TIMEOUT": 2,
    })
    tasks.poll_prices(app)
    tasks.poll_prices(app)  # two points: a chart
    yield app
    from webapp import db
    db.close_pools(app)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_buy_then_sell_then_portfolio(live_server, page, owner, demo, screenshot):
    live = live_server.url
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live}/login")
    page.fill("input[name=email]", "alice@example.com")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit].w-100")
    page.goto(f"{live}/market")
    assert page.locator("[data-testid=price-BTCBRL]").inner_text() == "R$ 560.000,00"
    assert page.locator("[data-testid=price-chart] polyline").count() == 1
    assert page.locator("#amount-label").inner_text() == "Quanto gastar (R$)"  # market.js

    page.fill("input[name=amount]", "1.000,00")
    page.click("#quote-form button[type=submit]")
    page.wait_for_url("**/market/quote/*")
    assert page.locator("[data-testid=quote-pay]").inner_text() == "R$ 999,20"
    page.click("[data-quote-confirm]")
    page.wait_for_url("**/market/orders/*")
    # the worker sends the order to Binance; the page follows it without a reload
    page.wait_for_selector("[data-testid=order-status][data-status=COMPLETED]", timeout=15000)
    assert page.locator("[data-testid=order-crypto]").inner_text() == "0,00176823 BTC"

    page.goto(f"{live}/market")
    page.click("label[for=side-1]")  # Vender
    assert page.locator("#amount-label").inner_text() == "Quanto vender (BTC)"
    page.fill("input[name=amount]", "0,01")
    page.click("#quote-form button[type=submit]")
    page.wait_for_url("**/market/quote/*")
    page.click("[data-quote-confirm]")
    page.wait_for_url("**/market/orders/*")
    page.wait_for_selector("[data-testid=order-status][data-status=COMPLETED]", timeout=15000)
    # 0.01 × 560000 = 5600 − 5.60 commission = 5594.40; − spread 27.97 − fee 16.78
    assert page.locator("[data-testid=order-brl]").inner_text() == "R$ 5.549,65"

    page.goto(f"{live}/market/portfolio")
    screenshot(page, "market-portfolio")
    assert page.locator("[data-testid=portfolio-chart] circle").count() == 5  # track + 4 holdings
    assert page.locator("[data-testid=orders-table] tbody tr").count() == 2
    assert errors == []
    alice = demo["alice@example.com"]
    wallet = {r["currency"]: r for r in owner.execute("select * from api.get_wallet(%s)", (alice,))}
    assert wallet["BTC"]["available"] == D("0.04176823") and wallet["BTC"]["locked"] == 0
    books(owner)
