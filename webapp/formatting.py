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
from flask_babel import format_datetime, get_locale, get_translations, gettext
from jinja2.ext import _make_new_gettext, _make_new_ngettext

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
    # Wide enough for any numeric the database can hold (the default 28 digits
    # fail on a huge stored value, and a page must never answer 500 for one).
    amount = Decimal(amount)
    loc = _babel_locale(locale) if locale else _locale()
    # Keyed by the digits and exponent (1.0 and 1.00 are equal Decimals, shown differently).
    return _money(amount.as_tuple(), currency, loc)


@functools.lru_cache(maxsize=4096)
def _money(digits: tuple, currency: str, locale: Locale) -> str:
    """Babel's formatting is the costliest part of a page of amounts, and a pure function: memoized."""
    with localcontext() as ctx:
        ctx.prec = 200
        return _format_money(Decimal(digits), currency, locale)


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


def init_app(app):
    app.jinja_env.globals["tr"] = translate
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["plain_amount"] = plain
    app.jinja_env.filters["datetimeformat"] = datetimeformat
    app.jinja_env.filters["number"] = number
    app.jinja_env.filters["percent"] = percent
    app.jinja_env.filters["filesize"] = filesize

    @app.context_processor
    def page_translations():
        # `_()` in a template resolves `gettext` from the context first: bound
        # here once per page to the request's catalog, instead of Flask-Babel
        # looking up the request, the domain and the locale again for each of
        # the page's dozens of strings. Same newstyle wrappers as Jinja's own.
        translations = get_translations()
        return {"gettext": _make_new_gettext(translations.ugettext),
                "ngettext": _make_new_ngettext(translations.ungettext)}

    @app.context_processor
    def navigation():
        from flask_babel import gettext
        from flask_login import current_user

        def nav_links():
            role = getattr(current_user, "role", None)
            return [(endpoint, gettext(label), icon) for endpoint, label, icon, roles in NAV
                    if role in roles]
        return {"nav_links": nav_links}
