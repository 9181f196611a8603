"""Numbers as a reader reads them, in pt-BR (the default) and in English: on /audit (amounts in their currency's
scale with trailing zeros trimmed, labels in the reader's language), the market desk's spread and fee, P2P
file sizes and percentages."""
from __future__ import annotations

import re
from decimal import Decimal as D

import pytest

from webapp.formatting import filesize, number, percent


@pytest.fixture
def in_language(app):
    def use(code):
        from flask_babel import refresh
        ctx = app.test_request_context()
        ctx.push()
        from flask import session
        session["lang"] = code
        refresh()
        return ctx
    return use


@pytest.mark.parametrize("lang, expected", [
    ("pt_BR", ["15.203,20", "3,75", "0,12345678", "−12,5", "+1,5", "0,98%", "−1,5%", "102 B", "1,5 KB", "1.000"]),
    ("en", ["15,203.20", "3.75", "0.12345678", "−12.5", "+1.5", "0.98%", "−1.5%", "102 B", "1.5 KB", "1,000"]),
])
def test_filters_in_both_languages(in_language, lang, expected):
    ctx = in_language(lang)
    try:
        assert [number(D("15203.20"), "BRL"), number(D("3.750000000000000000"), "ETH"),
                number(D("0.123456789123"), "BTC"), number(D("-12.5")), number(D("1.5"), signed=True),
                percent(D("0.980")), percent(D("-1.5")), filesize(102), filesize(1536), number(D("1E+3"))] == expected
    finally:
        ctx.pop()


def test_number_keeps_a_currency_scale_and_never_rounds_up(app):
    with app.test_request_context():   # the scales come from the app's currency list
        assert number(D("0.999999999"), "BTC") == "0,99999999"
        assert number(D("1.005"), "BRL") == "1,00"
        assert number(None) == "—" and percent(None) == "—" and filesize(None) == "—"


@pytest.fixture
def audited(demo, owner, login, client):
    owner.execute("select * from core.post_adjustment(%s, %s, 'BRL', 15203.20, 'teste', 'f-1')",
                  (demo["admin@example.com"], demo["alice@example.com"]))
    owner.execute("select * from admin.publish_liabilities_snapshot()")
    owner.execute("select * from admin.record_books_check()")
    login("auditor@example.com")
    return demo


def test_audit_in_portuguese(client, audited):
    html = client.get("/audit").get_data(as_text=True)
    liabilities = html.split('data-testid="liabilities"')[1].split("</table>")[0]
    # (ETH is kept with 18 decimals in the ledger: 3.750000000000000000 must not show)
    assert not re.search(r"\d\.\d{9,}", html), "a raw long decimal is shown"
    assert "Disponível" in liabilities and "Clientes com saldo" in liabilities
    assert "Balancete" in html and "Cada moeda soma zero" in html
    assert "Every currency sums to zero" not in html
    assert 'title="available"' in liabilities  # the view's own column name stays at hand
    journal = client.get("/audit/views/journal?sort=amount&dir=desc&f_currency=BRL").get_data(as_text=True)
    assert "15.203,20" in journal and "15203.20" not in journal
    assert "Soma de todos" in client.get("/audit/views/trial_balance").get_data(as_text=True)


def test_audit_in_english(client, audited, forms):
    forms.post("/language/en", {}, form_url="/audit")
    html = client.get("/audit").get_data(as_text=True)
    liabilities = html.split('data-testid="liabilities"')[1].split("</table>")[0]
    assert "Available" in liabilities and "Customers with a balance" in liabilities
    assert "Trial balance" in html and "Every currency sums to zero" in html
    assert "Balancete" not in html and "Cada moeda soma zero" not in html and "Relatórios" not in html
    journal = client.get("/audit/views/journal?sort=amount&dir=desc&f_currency=BRL").get_data(as_text=True)
    assert "15,203.20" in journal and "15203.20" not in journal
    # the CSV keeps the exact values, whatever the language
    csv = client.get("/audit/views/journal/export.csv?f_currency=BRL").get_data(as_text=True)
    assert "15203.20" in csv


def test_market_spread_and_fee_in_both_languages(client, demo, login, priced, forms, owner):
    owner.execute("update core.settings set value = '0.98' where name = 'market_spread_percent'")
    owner.execute("update core.settings set value = '0.59' where name = 'market_fee_percent'")
    login("alice@example.com")
    html = client.get("/market").get_data(as_text=True)
    assert "spread de 0,98% + taxa de 0,59%" in html
    forms.post("/language/en", {}, form_url="/market")
    html = client.get("/market").get_data(as_text=True)
    assert "Binance price + 0.98% spread + 0.59% fee" in html
