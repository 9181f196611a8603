"""Domain errors raised by SQL functions, mapped once to HTTP statuses.

SQL raises `BSxxx` SQLSTATEs with a message for a human (sql/ERROR_CODES.md);
`db.call` turns them into `DomainError`, and views put the message on the
form (on the field named by the error's COLUMN when there is one).

A value the database cannot even read (SQLSTATE class 22, "data exception":
out of range, not a number, NUL in a text…) is the client's error too: it
becomes an `InputError`, a `DomainError` with a 4xx and a message of ours
(INPUT_SQLSTATES). Any other database error is a bug and becomes a 500.
"""
from __future__ import annotations

from .formatting import N_

# One line per code of sql/ERROR_CODES.md (a test checks they agree).
HTTP_STATUS = {
    "BSA01": 403, "BSA02": 403, "BSA03": 403, "BSN01": 404,
    "BSV01": 422, "BSV02": 422, "BSV03": 422, "BSF01": 422,
    "BSI01": 409, "BSH01": 409, "BSH02": 409, "BSH03": 422,
    "BSU01": 409, "BSS01": 409, "BSL01": 422, "BSP01": 503,
    "BSE01": 403, "BSR01": 429, "BST01": 400, "BST02": 410, "BST03": 409,
    "BSX01": 500, "BSX02": 500, "BSC01": 409,
}


# Data exceptions (class 22) that bad input provokes, with the message shown
# for them; any other 22xxx gets INPUT_DEFAULT. Never the server's own text
# (it would show internals such as type names).
INPUT_SQLSTATES = {
    "22001": N_("Texto longo demais para este campo."),           # string_data_right_truncation
    "22003": N_("Número fora do intervalo aceito."),              # numeric_value_out_of_range
    "22007": N_("Data ou hora em formato inválido."),             # invalid_datetime_format
    "22008": N_("Data ou hora fora do intervalo aceito."),        # datetime_field_overflow
    "22012": N_("Valor inválido (divisão por zero)."),            # division_by_zero
    "22021": N_("O texto contém caracteres inválidos."),          # character_not_in_repertoire
    "22023": N_("Valor inválido."),                               # invalid_parameter_value
    "22P02": N_("Valor em formato inválido."),                    # invalid_text_representation
    "22P05": N_("O texto contém caracteres inválidos."),          # untranslatable_character
    "22000": N_("O texto contém caracteres inválidos."),          # psycopg's own refusal (NUL in a text), no SQLSTATE
}
INPUT_DEFAULT = N_("Valor inválido.")
INPUT_STATUS = 422


def is_input_sqlstate(sqlstate: str | None) -> bool:
    """A data exception (class 22): the value sent, not the code, is wrong."""
    return bool(sqlstate) and sqlstate.startswith("22")


class DomainError(Exception):
    """An expected refusal from the database: a message for the customer."""

    def __init__(self, code: str, message: str, field: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.hint = hint

    @property
    def status(self) -> int:
        if is_input_sqlstate(self.code):
            return INPUT_STATUS
        return HTTP_STATUS.get(self.code, 500)

    def __repr__(self):
        return f"DomainError({self.code!r}, {self.message!r}, field={self.field!r})"


class InputError(DomainError):
    """A value the database refused to read (class 22): a 422 with our message, on `field` when known."""

    def __init__(self, sqlstate: str, field: str | None = None):
        super().__init__(sqlstate, INPUT_SQLSTATES.get(sqlstate, INPUT_DEFAULT), field)


def is_domain_sqlstate(sqlstate: str | None) -> bool:
    return bool(sqlstate) and sqlstate.startswith("BS")
