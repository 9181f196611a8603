"""Forms of the deposits blueprint."""
from wtforms import HiddenField
from wtforms.validators import DataRequired, InputRequired

from ..forms import AmountField, Form
from ..formatting import N_


class BRLAmountField(AmountField):
    """AmountField with the message in Portuguese when the text is not a number."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(N_("Informe um valor válido (ex.: 150,00).")) from None


class DepositForm(Form):
    amount = BRLAmountField(N_("Valor do depósito (R$)"), validators=[
        InputRequired("Informe um valor válido (use vírgula ou ponto para os centavos).")])
    # Generated when the form is shown: a double click creates one deposit.
    idempotency_key = HiddenField(validators=[DataRequired()])
