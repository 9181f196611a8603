"""An auditor logs in in a real browser and lands on /audit, with no customer page in the menu; typing /wallet
gives a short explanation and a way back, never a send form. The admin lands on the back office."""
from __future__ import annotations

from tests.e2e.test_navbar import log_in

CUSTOMER_LINKS = ["/wallet", "/deposits", "/withdrawals", "/market", "/p2p", "/kyc"]


def test_auditor_and_admin_land_on_their_own_home(live_server, browser, owner, demo, screenshot):
    for email, home, heading, back in [("auditor@example.com", "/audit", "Auditoria", "Ir para a auditoria"),
                                       ("admin@example.com", "/admin/", "Administração", "Ir para a administração")]:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        log_in(page, live_server.url, owner, email)
        assert page.url == live_server.url + home
        assert page.locator("h1").first.inner_text().strip() == heading
        hrefs = page.locator("#mainnav a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert not set(CUSTOMER_LINKS) & set(hrefs), hrefs

        page.goto(live_server.url + "/wallet")
        assert page.locator("h1").inner_text().strip() == "Página dos clientes"
        assert page.locator("main form").count() == 0
        screenshot(page, f"staff-{email.split('@')[0]}-on-wallet")
        assert page.get_by_test_id("error-action").inner_text().strip() == back
        page.get_by_test_id("error-action").click()
        page.wait_for_url(f"**{home}")
        assert page.locator("h1").first.inner_text().strip() == heading
        assert errors == []
        context.close()
