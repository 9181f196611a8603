"""Forms of the back office: their shape only; the admin.* functions decide the rest."""
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from .. import currencies
from ..auth.twofactor import TotpCodeField
from ..forms import AmountField, Form

class SearchForm(Form):
    class Meta:
        csrf = False  # a GET search: nothing changes

    q = StringField("E-mail, CPF ou id", validators=[DataRequired("Informe o que procurar."), Length(max=254)])


class KycReviewForm(Form):
    reason = TextAreaField("Motivo (obrigatório para recusar; o cliente vai lê-lo)", validators=[Length(max=500)],
                           render_kw={"rows": 2})


class StatusForm(Form):
    reason = StringField("Motivo", validators=[DataRequired("Informe o motivo."), Length(max=500)])


class AdjustmentForm(Form):
    currency = SelectField("Moeda", choices=currencies.choices())
    amount = AmountField("Valor (negativo para debitar)", validators=[DataRequired("Informe um valor diferente de zero.")])
    reason = StringField("Motivo", validators=[DataRequired("Informe o motivo."), Length(max=500)])
    totp_code = TotpCodeField()
    idempotency_key = HiddenField()


class ReasonForm(Form):
    reason = StringField("Motivo", validators=[DataRequired("Informe o motivo."), Length(min=5, max=500)])
    totp_code = TotpCodeField()


class TraceForm(Form):
    class Meta:
        csrf = False  # a GET lookup: nothing changes

    e2e_id = StringField("Identificador do PIX (end-to-end, E…)",
                         validators=[DataRequired("Informe o identificador end-to-end do PIX."), Length(max=64)])


class RecoveryReviewForm(Form):
    """Approve (with the admin's fresh code) or reject a 2FA recovery request."""
    reason = StringField("Motivo (o que foi conferido; o cliente lê o motivo de uma recusa)",
                         validators=[DataRequired("Informe o motivo."), Length(min=5, max=500)])
    totp_code = TotpCodeField()
