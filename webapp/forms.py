"""Form pieces shared by every blueprint.

Every form derives from `Form`, which decides what a field may receive at all,
before the field reads it: a form body (url-encoded or multipart, never JSON
or anything else), text in a text field (not a file, not NUL or other control
characters, at most MAX_TEXT characters) and a file in a file field. A value
refused here never reaches the field: the field shows why, the form does not
validate, and the view answers its usual 4xx. `IntegerField` and `AmountField`
refuse numbers the database could not hold, with a message.
"""
from __future__ import annotations

import functools
import re
from decimal import Decimal

import wtforms.widgets
import wtforms.widgets.core
from babel import support
from flask import current_app, flash, request
from flask_babel import get_locale
from flask_wtf import FlaskForm
from flask_wtf.file import FileField as _FlaskFileField
from flask_wtf.form import _Auto, _is_submitted
from werkzeug.datastructures import FileStorage, ImmutableMultiDict, MultiDict
from wtforms import DecimalField
from wtforms import IntegerField as _IntegerField
from wtforms.fields import FileField as _WTFileField
from wtforms.i18n import messages_path
from wtforms.validators import ValidationError
from wtforms.widgets import TextInput
from wtforms.widgets.core import clean_key
from markupsafe import Markup, escape

from .errors import DomainError
from .formatting import N_

MAX_TEXT = 4000                     # characters in any one value (Length validators are tighter)
FORM_BODIES = {"application/x-www-form-urlencoded", "multipart/form-data"}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")   # NUL and friends; tab and newlines are text
INT4 = 2 ** 31 - 1                  # PostgreSQL integer
MAX_DIGITS = 30                     # an amount: more digits than any balance or price can have

NOT_A_FORM = N_("Envie os dados pelo formulário da página.")
NOT_TEXT = N_("Este campo recebe texto, não um arquivo.")
NOT_A_FILE = N_("Este campo recebe um arquivo.")
BAD_VALUE = N_("Valor inválido.")
BAD_CHARACTERS = N_("O texto contém caracteres inválidos.")
TOO_LONG = N_("Texto longo demais (máximo de 4.000 caracteres).")


def html_params(**kwargs) -> Markup:
    """WTForms' `html_params`, the same HTML, without `Markup.format` per attribute.

    Every field, label and option of a page goes through it (a dozen times on the wallet page,
    hundreds with a select of many options), and markupsafe's formatter is pure Python; this
    builds the same string with an f-string: the name escaped, the value escaped with `"` as
    `&quot;` (tests/test_formatting.py compares both on generated attributes).
    """
    params = []
    for key, value in sorted(kwargs.items()):
        key = clean_key(key)
        if value is True:
            params.append(str(escape(key)))
        elif value is not False:
            params.append(f'{escape(key)}="{str(escape(value)).replace(chr(34), "&quot;")}"')
    return Markup(" ".join(params))


WTFORMS_HTML_PARAMS = wtforms.widgets.core.html_params   # the original, for the tests
wtforms.widgets.core.html_params = wtforms.widgets.html_params = html_params
wtforms.widgets.core.Input.html_params = wtforms.widgets.core.Button.html_params = staticmethod(html_params)


@functools.lru_cache(maxsize=8)
def _wtforms_translations(locale: str):
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


def _is_file_field(field) -> bool:
    return isinstance(field, (_FlaskFileField, _WTFileField))


def _screen(form, formdata):
    """The values of `formdata` each field may read; the refusals in form.input_errors."""
    clean = MultiDict()
    for name in formdata.keys():
        field = form._fields.get(name)
        if field is None:
            continue  # a key no field reads
        values, refusal = [], None
        for value in formdata.getlist(name):
            if _is_file_field(field):
                if isinstance(value, FileStorage):
                    values.append(value)
                else:
                    refusal = NOT_A_FILE  # a browser sends a file part, even empty, never text
                continue
            if isinstance(value, FileStorage):
                refusal = NOT_TEXT
            elif not isinstance(value, str):
                refusal = BAD_VALUE
            elif CONTROL.search(value):
                refusal = BAD_CHARACTERS
            elif len(value) > getattr(field, "max_chars", MAX_TEXT):
                refusal = TOO_LONG
            else:
                values.append(value)
        if refusal:
            form.input_errors[name] = refusal
        elif values:
            clean.setlist(name, values)
    return ImmutableMultiDict(clean)


