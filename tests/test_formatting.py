"""The cheap paths of a page (docs/PERFORMANCE.md, "Request cost") give exactly what the costly ones gave.

Memoized money, `_()` and url_for, and the f-string html_params, each compared with the library
function it stands in for, on generated inputs. No database: a small Flask app with the same
extensions (Babel with the app's catalogs, the formatting filters, a few routes).
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from flask import Blueprint, Flask, render_template_string, url_for
from flask_babel import Babel
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

import webapp
from webapp import currencies, forms, formatting

CURRENCIES = ["BRL", "BTC", "ETH", "USDT", "XYZ"]
# The list the database gives (tests/test_currencies.py reads it from there), as the app caches it.
KNOWN = (currencies.Currency("BRL", "Real", 2, "fiat"), currencies.Currency("BTC", "Bitcoin", 8, "crypto"),
         currencies.Currency("ETH", "Ether", 18, "crypto"), currencies.Currency("USDT", "Tether", 6, "crypto"))


def make_app(url_defaults: bool = False) -> Flask:
    app = Flask(webapp.__name__)
    app.config.update(SECRET_KEY="test", BABEL_DEFAULT_LOCALE="pt_BR")
    lang = {"value": "pt_BR"}
    Babel(app, locale_selector=lambda: lang["value"])
    formatting.init_app(app)
    app.config["TEST_LANG"] = lang
    app.extensions["currencies"] = KNOWN

    @app.get("/")
    def home():
        return "home"

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return "item"

    @app.route("/both", methods=["GET", "POST"])
    def both():
        return "both"

    bp = Blueprint("market", __name__)

    @bp.get("/market")
    def index():
        return "market"

    @bp.get("/market/<symbol>")
    def chart(symbol):
        return "chart"

    app.register_blueprint(bp)
    if url_defaults:
        @app.url_defaults
        def add_lang(endpoint, values):
            if endpoint == "home":
                values.setdefault("lang", "en")
    return app


@pytest.fixture(autouse=True, scope="module")
def app_context():
    """Money formatting reads the currencies' scales from the app (outside a request too)."""
    with make_app().app_context():
        yield


# --------------------------------------------------------------------------- money

amounts = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-10 ** 15, max_value=10 ** 15, places=2),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=0, max_value=10 ** 6, places=8),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=0, max_value=10 ** 4, places=18),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-10 ** 20, max_value=10 ** 20),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
)


def babel_money(amount, currency, locale):
    """What the filter gave before it was memoized: Babel on every call."""
    from decimal import localcontext
    with localcontext() as ctx:
        ctx.prec = 200
        return formatting._format_money(Decimal(amount), currency, formatting._babel_locale(locale))


@settings(max_examples=400, deadline=None)
@given(amount=amounts, currency=st.sampled_from(CURRENCIES), locale=st.sampled_from(["pt_BR", "en"]))
def test_memoized_money_is_babels(amount, currency, locale):
    first = formatting.money(amount, currency, locale)
    assert first == babel_money(amount, currency, locale)
    assert formatting.money(amount, currency, locale) == first   # a hit gives the same


def test_equal_amounts_written_differently_are_not_confused():
    assert formatting.money(Decimal("1.0"), "ETH", "pt_BR") == "1,00000000 ETH"
    assert formatting.money(Decimal("1.000000000000000001"), "ETH", "pt_BR") == "1,000000000000000001 ETH"
    assert formatting.money(0.1, "ETH", "pt_BR") == babel_money(0.1, "ETH", "pt_BR")      # the float's exact digits
    assert formatting.money(Decimal("0.1"), "ETH", "pt_BR") == "0,10000000 ETH"
    assert formatting.money(Decimal("1234.5"), "BRL", "pt_BR") == "R$ 1.234,50"
    assert formatting.money(Decimal("1234.5"), "BRL", "en") == "R$1,234.50"
    assert formatting.money(None) == "—"


