"""A browser journey over the crypto rails: Bob deposits BTC on-chain to his address (sent and confirmed on
the Binance emulator), sells part of it to Alice in P2P for platform balance, and Alice withdraws the BTC
on-chain to an address of her address book. Screenshots: tests/e2e/screenshots/crypto-*.png."""
from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
import requests

from tests.conftest import DEMO_PASSWORD, books
from webapp.crypto import service
from sandbox.binance import BackgroundServer, create_app as create_sandbox

pytest.importorskip("playwright.sync_api")

KEY, SECRET = "journey-key", "journey-secret"
BTC_TO = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


@pytest.fixture
def sandbox():
    server = BackgroundServer(create_sandbox({"api_key": KEY, "secret_key": SECRET}))
    yield server
    server.stop()


@pytest.fixture
def app(db_url, sandbox):
    from webapp import create_app
    from webapp.config import role_url
    app = create_app({
        "TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": db_url,
        "APP_DATABASE_URL": role_url(db_url, "exchange_app"), "AUDIT_DATABASE_URL": role_url(db_url, "exchange_auditor"),
        "WORKER_DATABASE_URL": role_url(db_url, "exchange_worker"),
        "RATELIMIT_ENABLED": False, "DB_POOL_MAX": 6,
        "BINANCE_API_KEY": KEY, "BINANCE_SECRET_KEY": SECRET, "BINANCE_BASE_URL": sandbox.url, "BINANCE_TIMEOUT": 2,
    })
    yield app
    from webapp import db
    db.close_pools(app)


def control(sandbox, name, **body):
    resp = requests.post(f"{sandbox.url}/_sandbox/wallet/{name}", json=body, timeout=2)
    assert resp.status_code == 200, resp.text
    return resp.json()


def login(browser, url, email, errors):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR")
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{email}: {exc}"))
    page.on("response", lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")
            and r.status != 422 and errors.append(f"{email}: {r.status} {r.url}"))
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit].w-100")
    page.wait_for_load_state()
    return context, page


