"""Forms of the back office: their shape only; the admin.* functions decide the rest."""
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from ..forms import AmountField

CURRENCIES = [("BRL", "BRL"), ("BTC", "BTC"), ("ETH", "ETH"), ("USDT", "USDT")]


class SearchForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search: nothing changes

    q = StringField("E-mail, CPF ou id", validators=[DataRequired("Informe o que procurar."), Length(max=254)])


class KycReviewForm(FlaskForm):
    reason = TextAreaField("Motivo (obrigatório para recusar; o cliente vai lê-lo)", validators=[Length(max=500)],
                           render_kw={"rows": 2})


class StatusForm(FlaskForm):
    reason = StringField("Motivo", validators=[DataRequired("Informe o motivo."), Length(max=500)])


class AdjustmentForm(FlaskForm):
    currency = SelectField("Moeda", choices=CURRENCIES)
    amount = AmountField("Valor (negativo para debitar)", validators=[DataRequired("Informe um valor diferente de zero.")])
    reason = StringField("Motivo", validators=[DataRequired("Informe o motivo."), Length(max=500)])
    idempotency_key = HiddenField()
