"""The currency list lives in the database (core.currencies, read through api.list_currencies by
webapp/currencies.py): a currency added there shows up in the forms and pages with no Python change,
and no module of webapp/ keeps a list of its own."""
import ast
import re
from decimal import Decimal
from pathlib import Path

from webapp import currencies
from webapp.formatting import plain

ROOT = Path(__file__).resolve().parent.parent
WEBAPP = ROOT / "webapp"
CODES = {"BRL", "BTC", "ETH", "USDT"}
# Maps keyed by currency that are not the list: the networks each coin travels on (chain rules)
# (and their names), and a chart palette (an unknown currency gets a neutral colour).
NOT_A_LIST = {("webapp/chain.py", "NETWORKS"), ("webapp/chain.py", "NETWORK_LABELS"),
              ("webapp/market/views.py", "COLORS")}


def test_the_list_comes_from_the_database(app):
    with app.app_context():
        assert currencies.codes() == ["BRL", "BTC", "ETH", "USDT"]
        assert currencies.codes("crypto") == ["BTC", "ETH", "USDT"]
        assert currencies.scale("ETH") == 18 and currencies.scale("BRL") == 2
        assert currencies.get("USDT").name == "Tether USD"


def test_a_row_added_in_the_database_shows_up(app, owner, demo, login, client):
    """Nothing in Python but a row in core.currencies: the forms offer it, the pages accept it."""
    owner.execute("insert into core.currencies (code, name, scale, kind, sort_order) "
                  "values ('SOL', 'Solana', 9, 'crypto', 5)")
    login("alice@example.com")
    wallet = client.get("/wallet").get_data(as_text=True)
    assert '<option value="SOL">SOL</option>' in wallet
    assert client.get("/wallet/XYZ").status_code == 404
    market = client.get("/market").get_data(as_text=True)
    assert '<option value="SOL">Solana (SOL)</option>' in market
    offer = client.get("/p2p/offers/new").get_data(as_text=True)
    assert 'value="SOL"' in offer
    with app.app_context():
        assert plain(Decimal("1.1234567891"), "SOL") == "1.123456789"   # its scale, 9, from the row


def test_read_once_per_process(app, owner):
    """Cached: a second read does not ask the database again (the list changes only by migration)."""
    with app.app_context():
        first = currencies.all_currencies()
        owner.execute("insert into core.currencies (code, name, scale, kind, sort_order) "
                      "values ('SOL', 'Solana', 9, 'crypto', 5)")
        assert currencies.all_currencies() is first and "SOL" not in currencies.codes()
        currencies.forget()
        assert "SOL" in currencies.codes()


def currency_literals(path: Path) -> list[str]:
    """Literal lists, tuples, sets or dicts of two or more currency codes (or (code, label) pairs)."""
    def code_of(node):
        if isinstance(node, ast.Tuple) and node.elts:
            node = node.elts[0]
        return node.value if isinstance(node, ast.Constant) and node.value in CODES else None

    relative = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(), relative)
    allowed = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in getattr(node, "targets", [getattr(node, "target", None)]):
                if isinstance(target, ast.Name) and (relative, target.id) in NOT_A_LIST:
                    allowed.add(id(node.value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = node.keys
        else:
            continue
        if id(node) not in allowed and len({code_of(item) for item in items} - {None}) >= 2:
            found.append(f"{relative}:{node.lineno}")
    return found


def test_no_module_keeps_its_own_currency_list():
    found = [hit for path in sorted(WEBAPP.rglob("*.py")) for hit in currency_literals(path)]
    templates = [f"{p.relative_to(ROOT)}" for p in sorted((WEBAPP / "templates").rglob("*.html"))
                 if re.search(r"""['"](BRL|BTC|ETH|USDT)['"]\s*,\s*['"](BRL|BTC|ETH|USDT)['"]""", p.read_text())]
    assert found == [] and templates == []


def test_the_check_finds_a_planted_list(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    module = tmp_path / "webapp" / "forms.py"
    module.parent.mkdir()
    module.write_text('CHOICES = [("BTC", "Bitcoin"), ("ETH", "Ether")]\nCOINS = ("BTC", "USDT")\n'
                      'SCALES = {"BRL": 2, "BTC": 8}\nONE = ("BTC",)\n')
    assert currency_literals(module) == ["webapp/forms.py:1", "webapp/forms.py:2", "webapp/forms.py:3"]
