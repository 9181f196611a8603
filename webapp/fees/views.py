"""/tarifas: every fee and limit, read by one api.* call from the configuration the domains charge from."""
from __future__ import annotations

from collections import defaultdict

from decimal import Decimal

from babel.numbers import format_decimal
from flask import render_template
from flask_babel import get_locale

from .. import db
from . import bp


@bp.app_template_filter("fee_percent")
def fee_percent(value) -> str:
    """0.5 as "0,5%" (pt-BR) or "0.5%" (English), every configured decimal kept."""
    if value is None:
        return "—"
    return format_decimal(Decimal(value), format="#,##0.##########", locale=str(get_locale() or "pt_BR")) + "%"


def schedule() -> dict:
    """api.get_fee_schedule's rows grouped for the page: {section: {(name, currency, network, kyc_level): value}}."""
    grouped: dict = defaultdict(dict)
    for r in db.call("api.get_fee_schedule"):
        grouped[r["section"]][(r["name"], r["currency"], r["network"], r["kyc_level"])] = r["value"]
    return grouped


@bp.get("/tarifas")
def index():
    fees = schedule()
    p2p = fees["p2p"]
    cryptos = sorted({key[1] for key in p2p if key[1]})
    networks = sorted({(key[1], key[2]) for key in fees["crypto"]})
    levels = sorted({key[3] for key in fees["limits"]})
    return render_template("fees/index.html", fees=fees, cryptos=cryptos, networks=networks, levels=levels)
