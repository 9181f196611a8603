"""PIX-confirmed P2P, in two browsers: Bob sells BTC for PIX-confirmed payment, Alice takes the offer,
the trade page shows a real PIX charge (QR and copia-e-cola from the Mercado Pago emulator), Alice's
bank pays it from her own CPF, and — with no screenshot and no click from Bob — the verified webhook
releases the crypto to Alice and credits Bob's BRL. Screenshots: tests/e2e/screenshots/p2p-pix-*.png.
"""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.conftest import books
from tests.e2e.test_p2p_journey import login
from tests.rails_support import control

expect = pytest.importorskip("playwright.sync_api").expect


def test_pix_confirmed_trade_releases_itself(rails_app, browser, screenshot, demo, owner, mp):
    url = rails_app.config["APP_URL"]
    owner.execute("insert into core.prices (symbol, price) values ('BTCBRL', 300000), ('USDTBRL', 5.00), "
                  "('ETHBRL', 15000)")   # fixed prices are checked against the index
    errors: list[str] = []
    bob_ctx, bob = login(browser, url, "bob@example.com", errors)
    alice_ctx, alice = login(browser, url, "alice@example.com", errors)
    try:
        bob.goto(f"{url}/p2p/offers/new")
        bob.check("input[name=side][value=SELL]")
        bob.select_option("select[name=crypto]", "BTC")
        bob.check("input[name=price_type][value=fixed]")
        bob.fill("input[name=fixed_price]", "300.000,00")
        bob.fill("input[name=total_amount]", "0,01")
        bob.fill("input[name=min_brl]", "100,00")
        bob.fill("input[name=max_brl]", "3.000,00")
        bob.uncheck("input[name=payment_methods][value=PIX]")
        bob.check("input[name=payment_methods][value=PIX_CONFIRMED]")
        bob.fill("textarea[name=terms]", "PIX confirmado: a liberação é automática.")
        bob.click("#offer-form button[type=submit]")
        bob.wait_for_url("**/p2p/offers/mine")

        alice.goto(f"{url}/p2p")
        alice.locator("[data-testid=offer-row]").first.get_by_role("link", name="Comprar BTC").click()
        alice.wait_for_url("**/p2p/offers/*")
        alice.fill("input[name=brl_amount]", "450,00")
        alice.select_option("select[name=payment_method]", "PIX_CONFIRMED")
        alice.click("[data-testid=open-trade]")
        alice.wait_for_url("**/p2p/trades/*")
        trade_url = alice.url
        expect(alice.locator("img.p2p-qr")).to_be_visible()
        code = alice.locator("#pix-code").inner_text().strip()
        assert code.startswith("000201") and "5406450.00" in code  # a BR Code for exactly R$ 450,00
        screenshot(alice, "p2p-pix-01-alice-charge")

        # Alice's bank pays the BR Code from her own CPF (the one her KYC verified).
        cpf = owner.execute("select cpf from core.kyc_profiles where user_id = %s",
                            (demo["alice@example.com"],)).fetchone()["cpf"]
        control(mp, "/_sandbox/pix/pay", qr_code=code, payer_cpf=cpf)

        # The signed webhook arrives; Alice's page notices the completed trade by itself.
        alice.wait_for_selector("[data-testid=trade-status][data-status=COMPLETED]", timeout=20000)
        screenshot(alice, "p2p-pix-02-alice-completed")
        bob.goto(trade_url)
        assert bob.locator("[data-testid=trade-status]").get_attribute("data-status") == "COMPLETED"
        screenshot(bob, "p2p-pix-03-bob-completed")
    finally:
        bob_ctx.close()
        alice_ctx.close()
    assert errors == []
    trade = owner.execute("select * from core.p2p_trades").fetchone()
    assert trade["status"] == "COMPLETED" and trade["crypto_amount"] == D("0.0015")
    bob_brl = owner.execute("select available from reporting.user_balances where email = 'bob@example.com' "
                            "and currency = 'BRL'").fetchone()["available"]
    assert bob_brl == D("5450.00")
    books(owner)
