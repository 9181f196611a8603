"""Money as a Brazilian reads it: R$ 1.234,56 and 0,01234567 BTC.

Amounts are Decimal end to end; these filters only format them for display,
in the customer's language (pt-BR by default).
"""
from __future__ import annotations

import functools
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, localcontext

from babel import Locale
from babel.numbers import format_currency, format_decimal, parse_pattern
from flask import url_for as flask_url_for
from flask.globals import _cv_request
from flask_babel import format_datetime, get_locale, get_timezone, get_translations, gettext
from jinja2 import pass_context, pass_eval_context
from jinja2.ext import _make_new_gettext, _make_new_ngettext
from markupsafe import Markup

from . import currencies

# Display at most this many decimals for long-scale assets (ETH keeps 18 in
# the ledger; beyond 8 only significant digits are shown).
DISPLAY_MIN = 8


@functools.lru_cache(maxsize=16)
def _babel_locale(name: str) -> Locale:
    return Locale.parse(name)


@functools.lru_cache(maxsize=64)
def _pattern(digits: int):
    # Parsed once: a page of offers formats a hundred amounts.
    return parse_pattern("#,##0." + "0" * digits if digits else "#,##0")


def _locale() -> Locale:
    """The request's locale (a Locale object: babel parses a string again on every call)."""
    try:
        return get_locale() or _babel_locale("pt_BR")
    except Exception:  # outside a request (CLI, worker)
        return _babel_locale("pt_BR")


def money(amount, currency: str = "BRL", locale: str | None = None) -> str:
    if amount is None:
        return "—"
    return _money_in(amount, currency, locale or str(_locale()))


# A page formats its amounts in one locale: its name is put in the template's
# context once per render (init_app), instead of asking Flask-Babel for each amount.
PAGE_LOCALE = "_page_locale"
MEMO_MAX = 8192     # entries per memo; a full memo starts over (amounts, URLs: bounded memory)
_money_memo: dict = {}


@pass_context
def money_filter(context, amount, currency: str = "BRL", locale: str | None = None) -> str:
    """`{{ amount | money('BTC') }}`: money() in the page's locale."""
    if amount is None:
        return "—"
    return _money_in(amount, currency, locale or context.get(PAGE_LOCALE) or str(_locale()))


def _money_in(amount, currency: str, locale: str) -> str:
    """Babel's formatting is the costliest part of a page of amounts, and a pure function: memoized.

    Keyed by the type and the text of the amount: Decimal("1.0") and Decimal("1.00") are equal
    (and hash alike) but are shown differently, and a float is not its repr as a Decimal."""
    key = (locale, currency, type(amount), str(amount))
    try:
        return _money_memo[key]
    except KeyError:
        pass
    # Wide enough for any numeric the database can hold (the default 28 digits
    # fail on a huge stored value, and a page must never answer 500 for one).
    with localcontext() as ctx:
        ctx.prec = 200
        text = _format_money(Decimal(amount), currency, _babel_locale(locale))
    if len(_money_memo) >= MEMO_MAX:
        _money_memo.clear()
    _money_memo[key] = text
    return text


def _format_money(amount: Decimal, currency: str, locale: Locale) -> str:
    if currency == "BRL":
        return format_currency(amount, "BRL", locale=locale).replace("\xa0", " ")
    scale = currencies.scale(currency)
    shown = min(scale, DISPLAY_MIN)
    exact = amount.normalize()
    digits = max(shown, -exact.as_tuple().exponent if exact.as_tuple().exponent < 0 else 0)
    digits = min(digits, scale)
    return f"{format_decimal(amount, format=_pattern(digits), locale=locale, decimal_quantization=False)} {currency}"


def plain(amount, currency: str) -> str:
    """The amount in its currency's scale with a dot, for form fields."""
    scale = currencies.scale(currency)
    with localcontext() as ctx:
        ctx.prec = 200
        return str(Decimal(amount).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_DOWN))