def test_the_filter_uses_the_page_locale():
    app = make_app()
    template = "{{ a | money }} {{ b | money('BTC') }}"
    with app.test_request_context("/"):
        assert render_template_string(template, a=Decimal("1234.5"), b=Decimal("0.5")) == "R$ 1.234,50 0,50000000 BTC"
    app.config["TEST_LANG"]["value"] = "en"
    with app.test_request_context("/"):
        assert render_template_string(template, a=Decimal("1234.5"), b=Decimal("0.5")) == "R$1,234.50 0.50000000 BTC"


def test_the_memo_is_bounded():
    for i in range(formatting.MEMO_MAX + 10):
        formatting.money(Decimal(i), "BRL", "pt_BR")
    assert len(formatting._money_memo) <= formatting.MEMO_MAX


# --------------------------------------------------------------------------- _()

STRINGS = ["Carteira", "Sair", "Entrar", "Fechar", "100%% garantido", "<b>não</b> existe", "Menu"]


def jinja_gettext(app, string, autoescape, **variables):
    """Jinja's own newstyle gettext on the request's catalog (what `_()` did before)."""
    from flask_babel import get_translations
    from jinja2.ext import _make_new_gettext
    env = app.jinja_env.overlay(autoescape=autoescape)
    env.globals["gettext"] = _make_new_gettext(get_translations().ugettext)
    return env.from_string("{{ _(s, **v) }}").render(s=string, v=variables)


@pytest.mark.parametrize("lang", ["pt_BR", "en"])
@pytest.mark.parametrize("autoescape", [True, False])
def test_memoized_underscore_is_jinjas(lang, autoescape):
    app = make_app()
    app.config["TEST_LANG"]["value"] = lang
    with app.test_request_context("/"):
        ctx = {}
        app.update_template_context(ctx)
        env = app.jinja_env.overlay(autoescape=autoescape)
        template = env.from_string("{{ _(s) }}|{{ _(s) }}|{{ _('Olá, %(name)s', name=n) }}")
        for string in STRINGS:
            got = template.render(ctx, s=string, n="<Ana>")
            expected = "|".join([jinja_gettext(app, string, autoescape)] * 2
                                + [jinja_gettext(app, "Olá, %(name)s", autoescape, name="<Ana>")])
            assert got == expected


def test_underscore_follows_the_language():
    app = make_app()
    with app.test_request_context("/"):
        assert render_template_string("{{ _('Sair') }}") == "Sair"
    app.config["TEST_LANG"]["value"] = "en"
    with app.test_request_context("/"):
        from flask_babel import get_translations
        english = get_translations().ugettext("Sair")
        assert english != "Sair" and render_template_string("{{ _('Sair') }}") == english


# --------------------------------------------------------------------------- url_for

CALLS = [
    ("home", {}),
    ("item", {"item_id": 5}),
    ("item", {"item_id": 5, "page": 2}),
    ("item", {"item_id": 5, "page": True}),            # equal to 1 as a key, not as a URL
    ("item", {"item_id": 5, "page": 1}),
    ("market.chart", {"symbol": "BTCBRL", "range": "1h", "x": "a b"}),
    ("market.index", {"range": "1h", "symbol": "BTCBRL"}),   # the query string keeps the given order
    ("market.index", {"symbol": "BTCBRL", "range": "1h"}),
    ("market.index", {"tags": ["a", "b"]}),             # unhashable: straight to Flask
    ("home", {"_anchor": "top"}),
    ("home", {"_external": True}),
    ("both", {"_method": "POST"}),
    (".index", {}),                                     # relative to the request's blueprint
    ("static", {"filename": "css/app.css"}),
]


def calls(path):
    # `.index` is market.index under /market; outside a blueprint it names `index`, which does not exist
    return [c for c in CALLS if c[0] != ".index" or path.startswith("/market")]


