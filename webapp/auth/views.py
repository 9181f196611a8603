"""Views of the auth blueprint: register, log in (with a second step when 2FA
is on), log out, and the account's security page (2FA, password, logs)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from .. import db, limiter, login_manager, LANGUAGES
from ..errors import DomainError
from ..formatting import N_
from . import bp
from ..forms import ActionForm, form_error
from . import twofactor
from .forms import (LoginForm, PasswordChangeForm, RegisterForm, TwoFactorDisableForm, TwoFactorLoginForm,
                    TwoFactorSetupForm)

# A password-verified login waits this long for its 2FA code. Wrong codes
# are counted by the database (a replayed cookie gets no extra guesses): after
# totp_max_failures 2FA is locked for a while and the password must be typed again.
PENDING_LOGIN_SECONDS = 300

# Verified against when the e-mail is unknown, so both cases take as long.
_DUMMY_HASH = generate_password_hash("not-a-real-password-0000")


@dataclass
class User:
    """The logged-in user, as Flask-Login needs it (loaded from api.get_user)."""
    id: int
    email: str
    display_name: str
    role: str
    status: str
    kyc_level: int

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_auditor(self) -> bool:
        return self.role == "auditor"


@bp.app_context_processor
def twofactor_helpers():
    # a function, so only the pages that ask for a code look it up
    return {"twofa_on": lambda: current_user.is_authenticated and twofactor.is_enabled(current_user.id)}


@login_manager.user_loader
def load_user(user_id: str):
    row = db.call_one("api.get_user", user_id=int(user_id))
    return User(id=row["user_id"], **{k: row[k] for k in ("email", "display_name", "role", "status", "kyc_level")}) \
        if row else None


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit("10 per hour", methods=["POST"])
def register():
    if current_user.is_authenticated:
        return redirect(url_for("wallet.index"))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user_id = db.call_one("api.register_user", email=form.email.data,
                                  password_hash=generate_password_hash(form.password.data),
                                  display_name=form.display_name.data)["register_user"]
        except DomainError as exc:
            form_error(form, exc)
        else:
            login_user(load_user(str(user_id)))
            flash("Conta criada. Bem-vindo à bs-market!", "success")
            return redirect(url_for("wallet.index"))
    status = 422 if form.errors or request.method == "POST" else 200
    return render_template("auth/register.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("20 per minute", methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("wallet.index"))
    form = LoginForm()
    if form.validate_on_submit():
        row = db.call_one("api.get_login", email=form.email.data)
        password_ok = check_password_hash(row["password_hash"] if row else _DUMMY_HASH, form.password.data)
        result = db.call_one("api.record_login", email=form.email.data, password_ok=bool(row) and password_ok,
                             ip=request.remote_addr)
        if result["outcome"] == "ok":
            target = request.args.get("next", "")
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("wallet.index")
            if twofactor.is_enabled(result["user_id"]):
                # Password right: now the code. Not logged in until then.
                session["pending_2fa"] = {"user_id": result["user_id"], "next": target, "started": time.time()}
                return redirect(url_for("auth.login_twofactor"))
            login_user(load_user(str(result["user_id"])))
            flash("Você entrou.", "success")
            return redirect(target)
        if result["outcome"] == "closed":
            # the customer closed this account (webapp/privacy): said only after the right password
            form.password.errors = [N_("Esta conta foi encerrada a pedido do titular e não permite mais entrar. "
                                       "Para falar sobre seus dados, escreva para dpo@bs-market.com.br.")]
            return render_template("auth/login.html", form=form), 403
        if result["outcome"] == "locked":
            until = result["locked_until"].astimezone().strftime("%H:%M")
            form.password.errors = [f"Muitas tentativas erradas. Por segurança, a conta está bloqueada até {until}."]
            return render_template("auth/login.html", form=form), 429
        form.password.errors = [N_("E-mail ou senha incorretos.")]
        return render_template("auth/login.html", form=form), 401
    status = 422 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    if ActionForm().validate_on_submit():
        logout_user()
        flash("Você saiu.", "info")
    return redirect(url_for("auth.login"))


@bp.post("/language/<code>")
def set_language(code: str):
    if code in LANGUAGES and ActionForm().validate_on_submit():
        session["lang"] = code
    target = request.referrer or url_for("wallet.index")
    return redirect(target)


@bp.route("/login/2fa", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login_twofactor():
    pending = session.get("pending_2fa")
    if not pending or time.time() - pending.get("started", 0) > PENDING_LOGIN_SECONDS:
        session.pop("pending_2fa", None)
        flash("Entre com seu e-mail e senha.", "warning")
        return redirect(url_for("auth.login"))
    form = TwoFactorLoginForm()
    if form.validate_on_submit():
        try:
            twofactor.verify(pending["user_id"], form.totp_code.data, context="login")
        except DomainError as exc:
            if twofactor.state(pending["user_id"])["locked_until"]:
                session.pop("pending_2fa", None)
                flash(N_("Muitos códigos errados: a verificação em duas etapas está bloqueada por alguns minutos. "
                         "Entre de novo com sua senha depois."), "danger")
                return redirect(url_for("auth.login"))
            form_error(form, exc)
            return render_template("auth/login_twofactor.html", form=form), exc.status
        session.pop("pending_2fa", None)
        login_user(load_user(str(pending["user_id"])))
        flash("Você entrou.", "success")
        return redirect(pending.get("next") or url_for("wallet.index"))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/login_twofactor.html", form=form), status


@bp.get("/account/security")
@login_required
def security():
    return render_template("auth/security.html", state=twofactor.state(current_user.id),
                           logins=db.call("api.list_login_events", user_id=current_user.id, max_rows=20),
                           events=db.call("api.list_security_events", user_id=current_user.id, max_rows=20),
                           disable_form=TwoFactorDisableForm())


@bp.route("/account/2fa", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per minute", methods=["POST"])
def twofactor_setup():
    if twofactor.is_enabled(current_user.id):
        flash("A verificação em duas etapas já está ativa.", "info")
        return redirect(url_for("auth.security"))
    secret = db.call_one("api.begin_totp_enrolment", user_id=current_user.id,
                         secret=twofactor.new_secret())["begin_totp_enrolment"]
    form = TwoFactorSetupForm()
    if form.validate_on_submit():
        codes = twofactor.new_recovery_codes()
        try:
            # the database checks the first code against the pending secret
            db.call("api.confirm_totp_enrolment", user_id=current_user.id, code=twofactor.normalize(form.totp_code.data),
                    recovery_code_hashes=[twofactor.hash_recovery_code(c) for c in codes], ip=request.remote_addr)
        except DomainError as exc:
            form_error(form, exc)
        else:
            # Shown once, in this response only (never stored in the session).
            return render_template("auth/twofactor_codes.html", codes=codes)
    uri = twofactor.provisioning_uri(secret, current_user.email)
    status = 422 if request.method == "POST" else 200
    return render_template("auth/twofactor_setup.html", form=form, secret=secret, qr=twofactor.qr_data_uri(uri),
                           uri=uri), status


@bp.post("/account/2fa/disable")
@login_required
@limiter.limit("10 per minute")
def twofactor_disable():
    form = TwoFactorDisableForm()
    if form.validate_on_submit():
        # the database checks the code (a recovery code cannot turn 2FA off)
        outcome = db.call_one("api.disable_totp", user_id=current_user.id, code=twofactor.normalize(form.totp_code.data),
                              ip=request.remote_addr)["disable_totp"]
        if outcome == "ok":
            flash("Verificação em duas etapas desativada. Por segurança, saques e envios ficam pausados por 24 h.",
                  "warning")
            return redirect(url_for("auth.security"))
        form.totp_code.errors = [twofactor.MESSAGES.get(outcome, twofactor.MESSAGES["wrong"])]
    return render_template("auth/security.html", state=twofactor.state(current_user.id),
                           logins=db.call("api.list_login_events", user_id=current_user.id, max_rows=20),
                           events=db.call("api.list_security_events", user_id=current_user.id, max_rows=20),
                           disable_form=form), 422


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per minute", methods=["POST"])
def change_password():
    form = PasswordChangeForm()
    form.user_email = current_user.email
    enabled = twofactor.is_enabled(current_user.id)
    if form.validate_on_submit():
        current_hash = db.call_one("api.get_password_hash", user_id=current_user.id)["get_password_hash"]
        if not check_password_hash(current_hash, form.current_password.data):
            form.current_password.errors = [N_("Senha atual incorreta.")]
        elif form.current_password.data == form.new_password.data:
            form.new_password.errors = [N_("A nova senha precisa ser diferente da atual.")]
        else:
            try:
                twofactor.require_code(form.totp_code.data, context="password")
                db.call("api.change_password", user_id=current_user.id,
                        password_hash=generate_password_hash(form.new_password.data), ip=request.remote_addr)
            except DomainError as exc:
                form_error(form, exc)
            else:
                flash("Senha alterada.", "success")
                return redirect(url_for("auth.security"))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/password.html", form=form, twofactor_enabled=enabled), status