def number(amount, currency: str | None = None, max_digits: int | None = None, signed: bool = False) -> str:
    """A Decimal in the reader's notation, without trailing zeros: 15.203,2 / 15,203.2; 3,75 (not
    3.750000000000000000). With a currency, at most its scale's decimals and BRL always with its 2."""
    if amount is None or amount == "":
        return "—"
    with localcontext() as ctx:
        ctx.prec = 200
        amount = Decimal(amount)
        if not amount.is_finite():
            return str(amount)
        known = currencies.get(currency) if currency else None
        limit = known.scale if known else max_digits
        if limit is not None:
            amount = amount.quantize(Decimal(1).scaleb(-limit), rounding=ROUND_DOWN)
        exponent = amount.normalize().as_tuple().exponent
        digits = max(-exponent, 0) if isinstance(exponent, int) else 0
        if currency == "BRL":
            digits = max(digits, 2)
        text = format_decimal(abs(amount), format=_pattern(digits), locale=_locale(), decimal_quantization=False)
        sign = "−" if amount < 0 else ("+" if signed and amount > 0 else "")
        return sign + text


def percent(value, max_digits: int = 2, signed: bool = False) -> str:
    """0.98 (already in percent) as "0,98%" / "0.98%"; -1.5 as "−1,5%"."""
    return "—" if value is None else number(value, max_digits=max_digits, signed=signed) + "%"


