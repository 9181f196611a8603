"""Views of the wallet blueprint."""
from __future__ import annotations

import uuid

from flask import abort, current_app, flash, redirect, render_template, request, send_from_directory, url_for
from flask_login import current_user, login_required

from .. import currencies, db
from ..auth.roles import landing_url
from ..forms import form_error
from ..errors import DomainError
from . import bp
from .forms import TransferForm

PAGE_SIZE = 20


@bp.route("/")
def home():
    if current_user.is_authenticated:
        return redirect(landing_url())
    return render_template("home.html")


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page links (static/favicon.svg rendered at 16, 32 and 48 px)."""
    return send_from_directory(current_app.static_folder, "favicon.ico", mimetype="image/vnd.microsoft.icon",
                               max_age=86400)


@bp.route("/wallet", methods=["GET", "POST"])
@login_required
def index():
    form = TransferForm()
    if form.validate_on_submit():
        try:
            db.call_one("api.transfer", user_id=current_user.id, recipient_email=form.recipient_email.data,
                        currency=form.currency.data, amount=form.amount.data,
                        idempotency_key=form.idempotency_key.data, totp_code=form.totp_code.data)
        except DomainError as exc:
            form_error(form, exc)
        else:
            flash("Transferência enviada.", "success")
            return redirect(url_for("wallet.index"))
    if not form.idempotency_key.data:
        form.idempotency_key.data = str(uuid.uuid4())
    balances = db.call("api.get_wallet", user_id=current_user.id)
    status = 422 if request.method == "POST" else 200
    return render_template("wallet/index.html", balances=balances, form=form), status


@bp.route("/wallet/<currency>")
@login_required
def statement(currency: str):
    if currency not in currencies.codes():
        abort(404)
    page = request.args.get("page", 1, type=int)
    if page < 1:
        abort(404)
    rows = db.call("api.get_statement", user_id=current_user.id, currency=currency, page=page, page_size=PAGE_SIZE)
    total = rows[0]["total_rows"] if rows else 0
    pages = max(1, -(-total // PAGE_SIZE))
    # network, address and txId of on-chain deposits and withdrawals, by reference
    onchain = ({d["reference"]: d for d in db.call("api.get_crypto_statement_details", user_id=current_user.id,
                                                   currency=currency)} if currency != "BRL" else {})
    return render_template("wallet/statement.html", rows=rows, currency=currency, page=page, pages=pages, total=total,
                           onchain=onchain)
