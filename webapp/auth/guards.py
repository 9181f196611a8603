"""The one guard of the staff pages: /admin (and every back-office page outside it: disputes,
withdrawal and crypto queues) for admins, /audit for auditors.

Every guarded page checks the same things, in this order:
1. logged in, on a session the database still knows (the user loader asks api.session_user on
   every request, so an ended or revoked session is anonymous here) — else the login page;
2. the role, as the database gave it for that session, and an active account — else 403;
3. for admins, two-factor authentication on (DESIGN §3: TOTP for sensitive changes; every
   admin action moves or reveals customers' data) — else the 2FA setup page.
The database checks again in every admin.* function (core.assert_admin); the audit section
reads through its own exchange_auditor pool, which can only SELECT from reporting.

A guarded view carries `required_role` (tests/test_admin_guard.py walks the URL map for it).
"""
from __future__ import annotations

from functools import wraps

from flask import abort, flash, redirect, url_for
from flask_login import current_user

from .. import login_manager
from ..formatting import N_

ROLES = ("admin", "auditor")
# Roles whose pages also need two-factor authentication on.
TWOFACTOR_ROLES = frozenset({"admin"})


def refusal(role: str):
    """None when the current user may open a page of `role`, else the response to give."""
    if role not in ROLES:
        raise ValueError(f"unknown staff role {role!r}")
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if current_user.role != role or current_user.status != "active":
        abort(403)
    if role in TWOFACTOR_ROLES and not current_user.twofactor_on:
        flash(N_("Administradores precisam da verificação em duas etapas: ative-a para usar a administração."),
              "warning")
        return redirect(url_for("auth.twofactor_setup"))
    return None


def role_required(role: str):
    """Decorator: the view runs only for an active user of `role` (see the module's docstring)."""
    if role not in ROLES:
        raise ValueError(f"unknown staff role {role!r}")

    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            return refusal(role) or view(*args, **kwargs)
        wrapped.required_role = role
        return wrapped
    return decorate


admin_required = role_required("admin")
auditor_required = role_required("auditor")


def admin_refusal():
    """The admin check for a blueprint's before_request (the back office also guards each view)."""
    return refusal("admin")
