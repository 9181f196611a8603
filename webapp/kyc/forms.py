"""Forms of the kyc blueprint: their shape only; the database decides the rest."""
from flask_wtf.file import FileField
from wtforms import DateField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from .. import cpf as cpf_rules
from ..forms import Form


def valid_cpf(form, field):
    if not cpf_rules.is_valid(field.data):
        raise ValidationError("CPF inválido: confira os números.")


class KycDataForm(Form):
    full_name = StringField("Nome completo (como no documento)",
                            validators=[DataRequired("Informe seu nome completo."), Length(max=120)])
    cpf = StringField("CPF", validators=[DataRequired("Informe seu CPF."), Length(max=20), valid_cpf],
                      render_kw={"inputmode": "numeric", "placeholder": "000.000.000-00"})
    birth_date = DateField("Data de nascimento", validators=[DataRequired("Informe uma data de nascimento válida.")])
    address = TextAreaField("Endereço completo", validators=[DataRequired("Informe seu endereço."), Length(max=300)],
                            render_kw={"rows": 2})


class KycDocumentsForm(Form):
    document = FileField("Documento com foto (RG ou CNH): PNG, JPEG ou PDF, até 5 MB",
                         render_kw={"accept": "image/png,image/jpeg,application/pdf"})
    selfie = FileField("Selfie segurando o documento: PNG, JPEG ou PDF, até 5 MB",
                       render_kw={"accept": "image/png,image/jpeg,application/pdf"})
