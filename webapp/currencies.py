"""The currencies the exchange books, read from the database (api.list_currencies).

The one list for form choices, amount scales and the pages that name a
currency. Read once per process, on first use: core.currencies only changes by
migration, and a deploy restarts the processes.

    from webapp import currencies
    currencies.codes()              # ["BRL", "BTC", "ETH", "USDT"]
    currencies.codes("crypto")      # ["BTC", "ETH", "USDT"]
    currencies.choices("crypto")    # a SelectField's choices (callable: read when rendered)
    currencies.scale("BTC")         # 8
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from flask import current_app

# A scale for an amount in a code the ledger does not know (only ever shown, never booked).
UNKNOWN_SCALE = 8

_lock = threading.Lock()


@dataclass(frozen=True)
class Currency:
    code: str
    name: str
    scale: int
    kind: str          # fiat | crypto


def all_currencies(app=None) -> tuple[Currency, ...]:
    """Every currency, in display order (cached on the app: once per process)."""
    app = app or current_app._get_current_object()
    cached = app.extensions.get("currencies")
    if cached is None:
        with _lock:
            cached = app.extensions.get("currencies")
            if cached is None:
                from . import db
                rows = db.call_with(db.pool(app, "app"), "api.list_currencies", {})
                cached = app.extensions["currencies"] = tuple(
                    Currency(r["code"], r["name"], r["scale"], r["kind"]) for r in rows)
    return cached


def forget(app=None) -> None:
    """Drop the cached list (tests; a process would simply restart)."""
    (app or current_app).extensions.pop("currencies", None)


def codes(kind: str | None = None, app=None) -> list[str]:
    return [c.code for c in all_currencies(app) if kind is None or c.kind == kind]


def get(code: str, app=None) -> Currency | None:
    return next((c for c in all_currencies(app) if c.code == code), None)


def scale(code: str) -> int:
    currency = get(code)
    return currency.scale if currency else UNKNOWN_SCALE


def choices(kind: str | None = None, named: bool = False):
    """Choices for a SelectField, read when the form is built (so inside a request): [(code, label)].
    named: "Bitcoin (BTC)" rather than "BTC"."""
    def build():
        return [(c.code, f"{c.name} ({c.code})" if named else c.code)
                for c in all_currencies() if kind is None or c.kind == kind]
    return build
