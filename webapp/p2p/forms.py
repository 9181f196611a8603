"""Forms of the P2P blueprint: their shape only; the database decides the rest."""
from flask_wtf.file import FileField
from wtforms import HiddenField, RadioField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget, TextInput

from .. import currencies
from ..auth.twofactor import TotpCodeField
from ..forms import AmountField as _AmountField, Form, IntegerField
from ..formatting import N_


class AmountField(_AmountField):
    """A text box, not type=number: browsers refuse "1.234,56" in a number input."""
    widget = TextInput()

METHODS = [("PIX", "PIX"), ("TED", "TED"), ("BALANCE", N_("Saldo bs-market")), ("PIX_CONFIRMED", N_("PIX confirmado"))]
METHOD_LABELS = dict(METHODS)
KYC_LEVELS = [(0, "Qualquer"), (1, "Nível 1"), (2, "Nível 2")]
AMOUNT_MESSAGE = "Informe um valor válido (use ponto ou vírgula para os decimais)."


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class BookFilterForm(Form):
    """The offer book's filters (GET, no CSRF)."""
    class Meta:
        csrf = False

    side = HiddenField(default="SELL")
    crypto = SelectField("Cripto", choices=lambda: [("", "Todas")] + currencies.choices("crypto")(), validators=[Optional()])
    method = SelectField("Pagamento", choices=[("", "Todos")] + METHODS, validators=[Optional()])
    amount = AmountField("Valor (R$)", validators=[Optional()])


class _OfferFields(Form):
    price_type = RadioField("Tipo de preço", choices=[("fixed", "Fixo"), ("floating", "Flutuante (índice Binance + ágio)")],
                            default="fixed")
    fixed_price = AmountField("Preço por unidade (R$)", validators=[Optional()])
    premium_percent = AmountField("Ágio sobre o índice (por cento)", validators=[Optional()])
    min_brl = AmountField("Mínimo por negociação (R$)", validators=[InputRequired(AMOUNT_MESSAGE)])
    max_brl = AmountField("Máximo por negociação (R$)", validators=[InputRequired(AMOUNT_MESSAGE)])
    payment_methods = MultiCheckboxField("Formas de pagamento", choices=METHODS,
                                         validators=[DataRequired("Escolha ao menos uma forma de pagamento.")])
    payment_window_minutes = IntegerField("Prazo para pagamento (minutos)", validators=[Optional()])
    payment_details = TextAreaField("Seus dados para receber PIX/TED (ofertas de venda)",
                                    validators=[Optional(), Length(max=500)])
    terms = TextAreaField("Termos da oferta", validators=[Optional(), Length(max=2000)])
    min_counterparty_kyc = SelectField("Verificação mínima da contraparte", choices=KYC_LEVELS, coerce=int, default=0)
    min_counterparty_trades = IntegerField("Negociações concluídas mínimas da contraparte", default=0,
                                           validators=[Optional(), NumberRange(min=0, max=100000)])
    expires_in_days = IntegerField("Publicada por (dias)", default=30, validators=[Optional()])
    totp_code = TotpCodeField(description=N_("Pedido quando a oferta aceita saldo da plataforma ou PIX confirmado: "
                                             "o valor sai sem você agir de novo."))


class OfferForm(_OfferFields):
    side = RadioField("Quero", choices=[("SELL", "Vender cripto"), ("BUY", "Comprar cripto")], default="SELL")
    crypto = SelectField("Cripto", choices=currencies.choices("crypto"))
    total_amount = AmountField("Quantidade total", validators=[InputRequired(AMOUNT_MESSAGE)])
    idempotency_key = HiddenField(validators=[DataRequired()])


class EditOfferForm(_OfferFields):
    remaining_amount = AmountField("Quantidade disponível", validators=[InputRequired(AMOUNT_MESSAGE)])


class OpenTradeForm(Form):
    brl_amount = AmountField("Valor em reais", validators=[InputRequired(AMOUNT_MESSAGE)])
    payment_method = SelectField("Forma de pagamento", choices=METHODS)
    payment_details = TextAreaField("Seus dados para receber o pagamento (chave PIX ou conta para TED)",
                                    validators=[Optional(), Length(max=500)])
    totp_code = TotpCodeField()
    idempotency_key = HiddenField(validators=[DataRequired()])


class ReleaseForm(Form):
    totp_code = TotpCodeField()


class MarkPaidForm(Form):
    proof = FileField("Comprovante (opcional: PNG, JPEG ou PDF até 5 MB)")


class EvidenceForm(Form):
    file = FileField("Arquivo (PNG, JPEG ou PDF até 5 MB)")


class MessageForm(Form):
    body = TextAreaField("Mensagem", validators=[DataRequired("Escreva uma mensagem."), Length(max=2000)])


class DisputeForm(Form):
    reason = TextAreaField("O que aconteceu?", validators=[DataRequired("Explique o problema."), Length(max=2000)])


class RateForm(Form):
    positive = RadioField("Avaliação", choices=[("1", "Positiva"), ("0", "Negativa")],
                          validators=[DataRequired("Escolha positiva ou negativa.")])
    comment = StringField("Comentário (opcional)", validators=[Optional(), Length(max=500)])


class ResolveForm(Form):
    outcome = RadioField("Decisão", choices=[("release", "Liberar a cripto ao comprador"),
                                             ("refund", "Devolver a cripto ao vendedor")],
                         validators=[DataRequired("Escolha a decisão.")])
    at_fault = SelectField("Quem deu causa", choices=[("", "Padrão (quem perdeu a disputa)"), ("buyer", "Comprador"),
                                                      ("seller", "Vendedor"), ("none", "Ninguém")],
                           validators=[Optional()])
    note = TextAreaField("Nota da decisão", validators=[DataRequired("Registre a decisão."), Length(max=2000)])
    totp_code = TotpCodeField(description=N_("Pedido para liberar a cripto (ela sai do vendedor por decisão sua)."))
