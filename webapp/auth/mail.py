"""The e-mails of the outbox (core.mail_outbox): one template per kind, in
Portuguese with the English translation below, the customer's anti-phishing
code at the top, and a Message-ID made from the row id (a resend after a
crash is the same message to the receiving side).

`build(app, row)` turns a claimed row (admin.claim_mail) into an
EmailMessage. For a link mail it first draws the raw token
(secrets.token_urlsafe), stores only its sha256 (admin.issue_mail_token) and
puts the raw token in the link: the token is nowhere but in this e-mail.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from zoneinfo import ZoneInfo

from flask_babel import force_locale, gettext

from .. import db

TZ = ZoneInfo("America/Sao_Paulo")

SUBJECTS = {
    "verify_email": "Confirme seu e-mail",
    "password_reset": "Redefinição de senha",
    "new_device": "Novo acesso à sua conta",
    "email_change_notice": "Troca do e-mail da conta",
    "twofactor_recovery_requested": "Pedido de remoção da verificação em duas etapas",
    "twofactor_recovery_approved": "Verificação em duas etapas removida",
    "twofactor_recovery_rejected": "Pedido de remoção da verificação em duas etapas recusado",
}
LINK_PATHS = {"verify_email": "/account/verify/", "password_reset": "/password/reset/"}


def setting(app, name: str, default: str = "") -> str:
    return app.config.get(name) or os.environ.get(name) or default


def base_url(app) -> str:
    return setting(app, "APP_URL", "http://127.0.0.1:8000").rstrip("/")


def mail_domain(app) -> str:
    address = parseaddr(setting(app, "MAIL_FROM", "bs-market <no-reply@bs-market.local>"))[1]
    return address.rsplit("@", 1)[-1] if "@" in address else "bs-market.local"


def when(value: datetime) -> str:
    return value.astimezone(TZ).strftime("%d/%m/%Y %H:%M")


def header_lines(code: str | None, security_url: str) -> list[str]:
    """The top of every e-mail of ours: the anti-phishing code (or how to set one)."""
    if code:
        return [gettext("Código anti-phishing: %(code)s", code=code), ""]
    return [gettext("Dica: defina um código anti-phishing em %(url)s e ele aparecerá no topo de todo e-mail nosso.",
                    url=security_url), ""]


def body_lines(kind: str, p: dict) -> list[str]:
    """The text of one kind of mail, in the current locale (p: the row's params plus link, name, expires…)."""
    _ = gettext
    if kind == "verify_email":
        return [_("Confirme que %(email)s é o seu e-mail abrindo o link abaixo:", email=p["email"]), "", p["link"], "",
                _("O link vale até %(expires)s e funciona uma vez. Se você não criou uma conta na bs-market, "
                  "ignore este e-mail.", expires=p["expires"])]
    if kind == "password_reset":
        return [_("Recebemos um pedido para redefinir a senha da sua conta. Para criar uma nova senha, abra:"), "",
                p["link"], "",
                _("O link vale até %(expires)s e funciona uma vez. Ao redefinir, todas as sessões da conta são "
                  "encerradas e saques e envios ficam pausados por 24 h.", expires=p["expires"]),
                _("Se não foi você, ignore este e-mail: sua senha continua a mesma.")]
    if kind == "new_device":
        return [_("Sua conta foi acessada de um dispositivo novo: %(browser)s, IP %(ip)s, em %(at)s.",
                  browser=p.get("browser") or "?", ip=p.get("ip") or "?", at=p.get("at") or "?"),
                _("Se foi você, não precisa fazer nada. Se não foi, troque sua senha agora e encerre a sessão em:"),
                p["security_url"]]
    if kind == "email_change_notice":
        return [_("Foi pedida a troca do e-mail da sua conta para %(email)s. A troca só acontece quando o link enviado "
                  "ao novo endereço for aberto.", email=p.get("new_email", "?")),
                _("Se não foi você, troque sua senha agora e fale com o suporte: %(url)s", url=p["security_url"])]
    if kind == "twofactor_recovery_requested":
        return [_("Recebemos um pedido para remover a verificação em duas etapas da sua conta. Nossa equipe confere "
                  "sua identidade (KYC) antes de aprovar; responderemos por e-mail."),
                _("Se não foi você, alguém conhece sua senha: troque-a agora em %(url)s", url=p["security_url"])]
    if kind == "twofactor_recovery_approved":
        return [_("Seu pedido foi aprovado: a verificação em duas etapas foi removida da sua conta. Por segurança, "
                  "saques e envios ficam pausados até %(until)s.", until=p.get("until", "?")),
                _("Entre com sua senha e ative a verificação em duas etapas de novo, com o novo celular: %(url)s",
                  url=p["security_url"])]
    if kind == "twofactor_recovery_rejected":
        return [_("Seu pedido para remover a verificação em duas etapas foi recusado. Motivo: %(reason)s",
                  reason=p.get("reason", "")),
                _("A verificação continua ativa. Se precisar de ajuda, responda a este e-mail.")]
    raise ValueError(f"no template for mail kind {kind!r}")


def render(kind: str, params: dict, code: str | None, name: str | None) -> str:
    """Portuguese, then English (the same catalog as the pages)."""
    parts = []
    for locale in ("pt_BR", "en"):
        with force_locale(locale):
            lines = header_lines(code, params["security_url"])
            lines += [gettext("Olá, %(name)s.", name=name) if name else gettext("Olá."), ""]
            lines += body_lines(kind, params)
            lines += ["", gettext("Equipe bs-market")]
        parts.append("\n".join(lines))
    return parts[0] + "\n\n-- English --\n\n" + parts[1] + "\n"


def build(app, row: dict) -> EmailMessage | None:
    """The EmailMessage of a claimed outbox row; None when its link was replaced meanwhile (not sent)."""
    base = base_url(app)
    params = dict(row["params"] or {})
    params["security_url"] = base + "/account/security"
    if row["needs_token"]:
        token = secrets.token_urlsafe(32)
        expires = db.worker_call(app, "admin.issue_mail_token", mail_id=row["mail_id"],
                                 token_hash=hashlib.sha256(token.encode()).hexdigest())[0]["issue_mail_token"]
        if expires is None:
            return None
        params["link"] = base + LINK_PATHS[row["kind"]] + token
        params["expires"] = when(expires)
    msg = EmailMessage()
    msg["From"] = setting(app, "MAIL_FROM", "bs-market <no-reply@bs-market.local>")
    msg["To"] = row["recipient"]
    msg["Subject"] = f"bs-market: {SUBJECTS[row['kind']]}"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<mail-{row['mail_id']}@{mail_domain(app)}>"
    msg["X-BSM-Kind"] = row["kind"]
    msg.set_content(render(row["kind"], params, row["anti_phishing_code"], row["display_name"]))
    return msg