def test_deposit_sell_in_p2p_then_withdraw(live_server, browser, screenshot, owner, demo, sandbox):
    app, url = live_server.app, live_server.url
    owner.execute("select admin.record_prices(%s)",
                  (json.dumps({"BTCBRL": "560000", "ETHBRL": "20000", "USDTBRL": "5.4"}),))
    owner.execute("update core.settings set value = '0' where name = 'crypto_withdrawal_recheck_seconds'")
    # No price poller runs here: on a loaded machine the journey outlives the 30 s freshness of the
    # prices above, and a stale price refuses the withdrawal (422). Staleness is tested in test_crypto.py.
    owner.execute("update core.settings set value = '3600' where name = 'price_stale_seconds'")
    # 0,02 BTC is ~R$ 11.000: above the approval threshold it would wait for an admin (tested in test_crypto.py)
    owner.execute("update core.settings set value = '50000.00' where name = 'withdrawal_approval_threshold_brl'")
    errors: list[str] = []
    bob_ctx, bob = login(browser, url, "bob@example.com", errors)
    alice_ctx, alice = login(browser, url, "alice@example.com", errors)
    try:
        # Bob: wallet → Depositar BTC → network → address with QR code.
        bob.goto(f"{url}/wallet")
        bob.click("[data-testid=deposit-BTC]")
        bob.wait_for_url("**/wallet/btc/deposit")
        bob.select_option("select[name=network]", "BTC")
        bob.click("[data-testid=deposit-address-form] button[type=submit]")
        bob.wait_for_selector("text=Gerando seu endereço")
        service.provision(app)  # the worker's job
        bob.wait_for_selector("[data-testid=address]", timeout=10000)  # the page refreshes itself
        address = bob.locator("[data-testid=address]").inner_text().strip()
        assert address.startswith("bc1") and bob.locator("img[alt='QR code do endereço']").count() == 1
        screenshot(bob, "crypto-01-bob-deposit-address")

        sent = control(sandbox, "send", coin="BTC", network="BTC", address=address, amount="0.03")
        service.poll_deposits(app)
        bob.reload()
        assert "aguardando confirmações 0/1" in bob.locator("[data-testid=crypto-deposits]").inner_text()
        screenshot(bob, "crypto-02-bob-deposit-pending")
        control(sandbox, "confirm", id=sent["id"])
        service.poll_deposits(app)
        bob.goto(f"{url}/wallet")
        assert bob.locator("[data-testid=available-BTC]").inner_text() == "0,15000000 BTC"

        # Bob sells 0.01 BTC in P2P for platform balance; Alice takes it and it settles at once.
        bob.goto(f"{url}/p2p/offers/new")
        bob.check("input[name=side][value=SELL]")
        bob.select_option("select[name=crypto]", "BTC")
        bob.check("input[name=price_type][value=fixed]")
        bob.fill("input[name=fixed_price]", "300.000,00")
        bob.fill("input[name=total_amount]", "0,01")
        bob.fill("input[name=min_brl]", "100,00")
        bob.fill("input[name=max_brl]", "3.000,00")
        bob.check("input[name=payment_methods][value=BALANCE]")
        bob.fill("textarea[name=payment_details]", "Saldo bs-market (liquidação imediata)")
        bob.click("#offer-form button[type=submit]")
        bob.wait_for_url("**/p2p/offers/mine")
        alice.goto(f"{url}/p2p")
        alice.locator("[data-testid=offer-row]").first.get_by_role("link", name="Comprar BTC").click()
        alice.wait_for_url("**/p2p/offers/*")
        alice.fill("input[name=brl_amount]", "3.000,00")
        alice.click("[data-testid=open-trade]")
        alice.wait_for_url("**/p2p/trades/*")
        alice.wait_for_selector("[data-testid=trade-status][data-status=COMPLETED]")
        screenshot(alice, "crypto-03-alice-bought")

        # Alice saves an address, waits out the cooling-off, and withdraws the BTC on-chain.
        alice.goto(f"{url}/wallet")
        alice.click("[data-testid=withdraw-BTC]")
        alice.wait_for_url("**/wallet/btc/withdraw")
        form = alice.locator("[data-testid=address-form]")
        form.locator("input[name=address]").fill("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5")  # a typo
        form.locator("button[type=submit]").click()
        alice.wait_for_selector("text=bech32", timeout=5000)
        form = alice.locator("[data-testid=address-form]")
        form.locator("input[name=address]").fill(BTC_TO)
        form.locator("input[name=label]").fill("Minha carteira fria")
        form.locator("button[type=submit]").click()
        alice.wait_for_selector("text=liberado em")
        screenshot(alice, "crypto-04-alice-address-cooling-off")
        owner.execute("update core.crypto_address_book set usable_from = now()")
        alice.reload()
        alice.select_option("select[name=address_id]", label="Minha carteira fria (Bitcoin)")
        alice.fill("input[name=amount]", "0,02")
        alice.click("[data-testid=crypto-withdrawal-form] button[type=submit]")
        alice.wait_for_selector("text=Saque registrado")
        screenshot(alice, "crypto-05-alice-withdrawal-queued")
        service.send_withdrawals(app)
        (w,) = owner.execute("select * from core.crypto_withdrawals").fetchall()
        control(sandbox, "withdrawal", withdrawOrderId=w["reference"], status=6)
        service.recheck_withdrawals(app)
        alice.reload()
        link = alice.locator("[data-testid=tx-link]")
        assert link.count() == 1 and link.get_attribute("href").startswith("https://mempool.space/tx/")
        screenshot(alice, "crypto-06-alice-withdrawal-completed")
        alice.goto(f"{url}/wallet/BTC")
        assert BTC_TO in alice.locator("[data-testid=statement]").inner_text()
    finally:
        bob_ctx.close()
        alice_ctx.close()
    assert errors == []
    assert owner.execute("select status from core.crypto_withdrawals").fetchone()["status"] == "COMPLETED"
    assert owner.execute("select sum(amount) as n from core.crypto_deposits where status = 'CREDITED'").fetchone()["n"] == D("0.03")
    books(owner)
