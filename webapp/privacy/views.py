"""Views of the privacy blueprint: the customer's data (LGPD art. 18), closing the account,
and the public privacy policy and terms pages.

The data come from one SQL function (api.export_my_data_sections): each section is a JSON
array of rows, as exact text. The JSON download puts those arrays into one document without
reading them into floats; the CSV download turns each section into a CSV file of a .zip.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, timezone
from decimal import Decimal

from flask import Response, flash, redirect, render_template, request, stream_with_context, url_for
from flask_babel import get_locale, gettext
from flask_login import current_user, login_required, logout_user
from werkzeug.security import check_password_hash

from .. import db, limiter
from ..auth import twofactor
from ..errors import DomainError
from ..formatting import N_, money
from ..forms import form_error
from . import bp
from .forms import CloseAccountForm, ExportForm

# What stops a closure, by the code api.closure_check returns (the database's own message is Portuguese).
BLOCKERS = {
    "balance": N_("Saldo de %(amount)s: saque, venda ou envie antes de encerrar."),
    "p2p_offers": N_("Anúncios P2P ativos ou pausados: %(items)s. Cancele-os."),
    "p2p_trades": N_("Negociações P2P em andamento ou em disputa: %(items)s."),
    "pix_deposits": N_("Depósitos PIX pendentes ou em análise: %(items)s."),
    "pix_withdrawals": N_("Saques PIX em andamento: %(items)s."),
    "crypto_deposits": N_("Depósitos de cripto aguardando confirmações: %(items)s."),
    "crypto_withdrawals": N_("Saques de cripto em andamento: %(items)s."),
    "market_orders": N_("Ordens de mercado em execução: %(items)s."),
    "clawback_debt": N_("Débito de PIX devolvido ao pagador (MED) a quitar: %(amount)s."),
}


def blocker_text(row: dict) -> str:
    template = BLOCKERS.get(row["code"])
    if template is None:
        return row["message"]
    amount = money(row["amount"], row["currency"]) if row["amount"] is not None else ""
    return gettext(template, amount=amount, items=row["items"] or 0)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


@bp.get("/account/privacy")
@login_required
def index():
    return render_template("privacy/index.html", form=ExportForm(),
                           blockers=[blocker_text(r) for r in db.call("api.closure_check", user_id=current_user.id)])


@bp.post("/account/privacy/export")
@login_required
@limiter.limit("10 per hour")
def export():
    form = ExportForm()
    if not form.validate_on_submit():
        return render_template("privacy/index.html", form=form, blockers=[]), 422
    sections = db.call("api.export_my_data_sections", user_id=current_user.id, format=form.format.data,
                       ip=request.remote_addr)
    name = f"bs-market-meus-dados-{current_user.id}-{_stamp()}"
    if form.format.data == "json":
        return Response(stream_with_context(_json_document(current_user.id, sections)),
                        mimetype="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}.json"',
                                 "Cache-Control": "no-store"})
    return Response(_zip_of_csvs(sections), mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}.zip"',
                             "Cache-Control": "no-store"})


def _json_document(user_id: int, sections: list[dict]):
    """One JSON document, written section by section; the rows go out as the database wrote them."""
    head = {"format": "bs-market LGPD export v1", "generated_at": datetime.now(timezone.utc).isoformat(),
            "user_id": user_id,
            "controller": "bs-market — encarregado de dados: dpo@bs-market.com.br",
            "legal_basis": "LGPD (Lei 13.709/2018), art. 18, II e V"}
    yield json.dumps(head, ensure_ascii=False)[:-1] + ', "sections": {'
    for i, section in enumerate(sections):
        yield ("," if i else "") + "\n" + json.dumps(section["section"]) + ": {\"description\": " \
            + json.dumps(section["description"], ensure_ascii=False) + ", \"rows\": " + section["rows"] + "}"
    yield "\n}}\n"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _zip_of_csvs(sections: list[dict]) -> bytes:
    """A .zip with one CSV per section (columns in the database's order, exact numbers) and a README."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        index = ["section,description,rows"]
        for section in sections:
            rows = json.loads(section["rows"], parse_float=Decimal)
            out = io.StringIO()
            writer = csv.writer(out)
            columns = list(rows[0].keys()) if rows else []
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(row.get(column)) for column in columns])
            archive.writestr(f"{section['section']}.csv", "\ufeff" + out.getvalue())  # BOM: Excel reads UTF-8
            line = io.StringIO()
            csv.writer(line).writerow([section["section"], section["description"], len(rows)])
            index.append(line.getvalue().rstrip("\r\n"))
        archive.writestr("LEIAME.csv", "\ufeff" + "\n".join(index) + "\n")
    return buffer.getvalue()


@bp.route("/account/close", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per hour", methods=["POST"])
def close():
    form = CloseAccountForm()
    enabled = twofactor.is_enabled(current_user.id)
    if form.validate_on_submit():
        current_hash = db.call_one("api.get_password_hash", user_id=current_user.id)["get_password_hash"]
        if not check_password_hash(current_hash, form.password.data):
            form.password.errors = [N_("Senha incorreta.")]
        else:
            try:
                db.call("api.close_account", user_id=current_user.id, totp_code=twofactor.normalize(form.totp_code.data),
                        reason=form.reason.data or "", ip=request.remote_addr)
            except DomainError as exc:
                if exc.code == "BSC01":
                    flash(N_("Ainda não é possível encerrar a conta: resolva os itens da lista."), "danger")
                else:
                    form_error(form, exc)
            else:
                logout_user()
                flash(N_("Sua conta foi encerrada. Guardamos os registros exigidos por lei pelo prazo legal; "
                         "depois disso, seus dados pessoais serão anonimizados."), "info")
                return redirect(url_for("privacy.closed"))
    blockers = [blocker_text(r) for r in db.call("api.closure_check", user_id=current_user.id)]
    status = 422 if request.method == "POST" else 200
    return render_template("privacy/close.html", form=form, blockers=blockers, twofactor_enabled=enabled), status


@bp.get("/account/closed")
def closed():
    return render_template("privacy/closed.html")


def _localized(page: str) -> str:
    return f"privacy/{page}_{'en' if str(get_locale()) == 'en' else 'pt'}.html"


@bp.get("/privacidade")
def policy():
    return render_template(_localized("policy"))


@bp.get("/termos")
def terms():
    return render_template(_localized("terms"))
