"""The account pages of issue 14: e-mail verification and change, password
reset ("Esqueci minha senha"), the devices list (end this session, end all
others), the anti-phishing code and the lost-2FA recovery request.

Links in e-mails carry a raw token; SQL knows only its sha256
(views.token_hash) and decides everything (expired, used, replaced, forged).
The worker that sends the mails is tasks.py (mail.py builds them).
"""
from __future__ import annotations

import time

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from .. import db, limiter
from ..errors import DomainError
from ..forms import ActionForm, form_error
from ..formatting import N_
from . import bp
from .forms import AntiPhishingForm, EmailChangeForm, ForgotPasswordForm, RecoveryRequestForm, ResetPasswordForm
from .roles import landing_url
from .views import PENDING_LOGIN_SECONDS, security_page, token_hash

MAX_TOKEN = 100  # a token longer than this is no token of ours (and never reaches SQL)


def _address_key() -> str:
    """Flask-Limiter key of the reset form: the address typed (so one address cannot be flooded from many IPs)."""
    return "reset:" + (request.form.get("email") or "").strip().lower()[:254]


def _link_error(exc: DomainError):
    return render_template("error.html", title=N_("Link inválido"), message=exc.message,
                           action=(url_for("auth.forgot_password"), N_("Pedir um novo link"))
                           if request.endpoint == "auth.reset_password" else None), exc.status


def _bad_token():
    return _link_error(DomainError("BST01", N_("Link inválido. Confira se copiou o endereço inteiro do e-mail, "
                                               "ou peça um novo.")))


# --- E-mail verification and change ------------------------------------------

@bp.get("/account/verify/<token>")
@limiter.limit("30 per minute")
def verify_email(token: str):
    if len(token) > MAX_TOKEN:
        return _bad_token()
    try:
        row = db.call_one("api.verify_email", token_hash=token_hash(token), ip=request.remote_addr)
    except DomainError as exc:
        return _link_error(exc)
    flash(N_("E-mail alterado e confirmado.") if row["changed"] else N_("E-mail confirmado. Tudo pronto para depositar e negociar."),
          "success")
    return redirect(landing_url() if current_user.is_authenticated else url_for("auth.login"))


@bp.post("/account/email/resend")
@login_required
@limiter.limit("10 per hour")
def resend_verification():
    if ActionForm().validate_on_submit():
        try:
            email = db.call_one("api.resend_verification", user_id=current_user.id)["resend_verification"]
        except DomainError as exc:
            flash(exc.message, "warning")
        else:
            flash(N_("Enviamos um novo link de confirmação para %(email)s.") % {"email": email}, "success")
    return redirect(request.referrer if (request.referrer or "").startswith(request.host_url)
                    else url_for("auth.security"))


