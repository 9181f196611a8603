"""Forms of the crypto blueprint. Addresses are checked here with the kept
library (webapp.chain) for a friendly message; the database checks again."""

from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from ..auth.twofactor import TotpCodeField
from ..chain import validate_address
from ..forms import AmountField, Form
from ..formatting import N_


class CryptoAmountField(AmountField):
    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(N_("Informe um valor válido (ex.: 0,015).")) from None


class DepositAddressForm(Form):
    network = SelectField(N_("Rede"), choices=[], validate_choice=True)


class AddressForm(Form):
    network = SelectField(N_("Rede"), choices=[], validate_choice=True)
    address = StringField(N_("Endereço"), validators=[DataRequired(N_("Informe o endereço.")), Length(max=128)])
    memo = StringField(N_("Memo / tag (só se a rede exigir)"), validators=[Optional(), Length(max=100)])
    label = StringField(N_("Apelido (opcional)"), validators=[Optional(), Length(max=60)])
    totp_code = TotpCodeField()

    coin = ""  # set by the view

    def validate_address(self, field):
        try:
            field.data = validate_address(self.coin, self.network.data or "", field.data or "",
                                          self.memo.data or None)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class ReviewForm(Form):
    reason = StringField(N_("Motivo (obrigatório para recusar)"), validators=[Optional(), Length(max=500)])
    totp_code = TotpCodeField()


class CryptoWithdrawalForm(Form):
    address_id = SelectField(N_("Endereço de destino"), choices=[], coerce=int, validate_choice=True)
    amount = CryptoAmountField(N_("Quantidade (a taxa da rede é somada)"), validators=[
        InputRequired(N_("Informe um valor válido (ex.: 0,015)."))])
    totp_code = TotpCodeField()
    idempotency_key = HiddenField(validators=[DataRequired()])
