"""Who lands where after logging in, and the pages that are for customers only.

Customers hold a wallet and trade; admins run the back office (/admin) and auditors read the books
(/audit). Neither has a wallet, so the customer pages (wallet, deposits, withdrawals, on-chain crypto,
market, P2P, KYC, tax) are not offered to them: the navbar hides them (formatting.NAV) and the pages
answer a short explanation with a link to their own home instead of a form. The database refuses them
as well (the role checks of the api.* functions); this is so that nobody is shown a form that cannot work.
"""
from __future__ import annotations

from flask import render_template, request, url_for
from flask_login import current_user

from ..formatting import N_

LANDING = {"admin": "admin.index", "auditor": "audit.index"}
STAFF_HOME_LABEL = {"admin": N_("Ir para a administração"), "auditor": N_("Ir para a auditoria")}
STAFF_MESSAGE = {
    "admin": N_("Esta página é dos clientes (carteira, depósitos, saques e negociação). Administradores não "
                "têm carteira nem negociam: use a administração."),
    "auditor": N_("Esta página é dos clientes (carteira, depósitos, saques e negociação). Auditores só leem "
                  "os livros, sem movimentar dinheiro: use a auditoria."),
}


def landing_url(user=None) -> str:
    """Where a person goes after logging in (and from "/"): the wallet, the back office or the audit."""
    user = user or current_user
    return url_for(LANDING.get(getattr(user, "role", None), "wallet.index"))


def staff_refusal():
    """The page an admin or auditor gets instead of a customer page (403, with a link to their home)."""
    role = current_user.role
    return render_template("error.html", title=N_("Página dos clientes"),
                           message=STAFF_MESSAGE.get(role, STAFF_MESSAGE["auditor"]),
                           action=(landing_url(), STAFF_HOME_LABEL.get(role, STAFF_HOME_LABEL["auditor"]))), 403


def customers_only(bp, staff_may_open: tuple[str, ...] = ()):
    """Serve a blueprint's pages to customers only. Its back-office pages (under /admin) and the views
    named in `staff_may_open` (what an admin's review page links to: a KYC document, a dispute's chat)
    stay open to staff; their own guards and the database decide there."""
    open_endpoints = {f"{bp.name}.{name}" for name in staff_may_open}

    @bp.before_request
    def refuse_staff():
        if (current_user.is_authenticated and current_user.role != "customer"
                and request.endpoint not in open_endpoints and not request.path.startswith("/admin/")):
            return staff_refusal()
    return bp
