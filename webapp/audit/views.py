"""Views of the audit blueprint: the auditors' dashboard and tables, and the proof of liabilities."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, datetime, timedelta
from decimal import Decimal

from flask import (Response, abort, jsonify, redirect, render_template, request, stream_with_context,
                   url_for)
from flask_login import current_user, login_required

from .. import db
from .. import currencies
from ..auth.guards import auditor_required
from ..errors import DomainError
from ..formatting import N_
from . import bp

PAGE_SIZE = 50
VIEW_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Which offending rows the dashboard shows for a failing check (view → equality filters).
HEALTH_FILTERS = {"book_alerts": {"latest": True}}


def cell(value) -> str:
    """A value as text, exactly (Decimal kept whole), for the tables and CSV."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, Decimal):
        return format(value, "f")  # never 1E-18
    if isinstance(value, (date, timedelta)):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


bp.add_app_template_filter(cell, "audit_cell")


def catalog() -> dict[str, str]:
    """{view name: its COMMENT} of every reporting view."""
    rows = db.audit_query("reporting.catalog", order_by="view_name", limit=1000)
    return {row["view_name"]: row["description"] or "" for row in rows}


def _table_request(name: str):
    """Validate a table request: the view, its columns, sort and filters (whitelisted)."""
    views = catalog()
    if not VIEW_NAME.match(name) or name not in views:
        abort(404)
    view = f"reporting.{name}"
    columns = db.audit_columns(view)
    sort = request.args.get("sort")
    if sort not in columns:
        sort = columns[0] if columns else None
    descending = request.args.get("dir") == "desc"
    filters = {key[2:]: value for key, value in request.args.items()
               if key.startswith("f_") and key[2:] in columns and value != ""}
    return views[name], view, columns, sort, descending, filters


@bp.route("/audit")
@auditor_required
def index():
    checks = db.audit_query("reporting.health_checks", limit=100)
    for check in checks:
        check["rows"] = []
        if check["failures"]:
            check["rows"] = db.audit_query(f"reporting.{check['view_name']}", limit=20,
                                           filters=HEALTH_FILTERS.get(check["view_name"]))
    last_check = db.audit_query("reporting.book_checks", order_by="check_id", descending=True, limit=1)
    liabilities = db.audit_query("reporting.liabilities", limit=100)
    healthy = all(check["failures"] == 0 for check in checks if check["severity"] == "error")
    return render_template("audit/index.html", checks=checks, healthy=healthy, views=catalog(),
                           last_check=last_check[0] if last_check else None, liabilities=liabilities)


@bp.route("/audit/views/<name>")
@auditor_required
def table(name: str):
    description, view, columns, sort, descending, filters = _table_request(name)
    # The little filter form (column + value) becomes an f_<column> argument.
    column, value = request.args.get("filter_column"), request.args.get("filter_value", "").strip()
    if column:
        args = {k: v for k, v in request.args.items() if k in ("sort", "dir") or k.startswith("f_")}
        if column in columns and value:
            args[f"f_{column}"] = value
        return redirect(url_for("audit.table", name=name, **args))
    page = request.args.get("page", 1, type=int)
    if page < 1:
        abort(404)
    try:
        total = db.audit_count(view, filters=filters)
        rows = db.audit_query(view, order_by=sort, descending=descending, limit=PAGE_SIZE,
                              offset=(page - 1) * PAGE_SIZE, filters=filters)
    except db.AuditQueryError:
        return render_template("error.html", title=N_("Filtro inválido"),
                               message=N_("O valor do filtro não serve para essa coluna.")), 400
    pages = max(1, -(-total // PAGE_SIZE))
    base_args = {"sort": sort, "dir": "desc" if descending else "asc",
                 **{f"f_{k}": v for k, v in filters.items()}}
    remove_filter = {column: url_for("audit.table", name=name,
                                     **{k: v for k, v in base_args.items() if k != f"f_{column}"})
                     for column in filters}
    return render_template("audit/table.html", name=name, description=description, columns=columns, rows=rows,
                           sort=sort, descending=descending, filters=filters, page=page, pages=pages, total=total,
                           base_args=base_args, remove_filter=remove_filter)


@bp.route("/audit/views/<name>/export.csv")
@auditor_required
def export(name: str):
    _, view, _, sort, descending, filters = _table_request(name)
    stream = db.audit_stream(view, order_by=sort, descending=descending, filters=filters)
    try:
        header = next(stream)
    except db.AuditQueryError:
        return render_template("error.html", title=N_("Filtro inválido"),
                               message=N_("O valor do filtro não serve para essa coluna.")), 400

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        count = 0
        try:
            for row in stream:
                writer.writerow([cell(value) for value in row])
                count += 1
                if count % 500 == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()
        finally:
            stream.close()

    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"',
                             "Cache-Control": "no-store"})


# ---------------------------------------------------------------------------
# Proof of liabilities (public roots; each customer's own leaf and path)
# ---------------------------------------------------------------------------

def _roots():
    return db.call("api.list_liability_roots", max_rows=30)


@bp.route("/proof-of-liabilities")
def proof_public():
    publications: dict[int, dict] = {}
    for row in _roots():
        pub = publications.setdefault(row["snapshot_id"], {"snapshot_id": row["snapshot_id"],
                                                           "created_at": row["created_at"], "roots": []})
        pub["roots"].append(row)
    return render_template("audit/proof_public.html", publications=list(publications.values()),
                           currencies=currencies.codes())


@bp.route("/proof-of-liabilities.json")
def proof_public_json():
    return jsonify({"roots": [{"snapshot_id": r["snapshot_id"], "published_at": r["created_at"].isoformat(),
                               "currency": r["currency"], "root": r["root"], "total": str(r["total"]),
                               "leaf_count": r["leaf_count"]} for r in _roots()]})


def _own_proof():
    currency = request.args.get("currency", "BRL")
    if currency not in currencies.codes():
        abort(404)
    snapshot = request.args.get("snapshot", type=int)
    row = db.call_one("api.get_liabilities_proof", user_id=current_user.id, currency=currency, snapshot_id=snapshot)
    return currency, row["get_liabilities_proof"]


@bp.route("/proof-of-liabilities/me")
@login_required
def proof_mine():
    try:
        currency, proof = _own_proof()
    except DomainError as exc:
        currency = request.args.get("currency", "BRL")
        return render_template("audit/proof_mine.html", proof=None, error=exc.message, currency=currency,
                               currencies=currencies.codes()), exc.status
    return render_template("audit/proof_mine.html", proof=proof, error=None, currency=currency,
                           currencies=currencies.codes())


@bp.route("/proof-of-liabilities/me.json")
@login_required
def proof_mine_json():
    currency, proof = _own_proof()
    response = jsonify(proof)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="proof-{proof["snapshot_id"]}-{currency}.json"')
    response.headers["Cache-Control"] = "no-store"
    return response
