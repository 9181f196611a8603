"""Views of the crypto blueprint: /wallet/<coin>/deposit and /wallet/<coin>/withdraw."""
from __future__ import annotations

import uuid

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import currencies, db, limiter
from ..auth.twofactor import qr_data_uri
from ..errors import DomainError
from ..forms import ActionForm, form_error
from ..formatting import N_, datetimeformat, money
from ..providers.binance import deposit_status_text, withdraw_status_text
from . import bp
from .forms import AddressForm, CryptoWithdrawalForm, DepositAddressForm, ReviewForm

DEPOSIT_STATUS = {
    "PENDING": (N_("Aguardando confirmações"), "warning"),
    "CREDITED": (N_("Creditado"), "success"),
    "WRONG_NETWORK": (N_("Rede errada: fale com o suporte"), "danger"),
}
WITHDRAWAL_STATUS = {
    "AWAITING_APPROVAL": (N_("Aguardando aprovação"), "info"),
    "PENDING": (N_("Na fila"), "warning"),
    "PROCESSING": (N_("Enviando"), "primary"),
    "COMPLETED": (N_("Concluído"), "success"),
    "FAILED": (N_("Falhou"), "danger"),
    "CANCELLED": (N_("Cancelado"), "secondary"),
    "REJECTED": (N_("Recusado"), "danger"),
}


@bp.app_context_processor
def crypto_helpers():
    return {"crypto_deposit_status": lambda s: DEPOSIT_STATUS.get(s, (s, "secondary")),
            "crypto_withdrawal_status": lambda s: WITHDRAWAL_STATUS.get(s, (s, "secondary")),
            "binance_deposit_status": deposit_status_text, "binance_withdraw_status": withdraw_status_text,
            "crypto_coins": currencies.codes("crypto")}


def _coin(coin: str) -> str:
    coin = coin.upper()
    if coin not in currencies.codes("crypto"):
        abort(404)
    return coin


def _networks(coin: str) -> list[dict]:
    return db.call("api.list_crypto_networks", coin=coin)


# --------------------------------------------------------------------------- deposits

@bp.route("/wallet/<coin>/deposit", methods=["GET", "POST"])
@login_required
@limiter.limit("20 per minute", methods=["POST"])
def deposit(coin: str):
    coin = _coin(coin)
    networks = _networks(coin)
    form = DepositAddressForm()
    form.network.choices = [(n["network"], n["name"]) for n in networks if n["deposit_enable"]]
    if form.validate_on_submit():
        try:
            db.call_one("api.request_crypto_deposit_address", user_id=current_user.id, coin=coin,
                        network=form.network.data)
        except DomainError as exc:
            form_error(form, exc, "network")
        else:
            return redirect(url_for("crypto.deposit", coin=coin.lower(), network=form.network.data))
    addresses = db.call("api.list_crypto_deposit_addresses", user_id=current_user.id, coin=coin)
    for a in addresses:
        a["qr"] = qr_data_uri(a["address"]) if a["ready"] else None
    deposits = db.call("api.list_crypto_deposits", user_id=current_user.id, coin=coin, max_rows=30)
    waiting = any(not a["ready"] for a in addresses)
    return render_template("crypto/deposit.html", coin=coin, form=form, networks={n["network"]: n for n in networks},
                           addresses=addresses, deposits=deposits, waiting=waiting,
                           selected=request.args.get("network")), 422 if request.method == "POST" else 200


# --------------------------------------------------------------------------- withdrawals

def _withdraw_page(coin: str, form: CryptoWithdrawalForm, address_form: AddressForm, status: int):
    networks = _networks(coin)
    book = db.call("api.list_crypto_addresses", user_id=current_user.id, coin=coin)
    withdrawals = db.call("api.list_crypto_withdrawals", user_id=current_user.id, coin=coin, max_rows=30)
    wallet = {b["currency"]: b for b in db.call("api.get_wallet", user_id=current_user.id)}
    if not form.idempotency_key.data:
        form.idempotency_key.data = str(uuid.uuid4())
    return render_template("crypto/withdraw.html", coin=coin, form=form, address_form=address_form,
                           networks={n["network"]: n for n in networks}, book=book, withdrawals=withdrawals,
                           balance=wallet.get(coin), twofa=current_user.twofactor_on,
                           action_form=ActionForm()), status