@bp.route("/account/email", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per hour", methods=["POST"])
def change_email():
    form = EmailChangeForm()
    if form.validate_on_submit():
        current_hash = db.call_one("api.get_password_hash", user_id=current_user.id)["get_password_hash"]
        if not check_password_hash(current_hash, form.current_password.data):
            form.current_password.errors = [N_("Senha atual incorreta.")]
        else:
            try:
                email = db.call_one("api.request_email_change", user_id=current_user.id, new_email=form.new_email.data,
                                    ip=request.remote_addr)["request_email_change"]
            except DomainError as exc:
                form_error(form, exc, default_field="new_email")
            else:
                flash(N_("Enviamos um link para %(email)s: o e-mail da conta muda quando você abri-lo.") % {"email": email},
                      "success")
                return redirect(url_for("auth.security"))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/email_change.html", form=form), status


# --- Password reset ----------------------------------------------------------

@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit("10 per hour", methods=["POST"])                          # per IP
@limiter.limit("5 per hour", methods=["POST"], key_func=_address_key)    # per address
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        # The same work and the same answer for every address (no enumeration):
        # the database mails a link only when the address is an account's.
        db.call("api.request_password_reset", email=form.email.data, ip=request.remote_addr)
        return render_template("auth/forgot_password.html", form=None, sent=True)
    status = 422 if request.method == "POST" else 200
    return render_template("auth/forgot_password.html", form=form, sent=False), status


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit("20 per hour", methods=["POST"])
def reset_password(token: str):
    if len(token) > MAX_TOKEN:
        return _bad_token()
    try:
        email = db.call_one("api.get_password_reset", token_hash=token_hash(token))["get_password_reset"]
    except DomainError as exc:
        return _link_error(exc)
    form = ResetPasswordForm()
    form.user_email = email
    if form.validate_on_submit():
        try:
            db.call("api.reset_password", token_hash=token_hash(token),
                    password_hash=generate_password_hash(form.password.data), ip=request.remote_addr)
        except DomainError as exc:
            if exc.code.startswith("BST"):
                return _link_error(exc)
            form_error(form, exc, default_field="password")
        else:
            if current_user.is_authenticated:
                logout_user()  # its session row was ended with all the others
            flash(N_("Senha redefinida. Todas as sessões foram encerradas; por segurança, saques e envios ficam "
                     "pausados por 24 h. Entre com a nova senha."), "success")
            return redirect(url_for("auth.login"))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/reset_password.html", form=form, email=email), status


# --- Devices and the anti-phishing code ---------------------------------------

@bp.post("/account/sessions/<id:session_id>/end")
@login_required
def end_session(session_id: int):
    if ActionForm().validate_on_submit():
        ended = db.call_one("api.end_session", user_id=current_user.id, session_id=session_id,
                            reason="ended_by_user", ip=request.remote_addr)["end_session"]
        if ended and session_id == current_user.session_id:
            logout_user()
            flash(N_("Esta sessão foi encerrada."), "info")
            return redirect(url_for("auth.login"))
        flash(N_("Sessão encerrada.") if ended else N_("Esta sessão já estava encerrada."), "info")
    return redirect(url_for("auth.security"))


@bp.post("/account/sessions/end-others")
@login_required
def end_other_sessions():
    if ActionForm().validate_on_submit():
        count = db.call_one("api.end_other_sessions", user_id=current_user.id, session_id=current_user.session_id,
                            ip=request.remote_addr)["end_other_sessions"]
        flash(N_("Outras sessões encerradas: %(count)s.") % {"count": count}, "info")
    return redirect(url_for("auth.security"))


@bp.post("/account/anti-phishing")
@login_required
@limiter.limit("20 per hour")
def set_anti_phishing():
    form = AntiPhishingForm()
    if form.validate_on_submit():
        try:
            db.call("api.set_anti_phishing_code", user_id=current_user.id, code=form.anti_phishing_code.data,
                    ip=request.remote_addr)
        except DomainError as exc:
            form_error(form, exc, default_field="anti_phishing_code")
        else:
            flash(N_("Código anti-phishing salvo: ele aparece no topo de todo e-mail nosso.")
                  if (form.anti_phishing_code.data or "").strip() else N_("Código anti-phishing removido."), "success")
            return redirect(url_for("auth.security"))
    return security_page(422, phishing_form=form)


# --- Lost 2FA device ----------------------------------------------------------

@bp.route("/login/2fa/recovery", methods=["GET", "POST"])
@limiter.limit("5 per hour", methods=["POST"])
def twofactor_recovery():
    """After the right password, a customer without their authenticator asks for 2FA to be removed."""
    pending = session.get("pending_2fa")
    if not pending or time.time() - pending.get("started", 0) > PENDING_LOGIN_SECONDS:
        session.pop("pending_2fa", None)
        flash(N_("Entre com seu e-mail e senha."), "warning")
        return redirect(url_for("auth.login"))
    form = RecoveryRequestForm()
    if form.validate_on_submit():
        try:
            db.call("api.request_twofactor_recovery", user_id=pending["user_id"], reason=form.reason.data,
                    ip=request.remote_addr)
        except DomainError as exc:
            form_error(form, exc, default_field="reason")
            return render_template("auth/twofactor_recovery.html", form=form, sent=False), exc.status
        session.pop("pending_2fa", None)
        return render_template("auth/twofactor_recovery.html", form=None, sent=True)
    status = 422 if request.method == "POST" else 200
    return render_template("auth/twofactor_recovery.html", form=form, sent=False), status