def flask_urls(app, path, **environ):
    with app.test_request_context(path, **environ):
        return [url_for(endpoint, **dict(values)) for endpoint, values in calls(path)]


def memo_urls(app, path, **environ):
    memo_url_for = app.jinja_env.globals["url_for"]
    with app.test_request_context(path, **environ):
        return [memo_url_for(endpoint, **dict(values)) for endpoint, values in calls(path)]


@pytest.mark.parametrize("path,environ", [
    ("/", {}),
    ("/market", {}),
    ("/", {"base_url": "http://example.com/prefix/"}),  # another script root
    ("/market", {"base_url": "https://other.example/"}),
])
def test_memoized_url_for_is_flasks(path, environ):
    app = make_app()
    expected = flask_urls(app, path, **environ)
    assert memo_urls(app, path, **environ) == expected
    assert memo_urls(app, path, **environ) == expected   # hits
    assert ("/prefix/" in expected[0]) == ("prefix" in environ.get("base_url", ""))


def test_memoized_url_for_keeps_the_order_of_the_query_string():
    app = make_app()
    memo_url_for = app.jinja_env.globals["url_for"]
    with app.test_request_context("/"):
        assert memo_url_for("market.index", range="1h", symbol="BTCBRL") == "/market?range=1h&symbol=BTCBRL"
        assert memo_url_for("market.index", symbol="BTCBRL", range="1h") == "/market?symbol=BTCBRL&range=1h"
        assert memo_url_for("item", item_id=3, page=True) == "/items/3?page=True"
        assert memo_url_for("item", item_id=3, page=1) == "/items/3?page=1"


def test_memoized_url_for_runs_url_defaults():
    app = make_app(url_defaults=True)
    assert memo_urls(app, "/") == flask_urls(app, "/")
    with app.test_request_context("/"):
        assert app.jinja_env.globals["url_for"]("home") == "/?lang=en"


def test_memoized_url_for_outside_a_request_needs_server_name_as_flask_does():
    app = make_app()
    app.config["SERVER_NAME"] = "bs.example"
    with app.app_context():
        assert app.jinja_env.globals["url_for"]("item", item_id=1) == url_for("item", item_id=1) == "http://bs.example/items/1"


def test_a_build_error_is_flasks():
    from werkzeug.routing import BuildError
    app = make_app()
    with app.test_request_context("/"), pytest.raises(BuildError):
        app.jinja_env.globals["url_for"]("nowhere")


# --------------------------------------------------------------------------- html_params

keys = st.one_of(st.sampled_from(["class_", "for_", "id", "name", "value", "data_x_y", "aria_described_by",
                                  "checked", "required", "placeholder", "type", "min", "readonly"]),
                 st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True))
values = st.one_of(st.booleans(), st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
                   st.text(max_size=30).map(Markup), st.decimals(allow_nan=False, allow_infinity=False))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(keys, values, max_size=8))
def test_html_params_is_wtforms(attrs):
    got = forms.html_params(**attrs)
    assert got == forms.WTFORMS_HTML_PARAMS(**attrs)
    assert isinstance(got, Markup)


def test_wtforms_renders_through_the_fast_html_params():
    import wtforms.widgets
    import wtforms.widgets.core
    assert wtforms.widgets.html_params is forms.html_params
    assert wtforms.widgets.core.html_params is forms.html_params
    assert wtforms.widgets.core.TextInput.html_params is forms.html_params


def test_one_memo_serves_requests_of_different_shapes():
    app = make_app()   # one app, one memo: each request shape gets its own URLs
    shapes = [("/", {}), ("/market", {}), ("/", {"base_url": "http://example.com/prefix/"}),
              ("/market", {"base_url": "https://other.example/"}), ("/", {"method": "POST"})]
    for _ in range(2):
        for path, environ in shapes:
            assert memo_urls(app, path, **environ) == flask_urls(app, path, **environ)


