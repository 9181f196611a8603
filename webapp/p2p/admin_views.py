"""The dispute back office: open disputes and PIX payments under review, resolved by an admin.

Routes sit on the p2p blueprint with absolute paths under /admin/disputes; admins only (403 otherwise).
Resolving is one admin.* call (audit-logged in SQL).
"""
from __future__ import annotations


from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import db
from ..errors import DomainError
from ..forms import form_error
from . import bp
from .forms import ResolveForm
from .views import render_trade


from ..auth.guards import admin_required  # noqa: E402


@bp.route("/admin/disputes")
@admin_required
def disputes():
    include_closed = request.args.get("all") == "1"
    rows = db.call("admin.list_p2p_disputes", admin_id=current_user.id, include_closed=include_closed)
    return render_template("p2p/admin_disputes.html", disputes=rows, include_closed=include_closed)


@bp.route("/admin/disputes/<id:trade_id>", methods=["GET", "POST"])
@admin_required
def dispute_detail(trade_id: int):
    form = ResolveForm()
    status = 200
    if form.validate_on_submit():
        try:
            row = db.call_one("admin.resolve_p2p_dispute", admin_id=current_user.id, trade_id=trade_id,
                              outcome=form.outcome.data, note=form.note.data, at_fault=form.at_fault.data or None,
                              totp_code=form.totp_code.data)
        except DomainError as exc:
            form_error(form, exc, default_field="note")
            status = exc.status
        else:
            flash(f"{row['message']} Situação: {row['status']}.", "success")
            return redirect(url_for(".disputes"))
    elif request.method == "POST":
        status = 422
    return render_trade(trade_id, status, template="p2p/admin_dispute.html", resolve_form=form)
