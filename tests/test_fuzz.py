"""Malformed requests, as a hostile client sends them, never answer 5xx (house rule: every bad input
gets a clear 4xx and leaves nothing half done).

A property-based fuzz (Hypothesis, derandomized, a bounded number of examples per route) over every
state-changing route and every GET that takes an id in its URL. Each request is a valid-looking
submission with at least one thing wrong: a field holding NUL characters, 5,000 characters, a file,
a number of 400 digits or 10^32; an id above 2^63, absent or another customer's; a JSON body (numbers,
lists, a bare value) where a form is expected. After the fuzz: no 5xx, the books balance, and no row
was written for another customer.

A new route fails `test_every_route_is_fuzzed` until it gets an entry in ROUTES.
"""
from __future__ import annotations

import io
import json
import re
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import DEMO_PASSWORD, Forms, books, totp_code

EXAMPLES_PER_ROUTE = 40

# Values no field may accept.
TEXT_HOSTILE = ["\x00", "a\x00b", "bob@example.com\x00", "x" * 5000, "\x00" * 40]
NUMBER_HOSTILE = ["1" + "0" * 32, str(2 ** 31), "-" + str(2 ** 31 + 1), "9" * 400, str(2 ** 63), "-" + str(2 ** 63), "1e32", "NaN", "Infinity",
                  "1" + "0" * 32 + ",5", "0," + "1" * 300]
FILE = "<file>"           # a file sent in a text field (multipart)
JSON_VALUES = [5, 10 ** 40, 1.5e300, [1, 2], ["a", "b"], {"a": 1}, None, True]
# Ids in the URL that match no object of the client's: out of every integer type, absent.
HOSTILE_IDS = ["0", str(2 ** 31), str(2 ** 63 - 1), str(2 ** 63), str(10 ** 30), "9" * 400, "999999"]

NUMERIC_FIELDS = {"amount", "brl_amount", "total_amount", "remaining_amount", "min_brl", "max_brl", "fixed_price",
                  "premium_percent", "payment_window_minutes", "min_counterparty_trades", "expires_in_days",
                  "min_counterparty_kyc"}
