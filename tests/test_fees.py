"""/tarifas: the public fee schedule, read from the configuration the domains charge from (api.get_fee_schedule)."""
from __future__ import annotations

import re


def cell(page: str, testid: str) -> str:
    match = re.search(rf'data-testid="{re.escape(testid)}">([^<]*)<', page)
    assert match, testid
    return match.group(1).strip()


def test_the_fee_page_is_public_and_shows_the_configured_values(client):
    response = client.get("/tarifas")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and '<html lang="pt-BR">' in page
    assert cell(page, "fee-market-spread") == "0,5%" and cell(page, "fee-market-fee") == "0,3%"
    assert cell(page, "fee-p2p-maker-BTC") == "0,1%" and cell(page, "fee-p2p-taker-USDT") == "0,2%"
    assert cell(page, "fee-withdraw-BTC-BTC").startswith("0,00002") and re.fullmatch(r"1,0+ USDT", cell(page, "fee-withdraw-USDT-TRX"))
    assert cell(page, "fee-deposit-min") == "R$ 10,00 – R$ 50.000,00" and cell(page, "fee-withdrawal-min") == "R$ 10,00"
    assert cell(page, "fee-maturation") == "24 h"
    assert cell(page, "limit-daily_p2p_brl-0") == "R$ 1.000,00" and cell(page, "limit-per_trade_max_brl-2") == "R$ 100.000,00"
    assert "Saque por PIX" in page and "sem tarifa" in page
    assert 'href="/tarifas"' in client.get("/login").get_data(as_text=True)  # linked in the footer


def test_a_changed_configuration_shows_on_the_page(client, owner):
    owner.execute("update core.settings set value = '0.75' where name = 'market_spread_percent'")
    owner.execute("update core.settings set value = '48' where name = 'deposit_maturation_hours'")
    owner.execute("update core.p2p_fees set taker_percent = 0.35 where crypto = 'BTC'")
    owner.execute("update core.crypto_networks set withdraw_fee = 0.00005 where coin = 'BTC' and network = 'BTC'")
    owner.execute("update core.crypto_networks set withdraw_enable = false where coin = 'USDT' and network = 'BSC'")
    owner.execute("update core.kyc_limits set daily_p2p_brl = 12345.67 where kyc_level = 1")
    page = client.get("/tarifas").get_data(as_text=True)
    assert cell(page, "fee-market-spread") == "0,75%"
    assert cell(page, "fee-maturation") == "48 h"
    assert cell(page, "fee-p2p-taker-BTC") == "0,35%" and cell(page, "fee-p2p-taker-ETH") == "0,2%"
    assert cell(page, "fee-withdraw-BTC-BTC").startswith("0,00005")
    assert cell(page, "fee-withdraw-USDT-BSC") == "saque desativado"
    assert cell(page, "limit-daily_p2p_brl-1") == "R$ 12.345,67"


def test_the_fee_page_in_english(client, forms):
    forms.post("/language/en", {}, form_url="/tarifas")
    page = client.get("/tarifas").get_data(as_text=True)
    assert '<html lang="en">' in page and "Fees and limits" in page
    assert cell(page, "fee-market-spread") == "0.5%" and cell(page, "limit-daily_p2p_brl-0") == "R$1,000.00"
