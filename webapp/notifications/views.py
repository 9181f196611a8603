"""Views of the notification centre, and the nav badge (a context processor)."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from .. import db
from ..forms import ActionForm
from . import bp


@bp.app_context_processor
def unread_badge():
    def unread_notifications() -> int:
        # counted by the user loader (api.get_user), with the user
        return current_user.unread_notifications if current_user.is_authenticated else 0
    return {"unread_notifications": unread_notifications}


@bp.get("/notifications")
@login_required
def index():
    rows = db.call("api.list_notifications", user_id=current_user.id, max_rows=100)
    return render_template("notifications/index.html", rows=rows, form=ActionForm())


@bp.post("/notifications/read")
@login_required
def mark_read():
    if ActionForm().validate_on_submit():
        count = db.call_one("api.mark_notifications_read", user_id=current_user.id)["mark_notifications_read"]
        if count:
            flash("Notificações marcadas como lidas.", "info")
    return redirect(url_for("notifications.index"))
