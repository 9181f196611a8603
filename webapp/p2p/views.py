"""Views of the P2P blueprint: the offer book, offers, trades (actions, chat, proofs), profiles.

Each view validates the form's shape, makes one api.* call and renders or redirects; a refusal from the
database is shown on the form (or as an alert on the trade page) with its HTTP status.
"""
from __future__ import annotations

import logging
import uuid

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required

from .. import db, uploads
from ..deposits import create_charge_for_p2p_trade
from ..errors import DomainError
from ..providers.base import ProviderError
from ..forms import ActionForm, form_error
from ..formatting import N_, percent as percent_text
from . import bp
from .forms import (METHOD_LABELS, BookFilterForm, DisputeForm, EditOfferForm, EvidenceForm, MarkPaidForm,
                    MessageForm, OfferForm, OpenTradeForm, RateForm, ReleaseForm)

log = logging.getLogger(__name__)

STATUS_LABELS = {
    "OPEN": (N_("Aguardando pagamento"), "warning"),
    "PAID": (N_("Pago, aguardando liberação"), "info"),
    "COMPLETED": (N_("Concluída"), "success"),
    "CANCELLED": (N_("Cancelada"), "secondary"),
    "DISPUTED": (N_("Em disputa"), "danger"),
    "REFUNDED": (N_("Devolvida ao vendedor"), "dark"),
    "REVIEW": (N_("Pagamento em análise"), "danger"),
}
OFFER_STATUS_LABELS = {
    "active": (N_("Ativa"), "success"), "paused": (N_("Pausada"), "warning"), "filled": (N_("Esgotada"), "secondary"),
    "cancelled": (N_("Cancelada"), "secondary"), "expired": (N_("Expirada"), "secondary"),
}


# What happens to the reais with each payment method, told to the buyer and to the seller: only PIX and
# TED are paid outside the platform (and so need the seller's bank details).
METHOD_FLOW = {
    ("PIX", "buyer"): N_("PIX: você paga por PIX direto na conta do vendedor (os dados aparecem na negociação), "
                         "fora da bs-market, e marca como pago; a cripto entra no seu saldo quando o vendedor "
                         "confirmar o recebimento."),
    ("PIX", "seller"): N_("PIX: o comprador paga por PIX direto na sua conta, fora da bs-market, nos dados que "
                          "você informar; você confere no seu banco e libera a cripto, que fica em garantia até lá."),
    ("TED", "buyer"): N_("TED: você paga por TED direto na conta do vendedor (os dados aparecem na negociação), "
                         "fora da bs-market, e marca como pago; a cripto entra no seu saldo quando o vendedor "
                         "confirmar o recebimento."),
    ("TED", "seller"): N_("TED: o comprador paga por TED direto na sua conta, fora da bs-market, nos dados que "
                          "você informar; você confere no seu banco e libera a cripto, que fica em garantia até lá."),
    ("BALANCE", "buyer"): N_("Saldo bs-market: o valor sai do seu saldo em reais na bs-market e a cripto entra no "
                             "seu saldo na mesma hora. Nenhum pagamento fora da plataforma."),
    ("BALANCE", "seller"): N_("Saldo bs-market: o valor entra no seu saldo em reais na bs-market e a cripto sai do "
                              "seu saldo na mesma hora. Nenhum pagamento fora da plataforma, nenhum dado bancário."),
    ("PIX_CONFIRMED", "buyer"): N_("PIX confirmado: você paga um QR Code PIX da bs-market, de uma conta no seu CPF; "
                                   "a cripto entra no seu saldo automaticamente quando o PIX chega."),
    ("PIX_CONFIRMED", "seller"): N_("PIX confirmado: o comprador paga um QR Code PIX da bs-market; quando o PIX "
                                    "chega, o valor entra no seu saldo em reais e a cripto é liberada "
                                    "automaticamente. Nenhum dado bancário."),
}
OUTSIDE_METHODS = ("PIX", "TED")


def method_flow(method: str, role: str) -> str:
    return METHOD_FLOW.get((method, role), "")


@bp.context_processor
def labels():
    return {"status_labels": STATUS_LABELS, "offer_status_labels": OFFER_STATUS_LABELS,
            "method_labels": METHOD_LABELS, "method_flow": method_flow, "outside_methods": OUTSIDE_METHODS}


