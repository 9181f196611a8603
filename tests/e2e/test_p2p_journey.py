"""Two customers, two browsers: Bob posts a SELL offer, Alice takes it, pays off-platform by PIX, uploads
her proof and marks it paid; Bob's page notices, he releases; both see the trade completed and Alice rates
him. Screenshots of every step go to tests/e2e/screenshots/p2p-*.png.

(The PIX-confirmed journey needs the BRL rails' charge creation and webhook; it is left to the integration.)
"""
from __future__ import annotations

import re
from decimal import Decimal as D

import pytest

from tests.conftest import DEMO_PASSWORD, books

expect = pytest.importorskip("playwright.sync_api").expect

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


def login(browser, url, email, errors, width=1280, height=900):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="pt-BR")
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{email}: {exc}"))
    # (favicon.ico is not ours to serve)
    page.on("response", lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")
            and errors.append(f"{email}: {r.status} {r.url}"))
    page.on("dialog", lambda dialog: dialog.accept())  # the confirm() before irreversible actions
    page.goto(f"{url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit].w-100")
    page.wait_for_url("**/wallet")
    return context, page


def test_off_platform_pix_trade_between_two_browsers(live_server, browser, screenshot, owner, demo):
    url = live_server.url
    owner.execute("insert into core.prices (symbol, price) values ('BTCBRL', 300000)")   # fixed prices are checked
    errors: list[str] = []
    bob_ctx, bob = login(browser, url, "bob@example.com", errors)
    alice_ctx, alice = login(browser, url, "alice@example.com", errors)
    try:
        # Bob posts a SELL offer for 0.01 BTC at R$ 300.000,00, PIX only.
        bob.goto(f"{url}/p2p/offers/new")
        bob.check("input[name=side][value=SELL]")
        bob.select_option("select[name=crypto]", "BTC")
        bob.check("input[name=price_type][value=fixed]")
        bob.fill("input[name=fixed_price]", "300.000,00")
        bob.fill("input[name=total_amount]", "0,01")
        bob.fill("input[name=min_brl]", "100,00")
        bob.fill("input[name=max_brl]", "3.000,00")
        bob.check("input[name=payment_methods][value=PIX]")
        bob.fill("textarea[name=payment_details]", "PIX (e-mail): bob.oliveira@example.com — Bob Oliveira, Banco 260")
        bob.fill("textarea[name=terms]", "Pague de uma conta no seu nome. Libero em até 10 minutos.")
        screenshot(bob, "p2p-01-bob-new-offer")
        bob.click("#offer-form button[type=submit]")
        bob.wait_for_url("**/p2p/offers/mine")
        assert "Venda BTC" in bob.locator("[data-testid=my-offers]").inner_text()
        screenshot(bob, "p2p-02-bob-my-offers")

        # Alice finds it in the book and opens a trade for R$ 600,00.
        alice.goto(f"{url}/p2p")
        row = alice.locator("[data-testid=offer-row]").first
        assert "Bob Oliveira" in row.inner_text() and "R$ 300.000,00" in row.inner_text()
        screenshot(alice, "p2p-03-alice-book")
        row.get_by_role("link", name="Comprar BTC").click()
        alice.wait_for_url("**/p2p/offers/*")
        alice.fill("input[name=brl_amount]", "600,00")
        screenshot(alice, "p2p-04-alice-offer")
        alice.click("[data-testid=open-trade]")
        alice.wait_for_url("**/p2p/trades/*")
        trade_url = alice.url
        assert alice.locator("[data-testid=trade-status]").get_attribute("data-status") == "OPEN"
        assert "bob.oliveira@example.com" in alice.locator("[data-testid=payment-details]").inner_text()
        assert alice.locator("[data-testid=pay-amount]").inner_text() == "R$ 600,00"
        expect(alice.locator("[data-testid=countdown]")).to_have_text(re.compile(r"^\d+:\d\d$"))  # app.js

        # Chat: Alice writes; Bob, on the trade page, sees it arrive by itself.
        alice.fill("textarea[name=body]", "Oi Bob! Fazendo o PIX agora.")
        alice.click("[data-testid=chat-form] button[type=submit]")
        alice.wait_for_selector("[data-testid=chat] >> text=Fazendo o PIX agora")
        bob.goto(trade_url)
        assert "Fazendo o PIX agora" in bob.locator("[data-testid=chat]").inner_text()
        assert "Aguardando o pagamento" in bob.locator("[data-testid=next-step]").inner_text()
        screenshot(alice, "p2p-05-alice-trade-open")
        bob.evaluate("window.scrollTo(0, 0)")
        alice.fill("textarea[name=body]", "Enviei o comprovante em seguida.")
        alice.click("[data-testid=chat-form] button[type=submit]")
        # no reload: the chat panel refreshes itself (app.js data-refresh-url)
        expect(bob.locator("[data-testid=chat]")).to_contain_text("Enviei o comprovante", timeout=15000)

        # Alice uploads her proof and marks the trade paid; Bob's page reloads on the new status.
        alice.set_input_files("[data-testid=paid-form] input[name=proof]",
                              files=[{"name": "comprovante-pix.png", "mimeType": "image/png", "buffer": PNG}])
        alice.click("[data-testid=mark-paid]")
        alice.wait_for_selector("[data-testid=trade-status][data-status=PAID]")
        screenshot(alice, "p2p-06-alice-paid")
        bob.wait_for_selector("[data-testid=release]", timeout=15000)
        assert "comprovante-pix.png" in bob.locator("[data-testid=proofs]").inner_text()
        with bob.expect_popup() as proof_popup:
            bob.click("[data-testid=proofs] a")
        assert proof_popup.value.url.endswith("/p2p/proofs/1")
        proof_popup.value.close()
        screenshot(bob, "p2p-07-bob-confirm-release")

        bob.click("[data-testid=release]")
        bob.wait_for_selector("[data-testid=trade-status][data-status=COMPLETED]")
        screenshot(bob, "p2p-08-bob-completed")
        alice.wait_for_selector("[data-testid=rate-form]", timeout=15000)
        alice.check("input[name=positive][value='1']")
        alice.fill("input[name=comment]", "Liberou rapidinho, recomendo!")
        alice.click("[data-testid=rate-form] button[type=submit]")
        alice.wait_for_selector("text=Você já avaliou esta negociação.")
        screenshot(alice, "p2p-09-alice-completed-rated")

        alice.goto(f"{url}/wallet")
        assert alice.locator("[data-testid=available-BTC]").inner_text() == "0,05199600 BTC"
        alice.goto(f"{url}/p2p/users/{demo['bob@example.com']}")
        stats = alice.locator("[data-testid=profile-stats]").inner_text()
        assert "100%" in stats and "1 👍" in stats
        screenshot(alice, "p2p-10-alice-bob-profile")

        # The same trade page on a phone.
        phone_ctx, phone = login(browser, url, "alice@example.com", errors, width=390, height=844)
        phone.goto(trade_url)
        screenshot(phone, "p2p-11-alice-trade-phone")
        phone.goto(f"{url}/p2p")
        screenshot(phone, "p2p-12-alice-book-phone")
        phone_ctx.close()
    finally:
        bob_ctx.close()
        alice_ctx.close()
    assert errors == []
    trade = owner.execute("select * from core.p2p_trades").fetchone()
    assert trade["status"] == "COMPLETED" and trade["crypto_amount"] == D("0.002")
    books(owner)
