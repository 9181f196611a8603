"""Forms of the withdrawals blueprint."""
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from ..auth.twofactor import TotpCodeField
from ..deposits.forms import BRLAmountField
from ..formatting import N_
from ..pix import normalize_pix_key
from ..forms import Form

KEY_TYPES = [SelectChoice("CPF", "CPF"), SelectChoice("CNPJ", "CNPJ"), SelectChoice("EMAIL", "E-mail"),
             SelectChoice("PHONE", "Telefone"), SelectChoice("EVP", "Chave aleatória")]


class WithdrawalForm(Form):
    amount = BRLAmountField(N_("Valor do saque (R$)"), validators=[
        InputRequired("Informe um valor válido (use vírgula ou ponto para os centavos).")])
    key_type = SelectField("Tipo de chave PIX", choices=KEY_TYPES)
    pix_key = StringField("Chave PIX", validators=[DataRequired("Informe a chave PIX."), Length(max=100)])
    totp_code = TotpCodeField()
    idempotency_key = HiddenField(validators=[DataRequired()])

    def validate_pix_key(self, field):
        # The same rules as the database (core.pix_normalize_key), checked here
        # first for a friendly message; the database checks again.
        try:
            field.data = normalize_pix_key(self.key_type.data, field.data or "")
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class DestinationForm(Form):
    key_type = SelectField("Tipo de chave PIX", choices=KEY_TYPES)
    pix_key = StringField("Chave PIX", validators=[DataRequired("Informe a chave PIX."), Length(max=100)])
    label = StringField("Apelido (opcional)", validators=[Length(max=60)])
    totp_code = TotpCodeField()

    validate_pix_key = WithdrawalForm.validate_pix_key


class ApproveForm(Form):
    totp_code = TotpCodeField()


class RejectForm(Form):
    reason = TextAreaField("Motivo (o cliente vai ler)", validators=[
        DataRequired("Informe o motivo."), Length(min=5, max=500, message=N_("Entre 5 e 500 caracteres."))])
