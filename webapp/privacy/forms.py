"""Forms of the privacy blueprint: their shape only; the database decides the rest."""
from wtforms import BooleanField, PasswordField, RadioField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ..auth.twofactor import TotpCodeField
from ..forms import Form


class ExportForm(Form):
    format = RadioField("Formato", choices=[("json", "JSON"), ("csv", "CSV")], default="json",
                        validators=[DataRequired("Escolha o formato.")])


class CloseAccountForm(Form):
    password = PasswordField("Sua senha", validators=[DataRequired("Informe sua senha.")])
    totp_code = TotpCodeField()
    reason = TextAreaField("Motivo (opcional)", validators=[Optional(), Length(max=500, message="No máximo 500 caracteres.")])
    confirm = BooleanField("Entendo que a conta será encerrada e que não poderei mais entrar nela.",
                           validators=[DataRequired("Confirme que deseja encerrar a conta.")])