class Form(FlaskForm):
    """The base of every form of the app (see the module's docstring)."""

    input_errors: dict

    class Meta(FlaskForm.Meta):
        def get_translations(self, form):
            # Flask-WTF reads WTForms' own catalog from disk on every request;
            # it never changes while the process runs, so once per locale.
            if not current_app.config.get("WTF_I18N_ENABLED", True):
                return super().get_translations(form)
            return _wtforms_translations(str(get_locale() or "pt_BR"))

        def wrap_formdata(self, form, formdata):
            form.input_errors = {}
            if formdata is _Auto:
                if not _is_submitted():
                    return None
                if request.mimetype and request.mimetype not in FORM_BODIES:
                    # JSON, XML, text…: a form was expected. Nothing is read from the body.
                    form.input_errors[None] = NOT_A_FORM
                    return ImmutableMultiDict()
                formdata = request.form
                if request.files:
                    formdata = MultiDict(request.form)
                    for name, storage in request.files.items(multi=True):
                        formdata.add(name, storage)
            formdata = super().wrap_formdata(form, formdata)
            return None if formdata is None else _screen(form, formdata)

    def validate(self, extra_validators=None):
        valid = super().validate(extra_validators)
        for name, message in getattr(self, "input_errors", {}).items():
            field = self._fields.get(name)
            if field is not None:
                field.errors = [message]
            else:
                self.form_errors.append(message)
            if field is None or getattr(field.widget, "input_type", None) == "hidden":
                flash(message, "danger")  # nowhere on the page to show it
        return valid and not getattr(self, "input_errors", None)


class ActionForm(Form):
    """No fields: a button that POSTs with a CSRF token (log out, cancel, language…)."""


class IntegerField(_IntegerField):
    """A whole number between `min_value` and `max_value` (by default what a PostgreSQL integer holds).

    Anything else — letters, 10^32, 400 digits — is refused with a message, never sent to the database.
    Range rules of the business (a payment window of 15 to 120 minutes) stay in SQL.
    """

    def __init__(self, label=None, validators=None, min_value: int = -INT4, max_value: int = INT4, **kwargs):
        kwargs.setdefault("invalid_value_message", N_("Informe um número inteiro."))
        super().__init__(label, validators, **kwargs)
        self.min_value, self.max_value = min_value, max_value

    def process_formdata(self, valuelist):
        if valuelist and isinstance(valuelist[0], str):
            text = valuelist[0].strip()
            if re.fullmatch(r"[+-]?\d{1,12}", text) is None and text:
                self.data = None
                raise ValueError(self.gettext(self.invalid_value_message))
            valuelist = [text] + list(valuelist[1:])
        super().process_formdata(valuelist)

    def pre_validate(self, form):
        if self.data is not None and not self.min_value <= self.data <= self.max_value:
            self.data = None
            raise ValidationError(self.gettext(N_("Número fora do intervalo aceito.")))


class AmountField(DecimalField):
    """A money amount typed the Brazilian way ("1.234,56") or with a dot ("1234.56").

    Keeps every digit typed (no rounding): the database refuses an amount with
    more decimals than its currency has, with a clear message. More than
    MAX_DIGITS digits, NaN or infinity are refused here.
    """

    widget = TextInput()  # type=number would refuse the comma

    def __init__(self, label=None, validators=None, **kwargs):
        kwargs.setdefault("places", None)
        super().__init__(label, validators, **kwargs)

    def process_formdata(self, valuelist):
        if valuelist and isinstance(valuelist[0], str):
            value = valuelist[0].strip().replace(" ", "").replace("R$", "")
            if "," in value:
                value = value.replace(".", "").replace(",", ".")
            if sum(ch.isdigit() for ch in value) > MAX_DIGITS:
                self.data = None
                raise ValueError(self.gettext(N_("Valor grande demais.")))
            valuelist = [value]
        super().process_formdata(valuelist)
        if self.data is not None and not Decimal(self.data).is_finite():
            self.data = None
            raise ValueError(self.gettext("Informe um valor numérico válido."))


def form_error(form, exc: DomainError, default_field: str | None = None):
    """Show a database refusal on the form field it names (or as a flash)."""
    field = getattr(form, exc.field or default_field or "", None)
    if field is not None and hasattr(field, "errors"):
        field.errors = list(field.errors) + [exc.message]
    else:
        flash(exc.message, "danger")
