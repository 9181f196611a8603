"""Views of the back office. Every page needs an active admin (403 for anyone
else); every action is one admin.* call, which checks the admin again and
writes the admin audit log."""
from __future__ import annotations

import uuid

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import db
from ..auth.guards import admin_refusal, admin_required
from ..errors import DomainError
from ..forms import form_error
from ..formatting import N_
from ..providers.base import charge_status_text
from . import bp
from .forms import AdjustmentForm, KycReviewForm, ReasonForm, RecoveryReviewForm, SearchForm, StatusForm, TraceForm

AUDIT_PAGE_SIZE = 50


@bp.before_request
def admins_only():
    # The whole blueprint, so a page added without its decorator is still closed
    # (tests/test_admin_guard.py asks for the decorator on each).
    return admin_refusal()


def _db_error(exc: DomainError):
    """A refusal outside a form: not found → 404, else flash and stay."""
    if exc.status == 404:
        abort(404)
    flash(exc.message, "danger")


@bp.get("/")
@admin_required
def index():
    stats = db.call_one("admin.dashboard", admin_id=current_user.id)
    return render_template("admin/index.html", stats=stats, form=SearchForm(formdata=None))


# --- KYC review -------------------------------------------------------------

@bp.get("/kyc")
@admin_required
def kyc_queue():
    status = request.args.get("status", "pending")
    if status not in ("pending", "approved", "rejected"):
        abort(404)
    rows = db.call("admin.list_kyc_submissions", admin_id=current_user.id, status=status, max_rows=100)
    return render_template("admin/kyc_queue.html", rows=rows, status=status)


@bp.get("/kyc/<id:submission_id>")
@admin_required
def kyc_submission(submission_id: int, form=None, status=200):
    try:
        sub = db.call_one("admin.get_kyc_submission", admin_id=current_user.id, submission_id=submission_id)
    except DomainError as exc:
        _db_error(exc)
        return redirect(url_for("admin.kyc_queue"))
    return render_template("admin/kyc_submission.html", sub=sub, form=form or KycReviewForm()), status


@bp.post("/kyc/<id:submission_id>/<any(approve, reject):decision>")
@admin_required
def kyc_review(submission_id: int, decision: str):
    form = KycReviewForm()
    if form.validate_on_submit():
        try:
            db.call("admin.review_kyc", admin_id=current_user.id, submission_id=submission_id,
                    approve=decision == "approve", reason=form.reason.data or None)
        except DomainError as exc:
            if exc.status == 404:
                abort(404)
            form_error(form, exc, default_field="reason")
            return kyc_submission(submission_id, form=form, status=exc.status)
        flash(N_("Documentos aprovados: cliente no nível 2.") if decision == "approve"
              else N_("Documentos recusados; o cliente foi avisado."), "success")
        return redirect(url_for("admin.kyc_queue"))
    return kyc_submission(submission_id, form=form, status=422)


# --- Customers --------------------------------------------------------------

@bp.get("/users")
@admin_required
def users():
    form = SearchForm(request.args)
    rows = []
    if request.args.get("q") is not None and form.validate():
        rows = db.call("admin.search_users", admin_id=current_user.id, query=form.q.data)
        if len(rows) == 1:
            return redirect(url_for("admin.user", user_id=rows[0]["user_id"]))
    return render_template("admin/users.html", form=form, rows=rows, searched=request.args.get("q") is not None)


def _user_page(user_id: int, status_form=None, adjust_form=None, status=200):
    try:
        user = db.call_one("admin.get_customer", admin_id=current_user.id, user_id=user_id)
    except DomainError as exc:
        _db_error(exc)
        return redirect(url_for("admin.users"))
    adjust_form = adjust_form or AdjustmentForm(formdata=None)
    if not adjust_form.idempotency_key.data:
        adjust_form.idempotency_key.data = str(uuid.uuid4())
    return render_template(
        "admin/user.html", user=user, status_form=status_form or StatusForm(formdata=None), adjust_form=adjust_form,
        balances=db.call("admin.customer_balances", admin_id=current_user.id, user_id=user_id),
        history=db.call("admin.customer_history", admin_id=current_user.id, user_id=user_id, max_rows=30),
        audit=db.call("admin.list_audit_log", admin_id=current_user.id, target_user_id=user_id, max_rows=10),
    ), status


@bp.get("/users/<id:user_id>")
@admin_required
def user(user_id: int):
    return _user_page(user_id)


@bp.post("/users/<id:user_id>/<any(freeze, unfreeze):action>")
@admin_required
def set_status(user_id: int, action: str):
    form = StatusForm()
    if form.validate_on_submit():
        try:
            db.call("admin.set_user_status", admin_id=current_user.id, user_id=user_id,
                    status="frozen" if action == "freeze" else "active", reason=form.reason.data)
        except DomainError as exc:
            if exc.status == 404:
                abort(404)
            form_error(form, exc, default_field="reason")
            return _user_page(user_id, status_form=form, status=exc.status)
        flash(N_("Conta bloqueada.") if action == "freeze" else N_("Conta desbloqueada."), "success")
        return redirect(url_for("admin.user", user_id=user_id))
    return _user_page(user_id, status_form=form, status=422)