@bp.app_template_filter("p2p_duration")
def duration(seconds) -> str:
    """Seconds as "4 min" or "1 h 05 min" ("—" when unknown)."""
    if seconds is None:
        return "—"
    minutes = max(1, round(float(seconds) / 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@bp.app_template_filter("p2p_percent")
def percent(value) -> str:
    """98.5 as "98,5%" / "98.5%" ("—" when there is nothing to measure yet)."""
    return "—" if value is None else percent_text(value, max_digits=1)


@bp.errorhandler(413)
def too_large(exc):
    return render_template("error.html", title=N_("Arquivo grande demais"),
                           message=N_("O arquivo passa de 5 MB. Envie um PNG, JPEG ou PDF menor.")), 413


# --------------------------------------------------------------------------- the book and offers

@bp.route("/p2p")
@login_required
def index():
    form = BookFilterForm(request.args)
    side = request.args.get("side", "SELL")
    if side not in ("SELL", "BUY"):
        side = "SELL"
    amount = form.amount.data if form.validate() else None
    offers = db.call("api.list_p2p_offers", user_id=current_user.id, side=side, crypto=form.crypto.data or None,
                     payment_method=form.method.data or None, amount_brl=amount)
    return render_template("p2p/index.html", offers=offers, side=side, form=form)


def _offer_args(form) -> dict:
    floating = form.price_type.data == "floating"
    return dict(
        price_type=form.price_type.data, min_brl=form.min_brl.data, max_brl=form.max_brl.data,
        payment_methods=form.payment_methods.data or [],
        fixed_price=None if floating else form.fixed_price.data,
        premium_percent=form.premium_percent.data if floating else None,
        payment_window_minutes=form.payment_window_minutes.data, terms=form.terms.data or "",
        payment_details=form.payment_details.data or None, min_counterparty_kyc=form.min_counterparty_kyc.data,
        min_counterparty_trades=form.min_counterparty_trades.data or 0, expires_in_days=form.expires_in_days.data,
        totp_code=form.totp_code.data)


def _index_prices() -> dict:
    """{crypto: "price"} of the fresh Binance indexes, for the live effective price of a floating offer."""
    return {r["crypto"]: (None if r["stale"] or r["price"] is None else str(r["price"]))
            for r in db.call("api.get_p2p_index_prices")}


def _maker_fees() -> dict:
    """{crypto: maker percent} from the public fee schedule (the fee a new offer is charged)."""
    return {r["currency"]: r["value"] for r in db.call("api.get_fee_schedule")
            if r["section"] == "p2p" and r["name"] == "maker_percent"}


@bp.route("/p2p/offers/new", methods=["GET", "POST"])
@login_required
def new_offer():
    form = OfferForm()
    if request.method == "GET" and not form.payment_methods.data:
        form.payment_methods.data = ["PIX"]
    if form.validate_on_submit():
        try:
            row = db.call_one("api.create_p2p_offer", user_id=current_user.id, side=form.side.data,
                              crypto=form.crypto.data, total_amount=form.total_amount.data,
                              idempotency_key=form.idempotency_key.data, **_offer_args(form))
        except DomainError as exc:
            form_error(form, exc)
        else:
            flash(f"Oferta #{row['offer_id']} publicada.", "success")
            return redirect(url_for(".my_offers"))
    if not form.idempotency_key.data:
        form.idempotency_key.data = str(uuid.uuid4())
    status = 422 if request.method == "POST" else 200
    return render_template("p2p/offer_form.html", form=form, price_map=_index_prices(), editing=None,
                           maker_fees=_maker_fees()), status


@bp.route("/p2p/offers/<id:offer_id>/edit", methods=["GET", "POST"])
@login_required
def edit_offer(offer_id: int):
    offer = db.call_one("api.get_p2p_offer", user_id=current_user.id, offer_id=offer_id)
    if not offer["is_mine"]:
        abort(404)
    form = EditOfferForm()
    if request.method == "GET":
        form.process(data={
            "price_type": offer["price_type"], "fixed_price": offer["fixed_price"],
            "premium_percent": offer["premium_percent"], "remaining_amount": offer["remaining_amount"],
            "min_brl": offer["min_brl"], "max_brl": offer["max_brl"], "payment_methods": offer["payment_methods"],
            "payment_window_minutes": offer["payment_window_minutes"], "terms": offer["terms"],
            "payment_details": offer["payment_details"], "min_counterparty_kyc": offer["min_counterparty_kyc"],
            "min_counterparty_trades": offer["min_counterparty_trades"], "expires_in_days": offer["days_left"]})
    elif form.validate_on_submit():
        try:
            db.call("api.update_p2p_offer", user_id=current_user.id, offer_id=offer_id,
                    remaining_amount=form.remaining_amount.data, **_offer_args(form))
        except DomainError as exc:
            form_error(form, exc, default_field="remaining_amount")
        else:
            flash(f"Oferta #{offer_id} atualizada.", "success")
            return redirect(url_for(".my_offers"))
    status = 422 if request.method == "POST" else 200
    return render_template("p2p/offer_form.html", form=form, price_map=_index_prices(), editing=offer,
                           maker_fees=_maker_fees()), status


@bp.post("/p2p/offers/<id:offer_id>/<any(pause, resume, cancel):action>")
@login_required
def offer_status(offer_id: int, action: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        db.call("api.set_p2p_offer_status", user_id=current_user.id, offer_id=offer_id, action=action)
    except DomainError as exc:
        flash(exc.message, "danger")
        return my_offers(status=exc.status)
    flash({"pause": N_("Oferta pausada."), "resume": N_("Oferta ativa de novo."),
           "cancel": N_("Oferta cancelada; a cripto reservada voltou ao seu saldo.")}[action], "success")
    return redirect(url_for(".my_offers"))


@bp.route("/p2p/offers/mine")
@login_required
def my_offers(status: int = 200):
    offers = db.call("api.list_my_p2p_offers", user_id=current_user.id)
    return render_template("p2p/my_offers.html", offers=offers, action_form=ActionForm()), status


@bp.route("/p2p/offers/<id:offer_id>", methods=["GET", "POST"])
@login_required
def offer(offer_id: int):
    # A trade opened from the form is one call: the form takes any method and
    # api.open_p2p_trade refuses one the offer does not accept (BSV01 on the
    # field); the offer is read only to show the page. "Ver valores" (action
    # preview) asks the database what the trade would be, fee included,
    # before the customer confirms.
    form = OpenTradeForm()
    status = 200
    preview = None
    if form.validate_on_submit():
        try:
            if request.form.get("action") == "preview":
                preview = db.call_one("api.preview_p2p_trade", user_id=current_user.id, offer_id=offer_id,
                                      brl_amount=form.brl_amount.data)
            else:
                row = db.call_one("api.open_p2p_trade", user_id=current_user.id, offer_id=offer_id,
                                  payment_method=form.payment_method.data, idempotency_key=form.idempotency_key.data,
                                  brl_amount=form.brl_amount.data, payment_details=form.payment_details.data or None,
                                  totp_code=form.totp_code.data)
        except DomainError as exc:
            form_error(form, exc, default_field="brl_amount")
            status = exc.status
        else:
            if preview is None:
                flash(N_("Negociação aberta.") if row["status"] == "OPEN" else N_("Negociação concluída."), "success")
                if form.payment_method.data == "PIX_CONFIRMED" and row["status"] == "OPEN":
                    request_pix_charge(row["trade_id"])
                return redirect(url_for(".trade", trade_id=row["trade_id"]))
    elif request.method == "POST":
        status = 422
    if not form.idempotency_key.data:
        form.idempotency_key.data = str(uuid.uuid4())
    offer = db.call_one("api.get_p2p_offer", user_id=current_user.id, offer_id=offer_id)
    form.payment_method.choices = [(m, METHOD_LABELS[m]) for m in offer["payment_methods"]]
    if preview is None and not offer["is_mine"] and offer["status"] == "active":
        preview = db.call_one("api.preview_p2p_trade", user_id=current_user.id, offer_id=offer_id)
    return render_template("p2p/offer.html", offer=offer, form=form, preview=preview), status


def request_pix_charge(trade_id: int) -> None:
    """Create the PIX charge of a PIX-confirmed trade, after the trade is committed.

    A provider failure is not the customer's problem: the trade stays open and
    the deposits job (create_pending_p2p_charges) creates the charge shortly.
    """
    trade = db.call_one("api.get_p2p_trade", user_id=current_user.id, trade_id=trade_id)
    try:
        create_charge_for_p2p_trade(current_app._get_current_object(), trade_id, trade["brl_amount"],
                                    None, None, trade["payment_deadline"])
    except (ProviderError, DomainError) as exc:
        log.warning("PIX charge for trade %s not created yet: %s", trade_id, exc)
        flash("O QR Code PIX desta negociação aparece em instantes.", "info")


# --------------------------------------------------------------------------- trades

@bp.route("/p2p/trades")
@login_required
def trades():
    rows = db.call("api.list_my_p2p_trades", user_id=current_user.id)
    return render_template("p2p/trades.html", trades=rows)


def render_trade(trade_id: int, status: int = 200, template: str = "p2p/trade.html", **forms):
    trade = db.call_one("api.get_p2p_trade", user_id=current_user.id, trade_id=trade_id)
    messages = db.call("api.list_p2p_messages", user_id=current_user.id, trade_id=trade_id)
    proofs = db.call("api.list_p2p_proofs", user_id=current_user.id, trade_id=trade_id)
    context = {"paid_form": MarkPaidForm(formdata=None), "action_form": ActionForm(formdata=None),
               "message_form": MessageForm(formdata=None), "dispute_form": DisputeForm(formdata=None),
               "rate_form": RateForm(formdata=None), "evidence_form": EvidenceForm(formdata=None),
               "release_form": ReleaseForm(formdata=None)}
    context.update(forms)
    return render_template(template, trade=trade, messages=messages, proofs=proofs, **context), status


@bp.route("/p2p/trades/<id:trade_id>")
@login_required
def trade(trade_id: int):
    return render_trade(trade_id)


@bp.route("/p2p/trades/<id:trade_id>/chat")
@login_required
def chat(trade_id: int):
    """The chat panel alone (the trade page refreshes it while open)."""
    trade = db.call_one("api.get_p2p_trade", user_id=current_user.id, trade_id=trade_id)
    messages = db.call("api.list_p2p_messages", user_id=current_user.id, trade_id=trade_id)
    return render_template("p2p/_chat.html", trade=trade, messages=messages)


def _done(row: dict, expected: str):
    flash(row["message"], "success" if row["status"] == expected else "warning")


def _refused(trade_id: int, exc: DomainError, **forms):
    flash(exc.message, "danger")
    return render_trade(trade_id, exc.status, **forms)


@bp.post("/p2p/trades/<id:trade_id>/paid")
@login_required
def mark_paid(trade_id: int):
    form = MarkPaidForm()
    if not form.validate_on_submit():
        return render_trade(trade_id, 400, paid_form=form)
    try:
        upload = uploads.read(form.proof.data)
    except uploads.UploadError as exc:
        form.proof.errors = [str(exc)]
        return render_trade(trade_id, 422, paid_form=form)
    db.call_one("api.get_p2p_trade", user_id=current_user.id, trade_id=trade_id)  # nothing on disk for strangers
    stored = uploads.save(upload, "p2p") if upload else None
    try:
        row = db.call_one("api.mark_p2p_trade_paid", user_id=current_user.id, trade_id=trade_id,
                          proof_stored_name=stored, proof_original_name=upload.original_name if upload else None,
                          proof_content_type=upload.content_type if upload else None,
                          proof_size_bytes=len(upload.data) if upload else None,
                          proof_sha256=upload.sha256 if upload else None)
    except DomainError as exc:
        uploads.remove("p2p", stored)
        return _refused(trade_id, exc, paid_form=form)
    if stored and row["status"] != "PAID":
        uploads.remove("p2p", stored)  # cancelled by the deadline instead: the proof was not recorded
    _done(row, "PAID")
    return redirect(url_for(".trade", trade_id=trade_id))


@bp.post("/p2p/trades/<id:trade_id>/cancel")
@login_required
def cancel_trade(trade_id: int):
    if not ActionForm().validate_on_submit():
        return render_trade(trade_id, 400)
    try:
        row = db.call_one("api.cancel_p2p_trade", user_id=current_user.id, trade_id=trade_id)
    except DomainError as exc:
        return _refused(trade_id, exc)
    _done(row, "CANCELLED")
    return redirect(url_for(".trade", trade_id=trade_id))


@bp.post("/p2p/trades/<id:trade_id>/release")
@login_required
def release_trade(trade_id: int):
    form = ReleaseForm()
    if not form.validate_on_submit():
        return render_trade(trade_id, 400, release_form=form)
    try:
        row = db.call_one("api.release_p2p_trade", user_id=current_user.id, trade_id=trade_id,
                          totp_code=form.totp_code.data)
    except DomainError as exc:
        form_error(form, exc)
        return _refused(trade_id, exc, release_form=form)
    _done(row, "COMPLETED")
    return redirect(url_for(".trade", trade_id=trade_id))


@bp.post("/p2p/trades/<id:trade_id>/dispute")
@login_required
def dispute(trade_id: int):
    form = DisputeForm()
    if not form.validate_on_submit():
        return render_trade(trade_id, 422, dispute_form=form)
    try:
        row = db.call_one("api.open_p2p_dispute", user_id=current_user.id, trade_id=trade_id, reason=form.reason.data)
    except DomainError as exc:
        form_error(form, exc)
        return render_trade(trade_id, exc.status, dispute_form=form)
    _done(row, "DISPUTED")
    return redirect(url_for(".trade", trade_id=trade_id))


def _back_to_trade(trade_id: int):
    if current_user.is_admin:
        return redirect(url_for(".dispute_detail", trade_id=trade_id) + "#chat")
    return redirect(url_for(".trade", trade_id=trade_id) + "#chat")


@bp.post("/p2p/trades/<id:trade_id>/messages")
@login_required
def send_message(trade_id: int):
    form = MessageForm()
    template = "p2p/admin_dispute.html" if current_user.is_admin else "p2p/trade.html"
    if form.validate_on_submit():
        try:
            db.call("api.send_p2p_message", user_id=current_user.id, trade_id=trade_id, body=form.body.data)
        except DomainError as exc:
            form_error(form, exc, default_field="body")
            return render_trade(trade_id, exc.status, template=template, message_form=form, **_admin_forms())
        return _back_to_trade(trade_id)
    return render_trade(trade_id, 422, template=template, message_form=form, **_admin_forms())


def _admin_forms() -> dict:
    if not current_user.is_admin:
        return {}
    from .forms import ResolveForm
    return {"resolve_form": ResolveForm(formdata=None)}


@bp.post("/p2p/trades/<id:trade_id>/proofs")
@login_required
def add_proof(trade_id: int):
    form = EvidenceForm()
    if not form.validate_on_submit():
        return render_trade(trade_id, 400, evidence_form=form)
    try:
        upload = uploads.read(form.file.data, required=True)
    except uploads.UploadError as exc:
        form.file.errors = [str(exc)]
        return render_trade(trade_id, 422, evidence_form=form)
    db.call_one("api.get_p2p_trade", user_id=current_user.id, trade_id=trade_id)
    stored = uploads.save(upload, "p2p")
    try:
        db.call("api.add_p2p_proof", user_id=current_user.id, trade_id=trade_id, stored_name=stored,
                original_name=upload.original_name, content_type=upload.content_type, size_bytes=len(upload.data),
                sha256=upload.sha256)
    except DomainError as exc:
        uploads.remove("p2p", stored)
        return _refused(trade_id, exc, evidence_form=form)
    flash("Arquivo enviado.", "success")
    return redirect(url_for(".trade", trade_id=trade_id))


@bp.route("/p2p/proofs/<id:proof_id>")
@login_required
def proof(proof_id: int):
    row = db.call_one("api.get_p2p_proof", user_id=current_user.id, proof_id=proof_id)  # BSN01 → 404
    path = uploads.existing("p2p", row["stored_name"])
    if path is None:
        abort(404)
    response = send_file(path, mimetype=row["content_type"], download_name=row["original_name"],
                         as_attachment=row["content_type"] == "application/pdf", max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/p2p/trades/<id:trade_id>/rate")
@login_required
def rate(trade_id: int):
    form = RateForm()
    if not form.validate_on_submit():
        return render_trade(trade_id, 422, rate_form=form)
    try:
        db.call("api.rate_p2p_trade", user_id=current_user.id, trade_id=trade_id,
                positive=form.positive.data == "1", comment=form.comment.data or "")
    except DomainError as exc:
        form_error(form, exc)
        return render_trade(trade_id, exc.status, rate_form=form)
    flash("Avaliação registrada. Obrigado!", "success")
    return redirect(url_for(".trade", trade_id=trade_id))


# --------------------------------------------------------------------------- reputation and blocks

@bp.route("/p2p/users/<id:user_id>")
@login_required
def profile(user_id: int):
    person = db.call_one("api.get_p2p_profile", user_id=current_user.id, profile_user_id=user_id)
    ratings = db.call("api.list_p2p_ratings", profile_user_id=user_id)
    return render_template("p2p/profile.html", person=person, ratings=ratings, action_form=ActionForm())


@bp.post("/p2p/users/<id:user_id>/<any(block, unblock):action>")
@login_required
def block(user_id: int, action: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        db.call("api.set_p2p_block", user_id=current_user.id, blocked_user_id=user_id, blocked=action == "block")
    except DomainError as exc:
        flash(exc.message, "danger")
        return profile(user_id), exc.status
    flash(N_("Cliente bloqueado: vocês não verão as ofertas um do outro.") if action == "block"
          else N_("Cliente desbloqueado."), "success")
    return redirect(url_for(".profile", user_id=user_id))
