"""Browser journeys of webapp/tax and webapp/privacy: a customer with a scripted year reads the tax
statement (and its print layout), sees what stops the closure of her account; another customer with
nothing left closes his account and can no longer log in. Screenshots at 390 px and 1280 px."""
from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from tests.conftest import DEMO_PASSWORD, books
from tests.test_tax import Script, run_year
from tests.sql.test_market_sql import setup_market

WIDTHS = {"mobile": 390, "desktop": 1280}


def log_in(page, url, email):
    page.goto(url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/wallet")


@pytest.mark.parametrize("width", ["desktop", "mobile"])
def test_tax_statement_and_closure_blockers(live_server, browser, screenshot, owner, worker, demo, width):
    setup_market(owner, {"BTCBRL": "560000", "ETHBRL": "20000", "USDTBRL": "5.40"})
    run_year(Script(owner, worker, demo["bob@example.com"], demo["admin@example.com"]))
    context = browser.new_context(viewport={"width": WIDTHS[width], "height": 900})
    page = context.new_page()
    log_in(page, live_server.url, "tina@example.com")
    page.click("text=Informe para o Imposto de Renda")
    page.select_option("#year", "2025")
    page.click("[data-testid=year-form] button")
    page.wait_for_url("**/tax?year=2025")
    assert page.inner_text("[data-testid=cost-BTC]") == "R$ 540,00"
    assert page.inner_text("[data-testid=quantity-BTC]") == "0,00090000 BTC"
    assert "R$ 2.083,20" in page.inner_text("[data-testid=disposals]")
    assert "R$ 612,00" in page.inner_text("[data-testid=moved-out]")
    # nothing wider than the screen (the tables scroll inside their own box)
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS[width]
    screenshot(page, f"tax-{width}")
    page.emulate_media(media="print")
    assert not page.is_visible("nav.navbar") and not page.is_visible("[data-testid=tax-csv]")
    screenshot(page, f"tax-print-{width}")
    page.emulate_media(media="screen")

    page.goto(live_server.url + "/account/privacy")
    blockers = page.inner_text("[data-testid=blockers]")
    assert "Saldo de" in blockers and "BTC" in blockers
    screenshot(page, f"privacy-{width}")
    page.click("text=Encerrar a conta >> nth=-1")
    page.wait_for_url("**/account/close")
    assert "Ainda não é possível encerrar a conta" in page.inner_text("[data-testid=blockers]")
    screenshot(page, f"close-blocked-{width}")
    page.goto(live_server.url + "/privacidade")
    screenshot(page, f"policy-{width}")
    context.close()
    books(owner)


def test_a_customer_with_nothing_left_closes_the_account(live_server, browser, screenshot, owner, web):
    web.execute("select api.register_user('dan@example.com', %s, 'Dan Prado')",
                (generate_password_hash(DEMO_PASSWORD, method="pbkdf2:sha256:1000"),))
    context = browser.new_context(viewport={"width": 390, "height": 900})
    page = context.new_page()
    log_in(page, live_server.url, "dan@example.com")
    page.click("text=Meus dados (LGPD)")
    page.click("text=Encerrar a conta >> nth=-1")
    assert page.is_visible("[data-testid=can-close]")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form[data-testid=close-form] button[type=submit]")
    assert "Confirme que deseja encerrar a conta." in page.inner_text("form[data-testid=close-form]")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.check("input[name=confirm]")
    page.fill("textarea[name=reason]", "mudei de corretora")
    screenshot(page, "close-ready-mobile")
    page.click("form[data-testid=close-form] button[type=submit]")
    page.wait_for_url("**/account/closed")
    assert "Sua conta foi encerrada" in page.inner_text("main")
    screenshot(page, "closed-mobile")
    page.goto(live_server.url + "/login")
    page.fill("input[name=email]", "dan@example.com")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("main form button[type=submit]")
    assert "Esta conta foi encerrada" in page.inner_text("main")
    assert owner.execute("select status from core.users where email = 'dan@example.com'").fetchone()["status"] == "closed"
    context.close()
    books(owner)
