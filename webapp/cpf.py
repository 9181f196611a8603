"""CPF check digits for the forms (providers.md G.3).

The database has the same rule once (core.is_valid_cpf and core.cpf_digits in
sql/identifiers.sql) and decides; this mirror only lets a form say "CPF
inválido" before the call. tests/test_identifiers.py runs both over the same
inputs and requires them to agree.
"""
from __future__ import annotations

import re

_ALLOWED = re.compile(r"[0-9. -]+")
_NOT_DIGIT = re.compile(r"[^0-9]")


def digits(value: str | None) -> str:
    """The ASCII digits of a CPF as written (punctuation dropped)."""
    return _NOT_DIGIT.sub("", value or "")


def check_digits(first9: str) -> str:
    """The two check digits of the first nine digits (module 11; a 10 becomes 0)."""
    d = [int(c) for c in first9]
    d.append(sum(v * w for v, w in zip(d, range(10, 1, -1))) * 10 % 11 % 10)
    d.append(sum(v * w for v, w in zip(d, range(11, 1, -1))) * 10 % 11 % 10)
    return f"{d[9]}{d[10]}"


def is_valid(value: str | None) -> bool:
    """11 digits (dots, dash and spaces allowed), not one repeated digit, right check digits."""
    if not isinstance(value, str) or not _ALLOWED.fullmatch(value):
        return False
    n = digits(value)
    return len(n) == 11 and n != n[0] * 11 and check_digits(n[:9]) == n[9:]


def formatted(value: str | None) -> str:
    """123.456.789-09 for an 11-digit CPF; anything else as given."""
    n = digits(value)
    return f"{n[:3]}.{n[3:6]}.{n[6:9]}-{n[9:]}" if len(n) == 11 else (value or "")