def filesize(size_bytes) -> str:
    """1536 as "1,5 KB" / "1.5 KB" (binary kilobytes, one decimal)."""
    if size_bytes is None:
        return "—"
    size = Decimal(size_bytes)
    for unit in ("B", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{number(size, max_digits=0 if unit == 'B' else 1)} {unit}"
        size /= 1024


def datetimeformat(value, format: str = "short") -> str:
    if isinstance(value, str) and value:  # an ISO timestamp out of JSON
        value = datetime.fromisoformat(value)
    return format_datetime(value, format) if value else "—"


PAGE_TIMEZONE = "_page_timezone"
_datetime_memo: dict = {}


@pass_context
def datetime_filter(context, value, format: str = "short") -> str:
    """`{{ t | datetimeformat }}`: Flask-Babel's format_datetime, memoized per instant, format,
    locale and timezone (a statement shows dozens; each asked Flask-Babel for the request's locale
    and timezone, then Babel formatted it). Equal instants give the same text: it is rebased to the
    customer's timezone."""
    if not value:
        return "—"
    if isinstance(value, str):  # an ISO timestamp out of JSON
        value = datetime.fromisoformat(value)
    locale, tz = context.get(PAGE_LOCALE), context.get(PAGE_TIMEZONE)
    if locale is None or tz is None:
        return format_datetime(value, format)
    key = (type(value), value, format, locale, tz)
    try:
        return _datetime_memo[key]
    except KeyError:
        pass
    except TypeError:
        return format_datetime(value, format)
    return _bounded_set(_datetime_memo, key, format_datetime(value, format))


def N_(message: str) -> str:
    """Mark a string for extraction (`make i18n`) without translating it here.

    For labels kept in dicts and constants that are translated later, when
    rendered (`tr(label)`, `_(label)`, `gettext(label)`).
    """
    return message


# Top navigation: (endpoint, label, icon, who sees it).
NAV = [
    ("wallet.index", N_("Carteira"), "wallet2", {"customer"}),
    ("deposits.index", N_("Depósitos"), "box-arrow-in-down", {"customer"}),
    ("withdrawals.index", N_("Saques"), "box-arrow-up", {"customer"}),
    ("market.index", N_("Mercado"), "graph-up", {"customer"}),
    ("p2p.index", N_("P2P"), "people", {"customer"}),
    ("kyc.index", N_("Verificação"), "person-vcard", {"customer"}),
    ("admin.index", N_("Admin"), "shield-lock", {"admin"}),
    ("audit.index", N_("Auditoria"), "clipboard-data", {"auditor"}),
]


def translate(message):
    """Translate a runtime string (a flash, a form error, an SQL message).

    Jinja's `_()` applies %-formatting, which breaks on a message that
    contains "%"; gettext without variables does not.
    """
    return gettext(str(message)) if message else message


def _bounded_set(memo: dict, key, value):
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[key] = value
    return value


def memoized_url_for(app):
    """Flask's url_for for templates, memoized per request shape, endpoint and arguments.

    A page builds the same few dozen URLs on every request (the navigation, a link per row), and
    building one walks Werkzeug's rules. The result depends only on the URL adapter of the request
    (script root, host, scheme, method), the blueprint for a relative endpoint, the endpoint and the
    arguments in the order given (unknown ones become the query string in that order), each with its
    type (1 and True are equal keys but different URLs). Anything else — `_external`, `_anchor`,
    `_scheme`, `_method`, an unhashable argument, an app with url_defaults functions, no request —
    goes straight to Flask, as does a miss (whose result, or error, is Flask's own).
    """
    memo: dict = {}

    def url_for(endpoint: str, **values) -> str:
        req_ctx = _cv_request.get(None)
        if req_ctx is None or app.url_default_functions:
            return flask_url_for(endpoint, **values)
        adapter = req_ctx.url_adapter
        try:
            key = (adapter.script_name, adapter.server_name, adapter.subdomain, adapter.url_scheme,
                   adapter.default_method, req_ctx.request.blueprint if endpoint[:1] == "." else None, endpoint,
                   tuple([(name, type(value), value) for name, value in values.items()]))
            return memo[key]
        except KeyError:
            pass
        except TypeError:   # an unhashable argument (a list for a repeated query key)
            return flask_url_for(endpoint, **values)
        if any(name[:1] == "_" for name in values):
            return flask_url_for(endpoint, **values)
        return _bounded_set(memo, key, flask_url_for(endpoint, **values))
    return url_for


@functools.lru_cache(maxsize=16)
def _page_gettext(translations):
    """`gettext`, `ngettext` and `_` of the templates bound to one catalog (cached per catalog).

    `_("…")` without variables is memoized per string: the catalog never changes while the process
    runs, and the result is what Jinja's newstyle gettext gives — the translation, marked safe when
    the template autoescapes, then %-formatted with no variables (so "%%" reads "%").
    """
    gettext_ = _make_new_gettext(translations.ugettext)
    memo: dict = {}
    ugettext = translations.ugettext

    @pass_eval_context
    def underscore(eval_ctx, __string, **variables):
        if variables:
            rv = ugettext(__string)
            return (Markup(rv) if eval_ctx.autoescape else rv) % variables
        key = (__string, type(__string), eval_ctx.autoescape)
        try:
            return memo[key]
        except KeyError:
            pass
        except TypeError:
            key = None
        rv = ugettext(__string)
        rv = (Markup(rv) if eval_ctx.autoescape else rv) % {}
        return rv if key is None else _bounded_set(memo, key, rv)

    return {"gettext": gettext_, "ngettext": _make_new_ngettext(translations.ungettext), "_": underscore}


DICT_ATTRIBUTES = frozenset(dir(dict))


def _row_first_getattr(environment):
    """`environment.getattr` that reads a plain dict's key first, unless it names a dict method.

    Templates read the database's rows (dicts) as `o.price`; Jinja tries the attribute first, and
    on a dict that fails with an AttributeError before it tries the key: an exception per cell
    (thousands on the offer book). For a plain dict and a name that is not one of dict's own
    attributes the attribute lookup can only fail, so going to the key first gives the same value
    (and the same Undefined for a missing key); every other case is Jinja's own.
    """
    jinja_getattr = environment.getattr

    def getattr(obj, attribute):
        if type(obj) is dict and attribute not in DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return jinja_getattr(obj, attribute)
    return getattr


def init_app(app):
    app.jinja_env.getattr = _row_first_getattr(app.jinja_env)
    app.jinja_env.globals["tr"] = translate
    app.jinja_env.globals["url_for"] = memoized_url_for(app)
    app.jinja_env.filters["money"] = money_filter
    app.jinja_env.filters["plain_amount"] = plain
    app.jinja_env.filters["datetimeformat"] = datetime_filter
    app.jinja_env.filters["number"] = number
    app.jinja_env.filters["percent"] = percent
    app.jinja_env.filters["filesize"] = filesize

    @app.context_processor
    def page_translations():
        # `_()`, `gettext` and `ngettext` in a template resolve from the context
        # first: bound here once per page to the request's catalog, instead of
        # Flask-Babel looking up the request, the domain and the locale again for
        # each of the page's dozens of strings (Jinja's own `_` calls `gettext`
        # through two more layers). Same newstyle semantics as Jinja's own.
        return {**_page_gettext(get_translations()), PAGE_LOCALE: str(_locale()), PAGE_TIMEZONE: str(get_timezone())}

    @app.context_processor
    def navigation():
        from flask_babel import gettext
        from flask_login import current_user

        def nav_links():
            role = getattr(current_user, "role", None)
            return [(endpoint, gettext(label), icon) for endpoint, label, icon, roles in NAV
                    if role in roles]
        return {"nav_links": nav_links}
