"""The wallet blueprint through the real app and database: balances, sending, statement."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

from tests.conftest import CSRF, books

KEY = re.compile(r'name="idempotency_key" type="hidden" value="([^"]+)"')


def available(owner, email: str, currency: str = "BRL") -> Decimal:
    return owner.execute("""select a.balance from core.accounts a join core.users u on u.id = a.user_id
                            where u.email = %s and a.currency = %s and a.purpose = 'available'""",
                         (email, currency)).fetchone()["balance"]


def text_of(response) -> str:
    return response.get_data(as_text=True)


def field_errors(html: str) -> list[str]:
    return [re.sub(r"\s+", " ", e).strip() for e in re.findall(r'<div class="invalid-feedback d-block">(.*?)</div>',
                                                                html, re.S)]


def send(forms, recipient: str, amount: str, currency: str = "BRL"):
    return forms.post("/wallet", {"recipient_email": recipient, "currency": currency, "amount": amount})


@pytest.fixture
def alice(demo, login):
    login("alice@example.com")
    return demo["alice@example.com"]


def test_wallet_requires_login(client):
    response = client.get("/wallet")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_wallet_shows_each_balance_in_its_currency(client, alice):
    html = text_of(client.get("/wallet"))
    balances = {c: re.sub(r"\s+", " ", v).strip() for c, v in
                re.findall(r'data-testid="available-([A-Z]+)">(.*?)</div>', html, re.S)}
    assert balances == {"BRL": "R$ 10.000,00", "BTC": "0,05000000 BTC", "ETH": "1,50000000 ETH",
                        "USDT": "2.000,000000 USDT"}
    assert 'data-testid="locked-BRL">R$ 0,00<' in html
    for currency in ("BRL", "BTC", "ETH", "USDT"):
        assert f'href="/wallet/{currency}"' in html


def test_wallet_shows_every_significant_digit_of_a_long_scale_amount(client, owner, alice, demo):
    owner.execute("select * from admin.adjust_balance(%s, %s, 'ETH', 0.000000000000000001, 'Ajuste de um wei', 'wei')",
                  (demo["admin@example.com"], alice))
    assert "1,500000000000000001 ETH" in text_of(client.get("/wallet"))


def test_transfer_with_a_comma_decimal_moves_money_once(client, forms, owner, alice):
    page = text_of(client.get("/wallet"))
    token = CSRF.search(page)
    key = KEY.search(page).group(1)
    payload = {"csrf_token": token.group(1) or token.group(2), "idempotency_key": key,
               "recipient_email": "bob@example.com", "currency": "BRL", "amount": "12,34"}
    first = client.post("/wallet", data=payload)
    assert first.status_code == 302 and first.headers["Location"].endswith("/wallet")
    assert "Transferência enviada" in text_of(client.get("/wallet"))
    # the same form again (double click, retry after a timeout): the database moves the money once
    again = client.post("/wallet", data=payload)
    assert again.status_code == 302
    assert available(owner, "alice@example.com") == Decimal("9987.66")
    assert available(owner, "bob@example.com") == Decimal("5012.34")
    assert owner.execute("select count(*) as n from core.entries where reference = %s",
                         (f"transfer:{key}",)).fetchone()["n"] == 1
    # each fresh form has a fresh key
    assert KEY.search(text_of(client.get("/wallet"))).group(1) != key
    books(owner)


@pytest.mark.parametrize("amount,expected", [("1.234,56", Decimal("1234.56")), ("1234.56", Decimal("1234.56")),
                                             ("R$ 0,01", Decimal("0.01"))])
def test_amount_formats_accepted(forms, owner, alice, amount, expected):
    assert send(forms, "bob@example.com", amount).status_code == 302
    assert available(owner, "bob@example.com") == Decimal("5000.00") + expected
    books(owner)


def test_insufficient_funds_is_shown_on_the_form(forms, owner, alice):
    response = send(forms, "bob@example.com", "10.000,01")
    assert 400 <= response.status_code < 500
    assert "Saldo insuficiente em BRL." in field_errors(text_of(response))
    assert available(owner, "alice@example.com") == Decimal("10000.00")
    books(owner)


def test_off_scale_amount_is_shown_on_the_form(forms, owner, alice):
    response = send(forms, "bob@example.com", "12,345")
    assert 400 <= response.status_code < 500
    errors = field_errors(text_of(response))
    assert any("casas decimais" in e and "BRL" in e for e in errors), errors
    response = send(forms, "bob@example.com", "0,000000001", currency="BTC")
    assert 400 <= response.status_code < 500
    assert any("casas decimais" in e and "BTC" in e for e in field_errors(text_of(response)))
    assert available(owner, "alice@example.com") == Decimal("10000.00")
    books(owner)


@pytest.mark.parametrize("amount", ["0", "-5", "abc", ""])
def test_invalid_amounts_are_shown_on_the_form(forms, owner, alice, amount):
    response = send(forms, "bob@example.com", amount)
    assert 400 <= response.status_code < 500
    assert field_errors(text_of(response)), "no message on the form"
    assert available(owner, "alice@example.com") == Decimal("10000.00")


@pytest.mark.parametrize("amount", ["NaN", "Infinity"])
def test_non_finite_amounts_move_nothing(forms, owner, alice, amount):
    response = send(forms, "bob@example.com", amount)
    assert 400 <= response.status_code < 500
    assert available(owner, "alice@example.com") == Decimal("10000.00")
    books(owner)


def test_non_finite_amount_gets_a_customer_message(forms, alice):
    html = text_of(send(forms, "bob@example.com", "NaN"))
    assert "Unbalanced" not in html


def test_unknown_recipient_and_self_are_shown_on_the_form(forms, owner, alice):
    response = send(forms, "ninguem@example.com", "10,00")
    assert 400 <= response.status_code < 500
    assert any("ninguem@example.com" in e for e in field_errors(text_of(response)))
    response = send(forms, "alice@example.com", "10,00")
    assert 400 <= response.status_code < 500
    assert any("si mesmo" in e for e in field_errors(text_of(response)))
    assert available(owner, "alice@example.com") == Decimal("10000.00")


def test_transfer_without_csrf_is_refused(client, owner, alice):
    response = client.post("/wallet", data={"recipient_email": "bob@example.com", "currency": "BRL",
                                            "amount": "1,00", "idempotency_key": "x"})
    assert response.status_code == 400
    assert available(owner, "alice@example.com") == Decimal("10000.00")


def test_statement_pages_newest_first_with_balance_after(client, owner, alice, demo):
    admin = demo["admin@example.com"]
    for i in range(1, 26):  # 25 credits of R$ 1,00 after the seed credit: 26 movements, 2 pages of 20
        owner.execute("select * from admin.adjust_balance(%s, %s, 'BRL', 1.00, %s, %s)",
                      (admin, alice, f"Crédito de teste {i:02d}", f"st-{i}"))
    first = text_of(client.get("/wallet/BRL"))
    entries = [int(n) for n in re.findall(r"#(\d+)", first)]
    assert len(entries) == 20 and entries == sorted(entries, reverse=True)
    assert "Crédito de teste 25" in first and "Crédito de teste 06" in first and "Crédito de teste 05" not in first
    amounts = [re.sub(r"\s+", " ", a).strip() for a in re.findall(r'<td class="text-end text-nowrap">(.*?)</td>', first, re.S)]
    # balance after: the newest is the current balance, then one real less per row
    assert amounts[:3] == ["R$ 10.025,00", "R$ 10.024,00", "R$ 10.023,00"]
    assert amounts[19] == "R$ 10.006,00"
    assert "1 / 2" in first and "page=2" in first
    second = text_of(client.get("/wallet/BRL?page=2"))
    rows = [int(n) for n in re.findall(r"#(\d+)", second)]
    assert len(rows) == 6 and max(rows) < min(entries)
    assert "Saldo inicial de demonstração" in second and "R$ 10.000,00" in second and "2 / 2" in second
    books(owner)


def test_statement_of_another_currency(client, owner, alice):
    html = text_of(client.get("/wallet/BTC"))
    assert "0,05000000 BTC" in html and "Saldo inicial de demonstração" in html
    assert "R$" not in re.sub(r"<nav.*?</nav>", "", html, flags=re.S).split('data-testid="statement"')[1]


def test_a_customer_sees_only_their_own_statement(client, forms, owner, alice, demo):
    owner.execute("select * from admin.adjust_balance(%s, %s, 'BRL', 7.00, 'Crédito só do Bob', 'bob-only')",
                  (demo["admin@example.com"], demo["bob@example.com"]))
    html = text_of(client.get("/wallet/BRL"))
    assert "Crédito só do Bob" not in html
    assert client.get("/wallet/XYZ").status_code == 404
    assert client.get("/wallet/brl").status_code == 404
    assert client.get(f"/wallet/BRL?user_id={demo['bob@example.com']}").get_data(as_text=True).count("#") == \
        html.count("#")
