"""Views of the market desk: prices and chart, quote → confirm → order, history, portfolio."""
from __future__ import annotations

import uuid
from decimal import Decimal

from babel.numbers import format_currency, format_decimal
from flask_babel import get_locale

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import currencies, db
from ..errors import DomainError
from ..forms import form_error
from . import bp
from .forms import ConfirmForm, QuoteForm

PAGE_SIZE = 20
RANGES = {"1h": 1, "24h": 24, "7d": 168}
CHART_W, CHART_H = 600, 200
COLORS = {"BRL": "#198754", "BTC": "#f7931a", "ETH": "#627eea", "USDT": "#26a17b"}


@bp.app_template_filter("market_price")
def market_price(value) -> str:
    """A BRL price with 2 to 4 decimals (USDT moves in tenths of a centavo)."""
    if value is None:
        return "—"
    return format_currency(Decimal(value), "BRL", format="¤ #,##0.00##", currency_digits=False,
                           locale=str(get_locale() or "pt_BR")).replace("\xa0", " ")


@bp.app_template_filter("market_percent")
def market_percent(value) -> str:
    """+1,23% / −0,50% (Decimal, never float)."""
    value = Decimal(value).quantize(Decimal("0.01"))
    return ("+" if value >= 0 else "−") + format_decimal(abs(value), format="#,##0.00",
                                                         locale=str(get_locale() or "pt_BR")) + "%"


def chart_for(symbol: str, range_name: str) -> dict:
    """The SVG polyline of a price chart; SQL scales the points (display only)."""
    rows = db.call("api.market_chart", symbol=symbol, hours=RANGES[range_name], width=CHART_W, height=CHART_H,
                   max_points=120)
    if not rows:
        return {"points": "", "count": 0}
    points = " ".join(f"{r['x']},{r['y']}" for r in rows)
    up = rows[-1]["price"] >= rows[0]["price"]
    return {
        "points": points,
        "area": f"0,{CHART_H} {points} {rows[-1]['x']},{CHART_H}" if len(rows) > 1 else "",
        "last_x": rows[-1]["x"], "last_y": rows[-1]["y"],
        "count": len(rows), "up": up, "min": rows[0]["min_price"], "max": rows[0]["max_price"],
        "first_at": rows[0]["first_at"], "last_at": rows[0]["last_at"],
        "first_price": rows[0]["price"], "last_price": rows[-1]["price"],
    }


def _chart_args():
    symbol = request.args.get("symbol", "BTCBRL")
    range_name = request.args.get("range", "1h")
    if symbol not in {f"{code}BRL" for code in currencies.codes("crypto")} or range_name not in RANGES:
        abort(404)
    return symbol, range_name


def _panel_context():
    symbol, range_name = _chart_args()
    overview = db.call("api.market_overview")
    return {"overview": overview, "symbol": symbol, "range_name": range_name, "ranges": RANGES,
            "chart": chart_for(symbol, range_name), "chart_w": CHART_W, "chart_h": CHART_H,
            "pair": next((p for p in overview if p["symbol"] == symbol), None)}


@bp.route("", methods=["GET", "POST"])
@login_required
def index():
    form = QuoteForm()
    status = 200
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            try:
                row = db.call_one("api.create_quote", user_id=current_user.id, side=form.side.data,
                                  crypto=form.crypto.data, amount=form.amount.data)
            except DomainError as exc:
                form_error(form, exc, default_field="amount")
                status = exc.status
            else:
                return redirect(url_for("market.quote", quote_id=row["quote_id"]))
    context = _panel_context()
    wallet = {b["currency"]: b for b in db.call("api.get_wallet", user_id=current_user.id)}
    return render_template("market/index.html", form=form, wallet=wallet, **context), status


@bp.get("/panel")
@login_required
def panel():
    """The live part of /market (prices, chart, last update), for data-refresh-url."""
    return render_template("market/_panel.html", **_panel_context())


@bp.route("/quote/<id:quote_id>", methods=["GET", "POST"])
@login_required
def quote(quote_id: int):
    q = db.call_one("api.get_quote", user_id=current_user.id, quote_id=quote_id)
    if q is None:
        abort(404)
    if q["order_id"]:
        return redirect(url_for("market.order", order_id=q["order_id"]))
    form = ConfirmForm()
    status = 200
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            try:
                # The worker sends the order to Binance within a second or two;
                # the order page follows it.
                row = db.call_one("api.execute_quote", user_id=current_user.id, quote_id=quote_id,
                                  idempotency_key=form.idempotency_key.data)
            except DomainError as exc:
                flash(exc.message, "danger")
                status = exc.status
                q = db.call_one("api.get_quote", user_id=current_user.id, quote_id=quote_id)
            else:
                return redirect(url_for("market.order", order_id=row["order_id"]))
    if not form.idempotency_key.data:
        form.idempotency_key.data = str(uuid.uuid4())
    return render_template("market/quote.html", q=q, form=form), status


def _order_or_404(order_id: int) -> dict:
    order = db.call_one("api.get_market_order", user_id=current_user.id, order_id=order_id)
    if order is None:
        abort(404)
    return order


@bp.get("/orders/<id:order_id>")
@login_required
def order(order_id: int):
    return render_template("market/order.html", o=_order_or_404(order_id))


@bp.get("/orders/<id:order_id>/status")
@login_required
def order_status(order_id: int):
    """The live part of an order page, for data-refresh-url while it executes."""
    return render_template("market/_order_status.html", o=_order_or_404(order_id))


@bp.get("/orders")
@login_required
def orders():
    page = request.args.get("page", 1, type=int)
    if page < 1:
        abort(404)
    rows = db.call("api.list_market_orders", user_id=current_user.id, page=page, page_size=PAGE_SIZE)
    total = rows[0]["total_rows"] if rows else 0
    pages = max(1, -(-total // PAGE_SIZE))
    return render_template("market/orders.html", rows=rows, page=page, pages=pages, total=total)


def donut_segments(rows: list[dict]) -> list[dict]:
    """Circle segments of a donut whose circumference is 100 (so a share is a dash length)."""
    segments, start = [], 0
    for r in rows:
        share = r["share_percent"]
        if share and share > 0:
            segments.append({"currency": r["currency"], "color": COLORS.get(r["currency"], "#6c757d"),
                             "dasharray": f"{share} {100 - share}", "dashoffset": f"{25 - start}",
                             "share": share})
            start += share
    return segments


@bp.get("/portfolio")
@login_required
def portfolio():
    rows = db.call("api.get_portfolio", user_id=current_user.id)
    total = rows[0]["total_value_brl"] if rows else 0
    recent = db.call("api.list_market_orders", user_id=current_user.id, page=1, page_size=10)
    return render_template("market/portfolio.html", rows=rows, total=total, segments=donut_segments(rows),
                           colors=COLORS, recent=recent)
