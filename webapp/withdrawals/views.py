"""Views of the withdrawals blueprint: the customer's /withdrawals and the
back office's /admin/withdrawals (admins only)."""
from __future__ import annotations

import uuid

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import db, limiter
from ..errors import DomainError
from ..forms import ActionForm, form_error
from ..formatting import N_, datetimeformat
from ..providers import pix_provider_name
from . import bp
from .forms import ApproveForm, DestinationForm, RejectForm, WithdrawalForm

PAGE_SIZE = 15
STATUS = {
    "AWAITING_APPROVAL": (N_("Aguardando aprovação"), "info", "person-check"),
    "PENDING": (N_("Na fila"), "warning", "hourglass-split"),
    "PROCESSING": (N_("Enviando"), "primary", "arrow-repeat"),
    "COMPLETED": (N_("Concluído"), "success", "check-circle-fill"),
    "FAILED": (N_("Falhou"), "danger", "x-circle"),
    "CANCELLED": (N_("Cancelado"), "secondary", "slash-circle"),
    "REJECTED": (N_("Recusado"), "danger", "x-octagon"),
}
KEY_LABELS = {"CPF": "CPF", "CNPJ": "CNPJ", "EMAIL": N_("E-mail"), "PHONE": N_("Telefone"), "EVP": N_("Chave aleatória")}
# Mercado Pago's payout API has no random-key (EVP) destination (providers.md D).
UNSUPPORTED_KEY_TYPES = {"mercadopago": {"EVP"}}


@bp.app_context_processor
def withdrawal_helpers():
    return {"withdrawal_status": lambda s: STATUS.get(s, (s, "secondary", "question-circle")),
            "pix_key_label": lambda k: KEY_LABELS.get(k, k)}


from ..auth.guards import admin_required  # noqa: E402


@bp.route("/withdrawals", methods=["GET", "POST"])
@login_required
@limiter.limit(lambda: current_app.config["RATELIMIT_WITHDRAWAL"], methods=["POST"])
def index():
    form = WithdrawalForm()
    provider = pix_provider_name(current_app.config)
    if form.validate_on_submit():
        try:
            _refuse_unsupported(provider, form.key_type.data)
            # With 2FA on, the database wants a fresh code (step-up) before money leaves.
            row = db.call_one("api.create_withdrawal", user_id=current_user.id, amount=form.amount.data,
                              key_type=form.key_type.data, pix_key=form.pix_key.data,
                              idempotency_key=form.idempotency_key.data, totp_code=form.totp_code.data)
        except DomainError as exc:
            form_error(form, exc)
        else:
            if row["status"] == "AWAITING_APPROVAL":
                flash("Saque registrado. Por ser um valor alto, ele passa pela aprovação da equipe antes do envio.",
                      "info")
            else:
                flash("Saque registrado: o PIX será enviado em instantes.", "success")
            return redirect(url_for("withdrawals.index"))
    if request.method == "GET" or not form.idempotency_key.data:
        form.idempotency_key.data = str(uuid.uuid4())
    return _render(form, DestinationForm(formdata=None), 422 if request.method == "POST" else 200)


def _refuse_unsupported(provider: str, key_type: str) -> None:
    """A key type the PIX provider cannot pay to is not offered on the forms; one posted anyway is refused."""
    if key_type in UNSUPPORTED_KEY_TYPES.get(provider, ()):
        raise DomainError("BSV01", N_("Nosso provedor PIX não envia para chave aleatória: use CPF, CNPJ, "
                                      "e-mail ou telefone."), "pix_key")


