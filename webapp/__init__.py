"""bs-market: a Brazilian P2P crypto exchange. `create_app` builds the web app."""
from __future__ import annotations

import logging
import secrets

from dotenv import load_dotenv
from flask import Flask, render_template, request, session
from flask_babel import Babel
from flask_bootstrap import Bootstrap5
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from . import config as config_module
from . import db, formatting
from .errors import DomainError
from .formatting import N_

csrf = CSRFProtect()
login_manager = LoginManager()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
babel = Babel()

LANGUAGES = {"pt_BR": "Português", "en": "English"}

# A body that is not multipart (a form, a webhook's JSON) is small; multipart
# bodies keep MAX_CONTENT_LENGTH (files), each text part MAX_FORM_MEMORY_SIZE.
SMALL_BODY_LIMIT = 256 * 1024

# The 4xx answered by Werkzeug itself (malformed request, wrong method, too
# large…), in the words of the other error pages.
HTTP_ERRORS = {
    400: (N_("Pedido inválido"), N_("O pedido veio incompleto ou malformado. Volte à página e tente de novo.")),
    405: (N_("Pedido inválido"), N_("Este endereço não aceita esse tipo de pedido.")),
    413: (N_("Envio grande demais"), N_("O envio passa do tamanho aceito.")),
    415: (N_("Pedido inválido"), N_("Envie os dados pelo formulário da página.")),
}
DEFAULT_HTTP_ERROR = (N_("Pedido inválido"), N_("Não foi possível atender a este pedido."))


class IdConverter(IntegerConverter):
    """`<id:trade_id>`: the id of a row, 1 to 2^63 - 1 (a PostgreSQL bigint).

    Anything else in the URL (0, 20 digits, 400 digits) matches no route: a 404
    before the view runs, never a value the database cannot take.
    """

    regex = r"\d{1,19}"

    def __init__(self, map, **kwargs):
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", 2 ** 63 - 1)
        super().__init__(map, **kwargs)


def select_locale():
    lang = session.get("lang")
    if lang in LANGUAGES:
        return lang
    return "pt_BR"  # pt-BR by default; English only when the customer picks it


def create_app(test_config: dict | None = None) -> Flask:
    load_dotenv()
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(config_module.from_environment())
    app.config.update(
        BOOTSTRAP_SERVE_LOCAL=True,
        BABEL_DEFAULT_LOCALE="pt_BR",
        BABEL_DEFAULT_TIMEZONE="America/Sao_Paulo",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=6 * 1024 * 1024,
        MAX_FORM_MEMORY_SIZE=64 * 1024,  # one text part of a multipart body
        MAX_FORM_PARTS=200,
    )
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        app.logger.warning("SECRET_KEY not set: using a random one (sessions end on restart)")
    app.config["RATELIMIT_STORAGE_URI"] = app.config.get("RATELIMIT_STORAGE_URI", "memory://")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app.url_map.converters["id"] = IdConverter
    db.init_app(app)

    @app.before_request
    def limit_small_bodies():
        # Before CSRF validation reads the body (csrf.init_app comes next).
        if request.mimetype != "multipart/form-data":
            limit = request.max_content_length
            request.max_content_length = SMALL_BODY_LIMIT if limit is None else min(limit, SMALL_BODY_LIMIT)

    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    Bootstrap5(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = N_("Entre para continuar.")
    login_manager.login_message_category = "warning"
    formatting.init_app(app)

    from . import (admin, audit, auth, crypto, deposits, fees, kyc, market, metrics, notifications, p2p, privacy,
                   tax, wallet, webhooks, withdrawals)
    from .auth.views import load_user  # noqa: F401  (registers the user loader)
    for domain in (auth, wallet, deposits, withdrawals, crypto, market, p2p, kyc, admin, audit, webhooks,
                   notifications, metrics, privacy, tax, fees):
        app.register_blueprint(domain.bp)

    from . import cli
    cli.init_app(app)

    @app.get("/healthz")
    def healthz():
        row = db.call_one("api.health")
        return {"status": "ok", "database_time": row["database_time"].isoformat()}

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_template("error.html", title=N_("Sessão expirada"),
                               message=N_("O formulário expirou ou veio de outro site. Recarregue a página e tente de novo.")), 400

    @app.errorhandler(DomainError)
    def domain_error(exc):
        return render_template("error.html", title=N_("Não foi possível concluir"), message=exc.message), exc.status

    @app.errorhandler(429)
    def too_many(exc):
        return render_template("error.html", title=N_("Muitas tentativas"),
                               message=N_("Muitas tentativas em pouco tempo. Aguarde um minuto e tente de novo.")), 429

    @app.errorhandler(404)
    def not_found(exc):
        return render_template("error.html", title=N_("Página não encontrada"),
                               message=N_("O endereço não existe ou não está disponível para você.")), 404

    @app.errorhandler(403)
    def forbidden(exc):
        return render_template("error.html", title=N_("Acesso negado"),
                               message=N_("Você não tem permissão para ver esta página.")), 403

    @app.errorhandler(HTTPException)
    def http_error(exc):
        """Any other 4xx Werkzeug raises, as a page in Portuguese (3xx and 5xx pass through)."""
        if exc.code is None or not 400 <= exc.code < 500:
            return exc
        title, message = HTTP_ERRORS.get(exc.code, DEFAULT_HTTP_ERROR)
        return render_template("error.html", title=title, message=message), exc.code

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
            "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
        return response

    return app

