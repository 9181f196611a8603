"""The English catalog: complete, in step with the source strings, and used by the web app.

Source strings are Portuguese (pt-BR, the default); webapp/translations/en holds the English catalog
(`make i18n` extracts, updates and compiles it).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "webapp" / "translations"
PO = TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.po"
MO = TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.mo"


def catalog():
    with PO.open("rb") as f:
        return read_po(f, locale="en")


def strings(message) -> tuple:
    return message.string if isinstance(message.string, (list, tuple)) else (message.string,)


def makefile_keywords() -> list[str]:
    """The `-k NAME` options of I18N_KEYWORDS in the Makefile (one source of truth for the extraction)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = re.search(r"^I18N_KEYWORDS\s*:?=(.*)$", text, re.M)
    assert line, "no I18N_KEYWORDS in the Makefile"
    keywords = re.findall(r"-k\s+(\S+)", line.group(1))
    assert "N_" in keywords and "flash" in keywords
    return keywords


def test_catalog_has_no_untranslated_or_fuzzy_entries():
    cat = catalog()
    messages = [m for m in cat if m.id]
    assert len(messages) > 500
    untranslated = [m.id for m in messages if not all(strings(m))]
    fuzzy = [m.id for m in messages if m.fuzzy]
    assert untranslated == []
    assert fuzzy == []
    assert not cat.fuzzy, "the catalog header is marked fuzzy"


def test_translations_keep_their_placeholders():
    problems = [(message.id, [str(e) for e in errors]) for message, errors in catalog().check()]
    assert problems == []
    placeholder = re.compile(r"%\(\w+\)s|%%")
    for message in catalog():
        if message.id:
            assert sorted(placeholder.findall(message.id)) == sorted(placeholder.findall(message.string)), message.id


def test_compiled_catalog_matches_the_po_file():
    with MO.open("rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    source = {m.id: m.string for m in catalog() if m.id}
    assert compiled == source, "run `make i18n` (or pybabel compile -d webapp/translations)"


def test_every_extracted_string_is_translated(tmp_path):
    """A fresh extraction with the Makefile's keywords: every msgid is in the catalog, translated."""
    from babel.messages.frontend import CommandLineInterface

    pot = tmp_path / "messages.pot"
    args = ["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-o", str(pot)]
    for keyword in makefile_keywords():
        args += ["-k", keyword]
    cwd = os.getcwd()
    os.chdir(ROOT)  # babel.cfg's patterns are relative to the project
    try:
        CommandLineInterface().run(args + ["."])
    finally:
        os.chdir(cwd)
    with pot.open("rb") as f:
        extracted = {m.id for m in read_po(f) if m.id}
    assert len(extracted) > 500
    translated = {m.id for m in catalog() if m.id and all(strings(m)) and not m.fuzzy}
    missing = sorted(extracted - translated, key=str)
    assert missing == [], f"{len(missing)} strings not translated; run `make i18n` and translate them"


@pytest.mark.parametrize("label", ["Carteira", "Depósitos", "Saques", "Mercado", "Verificação"])
def test_constant_labels_are_extracted(label):
    """Labels kept in Python constants (NAV, STATUS dicts) are marked with N_() and so reach the catalog."""
    assert catalog().get(label) is not None


def test_glossary():
    cat = catalog()
    expected = {
        "Carteira": "Wallet", "Depósitos": "Deposits", "Saques": "Withdrawals", "Mercado": "Market",
        "Verificação": "Verification", "Extrato": "Statement", "Bloqueado": "Locked", "Disponível": "Available",
        "Negociação": "Trade", "Oferta": "Offer", "PIX copia e cola": "PIX copy-and-paste code", "CPF": "CPF",
    }
    assert {k: cat.get(k).string for k in expected} == expected


def test_wallet_switches_to_english_and_back(client, forms, demo, login):
    login("alice@example.com")
    page = client.get("/wallet").get_data(as_text=True)
    assert '<html lang="pt-BR">' in page
    assert "Carteira" in page and "Disponível" in page
    assert re.search(r'data-testid="available-BRL">R\$ \d{1,3}(\.\d{3})*,\d{2}<', page)

    response = forms.post("/language/en", {}, form_url="/wallet")
    assert response.status_code == 302
    page = client.get("/wallet").get_data(as_text=True)
    assert '<html lang="en">' in page
    assert "Wallet" in page and "Available" in page and "Locked" in page
    assert "Carteira" not in page and "Disponível" not in page
    # Navigation labels come from a Python constant (formatting.NAV), translated when rendered.
    assert ">Deposits</a>" in page.replace('<i class="bi bi-box-arrow-in-down" aria-hidden="true"></i> ', "")
    # Money keeps its currency and two decimals, in English notation: R$1,234.50.
    assert re.search(r'data-testid="available-BRL">R\$\d{1,3}(,\d{3})*\.\d{2}<', page)
    assert re.search(r'data-testid="available-BTC">\d{1,3}(,\d{3})*\.\d{8} BTC<', page)

    response = forms.post("/language/pt_BR", {}, form_url="/wallet")
    assert response.status_code == 302
    page = client.get("/wallet").get_data(as_text=True)
    assert '<html lang="pt-BR">' in page
    assert "Carteira" in page and "Disponível" in page and "Wallet" not in page


def test_flash_and_form_errors_are_translated(client, forms, demo, login):
    login("alice@example.com")
    forms.post("/language/en", {}, form_url="/wallet")
    page = client.get("/withdrawals").get_data(as_text=True)
    assert "Withdraw to a PIX key" in page and "Withdrawal amount (R$)" in page
    response = forms.post("/withdrawals", {"amount": "", "key_type": "CPF", "pix_key": ""})
    page = response.get_data(as_text=True)
    assert "Enter a valid amount (use a dot or comma for the cents)." in page
    assert "Enter the PIX key." in page
    response = client.post("/logout", data={"csrf_token": forms.token("/wallet")}, follow_redirects=True)
    assert "You are logged out." in response.get_data(as_text=True)
