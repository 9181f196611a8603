"""Views of the auth blueprint: register, log in (with a second step when 2FA
is on), log out, and the account's security page (2FA, password, logs).

Sessions live in SQL (core.user_sessions): the Flask session cookie carries
only a random token (Flask-Login's "alternative token": `User.get_id()`
returns it), and the user loader makes the one database call of a request,
`api.session_user(sha256(token))`, which answers nothing once the session has
ended. The account pages of issue 14 (verification, reset, devices, lost 2FA)
are in account.py."""
from __future__ import annotations

import hashlib
import re
import secrets
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
from .roles import landing_url
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
    """The logged-in user, as Flask-Login needs it (loaded from api.session_user)."""
    id: int
    email: str
    display_name: str
    role: str
    status: str
    kyc_level: int
    twofactor_on: bool = False
    unread_notifications: int = 0
    email_verified: bool = True
    session_id: int | None = None
    session_token: str = ""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        # what Flask-Login keeps in the cookie: the session's token, never the user id
        return self.session_token

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_auditor(self) -> bool:
        return self.role == "auditor"


@bp.app_context_processor
def twofactor_helpers():
    # read from the loaded user: no query of its own
    return {"twofa_on": lambda: current_user.is_authenticated and current_user.twofactor_on}


def token_hash(token: str) -> str:
    """What SQL stores of a raw token (sessions, mailed links): its sha256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


USER_COLUMNS = ("email", "display_name", "role", "status", "kyc_level", "twofactor_on", "unread_notifications",
                "email_verified", "session_id")


@login_manager.user_loader
def load_user(session_token: str):
    """The one database call of a logged-in request; None (→ /login) for an ended or unknown session."""
    if not session_token or len(session_token) > 100:
        return None
    row = db.call_one("api.session_user", session_token_hash=token_hash(session_token))
    return User(id=row["user_id"], session_token=session_token, **{k: row[k] for k in USER_COLUMNS}) if row else None


BROWSERS = [("Edge", r"Edg(?:e|A|iOS)?/"), ("Opera", r"OPR/|Opera"), ("Samsung Internet", r"SamsungBrowser/"),
            ("Firefox", r"Firefox/|FxiOS/"), ("Chrome", r"Chrome/|CriOS/|Chromium/"), ("Safari", r"Safari/")]
SYSTEMS = [("Android", r"Android"), ("iOS", r"iPhone|iPad|iPod"), ("Windows", r"Windows"), ("macOS", r"Mac OS X|Macintosh"),
           ("ChromeOS", r"CrOS"), ("Linux", r"Linux|X11")]


def browser_name(user_agent: str) -> str:
    """"Firefox / Linux" from a User-Agent: what the devices list shows and a new device is told by."""
    ua = user_agent or ""
    browser = next((name for name, pattern in BROWSERS if re.search(pattern, ua)), None)
    system = next((name for name, pattern in SYSTEMS if re.search(pattern, ua)), None)
    if not browser and not system:
        return (ua[:40] or "?").strip()
    return " / ".join(part for part in (browser or "?", system) if part)


def start_session(user_id: int) -> User:
    """Record a session for a user whose password (and code) were right, and log them in with it."""
    token = secrets.token_urlsafe(32)
    agent = request.headers.get("User-Agent", "")[:500]
    db.call("api.start_session", user_id=user_id, token_hash=token_hash(token), ip=request.remote_addr,
            user_agent=agent, browser=browser_name(agent))
    user = load_user(token)
    login_user(user)
    return user


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
            start_session(user_id)
            flash("Conta criada. Enviamos um link de confirmação para o seu e-mail: abra-o para depositar e negociar.",
                  "success")
            return redirect(url_for("wallet.index"))
    status = 422 if form.errors or request.method == "POST" else 200
    return render_template("auth/register.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("20 per minute", methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(landing_url())
    form = LoginForm()
    if form.validate_on_submit():
        row = db.call_one("api.get_login", email=form.email.data)
        password_ok = check_password_hash(row["password_hash"] if row else _DUMMY_HASH, form.password.data)
        result = db.call_one("api.record_login", email=form.email.data, password_ok=bool(row) and password_ok,
                             ip=request.remote_addr)
        if result["outcome"] == "ok":
            target = request.args.get("next", "")
            if not target.startswith("/") or target.startswith("//"):
                target = None  # the person's home (landing_url), known once logged in
            if twofactor.is_enabled(result["user_id"]):
                # Password right: now the code. Not logged in until then.
                session["pending_2fa"] = {"user_id": result["user_id"], "next": target, "started": time.time()}
                return redirect(url_for("auth.login_twofactor"))
            user = start_session(result["user_id"])
            flash("Você entrou.", "success")
            return redirect(target or landing_url(user))
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
        db.call("api.end_session", user_id=current_user.id, session_id=current_user.session_id, reason="logout")
        logout_user()
        flash("Você saiu.", "info")
    return redirect(url_for("auth.login"))


@bp.post("/language/<code>")
def set_language(code: str):
    if code in LANGUAGES and ActionForm().validate_on_submit():
        session["lang"] = code
    return redirect(request.referrer or landing_url())


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
        user = start_session(pending["user_id"])
        flash("Você entrou.", "success")
        return redirect(pending.get("next") or landing_url(user))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/login_twofactor.html", form=form), status


@bp.get("/account/security")
@login_required
def security():
    return security_page()


def security_page(status: int = 200, **forms):
    """/account/security: 2FA, password, e-mail, anti-phishing code, devices and logs (forms with errors passed in)."""
    from .forms import AntiPhishingForm
    account = db.call_one("api.get_account", user_id=current_user.id)
    forms.setdefault("disable_form", TwoFactorDisableForm())
    forms.setdefault("phishing_form", AntiPhishingForm(anti_phishing_code=account["anti_phishing_code"] or ""))
    return render_template("auth/security.html", state=twofactor.state(current_user.id), account=account,
                           sessions=db.call("api.list_sessions", user_id=current_user.id,
                                            current_session_id=current_user.session_id),
                           logins=db.call("api.list_login_events", user_id=current_user.id, max_rows=20),
                           events=db.call("api.list_security_events", user_id=current_user.id, max_rows=20),
                           action_form=ActionForm(), **forms), status


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
                    recovery_code_hashes=[twofactor.hash_recovery_code(c) for c in codes], ip=request.remote_addr,
                    session_id=current_user.session_id)
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
                              ip=request.remote_addr, session_id=current_user.session_id)["disable_totp"]
        if outcome == "ok":
            flash("Verificação em duas etapas desativada. Por segurança, saques e envios ficam pausados por 24 h.",
                  "warning")
            return redirect(url_for("auth.security"))
        form.totp_code.errors = [twofactor.MESSAGES.get(outcome, twofactor.MESSAGES["wrong"])]
    return security_page(422, disable_form=form)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per minute", methods=["POST"])
def change_password():
    form = PasswordChangeForm()
    form.user_email = current_user.email
    enabled = current_user.twofactor_on
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
                        password_hash=generate_password_hash(form.new_password.data), ip=request.remote_addr,
                        session_id=current_user.session_id)
            except DomainError as exc:
                form_error(form, exc)
            else:
                flash("Senha alterada. As outras sessões da sua conta foram encerradas.", "success")
                return redirect(url_for("auth.security"))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/password.html", form=form, twofactor_enabled=enabled), status
