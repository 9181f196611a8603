"""Forms of the market desk."""
from wtforms import HiddenField, RadioField, SelectField
from wtforms.validators import DataRequired, InputRequired

from .. import currencies
from ..forms import AmountField, Form
from ..formatting import N_

SIDES = [("buy", N_("Comprar")), ("sell", N_("Vender"))]


class QuoteForm(Form):
    side = RadioField("Operação", choices=SIDES, default="buy",
                      validators=[InputRequired("Escolha comprar ou vender.")])
    crypto = SelectField("Cripto", choices=currencies.choices("crypto", named=True), default="BTC")
    # BRL to spend (buy) or crypto to sell (sell); the database checks the scale.
    amount = AmountField("Valor", validators=[
        InputRequired("Informe um valor válido (use ponto ou vírgula para os decimais).")])


class ConfirmForm(Form):
    # Generated when the confirmation is shown: a double click sends the same
    # key, and the database creates one order.
    idempotency_key = HiddenField(validators=[DataRequired()])
