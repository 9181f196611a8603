"""The one admin guard of the back office pages (/admin, the dispute and
withdrawal queues): an active admin with two-factor authentication on. The
database checks the same again in every admin.* function (core.assert_admin)."""
from __future__ import annotations

from functools import wraps

from flask import abort, flash, redirect, url_for
from flask_login import current_user

from .. import login_manager
from ..formatting import N_


def admin_refusal():
    """None when the current user may use the back office, else the response to give."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin or current_user.status != "active":
        abort(403)
    if not current_user.twofactor_on:
        flash(N_("Administradores precisam da verificação em duas etapas: ative-a para usar a administração."),
              "warning")
        return redirect(url_for("auth.twofactor_setup"))
    return None


def admin_required(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        return admin_refusal() or view(*args, **kwargs)
    return wrapped
