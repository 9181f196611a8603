"""Forms of the auth blueprint: their shape only; the database decides the rest."""
from wtforms import EmailField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

from ..formatting import N_
from .twofactor import TotpCodeField
from ..forms import Form

COMMON_PASSWORDS = {
    "1234567890", "12345678910", "senha12345", "password123", "qwertyuiop", "abcdefghij",
    "senhasenha", "minhasenha", "bitcoin123", "0987654321", "1q2w3e4r5t", "iloveyou12",
}


def strong_password(form, field):
    """At least 10 characters, not a common password, not only digits, not the e-mail."""
    value = field.data or ""
    if len(value) < 10:
        raise ValidationError("A senha precisa ter pelo menos 10 caracteres.")
    if value.lower() in COMMON_PASSWORDS or len(set(value)) < 4:
        raise ValidationError("Essa senha é fácil demais de adivinhar. Escolha outra.")
    if value.isdigit():
        raise ValidationError("Use letras além de números na senha.")
    email_field = getattr(form, "email", None)
    email = ((email_field.data if email_field is not None else None) or getattr(form, "user_email", "") or "").lower()
    local = email.split("@")[0]
    if local and len(local) >= 4 and local in value.lower():
        raise ValidationError("A senha não pode conter o seu e-mail.")


class RegisterForm(Form):
    display_name = StringField("Nome", validators=[DataRequired("Informe seu nome."), Length(max=80)])
    email = EmailField("E-mail", validators=[DataRequired("Informe seu e-mail."),
                                             Email("Informe um e-mail válido.", check_deliverability=False)])
    password = PasswordField("Senha", validators=[DataRequired("Escolha uma senha."), strong_password])
    confirm = PasswordField("Confirme a senha", validators=[EqualTo("password", N_("As senhas não conferem."))])


class LoginForm(Form):
    email = EmailField("E-mail", validators=[DataRequired("Informe seu e-mail.")])
    password = PasswordField("Senha", validators=[DataRequired("Informe sua senha.")])


class TwoFactorLoginForm(Form):
    totp_code = TotpCodeField(validators=[DataRequired("Informe o código do aplicativo autenticador."),
                                          Length(max=32, message=N_("Código inválido."))])


class TwoFactorSetupForm(Form):
    totp_code = TotpCodeField(N_("Código de 6 dígitos mostrado no aplicativo"),
                              validators=[DataRequired("Informe o código mostrado no aplicativo."),
                                          Length(max=32, message=N_("Código inválido."))])


class TwoFactorDisableForm(Form):
    totp_code = TotpCodeField(validators=[DataRequired("Informe um código atual para desativar."),
                                          Length(max=32, message=N_("Código inválido."))])


class PasswordChangeForm(Form):
    """`user_email` is set by the view, so the new password cannot contain the e-mail."""
    current_password = PasswordField("Senha atual", validators=[DataRequired("Informe sua senha atual.")])
    new_password = PasswordField("Nova senha", validators=[DataRequired("Escolha a nova senha."), strong_password])
    confirm = PasswordField("Confirme a nova senha", validators=[EqualTo("new_password", N_("As senhas não conferem."))])
    totp_code = TotpCodeField()
    user_email = ""


class ForgotPasswordForm(Form):
    email = EmailField("E-mail", validators=[DataRequired("Informe seu e-mail."),
                                             Email("Informe um e-mail válido.", check_deliverability=False)])


class ResetPasswordForm(Form):
    """`user_email` is set by the view (the link's address), so the password cannot contain it."""
    password = PasswordField("Nova senha", validators=[DataRequired("Escolha a nova senha."), strong_password])
    confirm = PasswordField("Confirme a nova senha", validators=[EqualTo("password", N_("As senhas não conferem."))])
    user_email = ""


class EmailChangeForm(Form):
    new_email = EmailField("Novo e-mail", validators=[DataRequired("Informe o novo e-mail."),
                                                      Email("Informe um e-mail válido.", check_deliverability=False)])
    current_password = PasswordField("Senha atual", validators=[DataRequired("Informe sua senha atual.")])


class AntiPhishingForm(Form):
    anti_phishing_code = StringField(
        "Código anti-phishing", validators=[Length(max=20, message=N_("Use no máximo 20 caracteres."))],
        description=N_("De 4 a 20 caracteres. Aparece no topo de todo e-mail da bs-market: sem ele, o e-mail não é nosso. "
                       "Deixe em branco para remover."))


class RecoveryRequestForm(Form):
    reason = TextAreaField("O que aconteceu?", validators=[
        DataRequired("Conte em poucas palavras o que aconteceu."),
        Length(min=10, max=1000, message=N_("Use de 10 a 1000 caracteres."))], render_kw={"rows": 4})
