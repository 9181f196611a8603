"""Views of the tax blueprint: the statement page (printable) and its CSV.

Every figure comes from SQL (sql/tax.sql: api.tax_positions, api.tax_movements,
api.tax_monthly_sales), exact. BRL are rounded to the centavo, half up, only here,
when shown (`cents`); quantities are shown exactly.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from flask import Response, abort, render_template, request
from flask_babel import gettext
from flask_login import current_user, login_required

from .. import db
from ..formatting import N_, money
from . import bp

BRAZIL = ZoneInfo("America/Sao_Paulo")
CENT = Decimal("0.01")

KINDS = {
    "buy_desk": N_("Compra no balcão"),
    "buy_p2p": N_("Compra P2P"),
    "transfer_in": N_("Recebido de outro cliente (custo zero)"),
    "deposit_onchain": N_("Depósito na blockchain (custo zero)"),
    "other_in": N_("Outra entrada (custo zero)"),
    "sell_desk": N_("Venda no balcão"),
    "sell_p2p": N_("Venda P2P"),
    "transfer_out": N_("Enviado a outro cliente (baixa ao custo médio)"),
    "withdrawal_onchain": N_("Saque para carteira própria (baixa ao custo médio)"),
    "other_out": N_("Outra saída (baixa ao custo médio)"),
}
MONTHS = [N_("Janeiro"), N_("Fevereiro"), N_("Março"), N_("Abril"), N_("Maio"), N_("Junho"), N_("Julho"),
          N_("Agosto"), N_("Setembro"), N_("Outubro"), N_("Novembro"), N_("Dezembro")]


def cents(value) -> Decimal | None:
    """BRL to the centavo, half up (the rule stated on the page)."""
    return None if value is None else Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


bp.add_app_template_filter(lambda value: money(cents(value), "BRL"), "brl_cents")


def _year() -> tuple[int, list[int]]:
    years = [row["year"] for row in db.call("api.tax_years", user_id=current_user.id)]
    default = datetime.now(BRAZIL).year - 1  # the IRPF declares the previous calendar year
    year = request.args.get("year", default, type=int)
    if year is None or not 2000 <= year <= 2200:
        abort(404)
    return year, sorted(set(years) | {default, year}, reverse=True)


def _statement(year: int) -> dict:
    positions = db.call("api.tax_positions", user_id=current_user.id, year=year)
    movements = db.call("api.tax_movements", user_id=current_user.id, year=year)
    months = db.call("api.tax_monthly_sales", user_id=current_user.id, year=year)
    return {"positions": positions, "movements": movements, "months": months,
            "disposals": [m for m in movements if m["disposal"]],
            "moved_out": [m for m in movements if m["kind"] in ("transfer_out", "withdrawal_onchain", "other_out")],
            "zero_cost": [m for m in movements if m["zero_cost"]]}


@bp.get("/tax")
@login_required
def index():
    year, years = _year()
    return render_template("tax/index.html", year=year, years=years, kinds=KINDS, month_names=MONTHS,
                           **_statement(year))


@bp.get("/tax/<int:year>.csv")
@login_required
def export(year: int):
    if not 2000 <= year <= 2200:
        abort(404)
    data = _statement(year)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([gettext("Informe de criptoativos para o IRPF"), year, current_user.display_name])
    w.writerow([gettext("Valores em reais arredondados ao centavo (metade para cima); quantidades exatas. "
                        "Custo médio ponderado. Não calcula imposto devido.")])
    w.writerow([])
    w.writerow([gettext("Bens e Direitos")])
    w.writerow(["grupo", "codigo", "moeda", "discriminacao", f"quantidade_31_12_{year - 1}", f"custo_31_12_{year - 1}",
                f"quantidade_31_12_{year}", f"custo_31_12_{year}", "custo_medio_unitario"])
    for p in data["positions"]:
        w.writerow([p["irpf_group"], p["irpf_code"], p["currency"], p["irpf_description"],
                    _q(p["previous_quantity"]), cents(p["previous_cost"]), _q(p["quantity"]), cents(p["total_cost"]),
                    cents(p["average_cost"]) if p["average_cost"] is not None else ""])
    w.writerow([])
    w.writerow([gettext("Alienações (GCAP)")])
    w.writerow(["data", "moeda", "tipo", "quantidade", "valor_alienacao", "custo_medio", "ganho"])
    for m in data["disposals"]:
        w.writerow([_day(m["occurred_at"]), m["currency"], m["kind"], _q(m["quantity"]), cents(m["brl_value"]),
                    cents(m["cost"]), cents(m["gain"])])
    w.writerow([])
    w.writerow([gettext("Vendas por mês (todas as criptos)")])
    w.writerow(["mes", "alienacoes", "total_vendido", "custo", "ganho", "limite_isencao", "dentro_do_limite"])
    for m in data["months"]:
        w.writerow([m["month"], m["disposals"], cents(m["proceeds"]), cents(m["cost"]), cents(m["gain"]),
                    cents(m["exemption_limit"]), "sim" if m["within_exemption"] else "nao"])
    w.writerow([])
    w.writerow([gettext("Todos os movimentos do ano")])
    w.writerow(["data_hora", "moeda", "tipo", "quantidade", "valor_brl", "custo", "ganho", "posicao_depois",
                "custo_total_depois", "custo_zero"])
    for m in data["movements"]:
        w.writerow([m["occurred_at"].astimezone(BRAZIL).isoformat(timespec="seconds"), m["currency"], m["kind"],
                    _q(m["quantity"]), cents(m["brl_value"]), cents(m["cost"]), cents(m["gain"]),
                    _q(m["position_quantity"]), cents(m["position_cost"]), "sim" if m["zero_cost"] else "nao"])
    return Response("\ufeff" + out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="bs-market-irpf-{year}.csv"',
                             "Cache-Control": "no-store"})


def _q(value) -> str:
    return "" if value is None else format(Decimal(value).normalize(), "f")


def _day(value) -> str:
    return value.astimezone(BRAZIL).strftime("%d/%m/%Y")


@bp.app_template_filter("brazil_day")
def brazil_day(value) -> str:
    return _day(value) if value else "—"
