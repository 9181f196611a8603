"""Who lands where (customer → wallet, admin → back office, auditor → /audit), and the customer pages
are not offered to admins and auditors: no navbar links, and a short explanation instead of the forms."""
from __future__ import annotations

import pytest

CUSTOMER_PAGES = ["/wallet", "/wallet/BRL", "/wallet/BTC/deposit", "/wallet/BTC/withdraw", "/deposits",
                  "/withdrawals", "/market", "/market/orders", "/market/portfolio", "/p2p", "/p2p/offers/new",
                  "/p2p/offers/mine", "/p2p/trades", "/kyc", "/tax"]
CUSTOMER_NAV = ["/wallet\"", "/deposits\"", "/withdrawals\"", "/market\"", "/p2p\"", "/kyc\""]
LANDING = {"alice@example.com": "/wallet", "admin@example.com": "/admin/", "auditor@example.com": "/audit"}


@pytest.mark.parametrize("email", list(LANDING))
def test_each_role_lands_on_its_home(client, demo, login, email):
    response = login(email)
    assert response.headers["Location"] == LANDING[email]
    assert client.get("/").headers["Location"] == LANDING[email]
    assert client.get("/login").headers["Location"] == LANDING[email]
    assert client.get(LANDING[email]).status_code == 200


def test_next_still_wins_after_login(client, demo, forms):
    response = forms.post("/login?next=/proof-of-liabilities", {"email": "auditor@example.com",
                                                                  "password": "demo-pass-2026"})
    assert response.headers["Location"] == "/proof-of-liabilities"


@pytest.mark.parametrize("email, home, label", [("admin@example.com", "/admin/", "Ir para a administração"),
                                                ("auditor@example.com", "/audit", "Ir para a auditoria")])
def test_staff_get_an_explanation_instead_of_customer_forms(client, forms, owner, demo, login, email, home, label):
    login(email)
    nav = client.get(home).get_data(as_text=True).split("</nav>")[0]
    for link in CUSTOMER_NAV:
        assert f'href="{link}' not in nav, link
    for url in CUSTOMER_PAGES:
        response = client.get(url)
        html = response.get_data(as_text=True)
        assert response.status_code == 403, url
        assert "Página dos clientes" in html and f'href="{home}"' in html and label in html, url
        main = html.split("<main", 1)[1]
        assert "<form" not in main, url  # no send, deposit, withdrawal, order or offer form
    # a POST (with its CSRF token) is refused the same way, before any form is read
    response = forms.post("/wallet", {"recipient_email": "bob@example.com", "currency": "BRL", "amount": "1",
                                      "idempotency_key": "staff-send"}, form_url=home)
    assert response.status_code == 403 and "Página dos clientes" in response.get_data(as_text=True)
    assert owner.execute("select count(*) as n from core.idempotency_keys "
                         "where key_digest = core.idempotency_digest('transfer', 'staff-send')").fetchone()["n"] == 0


def test_staff_explanation_in_english(client, demo, login, forms):
    login("auditor@example.com")
    forms.post("/language/en", {}, form_url="/audit")
    html = client.get("/wallet").get_data(as_text=True)
    assert "Customer page" in html and "Go to the audit" in html
    assert "Página dos clientes" not in html


def test_admin_keeps_the_back_office_pages_on_customer_blueprints(client, demo, login):
    login("admin@example.com")
    for url in ("/admin/withdrawals", "/admin/crypto", "/admin/disputes", "/admin/kyc"):
        assert client.get(url).status_code == 200, url
    # a customer's public P2P profile, which a dispute page links to
    assert client.get(f"/p2p/users/{demo['bob@example.com']}").status_code == 200


def test_customers_keep_their_pages(client, demo, login):
    login("alice@example.com")
    for url in CUSTOMER_PAGES:
        assert client.get(url).status_code == 200, url
    assert 'href="/wallet"' in client.get("/wallet").get_data(as_text=True).split("</nav>")[0]
