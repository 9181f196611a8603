"""A customer switches the interface to English with the EN button and browses the main pages
in a real browser (Chromium via Playwright): translated, nothing overflowing, no script errors."""
from __future__ import annotations

import pytest

from tests.conftest import DEMO_PASSWORD

# path, the English heading, Portuguese words that must not be left on the page
PAGES = [
    ("/wallet", "Wallet", ["Carteira", "Disponível", "Ver extrato"]),
    ("/deposits", "Deposit with PIX", ["Depositar com PIX", "Seus depósitos"]),
    ("/withdrawals", "Withdraw to a PIX key", ["Sacar para uma chave PIX", "Seus saques"]),
    ("/p2p", "P2P: trade directly with other customers", ["Publicar oferta", "Minhas ofertas"]),
    ("/kyc", "Identity verification", ["Verificação de identidade", "Seu nível"]),
]
NAV = ["Wallet", "Deposits", "Withdrawals", "Market", "P2P", "Verification"]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_english_pages(live_server, page, demo, screenshot):
    live = live_server.url
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live}/login")
    page.fill("input[name=email]", "alice@example.com")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit].w-100")
    page.goto(f"{live}/wallet")
    assert page.locator("h1").inner_text() == "Carteira"

    page.get_by_role("button", name="EN", exact=True).click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Wallet"

    for path, heading, portuguese in PAGES:
        page.goto(f"{live}{path}")
        assert page.locator("html").get_attribute("lang") == "en", path
        assert page.locator("h1").first.inner_text().strip() == heading, path
        nav = page.locator("#mainnav .navbar-nav").first.inner_text()
        for label in NAV:
            assert label in nav, (path, label)
        text = page.locator("body").inner_text()
        for word in portuguese:
            assert word not in text, (path, word)
        # Longer English labels must not push the layout wider than the window, nor wrap the nav buttons.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
        page.get_by_test_id("account-menu").click()
        logout = page.get_by_role("button", name="Logout", exact=True).bounding_box()
        assert logout["height"] < 40, (path, logout)
        screenshot(page, f"i18n-en{path.replace('/', '-')}")

    # The balance cards: English labels, money in English notation.
    page.goto(f"{live}/wallet")
    card = page.locator("[data-testid=balance-BRL]").inner_text()
    assert "Available" in card and "Locked" in card
    assert page.locator("[data-testid=available-BRL]").inner_text().startswith("R$")
    assert "," not in page.locator("[data-testid=available-BRL]").inner_text().split(".")[-1]

    # Back to Portuguese.
    page.get_by_role("button", name="PT", exact=True).click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "pt-BR"
    assert page.locator("h1").inner_text() == "Carteira"
    assert errors == []
