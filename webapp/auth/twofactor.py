"""Two-factor authentication: TOTP codes and single-use recovery codes.

The database checks every code (sql/security.sql: RFC 6238 with pgcrypto):
it spends each time step once, counts wrong codes and locks 2FA after too
many, at login as anywhere else. Python generates the secret and shows its QR
code (pyotp, segno), hashes recovery codes (werkzeug) and matches a typed
recovery code against the hashes.

Exits (transfers, withdrawals, P2P trades and releases…) take the code as an
argument of their api.* function — `totp_code` — and the database refuses
the exit without a good one: a form only needs a `TotpCodeField` named
`totp_code`. Other sensitive changes (password, turning 2FA off) call
`require_code` first::

    require_code(form.totp_code.data, context="password")   # DomainError on field totp_code
"""
from __future__ import annotations

import secrets

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


MESSAGES = {
    "missing": N_("Informe o código de 6 dígitos do seu aplicativo autenticador."),
    "wrong": N_("Código incorreto ou expirado. Confira o horário do celular e tente de novo."),
    "replayed": N_("Este código já foi usado. Aguarde o próximo código do aplicativo."),
    "locked": N_("Muitos códigos errados: a verificação em duas etapas está bloqueada por alguns minutos."),
}


def verify(user_id: int, code: str | None, context: str = "operation", allow_recovery: bool = True) -> str:
    """Check a code of a user with 2FA on; returns "totp" or "recovery", raises DomainError (field totp_code).

    Every wrong code counts towards the lock (in the database), at login too."""
    typed = normalize(code)
    if allow_recovery and len(typed) == 10:
        current = state(user_id)
        if not current["enabled"]:
            raise DomainError("BSS01", N_("A verificação em duas etapas não está ativa."), CODE_FIELD)
        if current["locked_until"]:
            raise DomainError("BSV01", MESSAGES["locked"], CODE_FIELD)
        for row in db.call("api.list_recovery_codes", user_id=user_id):
            if check_password_hash(row["code_hash"], typed):
                if db.call_one("api.use_recovery_code", user_id=user_id, code_id=row["code_id"],
                               ip=_ip())["use_recovery_code"]:
                    return "recovery"
                break  # spent by a concurrent request a moment ago
        db.call("api.record_twofactor_failure", user_id=user_id, context=context, ip=_ip())
        raise DomainError("BSV01", N_("Código de recuperação inválido ou já usado."), CODE_FIELD)
    outcome = db.call_one("api.verify_totp", user_id=user_id, code=typed, context=context, ip=_ip())["verify_totp"]
    if outcome == "ok":
        return "totp"
    if outcome == "off":
        raise DomainError("BSS01", N_("A verificação em duas etapas não está ativa."), CODE_FIELD)
    raise DomainError("BSV01", MESSAGES.get(outcome, MESSAGES["wrong"]), CODE_FIELD)


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
