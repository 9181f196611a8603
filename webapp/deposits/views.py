"""Views of the deposits blueprint."""
from __future__ import annotations

import logging
import uuid
from datetime import timezone

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import db, limiter
from ..errors import DomainError
from ..forms import form_error
from ..formatting import N_
from ..providers import pix_provider_name
from ..providers.base import ProviderError
from . import bp, service
from .forms import DepositForm

log = logging.getLogger("bs-market.deposits")
PAGE_SIZE = 15

STATUS = {
    # status: (label, Bootstrap colour, icon)
    "PENDING": (N_("Aguardando pagamento"), "warning", "hourglass-split"),
    "PAID": (N_("Creditado"), "success", "check-circle-fill"),
    "REVIEW": (N_("Em análise"), "info", "search"),
    "EXPIRED": (N_("Expirado"), "secondary", "clock-history"),
    "FAILED": (N_("Não gerado"), "danger", "x-circle"),
    "REJECTED": (N_("Recusado"), "danger", "x-octagon"),
}


def utc_iso(moment) -> str:
    """An instant as ISO 8601 in UTC (`…Z`), for data-countdown."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@bp.app_context_processor
def deposit_helpers():
    return {"deposit_status": lambda s: STATUS.get(s, (s, "secondary", "question-circle")), "utc_iso": utc_iso}


@bp.route("/deposits", methods=["GET", "POST"])
@login_required
@limiter.limit("20 per minute", methods=["POST"])
def index():
    form = DepositForm()
    if form.validate_on_submit():
        try:
            row = db.call_one("api.create_deposit", user_id=current_user.id, amount=form.amount.data,
                              provider=pix_provider_name(current_app.config),
                              idempotency_key=form.idempotency_key.data)
        except DomainError as exc:
            form_error(form, exc)
        else:
            if row["status"] == "PENDING" and not row["provider_payment_id"]:
                _request_charge(row)
            return redirect(url_for("deposits.show", deposit_id=row["deposit_id"]))
    if not form.idempotency_key.data or request.method == "GET":
        form.idempotency_key.data = str(uuid.uuid4())
    page = max(request.args.get("page", 1, type=int), 1)
    rows = db.call("api.list_deposits", user_id=current_user.id, page=page, page_size=PAGE_SIZE)
    total = rows[0]["total_rows"] if rows else 0
    limits = db.call_one("api.get_limits", user_id=current_user.id)
    status = 422 if request.method == "POST" else 200
    return render_template("deposits/index.html", form=form, rows=rows, page=page,
                           pages=max(1, -(-total // PAGE_SIZE)), limits=limits), status


def _request_charge(row: dict) -> None:
    """Step 2, right after the deposit is committed. A failure leaves it PENDING
    without a charge: the worker retries with the same idempotency key."""
    try:
        service.request_charge(current_app, charge_id=row["deposit_id"], reference=row["reference"],
                               amount=row["charge_amount"], expires_at=row["expires_at"],
                               payer_email=row["payer_email"], payer_cpf=row["payer_cpf"],
                               description=row["description"], provider=row["charge_provider"])
    except ProviderError as exc:
        log.warning("deposit %s: provider call failed: %r", row["reference"], exc)
        service.note_error(current_app, row["deposit_id"], exc)
        if service.definite(exc):
            db.call("admin.fail_pix_charge", charge_id=row["deposit_id"], reason=service.customer_reason(exc))
            flash("Não foi possível gerar o PIX deste depósito. Confira seus dados e tente de novo.", "danger")
        else:
            flash("O provedor PIX está demorando. O QR code aparece aqui assim que ficar pronto.", "warning")
    except DomainError as exc:
        log.error("deposit %s: could not record the charge: %r", row["reference"], exc)
        if exc.hint == "provider_id_reused":
            flash("O provedor PIX respondeu com um pagamento que não é deste depósito; nada foi cobrado. "
                  "Faça um novo depósito.", "danger")
        else:
            flash("O QR code aparece aqui assim que ficar pronto.", "warning")


def _deposit(deposit_id: int) -> dict:
    row = db.call_one("api.get_deposit", user_id=current_user.id, deposit_id=deposit_id)
    if row is None:
        abort(404)
    return row


@bp.route("/deposits/<id:deposit_id>")
@login_required
def show(deposit_id: int):
    deposit = _deposit(deposit_id)
    return render_template("deposits/show.html", d=deposit, waiting_qr=not deposit["qr_code"])


@bp.route("/deposits/<id:deposit_id>/status")
@login_required
def status(deposit_id: int):
    """The live panel of /deposits/<id> (app.js replaces it every few seconds)."""
    deposit = _deposit(deposit_id)
    return render_template("deposits/_status.html", d=deposit,
                           with_qr=request.args.get("with_qr") == "1")