FILE_FIELDS = {"proof", "file", "evidence", "document", "selfie"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _offer(**extra):
    data = {"price_type": "fixed", "fixed_price": "300.000,00", "min_brl": "100", "max_brl": "3.000,00",
            "payment_methods": "PIX", "payment_window_minutes": "30", "payment_details": "PIX: alice@example.com",
            "terms": "Sem termos.", "min_counterparty_kyc": "0", "min_counterparty_trades": "0",
            "expires_in_days": "7"}
    data.update(extra)
    return data


@dataclass
class Route:
    method: str
    rule: str                      # as in app.url_map
    who: str                       # alice | admin | anon | logout
    fields: dict = field(default_factory=dict)
    ids: str | None = None         # which world ids fill the URL's id: "offer", "trade", …
    path: dict = field(default_factory=dict)  # fixed values of the other URL parts


def key():
    return str(uuid.uuid4())


ROUTES = [
    # anonymous
    Route("POST", "/register", "anon", {"display_name": "Eve", "email": "eve-{n}@example.com",
                                        "password": "uma-senha-forte-9", "confirm": "uma-senha-forte-9"}),
    Route("POST", "/login", "anon", {"email": "nobody@example.com", "password": "uma-senha-forte-9"}),
    Route("POST", "/login/2fa", "anon", {"totp_code": "123456"}),
    Route("POST", "/language/<code>", "anon", path={"code": "en"}),
    Route("POST", "/webhooks/mercadopago", "anon", {"type": "payment", "data.id": "123"}),
    Route("POST", "/logout", "logout"),
    Route("POST", "/password/forgot", "anon", {"email": "nobody@example.com"}),
    Route("POST", "/password/reset/<token>", "anon", {"password": "uma-senha-forte-9", "confirm": "uma-senha-forte-9"},
          path={"token": "A" * 43}),
    Route("POST", "/login/2fa/recovery", "anon", {"reason": "Perdi o celular ontem."}),
    # the customer
    Route("POST", "/wallet", "alice", {"recipient_email": "bob@example.com", "currency": "BRL", "amount": "1,00",
                                       "idempotency_key": "{key}"}),
    Route("POST", "/deposits", "alice", {"amount": "150,00", "idempotency_key": "{key}"}),
    Route("POST", "/withdrawals", "alice", {"amount": "10,00", "key_type": "CPF", "pix_key": "52601815906",
                                            "totp_code": "", "idempotency_key": "{key}"}),
    Route("POST", "/withdrawals/<int:withdrawal_id>/cancel", "alice", ids="withdrawal"),
    Route("POST", "/withdrawals/destinations", "alice", {"key_type": "EMAIL", "pix_key": "amigo@example.com",
                                                         "label": "Amigo", "totp_code": ""}),
    Route("POST", "/withdrawals/destinations/<int:destination_id>/remove", "alice", ids="destination"),
    Route("POST", "/market", "alice", {"side": "buy", "crypto": "BTC", "amount": "100"}),
    Route("POST", "/market/quote/<int:quote_id>", "alice", {"idempotency_key": "{key}"}, ids="quote"),
    Route("POST", "/p2p/offers/new", "alice", _offer(side="SELL", crypto="BTC", total_amount="0,001",
                                                     idempotency_key="{key}")),
    Route("POST", "/p2p/offers/<int:offer_id>/edit", "alice", _offer(remaining_amount="0,001"), ids="offer"),
    Route("POST", "/p2p/offers/<int:offer_id>/<any(pause, resume, cancel):action>", "alice", ids="offer",
          path={"action": "pause"}),
    Route("POST", "/p2p/offers/<int:offer_id>", "alice", {"brl_amount": "150,00", "payment_method": "PIX",
                                                         "payment_details": "", "idempotency_key": "{key}"},
          ids="offer"),
    Route("POST", "/p2p/trades/<int:trade_id>/paid", "alice", {"proof": "<png>"}, ids="trade"),
    Route("POST", "/p2p/trades/<int:trade_id>/cancel", "alice", ids="trade"),
    Route("POST", "/p2p/trades/<int:trade_id>/release", "alice", {"totp_code": ""}, ids="trade"),
    Route("POST", "/p2p/trades/<int:trade_id>/dispute", "alice", {"reason": "Não recebi.", "evidence": "<png>"},
          ids="trade"),
    Route("POST", "/p2p/trades/<int:trade_id>/messages", "alice", {"body": "Olá"}, ids="trade"),
    Route("POST", "/p2p/trades/<int:trade_id>/proofs", "alice", {"file": "<png>"}, ids="trade"),
    Route("POST", "/p2p/trades/<int:trade_id>/rate", "alice", {"positive": "1", "comment": "ok"}, ids="trade"),
    Route("POST", "/p2p/users/<int:user_id>/<any(block, unblock):action>", "alice", ids="user",
          path={"action": "block"}),
    Route("POST", "/kyc", "alice", {"full_name": "Alice Souza", "cpf": "526.018.159-06", "birth_date": "1990-05-17",
                                    "address": "Rua das Flores, 100"}),
    Route("POST", "/kyc/documents", "alice", {"document": "<png>", "selfie": "<png>"}),
    Route("POST", "/account/2fa", "alice", {"totp_code": "123456"}),
    Route("POST", "/account/2fa/disable", "alice", {"totp_code": "123456"}),
    Route("POST", "/account/password", "alice", {"current_password": DEMO_PASSWORD,
                                                 "new_password": "outra-senha-forte-7",
                                                 "confirm": "outra-senha-forte-7", "totp_code": ""}),
    Route("POST", "/notifications/read", "alice"),
    Route("POST", "/account/email/resend", "alice"),
    Route("POST", "/account/email", "alice", {"new_email": "alice2-{n}@example.com", "current_password": DEMO_PASSWORD}),
    Route("POST", "/account/anti-phishing", "alice", {"anti_phishing_code": "girassol-42"}),
    Route("POST", "/account/sessions/<int:session_id>/end", "alice", ids="session"),
    Route("POST", "/account/sessions/end-others", "alice"),
    Route("POST", "/account/privacy/export", "alice", {"format": "json"}),
    Route("POST", "/account/close", "alice", {"password": DEMO_PASSWORD, "totp_code": "", "reason": "Teste",
                                              "confirm": "y"}),
    # the back office
    Route("POST", "/admin/disputes/<int:trade_id>", "admin", {"outcome": "refund", "at_fault": "",
                                                              "note": "Decidido."}, ids="trade"),
    Route("POST", "/admin/kyc/<int:submission_id>/<any(approve, reject):decision>", "admin", {"reason": "Ilegível"},
          ids="submission", path={"decision": "reject"}),
    Route("POST", "/admin/users/<int:user_id>/<any(freeze, unfreeze):action>", "admin", {"reason": "Teste"},
          ids="user", path={"action": "freeze"}),
    Route("POST", "/admin/twofactor-recoveries/<int:request_id>/<any(approve, reject):decision>", "admin",
          {"reason": "Motivo do teste", "totp_code": ""}, ids="recovery", path={"decision": "reject"}),
    Route("POST", "/admin/users/<int:user_id>/adjust", "admin", {"currency": "BRL", "amount": "1,00",
                                                                 "reason": "Teste", "idempotency_key": "{key}"},
          ids="user"),
    Route("POST", "/admin/withdrawals/<int:withdrawal_id>/approve", "admin", ids="withdrawal"),
    Route("POST", "/admin/med/<int:clawback_id>/recover", "admin", {"reason": "Motivo do teste"}, ids="clawback"),
    Route("POST", "/admin/med/users/<int:user_id>/unblock", "admin", {"reason": "Motivo do teste"}, ids="user"),
    Route("POST", "/admin/withdrawals/<int:withdrawal_id>/reject", "admin", {"reason": "Motivo do teste"},
          ids="withdrawal"),
    # GETs that take an id
    Route("GET", "/admin/disputes/<int:trade_id>", "admin", ids="trade"),
    Route("GET", "/admin/kyc/<int:submission_id>", "admin", ids="submission"),
    Route("GET", "/admin/users/<int:user_id>", "admin", ids="user"),
    Route("GET", "/deposits/<int:deposit_id>", "alice", ids="deposit"),
    Route("GET", "/deposits/<int:deposit_id>/status", "alice", ids="deposit"),
    Route("GET", "/kyc/documents/<int:document_id>", "alice", ids="document"),
    Route("GET", "/market/orders/<int:order_id>", "alice", ids="order"),
    Route("GET", "/market/orders/<int:order_id>/status", "alice", ids="order"),
    Route("GET", "/market/quote/<int:quote_id>", "alice", ids="quote"),
    Route("GET", "/p2p/offers/<int:offer_id>", "alice", ids="offer"),
    Route("GET", "/p2p/offers/<int:offer_id>/edit", "alice", ids="offer"),
    Route("GET", "/p2p/proofs/<int:proof_id>", "alice", ids="proof"),
    Route("GET", "/p2p/trades/<int:trade_id>", "alice", ids="trade"),
    Route("GET", "/p2p/trades/<int:trade_id>/chat", "alice", ids="trade"),
    Route("GET", "/p2p/users/<int:user_id>", "alice", ids="user"),
    Route("GET", "/wallet/<currency>", "alice", {"page": "1"}, path={"currency": "BRL"}),
    # crypto on-chain
    Route("POST", "/wallet/<coin>/deposit", "alice", {"network": "BTC"}, path={"coin": "BTC"}),
    Route("POST", "/wallet/<coin>/withdraw", "alice", {"address_id": "1", "amount": "0,001", "totp_code": "",
                                                       "idempotency_key": "{key}"}, path={"coin": "BTC"}),
    Route("POST", "/wallet/<coin>/addresses", "alice", {"network": "BTC", "address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                                                        "memo": "", "label": "Minha carteira", "totp_code": ""},
          path={"coin": "BTC"}),
    Route("POST", "/wallet/<coin>/addresses/<int:address_id>/remove", "alice", ids="crypto_address",
          path={"coin": "BTC"}),
    Route("POST", "/wallet/<coin>/withdrawals/<int:withdrawal_id>/cancel", "alice", ids="crypto_withdrawal",
          path={"coin": "BTC"}),
    Route("POST", "/admin/crypto/withdrawals/<int:withdrawal_id>/<any(approve, reject):decision>", "admin",
          {"reason": "Motivo do teste"}, ids="crypto_withdrawal", path={"decision": "reject"}),
]
# Not fuzzed here: /webhooks/inter (its own test below, owned by the webhooks work), and the routes
# of the auditor (/audit…, their filters have tests of their own).
NOT_FUZZED = {"/webhooks/inter", "/audit/views/<name>", "/audit/views/<name>/export.csv",
              "/static/<path:filename>", "/bootstrap/static/<path:filename>"}

ID_PART = re.compile(r"<(?:int|id):(\w+)>")
OTHER_PART = re.compile(r"<(?:any\([^)]*\):)?(\w+)>")


def _normal(rule: str) -> str:
    """A rule with its id converter written as <int:…> (the fuzz does not care which converter bounds it)."""
    return re.sub(r"<\w+:(\w+_id)>", r"<int:\1>", rule)


def test_every_route_is_fuzzed(app):
    """Every state-changing route and every GET taking an id has an entry in ROUTES."""
    listed = {(r.method, r.rule) for r in ROUTES}
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.rule in NOT_FUZZED:
            continue
        text = _normal(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            needs = method != "GET" or "_id>" in text or "<currency>" in text
            if needs and (method, text) not in listed:
                missing.append((method, text))
    assert missing == []


# --------------------------------------------------------------------------- the world


class Client:
    """A browser: its own cookies and CSRF token."""

    def __init__(self, app, email=None):
        self.app, self.email = app, email
        self.login()

    def login(self):
        self.http = self.app.test_client()
        self.forms = Forms(self.http)
        if self.email:
            response = self.forms.post("/login", {"email": self.email, "password": DEMO_PASSWORD})
            assert response.status_code == 302, response.get_data(as_text=True)[:500]
            if response.headers["Location"].endswith("/login/2fa"):      # admins have 2FA on
                with psycopg.connect(self.app.config["DATABASE_URL"], autocommit=True) as conn:
                    user_id = conn.execute("select id from core.users where email = %s", (self.email,)).fetchone()[0]
                    code = totp_code(conn, user_id)
                response = self.forms.post("/login/2fa", {"totp_code": code})
                assert response.status_code == 302, response.get_data(as_text=True)[:500]
            self.token = self.forms.token("/wallet" if self.email != "admin@example.com" else "/admin/users/1")
        else:
            self.token = self.forms.token("/login")


@pytest.fixture
def fuzz_app(db_url, tmp_path):
    from webapp import create_app
    from webapp.config import role_url
    app = create_app({
        "TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": db_url,
        "APP_DATABASE_URL": role_url(db_url, "exchange_app"),
        "AUDIT_DATABASE_URL": role_url(db_url, "exchange_auditor"),
        "RATELIMIT_ENABLED": False,  # the fuzz must reach the views, not the limiter
        "DB_POOL_MAX": 4, "UPLOAD_DIR": str(tmp_path / "uploads"),
        "MERCADO_PAGO_BASE_URL": "http://127.0.0.1:9",  # nothing listens: a provider error, never a call out
    })
    yield app
    from webapp import db
    db.close_pools(app)


def _world(app, owner, demo):
    """alice fuzzes; bob and carol are the other customers whose rows must not change."""
    from werkzeug.security import generate_password_hash
    carol = owner.execute("select api.register_user('carol@example.com', %s, 'Carol Lima') as id",
                          (generate_password_hash(DEMO_PASSWORD, method="pbkdf2:sha256:1000"),)).fetchone()["id"]
    owner.execute("update core.users set kyc_level = 2 where id = %s", (carol,))
    owner.execute("select core.mark_email_verified(%s)", (carol,))
    # The desk open (as the worker's jobs leave it), so a quote reaches the amount checks.
    lot = {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"}
    symbols = {s: {"status": "TRADING", "filters": {
        "LOT_SIZE": lot, "MARKET_LOT_SIZE": {"minQty": "0", "maxQty": "100", "stepSize": "0"},
        "NOTIONAL": {"minNotional": "10", "maxNotional": "9000000"}}} for s in ("BTCBRL", "ETHBRL", "USDTBRL")}
    owner.execute("select admin.record_market_filters(%s::jsonb)", (json.dumps(symbols),))
    owner.execute("""select admin.record_prices('{"BTCBRL": "300000", "ETHBRL": "15000", "USDTBRL": "5.5"}')""")
    alice, bob, admin = (demo[e] for e in ("alice@example.com", "bob@example.com", "admin@example.com"))
    browsers = {email: Client(app, email) for email in ("alice@example.com", "bob@example.com", "carol@example.com")}

    def offer_by(email):
        response = browsers[email].forms.post("/p2p/offers/new", _offer(side="SELL", crypto="BTC",
                                                                       total_amount="0,01"))
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        return owner.execute("select max(id) as id from core.p2p_offers").fetchone()["id"]

    def trade_on(email, offer_id):
        response = browsers[email].forms.post(f"/p2p/offers/{offer_id}", {"brl_amount": "600,00",
                                                                         "payment_method": "PIX"})
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        return owner.execute("select max(id) as id from core.p2p_trades").fetchone()["id"]

    bob_offer, alice_offer = offer_by("bob@example.com"), offer_by("alice@example.com")
    carol_trade = trade_on("carol@example.com", bob_offer)  # alice has no part in it
    alice_trade = trade_on("alice@example.com", bob_offer)

    def withdrawal(user_id):
        owner.execute("insert into core.withdrawal_destinations (user_id, key_type, pix_key, usable_from) "
                      "values (%s, 'EMAIL', 'w@example.com', now()) on conflict do nothing", (user_id,))
        return owner.execute("select (api.create_withdrawal(user_id => %s, amount => 20, key_type => 'EMAIL', "
                             "pix_key => 'w@example.com', idempotency_key => %s)).withdrawal_id as id",
                             (user_id, key())).fetchone()["id"]

    def deposit(user_id):
        return owner.execute("select (api.create_deposit(user_id => %s, amount => 150, provider => 'mercadopago', "
                             "idempotency_key => %s)).deposit_id as id", (user_id, key())).fetchone()["id"]

    def quote(user_id):
        return owner.execute("select (api.create_quote(user_id => %s, side => 'buy', crypto => 'BTC', amount => 100))"
                             ".quote_id as id", (user_id,)).fetchone()["id"]

    def destination(user_id):
        return owner.execute("insert into core.withdrawal_destinations (user_id, key_type, pix_key, usable_from) "
                             "values (%s, 'PHONE', '+5511912345678', now()) returning id", (user_id,)).fetchone()["id"]

    ids = {  # own ids (alice's) first: the route may act on them; then the others'
        "destination": ([destination(alice)], [destination(bob)]),
        "offer": ([alice_offer], [bob_offer]),
        "trade": ([alice_trade], [carol_trade]),
        "withdrawal": ([withdrawal(alice)], [withdrawal(bob)]),
        "deposit": ([deposit(alice)], [deposit(bob)]),
        "user": ([alice], [bob, carol]),
        "quote": ([quote(alice)], [quote(bob)]), "order": ([], []), "clawback": ([], []), "crypto_address": ([], []), "crypto_withdrawal": ([], []), "proof": ([], []), "document": ([], []), "submission": ([], []),
        # only others' sessions: ending alice's own would log the fuzzing browser out
        "session": ([], [r["id"] for r in owner.execute("select id from core.user_sessions where user_id = %s", (bob,))]),
        "recovery": ([], []),
    }
    return {"alice": alice, "bob": bob, "carol": carol, "admin": admin, "ids": ids}


USER_COLUMNS = re.compile(r"(^|_)(user|buyer|seller|maker|taker|sender|author|rater|rated|blocker|blocked|"
                          r"target_user|counterparty|owner|recipient|payer|payee)_id$")


def snapshot(owner) -> dict[str, set[str]]:
    """Every row of every core table, as JSON text."""
    tables = [r["relname"] for r in owner.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'core' and c.relkind in ('r', 'p') order by 1")]
    return {t: {r["row"] for r in owner.execute(f"select to_jsonb(t)::text as row from core.{t} t")} for t in tables}


def written_for_others(owner, before, after, selves: set[int]) -> list:
    """Rows added, changed or removed that belong to a customer other than `selves` (and not to them too)."""
    accounts = {r["id"]: r["user_id"] for r in owner.execute("select id, user_id from core.accounts")}
    found = []
    for table, rows in after.items():
        for text in rows.symmetric_difference(before.get(table, set())):
            row = json.loads(text)
            users = {v for k, v in row.items() if USER_COLUMNS.search(k) and isinstance(v, int)}
            if table == "users":
                users.add(row["id"])
            if isinstance(row.get("account_id"), int):
                users.add(accounts.get(row["account_id"]))
            users.discard(None)
            if users and not users & selves:
                found.append((table, row))
    return found


# --------------------------------------------------------------------------- the fuzz


@st.composite
def requests(draw, route: Route, world: dict):
    """(url, kwargs for the test client, description) of one malformed request to `route`."""
    own, others = world["ids"].get(route.ids, ([], [])) if route.ids else ([], [])
    fields = {}
    for name, value in route.fields.items():
        if value == "<png>":
            fields[name] = value
        else:
            fields[name] = value.replace("{key}", key()).replace("{n}", uuid.uuid4().hex[:8])
    names = sorted(fields)
    transport = draw(st.sampled_from(["form", "form", "form", "multipart", "json"]))
    mutated = draw(st.lists(st.sampled_from(names), min_size=1, max_size=min(3, len(names)), unique=True)) \
        if names else []
    for name in mutated:
        if name in FILE_FIELDS:
            fields[name] = draw(st.sampled_from(TEXT_HOSTILE + ["PNG"]))  # text where a file goes
        elif name in NUMERIC_FIELDS:
            fields[name] = draw(st.sampled_from(NUMBER_HOSTILE + TEXT_HOSTILE + [FILE]))
        else:
            fields[name] = draw(st.sampled_from(TEXT_HOSTILE + [FILE]))
    # The id: hostile or another customer's, or the client's own when something else is wrong.
    id_value = None
    if route.ids:
        real = [str(i) for i in others]
        if mutated or transport == "json" or route.method == "GET":
            real += [str(i) for i in own]
        id_value = draw(st.sampled_from(real) | st.sampled_from(HOSTILE_IDS) if real else st.sampled_from(HOSTILE_IDS))
    url = route.rule
    for part in ID_PART.findall(route.rule):
        url = re.sub(rf"<(?:int|id):{part}>", id_value, url)
    url = OTHER_PART.sub(lambda m: route.path[m.group(1)], url)
    description = {"transport": transport, "mutated": {k: _short(fields[k]) for k in mutated}, "id": _short(id_value)}
    if route.method == "GET":
        query = {k: v for k, v in fields.items() if isinstance(v, str)} if mutated else {}
        return url, {"query_string": query}, description
    if transport == "json":
        body = draw(st.sampled_from(["dict", "dict", "dict", "list", "scalar"]))
        if body == "dict":
            payload = {k: (v if not isinstance(v, str) or v in (FILE, "<png>") else v) for k, v in fields.items()}
            for k in payload:
                if payload[k] in (FILE, "<png>"):
                    payload[k] = "PNG"
            for k in mutated or names[:1] or ["extra"]:
                payload[k] = draw(st.sampled_from(JSON_VALUES))
            payload["csrf_token"] = "{token}"
        elif body == "list":
            payload = ["{token}", 1, [2]]
        else:
            payload = draw(st.sampled_from([10 ** 40, "texto", None, 1.5]))
        description["json"] = _short(payload)
        return url, {"json": payload, "headers": {"X-CSRFToken": "{token}"}}, description
    data = {}
    for name, value in fields.items():
        if value == FILE or (transport == "multipart" and name in mutated and name not in FILE_FIELDS):
            data[name] = (io.BytesIO(b"not a text field"), "a.txt")
        elif value == "<png>":
            data[name] = (io.BytesIO(PNG), "proof.png")
        else:
            data[name] = value
    data["csrf_token"] = "{token}"
    return url, {"data": data}, description


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + f"…({len(text)} chars)"


def _fill_token(value, token):
    if isinstance(value, str):
        return value.replace("{token}", token)
    if isinstance(value, dict):
        return {k: _fill_token(v, token) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_token(v, token) for v in value]
    return value


def send(clients, app, route: Route, url, kwargs):
    client = clients[route.who] if route.who != "logout" else Client(app, "alice@example.com")
    kwargs = _fill_token(kwargs, client.token)
    if route.method == "GET":
        return client.http.get(url, **kwargs)
    return client.http.post(url, **kwargs)


def test_malformed_requests_never_answer_5xx(fuzz_app, owner, demo):
    app = fuzz_app
    world = _world(app, owner, demo)
    clients = {"alice": Client(app, "alice@example.com"), "admin": Client(app, "admin@example.com"),
               "anon": Client(app)}
    before = snapshot(owner)
    failures: list = []
    count = 0

    for route in ROUTES:
        @settings(max_examples=EXAMPLES_PER_ROUTE, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(st.data())
        def fuzz(data):
            nonlocal count
            url, kwargs, description = data.draw(requests(route, world))
            count += 1
            try:
                response = send(clients, app, route, url, kwargs)
            except Exception as exc:  # TESTING propagates what the 500 handler would have answered
                failures.append((route.method, route.rule, "raised " + type(exc).__name__, str(exc)[:120],
                                 description))
                return
            if response.status_code >= 500:
                failures.append((route.method, route.rule, response.status_code, "", description))
            # The customer is still logged in (nothing in a malformed request may end the session).
            if route.who == "alice" and "/login" in response.headers.get("Location", ""):
                clients["alice"] = Client(app, "alice@example.com")
        fuzz()

    kinds: dict = {}
    for method, rule, kind, detail, description in failures:
        kinds.setdefault((method, rule, kind, detail.split("\n")[0][:80]), []).append(description)
    report = "\n".join(f"{len(v):3d}× {k} e.g. {v[0]}" for k, v in sorted(kinds.items(), key=repr))
    print(f"\n{count} malformed requests, {len(failures)} answered 5xx")
    assert failures == [], f"{len(failures)} of {count} malformed requests answered 5xx:\n{report}"
    books(owner)
    selves = {world["alice"], world["admin"]}
    assert written_for_others(owner, before, snapshot(owner), selves) == []


def test_inter_webhook_on_an_app_without_inter_answers_404(fuzz_app):
    client = fuzz_app.test_client()
    for body in (b"", b"{}", b'{"pix": [{"txid": "abc"}]}', b"\x00" * 10):
        try:
            response = client.post("/webhooks/inter", data=body, content_type="application/json")
        except Exception as exc:
            pytest.fail(f"/webhooks/inter raised {exc!r}")
        assert response.status_code == 404, (body, response.status_code)


# --------------------------------------------------------------------------- the machinery, one piece at a time


def test_every_id_in_a_url_is_bounded(app):
    """An `…_id` in a URL goes through the `id` converter (1 to 2^63 - 1), never a bare <int:…>."""
    from webapp import IdConverter
    loose = [(rule.rule, name) for rule in app.url_map.iter_rules()
             for name, converter in rule._converters.items()
             if name.endswith("_id") and not isinstance(converter, IdConverter)]
    assert loose == []
    with app.test_request_context():
        from flask import url_for
        assert url_for("p2p.trade", trade_id=2 ** 63 - 1).endswith(str(2 ** 63 - 1))


def test_every_form_derives_from_the_base_form(app):
    """A form that skipped webapp.forms.Form would let NUL, files and JSON reach its fields."""
    import importlib
    import pkgutil

    import webapp
    from flask_wtf import FlaskForm
    from webapp.forms import Form
    for module in pkgutil.walk_packages(webapp.__path__, "webapp."):
        if module.name.endswith("forms"):
            importlib.import_module(module.name)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)
    ours = {cls for cls in subclasses(FlaskForm) if cls.__module__.startswith("webapp.")}
    assert len(ours) >= 25, ours
    assert sorted(c.__qualname__ for c in ours if not issubclass(c, Form)) == []


def test_values_the_database_cannot_read_are_input_errors_not_500(app, demo):
    import psycopg

    from webapp import db
    from webapp.errors import DomainError, InputError
    alice = demo["alice@example.com"]
    with app.test_request_context():
        for kwargs in ({"offer_id": 2 ** 63}, {"offer_id": 10 ** 30}):  # beyond bigint
            with pytest.raises(InputError) as caught:
                db.call("api.get_p2p_offer", user_id=alice, **kwargs)
            assert (caught.value.code, caught.value.status) == ("22003", 422)
            assert caught.value.message == "Número fora do intervalo aceito."
        with pytest.raises(InputError) as caught:  # NUL: psycopg refuses it before sending
            db.call("api.get_login", email="alice@example.com\x00")
        assert caught.value.status == 422 and "caracteres inválidos" in caught.value.message
        with pytest.raises(InputError) as caught:  # an int4 parameter given 2^40
            db.call("api.get_statement", user_id=alice, currency="BRL", page=2 ** 40, page_size=20)
        assert caught.value.status == 422
        # a bigint in range still works as before (nothing found: BSN01, a 404)
        with pytest.raises(DomainError) as caught:
            db.call("api.get_p2p_offer", user_id=alice, offer_id=2 ** 63 - 1)
        assert caught.value.status == 404
        # a genuine bug is still a bug (a 500), not the customer's fault
        with pytest.raises(psycopg.Error):
            db.call("api.get_p2p_offer", user_id=alice, no_such_argument=1)


def test_malformed_submissions_get_a_message_and_a_4xx(client, forms, login, demo, owner):
    login("alice@example.com")
    token = forms.token("/wallet")
    valid = {"csrf_token": token, "recipient_email": "bob@example.com", "currency": "BRL", "amount": "1,00",
             "idempotency_key": key()}

    def page(response):
        return response.get_data(as_text=True)

    # NUL in the idempotency key (a hidden field: the message comes as an alert)
    response = client.post("/wallet", data=dict(valid, idempotency_key="k\x00"))
    assert response.status_code == 422 and "O texto contém caracteres inválidos." in page(response)
    # a file where the e-mail goes
    response = client.post("/wallet", data=dict(valid, recipient_email=(io.BytesIO(b"x"), "a.txt")))
    assert response.status_code == 422 and "Este campo recebe texto, não um arquivo." in page(response)
    # 5,000 characters
    response = client.post("/wallet", data=dict(valid, recipient_email="a" * 5000 + "@example.com"))
    assert response.status_code == 422 and "Texto longo demais" in page(response)
    # a number of 400 digits
    response = client.post("/wallet", data=dict(valid, amount="9" * 400))
    assert response.status_code == 422 and "Valor grande demais." in page(response)
    # JSON where a form is expected, even with the token in the header
    for body in (dict(valid, amount=[1, 2]), dict(valid, amount=10 ** 40), [1, 2], "texto", 10 ** 40):
        response = client.post("/wallet", json=body, headers={"X-CSRFToken": token})
        assert response.status_code in (400, 422), body
    assert "Envie os dados pelo formulário da página." in page(response)
    # an id beyond bigint, or 400 digits: no route
    for trade_id in (str(2 ** 63), "9" * 400, "0"):
        assert client.get(f"/p2p/trades/{trade_id}").status_code == 404
    # a payment window of 10^32 minutes
    offer = {"csrf_token": token, "side": "SELL", "crypto": "BTC", "price_type": "fixed", "fixed_price": "300000",
             "total_amount": "0,001", "min_brl": "100", "max_brl": "300", "payment_methods": "PIX",
             "payment_window_minutes": "1" + "0" * 32, "min_counterparty_kyc": "0", "idempotency_key": key()}
    response = client.post("/p2p/offers/new", data=offer)
    assert response.status_code == 422 and "Informe um número inteiro." in page(response)
    response = client.post("/p2p/offers/new", data=dict(offer, payment_window_minutes=str(2 ** 31)))
    assert response.status_code == 422 and "Número fora do intervalo aceito." in page(response)
    # nothing was moved or written
    assert owner.execute("select count(*) as n from core.p2p_offers").fetchone()["n"] == 0
    books(owner)


def test_an_oversized_form_body_is_a_413(client, forms, login, demo):
    login("alice@example.com")
    token = forms.token("/wallet")
    response = client.post("/wallet", data={"csrf_token": token, "recipient_email": "x" * (300 * 1024)})
    assert response.status_code == 413
