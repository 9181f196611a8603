"""Domain errors raised by SQL functions, mapped once to HTTP statuses.

SQL raises `BSxxx` SQLSTATEs with a message for a human (sql/ERROR_CODES.md);
`db.call` turns them into `DomainError`, and views put the message on the
form (on the field named by the error's COLUMN when there is one). Any other
database error is a bug and becomes a 500.
"""
from __future__ import annotations

# One line per code of sql/ERROR_CODES.md (a test checks they agree).
HTTP_STATUS = {
    "BSA01": 403, "BSA02": 403, "BSN01": 404,
    "BSV01": 422, "BSV02": 422, "BSV03": 422, "BSF01": 422,
    "BSI01": 409, "BSH01": 409, "BSH02": 409, "BSH03": 422,
    "BSU01": 409, "BSS01": 409, "BSL01": 422, "BSP01": 503,
    "BSX01": 500, "BSX02": 500,
}


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
        return HTTP_STATUS.get(self.code, 500)

    def __repr__(self):
        return f"DomainError({self.code!r}, {self.message!r}, field={self.field!r})"


def is_domain_sqlstate(sqlstate: str | None) -> bool:
    return bool(sqlstate) and sqlstate.startswith("BS")
