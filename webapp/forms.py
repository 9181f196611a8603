"""Form pieces shared by every blueprint."""
from __future__ import annotations

from flask import flash
from flask_wtf import FlaskForm
from wtforms import DecimalField
from wtforms.widgets import TextInput

from .errors import DomainError


class AmountField(DecimalField):
    """A money amount typed the Brazilian way ("1.234,56") or with a dot ("1234.56").

    Keeps every digit typed (no rounding): the database refuses an amount with
    more decimals than its currency has, with a clear message.
    """

    widget = TextInput()  # type=number would refuse the comma

    def __init__(self, label=None, validators=None, **kwargs):
        kwargs.setdefault("places", None)
        super().__init__(label, validators, **kwargs)

    def process_formdata(self, valuelist):
        if valuelist:
            value = valuelist[0].strip().replace(" ", "").replace("R$", "")
            if "," in value:
                value = value.replace(".", "").replace(",", ".")
            valuelist = [value]
        super().process_formdata(valuelist)
        if self.data is not None and not self.data.is_finite():
            self.data = None
            raise ValueError(self.gettext("Informe um valor numérico válido."))


class ActionForm(FlaskForm):
    """No fields: a button that POSTs with a CSRF token (log out, cancel, language…)."""


def form_error(form, exc: DomainError, default_field: str | None = None):
    """Show a database refusal on the form field it names (or as a flash)."""
    field = getattr(form, exc.field or default_field or "", None)
    if field is not None and hasattr(field, "errors"):
        field.errors = list(field.errors) + [exc.message]
    else:
        flash(exc.message, "danger")