# --------------------------------------------------------------------------- rate limits

def test_swept_memory_storage_counts_like_limits_memory_storage():
    from limits import parse
    from limits.storage import MemoryStorage, storage_from_string
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    from webapp.config import from_environment
    from webapp.ratelimit import SweptMemoryStorage

    assert from_environment()["RATELIMIT_STORAGE_URI"] == "swept-memory://"
    swept = storage_from_string("swept-memory://")
    assert isinstance(swept, SweptMemoryStorage)
    for strategy in (FixedWindowRateLimiter, MovingWindowRateLimiter):
        ours, theirs = strategy(SweptMemoryStorage()), strategy(MemoryStorage())
        limit = parse("5 per second")
        got = [ours.hit(limit, "k") for _ in range(8)]
        assert got == [theirs.hit(limit, "k") for _ in range(8)] == [True] * 5 + [False] * 3
        import time
        time.sleep(1.1)   # the window has passed: counting starts over, swept or not
        assert ours.hit(limit, "k") and theirs.hit(limit, "k")


def test_swept_memory_storage_starts_few_threads():
    import threading
    import time

    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    from webapp.ratelimit import SweptMemoryStorage

    def threads_started(storage) -> int:
        limiter, started, original = FixedWindowRateLimiter(storage), [], threading.Thread.start

        def counting(self):
            started.append(self)
            return original(self)
        threading.Thread.start = counting
        try:
            for i in range(200):   # 10 bursts of 20 hits, 15 ms apart (limits' timer lasts 10 ms)
                limiter.hit(parse("1000 per minute"), f"k{i % 7}")
                if i % 20 == 19:
                    time.sleep(0.015)
        finally:
            threading.Thread.start = original
        return len(started)
    assert threads_started(MemoryStorage()) >= 5      # about one per burst
    assert threads_started(SweptMemoryStorage()) <= 1   # one sweep a second


# --------------------------------------------------------------------------- dates

@settings(max_examples=200, deadline=None)
@given(moment=st.datetimes(min_value=__import__("datetime").datetime(1990, 1, 1),
                           max_value=__import__("datetime").datetime(2100, 1, 1),
                           timezones=st.sampled_from([__import__("datetime").timezone.utc, None])),
       fmt=st.sampled_from(["short", "medium", "dd/MM/yyyy HH:mm"]), lang=st.sampled_from(["pt_BR", "en"]))
def test_memoized_datetimes_are_flask_babels(moment, fmt, lang):
    from flask_babel import format_datetime
    app = make_app()
    app.config["TEST_LANG"]["value"] = lang
    with app.test_request_context("/"):
        expected = format_datetime(moment, fmt)
        template = "{{ t | datetimeformat(f) }}|{{ t | datetimeformat(f) }}"
        assert render_template_string(template, t=moment, f=fmt) == f"{expected}|{expected}"
        assert render_template_string("{{ none | datetimeformat }}", none=None) == "—"


# --------------------------------------------------------------------------- rows

def test_rows_read_as_attributes_are_what_jinja_reads():
    from jinja2 import Environment
    app = make_app()
    plain = Environment(autoescape=True)
    row = {"price": 1, "items": "column", "get": 3, "maker_name": "<Ana>", 5: "five"}

    class Obj:
        price = 7
    template = ("{{ r.price }}|{{ r.maker_name }}|{{ r.items is callable }}|{{ r.get is callable }}|{{ r.missing is defined }}"
                "|{{ r.missing }}|{{ o.price }}|{{ o.nothing is defined }}|{{ s.upper is callable }}|{{ n.real }}")
    values = {"r": row, "o": Obj(), "s": "abc", "n": 4}
    with app.test_request_context("/"):
        ours = app.jinja_env.from_string(template).render(**values)
    assert ours == plain.from_string(template).render(**values)
    assert ours == "1|&lt;Ana&gt;|True|True|False||7|False|True|4"
