"""Views of the auth blueprint."""
from __future__ import annotations

from dataclasses import dataclass

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from .. import db, limiter, login_manager, LANGUAGES
from ..errors import DomainError
from . import bp
from ..forms import ActionForm, form_error
from .forms import LoginForm, RegisterForm

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
            login_user(load_user(str(result["user_id"])))
            flash("Você entrou.", "success")
            target = request.args.get("next", "")
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("wallet.index")
            return redirect(target)
        if result["outcome"] == "locked":
            until = result["locked_until"].astimezone().strftime("%H:%M")
            form.password.errors = [f"Muitas tentativas erradas. Por segurança, a conta está bloqueada até {until}."]
            return render_template("auth/login.html", form=form), 429
        form.password.errors = ["E-mail ou senha incorretos."]
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
