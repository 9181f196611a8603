"""Every page, as each kind of person sees it, at a phone's width (390 px) and a laptop's (1280 px):
screenshots go to tests/e2e/screenshots/pages/<who>-<width>-<page>.png (git-ignored) for a person to look at.

The test itself fails on what a screenshot would show broken: a page that errors (4xx/5xx for a page that
should open, a script error), a page wider than the window, or a navbar whose items leave the screen.
Run alone: .venv/bin/python -m pytest -q -p no:cacheprovider tests/e2e/test_screenshots.py
"""
from __future__ import annotations

import json
import re

import pytest

from tests.conftest import PRICES
from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.test_navbar import LONG_NAME, log_in, navbar_problems

WIDTHS = (390, 1280)

CUSTOMER_PAGES = ["/", "/wallet", "/wallet/BRL", "/wallet/BTC", "/wallet/BTC/deposit", "/wallet/BTC/withdraw",
                  "/deposits", "/withdrawals", "/market", "/market/orders", "/market/portfolio", "/p2p",
                  "/p2p/offers/new", "/p2p/offers/mine", "/p2p/trades", "/p2p/offers/{offer_id}",
                  "/p2p/trades/{trade_id}", "/p2p/users/{bob_id}", "/kyc", "/tax", "/notifications",
                  "/account/security", "/account/password", "/account/email", "/account/privacy",
                  "/account/close", "/proof-of-liabilities", "/proof-of-liabilities/me?currency=BTC",
                  "/privacidade", "/termos"]
ADMIN_PAGES = ["/admin/", "/admin/kyc", "/admin/users", "/admin/users/{alice_id}", "/admin/med",
               "/admin/twofactor-recoveries", "/admin/audit-log", "/admin/withdrawals", "/admin/crypto",
               "/admin/disputes", "/wallet"]
AUDITOR_PAGES = ["/audit", "/audit/views/liabilities", "/audit/views/trial_balance", "/audit/views/journal",
                 "/audit/views/health_checks", "/proof-of-liabilities", "/wallet", "/market"]
ANONYMOUS_PAGES = ["/", "/login", "/register", "/password/forgot", "/proof-of-liabilities", "/privacidade", "/tarifas"]
# Pages that answer a refusal on purpose (a customer page for staff), still rendered in full.
REFUSED = {("admin", "/wallet"), ("auditor", "/wallet"), ("auditor", "/market")}


@pytest.fixture
def world(owner, demo):
    """The demo, with prices, a P2P offer of Bob's that Alice opened a trade on, a snapshot and a books check."""
    owner.execute("select admin.record_prices(%s)", (json.dumps(PRICES),))
    owner.execute("update core.users set display_name = %s where email in "
                  "('alice@example.com', 'admin@example.com', 'auditor@example.com')", (LONG_NAME,))
    offer = owner.execute(
        "select offer_id from api.create_p2p_offer(user_id => %s, side => 'SELL', crypto => 'BTC', price_type => 'fixed',"
        " total_amount => 0.01, min_brl => 100, max_brl => 3000, payment_methods => array['PIX'],"
        " idempotency_key => 'shot-offer', fixed_price => 300000,"
        " payment_details => 'Chave PIX: bob@example.com')", (demo["bob@example.com"],)).fetchone()
    trade = owner.execute(
        "select trade_id from api.open_p2p_trade(user_id => %s, offer_id => %s, payment_method => 'PIX',"
        " idempotency_key => 'shot-trade', brl_amount => 150)", (demo["alice@example.com"], offer["offer_id"])).fetchone()
    owner.execute("select * from admin.publish_liabilities_snapshot()")
    owner.execute("select * from admin.record_books_check()")
    return {"offer_id": offer["offer_id"], "trade_id": trade["trade_id"], "bob_id": demo["bob@example.com"],
            "alice_id": demo["alice@example.com"]}


def slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "home"


@pytest.mark.parametrize("who", ["customer", "admin", "auditor", "anonymous"])
def test_every_page_at_phone_and_laptop_width(live_server, browser, owner, world, who):
    email = {"customer": "alice@example.com", "admin": "admin@example.com", "auditor": "auditor@example.com"}.get(who)
    pages = {"customer": CUSTOMER_PAGES, "admin": ADMIN_PAGES, "auditor": AUDITOR_PAGES,
             "anonymous": ANONYMOUS_PAGES}[who]
    folder = SCREENSHOTS / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 900}, locale="pt-BR")
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"{width} {page.url}: script error {exc}"))
        page.on("response", lambda r: r.status >= 400 and r.request.resource_type != "document"
                and problems.append(f"{width} {page.url}: {r.status} {r.url}"))
        if email:
            log_in(page, live_server.url, owner, email)
        for path in pages:
            target = path.format(**world)
            response = page.goto(live_server.url + target)
            expected = 403 if (who, path) in REFUSED else 200
            if response.status != expected:
                problems.append(f"{width} {target}: HTTP {response.status}, expected {expected}")
            page.screenshot(path=str(folder / f"{who}-{width}-{slug(path)}.png"), full_page=True)
            if not page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"):
                problems.append(f"{width} {target}: the page is wider than the window")
            problems += [f"{width} {target}: {p}" for p in navbar_problems(page)]
        context.close()
    assert not problems, "\n".join(problems)
