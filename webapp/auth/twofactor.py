"""Two-factor authentication: TOTP codes (pyotp) and single-use recovery codes.

The secret lives in the database (api.begin_totp_enrolment / api.get_twofactor);
codes are computed here and the database refuses a time step that was already
used (api.use_totp_step), so a code works once. Recovery codes are hashed with
werkzeug and spent once (api.use_recovery_code).

Other blueprints (withdrawals, PIX key changes…) ask for a code like this::

    from webapp.auth.twofactor import TotpCodeField, require_code

    class WithdrawalForm(FlaskForm):
        ...
        totp_code = TotpCodeField()          # name it `totp_code`: errors land on it

    if form.validate_on_submit():
        try:
            require_code(form.totp_code.data, required=True, context="withdrawal")
            db.call_one("api.request_withdrawal", ...)
        except DomainError as exc:
            form_error(form, exc)

`require_code` returns None when the code is good (or when 2FA is off and not
`required`) and raises DomainError otherwise (field `totp_code`).
"""
from __future__ import annotations

import hmac
import secrets
import time

import pyotp
import segno
from flask import request
from flask_login import current_user
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import StringField
from wtforms.validators import Length, Optional

from .. import db
from ..errors import DomainError
from ..formatting import N_

ISSUER = "bs-market"
STEP_SECONDS = 30
RECOVERY_CODE_COUNT = 10
CODE_FIELD = "totp_code"
# Recovery codes are random (40 bits each): a fast salted hash is enough.
RECOVERY_HASH_METHOD = "pbkdf2:sha256:50000"


class TotpCodeField(StringField):
    """The 6-digit code of the authenticator app (or a recovery code)."""

    def __init__(self, label=N_("Código de verificação (2FA)"), validators=None, **kwargs):
        kwargs.setdefault("render_kw", {"autocomplete": "one-time-code", "spellcheck": "false"})
        kwargs.setdefault("description", "Os 6 dígitos do aplicativo autenticador, ou um código de recuperação.")
        super().__init__(label, validators or [Optional(), Length(max=32, message=N_("Código inválido."))], **kwargs)


def normalize(code: str | None) -> str:
    return "".join(ch for ch in (code or "") if ch.isalnum()).lower()


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """An SVG QR code as a data: URI, generated locally (the CSP allows img-src data:)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step a 6-digit code belongs to (now, or one step either side for clock drift)."""
    code = normalize(code)
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    now = int((time.time() if at is None else at) // STEP_SECONDS)
    for step in (now, now - 1, now + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes like `3f9a1-c07be`, shown once."""
    return [f"{part[:5]}-{part[5:]}" for part in (secrets.token_hex(5) for _ in range(RECOVERY_CODE_COUNT))]


def hash_recovery_code(code: str) -> str:
    return generate_password_hash(normalize(code), method=RECOVERY_HASH_METHOD)


def state(user_id: int) -> dict:
    return db.call_one("api.get_twofactor", user_id=user_id)


def is_enabled(user_id: int) -> bool:
    return bool(state(user_id)["enabled"])


def _ip() -> str | None:
    try:
        return request.remote_addr
    except RuntimeError:
        return None


def _fail(user_id: int, context: str, message: str):
    db.call("api.record_twofactor_failure", user_id=user_id, context=context, ip=_ip())
    raise DomainError("BSV01", message, CODE_FIELD)


def verify(user_id: int, code: str | None, context: str = "operation", allow_recovery: bool = True) -> str:
    """Check a code of a user with 2FA on; returns "totp" or "recovery", raises DomainError (field totp_code)."""
    current = state(user_id)
    if not current["enabled"]:
        raise DomainError("BSS01", N_("A verificação em duas etapas não está ativa."), CODE_FIELD)
    typed = normalize(code)
    if not typed:
        raise DomainError("BSV01", N_("Informe o código de 6 dígitos do seu aplicativo autenticador."), CODE_FIELD)
    if typed.isdigit() and len(typed) == 6:
        step = matching_step(current["secret"], typed)
        if step is None:
            _fail(user_id, context, N_("Código incorreto ou expirado. Confira o horário do celular e tente de novo."))
        if not db.call_one("api.use_totp_step", user_id=user_id, time_step=step)["use_totp_step"]:
            _fail(user_id, context, N_("Este código já foi usado. Aguarde o próximo código do aplicativo."))
        return "totp"
    if allow_recovery and len(typed) == 10:
        for row in db.call("api.list_recovery_codes", user_id=user_id):
            if check_password_hash(row["code_hash"], typed):
                if db.call_one("api.use_recovery_code", user_id=user_id, code_id=row["code_id"],
                               ip=_ip())["use_recovery_code"]:
                    return "recovery"
                break  # spent by a concurrent request a moment ago
        _fail(user_id, context, N_("Código de recuperação inválido ou já usado."))
    _fail(user_id, context, N_("Código incorreto. Use os 6 dígitos do aplicativo ou um código de recuperação."))
    raise AssertionError("unreachable")


def require_code(code: str | None, user_id: int | None = None, *, required: bool = False,
                 context: str = "operation", allow_recovery: bool = True) -> None:
    """Ask for a 2FA code before a sensitive operation.

    - 2FA enabled: the code must be a valid, unused TOTP code (or, when
      `allow_recovery`, an unused recovery code, which is then spent);
      otherwise DomainError BSV01 on field `totp_code`. The failure is logged
      in the customer's security events.
    - 2FA off: returns None, unless `required=True`, which raises DomainError
      BSS01 asking the customer to turn 2FA on (link: /account/security).

    `user_id` defaults to the logged-in user. Never call it inside a database
    transaction: it makes its own api calls.
    """
    user_id = user_id if user_id is not None else current_user.id
    if not is_enabled(user_id):
        if required:
            raise DomainError("BSS01", N_("Ative a verificação em duas etapas (menu Segurança da conta, em "
                                          "/account/security) para fazer esta operação."), CODE_FIELD)
        return None
    verify(user_id, code, context=context, allow_recovery=allow_recovery)
    return None
