"""Forms of the wallet blueprint."""
from wtforms import EmailField, HiddenField, SelectField
from wtforms.validators import DataRequired, InputRequired

from .. import currencies
from ..auth.twofactor import TotpCodeField
from ..forms import AmountField, Form

class TransferForm(Form):
    recipient_email = EmailField("E-mail do destinatário", validators=[DataRequired("Informe o e-mail do destinatário.")])
    currency = SelectField("Moeda", choices=currencies.choices())
    amount = AmountField("Valor", validators=[
        InputRequired("Informe um valor válido (use ponto ou vírgula para os decimais).")])
    # Generated when the form is shown: a double click or a retry sends the
    # same key, and the database moves the money once.
    totp_code = TotpCodeField()
    idempotency_key = HiddenField(validators=[DataRequired()])