@bp.post("/users/<id:user_id>/adjust")
@admin_required
def adjust(user_id: int):
    form = AdjustmentForm()
    if form.validate_on_submit():
        try:
            row = db.call_one("admin.adjust_balance", admin_id=current_user.id, user_id=user_id,
                              currency=form.currency.data, amount=form.amount.data, reason=form.reason.data,
                              idempotency_key=form.idempotency_key.data or str(uuid.uuid4()),
                              totp_code=form.totp_code.data)
        except DomainError as exc:
            if exc.status == 404 and exc.field == "user_id":
                abort(404)
            form_error(form, exc, default_field="amount")
            return _user_page(user_id, adjust_form=form, status=exc.status)
        flash(N_("Ajuste já registrado antes (nada foi repetido).") if row["replayed"]
              else f"Ajuste lançado (lançamento #{row['entry_id']}).", "success")
        return redirect(url_for("admin.user", user_id=user_id))
    return _user_page(user_id, adjust_form=form, status=422)


# --- MED: PIX clawed back, and where the money went ------------------------

@bp.get("/med")
@admin_required
def med(form=None, status=200):
    """Clawbacks (what was taken back, what is owed, blocked exits) and MED 2.0 tracing by end-to-end id."""
    trace_form = TraceForm(request.args)
    tree = None
    if request.args.get("e2e_id") is not None and trace_form.validate():
        try:
            tree = db.call("admin.trace_pix_funds", admin_id=current_user.id, end_to_end_id=trace_form.e2e_id.data)
        except DomainError as exc:
            trace_form.e2e_id.errors = list(trace_form.e2e_id.errors) + [exc.message]
            status = exc.status
    only_open = request.args.get("all") != "1"
    rows = db.call("admin.list_clawbacks", admin_id=current_user.id, only_open=only_open)
    refunds = db.call("admin.list_pix_refunds", admin_id=current_user.id, only_open=only_open)
    return render_template("admin/med.html", rows=rows, refunds=refunds, trace_form=trace_form, tree=tree,
                           reason_form=form or ReasonForm(formdata=None),
                           charge_status_text=charge_status_text), status


@bp.post("/med/<id:clawback_id>/recover")
@admin_required
def med_recover(clawback_id: int):
    form = ReasonForm()
    if not form.validate_on_submit():
        return med(form=form, status=422)
    try:
        taken = db.call_one("admin.recover_clawback_debt", admin_id=current_user.id, clawback_id=clawback_id,
                            reason=form.reason.data)["recover_clawback_debt"]
    except DomainError as exc:
        _db_error(exc)
        return med(form=form, status=exc.status)
    flash(f"Recuperados R$ {taken:.2f} do saldo do cliente.".replace(".", ","), "success")
    return redirect(url_for("admin.med"))


@bp.post("/med/users/<id:user_id>/unblock")
@admin_required
def med_unblock(user_id: int):
    form = ReasonForm()
    if not form.validate_on_submit():
        return med(form=form, status=422)
    try:
        db.call("admin.unblock_exits", admin_id=current_user.id, user_id=user_id, reason=form.reason.data,
                totp_code=form.totp_code.data)
    except DomainError as exc:
        _db_error(exc)
        return med(form=form, status=exc.status)
    flash(N_("Saídas do cliente liberadas."), "success")
    return redirect(url_for("admin.med"))


# --- Lost 2FA devices ------------------------------------------------------

@bp.get("/twofactor-recoveries")
@admin_required
def twofactor_recoveries(form=None, status=200, form_request_id=None):
    """Requests to remove a lost 2FA device, with the KYC identity on file to check who asks."""
    which = request.args.get("status", "pending")
    if which not in ("pending", "approved", "rejected"):
        abort(404)
    rows = db.call("admin.list_twofactor_recoveries", admin_id=current_user.id, only_status=which)
    return render_template("admin/twofactor_recoveries.html", rows=rows, which=which,
                           form=form or RecoveryReviewForm(formdata=None), blank_form=RecoveryReviewForm(formdata=None),
                           form_request_id=form_request_id), status


@bp.post("/twofactor-recoveries/<id:request_id>/<any(approve, reject):decision>")
@admin_required
def twofactor_recovery_review(request_id: int, decision: str):
    form = RecoveryReviewForm()
    if not form.validate_on_submit():
        return twofactor_recoveries(form=form, status=422, form_request_id=request_id)
    try:
        if decision == "approve":
            db.call("admin.approve_twofactor_recovery", admin_id=current_user.id, request_id=request_id,
                    reason=form.reason.data, totp_code=form.totp_code.data)
        else:
            db.call("admin.reject_twofactor_recovery", admin_id=current_user.id, request_id=request_id,
                    reason=form.reason.data)
    except DomainError as exc:
        if exc.status == 404:
            abort(404)
        form_error(form, exc, default_field="reason")
        return twofactor_recoveries(form=form, status=exc.status, form_request_id=request_id)
    flash(N_("Pedido aprovado: verificação em duas etapas removida, saídas pausadas por 48 h e cliente avisado.")
          if decision == "approve" else N_("Pedido recusado; o cliente foi avisado."), "success")
    return redirect(url_for("admin.twofactor_recoveries"))


# --- Audit log --------------------------------------------------------------

@bp.get("/audit-log")
@admin_required
def audit_log():
    page = request.args.get("page", 1, type=int)
    if page < 1:
        abort(404)
    rows = db.call("admin.list_audit_log", admin_id=current_user.id, target_user_id=None,
                   max_rows=AUDIT_PAGE_SIZE, skip=(page - 1) * AUDIT_PAGE_SIZE)
    total = rows[0]["total_rows"] if rows else 0
    pages = max(1, -(-total // AUDIT_PAGE_SIZE))
    return render_template("admin/audit_log.html", rows=rows, page=page, pages=pages, total=total)