def _forms(coin: str, formdata_for: str | None):
    networks = _networks(coin)
    book = db.call("api.list_crypto_addresses", user_id=current_user.id, coin=coin)
    form = CryptoWithdrawalForm(formdata=None if formdata_for != "withdraw" else request.form)
    form.address_id.choices = [(b["address_id"], f"{b['label'] or b['address']} ({b['network_name']})")
                               for b in book]
    address_form = AddressForm(formdata=None if formdata_for != "address" else request.form)
    address_form.coin = coin
    address_form.network.choices = [(n["network"], n["name"]) for n in networks]
    return form, address_form


@bp.route("/wallet/<coin>/withdraw", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per minute", methods=["POST"])
def withdraw(coin: str):
    coin = _coin(coin)
    form, address_form = _forms(coin, "withdraw" if request.method == "POST" else None)
    if request.method == "POST" and form.validate():
        try:
            row = db.call_one("api.create_crypto_withdrawal", user_id=current_user.id, coin=coin,
                              address_id=form.address_id.data, amount=form.amount.data,
                              idempotency_key=form.idempotency_key.data, totp_code=form.totp_code.data)
        except DomainError as exc:
            form_error(form, exc, "amount")
        else:
            waits = row["status"] == "AWAITING_APPROVAL"
            flash(f"Saque registrado: {money(form.amount.data, coin)} mais a taxa da rede de {money(row['fee'], coin)}. "
                  + ("Com os saques de hoje ele passa do limite de aprovação: aguarda a equipe." if waits
                     else "Ele será enviado em instantes."), "info" if waits else "success")
            return redirect(url_for("crypto.withdraw", coin=coin.lower()))
    return _withdraw_page(coin, form, address_form, 422 if request.method == "POST" else 200)


@bp.post("/wallet/<coin>/addresses")
@login_required
@limiter.limit("10 per minute")
def add_address(coin: str):
    coin = _coin(coin)
    form, address_form = _forms(coin, "address")
    if address_form.validate():
        try:
            row = db.call_one("api.add_crypto_address", user_id=current_user.id, coin=coin,
                              network=address_form.network.data, address=address_form.address.data,
                              memo=address_form.memo.data or "", label=address_form.label.data or "",
                              totp_code=address_form.totp_code.data)
        except DomainError as exc:
            form_error(address_form, exc, "address")
        else:
            if row["created"]:
                flash(f"Endereço cadastrado. Por segurança, ele pode receber saques a partir de "
                      f"{datetimeformat(row['usable_from'])}.", "success")
            else:
                flash(N_("Este endereço já está na sua lista."), "info")
            return redirect(url_for("crypto.withdraw", coin=coin.lower()))
    return _withdraw_page(coin, form, address_form, 422)


@bp.post("/wallet/<coin>/addresses/<id:address_id>/remove")
@login_required
def remove_address(coin: str, address_id: int):
    coin = _coin(coin)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        db.call("api.remove_crypto_address", user_id=current_user.id, address_id=address_id)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(N_("Endereço removido da sua lista."), "success")
    return redirect(url_for("crypto.withdraw", coin=coin.lower()))


@bp.post("/wallet/<coin>/withdrawals/<id:withdrawal_id>/cancel")
@login_required
def cancel_withdrawal(coin: str, withdrawal_id: int):
    coin = _coin(coin)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        db.call_one("api.cancel_crypto_withdrawal", user_id=current_user.id, withdrawal_id=withdrawal_id)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(N_("Saque cancelado: o valor voltou ao seu saldo."), "success")
    return redirect(url_for("crypto.withdraw", coin=coin.lower()))


# --------------------------------------------------------------------------- back office

from ..auth.guards import admin_required  # noqa: E402


@bp.route("/admin/crypto")
@admin_required
def admin_list():
    deposits = db.call("admin.list_crypto_deposits", admin_id=current_user.id, max_rows=100)
    withdrawals = db.call("admin.list_crypto_withdrawals", admin_id=current_user.id, max_rows=100)
    return render_template("crypto/admin.html", deposits=deposits, withdrawals=withdrawals,
                           review_form=ReviewForm(formdata=None))


@bp.post("/admin/crypto/withdrawals/<id:withdrawal_id>/<any(approve, reject):decision>")
@admin_required
def admin_review(withdrawal_id: int, decision: str):
    form = ReviewForm()
    if form.validate_on_submit():
        try:
            db.call("admin.review_crypto_withdrawal", admin_id=current_user.id, withdrawal_id=withdrawal_id,
                    approve=decision == "approve", reason=form.reason.data or None, totp_code=form.totp_code.data)
        except DomainError as exc:
            flash(exc.message, "danger")
        else:
            flash(N_("Saque aprovado: vai para a fila de envio.") if decision == "approve"
                  else N_("Saque recusado; o valor voltou ao saldo do cliente."), "success")
    return redirect(url_for("crypto.admin_list"))
