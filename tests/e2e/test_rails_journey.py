"""A customer deposits with PIX and withdraws, in a real browser (Chromium via
Playwright): the QR page turns to "credited" by itself when the payment lands."""
import re

from tests.conftest import books
from tests.rails_support import control
from webapp.withdrawals import tasks


def test_deposit_and_withdraw_in_a_browser(rails_app, browser, screenshot, demo, owner, mp):
    url = rails_app.config["APP_URL"]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR")
    page = context.new_page()
    page.goto(url + "/login")
    page.fill("input[name=email]", "alice@example.com")
    page.fill("input[name=password]", "demo-pass-2026")
    page.click("main button[type=submit]")

    page.goto(url + "/deposits")
    page.fill("input[name=amount]", "150,00")
    page.click("[data-testid=deposit-form] button[type=submit]")
    page.wait_for_selector("[data-testid=deposit-qr-image]")
    assert re.search(r"\d+:\d\d", page.inner_text("[data-countdown]"))          # the countdown ticks
    screenshot(page, "rails-deposit-qr")

    pid = owner.execute("select provider_payment_id from core.pix_charges").fetchone()["provider_payment_id"]
    control(mp, f"/_sandbox/payments/{pid}/pay")
    page.wait_for_selector("[data-testid=deposit-credited]", timeout=15000)     # no reload
    assert page.locator("#deposit-qr").is_hidden()
    screenshot(page, "rails-deposit-credited")

    page.goto(url + "/withdrawals")
    page.fill("input[name=amount]", "100,00")
    page.select_option("select[name=key_type]", "CPF")
    page.fill("input[name=pix_key]", "526.018.159-06")                    # her own CPF: no cooling-off
    page.click("[data-testid=withdrawal-form] button[type=submit]")
    page.wait_for_selector(".alert-success")
    tasks.process_withdrawals(rails_app)
    page.goto(url + "/withdrawals")
    assert "Concluído" in page.inner_text("[data-testid=withdrawals]")
    screenshot(page, "rails-withdrawals")

    page.set_viewport_size({"width": 390, "height": 844})                       # a phone
    page.goto(url + "/deposits")
    screenshot(page, "rails-deposits-mobile")
    page.goto(url + "/withdrawals")
    screenshot(page, "rails-withdrawals-mobile")
    context.close()
    books(owner)