def _render(form, destination_form, status: int):
    provider = pix_provider_name(current_app.config)
    unsupported = UNSUPPORTED_KEY_TYPES.get(provider, ())
    for f in (form, destination_form):
        f.key_type.choices = [c for c in f.key_type.choices if c.value not in unsupported]
    page = max(request.args.get("page", 1, type=int), 1)
    rows = db.call("api.list_withdrawals", user_id=current_user.id, page=page, page_size=PAGE_SIZE)
    total = rows[0]["total_rows"] if rows else 0
    balance = db.call_one("api.get_withdrawable", user_id=current_user.id)
    limits = db.call_one("api.get_limits", user_id=current_user.id)
    destinations = db.call("api.list_withdrawal_destinations", user_id=current_user.id)
    return render_template("withdrawals/index.html", form=form, rows=rows, page=page,
                           pages=max(1, -(-total // PAGE_SIZE)), balance=balance, limits=limits,
                           twofa=current_user.twofactor_on, cancel_form=ActionForm(),
                           destinations=destinations, destination_form=destination_form,
                           evp_ok="EVP" not in UNSUPPORTED_KEY_TYPES.get(provider, ())), status


@bp.post("/withdrawals/destinations")
@login_required
@limiter.limit("10 per minute")
def add_destination():
    form = DestinationForm()
    if form.validate_on_submit():
        try:
            _refuse_unsupported(pix_provider_name(current_app.config), form.key_type.data)
            row = db.call_one("api.add_withdrawal_destination", user_id=current_user.id, key_type=form.key_type.data,
                              pix_key=form.pix_key.data, label=form.label.data or "", totp_code=form.totp_code.data)
        except DomainError as exc:
            form_error(form, exc)
        else:
            if row["created"]:
                flash(f"Chave cadastrada. Por segurança, ela pode receber saques a partir de "
                      f"{datetimeformat(row['usable_from'])}.", "success")
            else:
                flash(N_("Esta chave já está na sua lista."), "info")
            return redirect(url_for("withdrawals.index"))
    withdrawal_form = WithdrawalForm(formdata=None)
    withdrawal_form.idempotency_key.data = str(uuid.uuid4())
    return _render(withdrawal_form, form, 422)


@bp.post("/withdrawals/destinations/<id:destination_id>/remove")
@login_required
def remove_destination(destination_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        db.call("api.remove_withdrawal_destination", user_id=current_user.id, destination_id=destination_id)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(N_("Chave removida da sua lista."), "success")
    return redirect(url_for("withdrawals.index"))


@bp.post("/withdrawals/<id:withdrawal_id>/cancel")
@login_required
@limiter.limit("20 per minute")
def cancel(withdrawal_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        db.call_one("api.cancel_withdrawal", user_id=current_user.id, withdrawal_id=withdrawal_id)
    except DomainError as exc:
        flash(exc.message, "danger")
        return redirect(url_for("withdrawals.index"))
    flash("Saque cancelado: o valor voltou ao seu saldo.", "success")
    return redirect(url_for("withdrawals.index"))


# --------------------------------------------------------------------------- back office

@bp.route("/admin/withdrawals")
@admin_required
def admin_list():
    wanted = request.args.get("status") or None
    if wanted is not None and wanted not in STATUS:
        abort(404)
    rows = db.call("admin.list_withdrawals", admin_id=current_user.id, status_filter=wanted, max_rows=200)
    return render_template("withdrawals/admin.html", rows=rows, wanted=wanted, statuses=STATUS,
                           action_form=ActionForm(), reject_form=RejectForm())


@bp.post("/admin/withdrawals/<id:withdrawal_id>/approve")
@admin_required
def admin_approve(withdrawal_id: int):
    form = ApproveForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        db.call_one("admin.approve_withdrawal", admin_id=current_user.id, withdrawal_id=withdrawal_id,
                    totp_code=form.totp_code.data)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(f"Saque #{withdrawal_id} aprovado: vai para a fila de envio.", "success")
    return redirect(url_for("withdrawals.admin_list"))


@bp.post("/admin/withdrawals/<id:withdrawal_id>/reject")
@admin_required
def admin_reject(withdrawal_id: int):
    form = RejectForm()
    if not form.validate_on_submit():
        flash(" ".join(e for errors in form.errors.values() for e in errors), "danger")
        return redirect(url_for("withdrawals.admin_list"))
    try:
        db.call_one("admin.reject_withdrawal", admin_id=current_user.id, withdrawal_id=withdrawal_id,
                    reason=form.reason.data)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(f"Saque #{withdrawal_id} recusado; o valor voltou ao saldo do cliente.", "success")
    return redirect(url_for("withdrawals.admin_list"))
