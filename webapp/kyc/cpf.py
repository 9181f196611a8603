"""CPF check digits (providers.md G.3). SQL has the same rule: core.is_valid_cpf."""
from __future__ import annotations

import re

_ALLOWED = re.compile(r"^[0-9. -]+$")


def digits(value: str | None) -> str:
    return "".join(ch for ch in (value or "") if ch.isdigit())


def check_digits(first9: str) -> str:
    d = [int(c) for c in first9]
    d.append(sum(v * w for v, w in zip(d, range(10, 1, -1))) * 10 % 11 % 10)
    d.append(sum(v * w for v, w in zip(d, range(11, 1, -1))) * 10 % 11 % 10)
    return f"{d[9]}{d[10]}"


def is_valid(value: str | None) -> bool:
    """11 digits (dots, dash and spaces allowed), not one repeated digit, right check digits."""
    if not value or not _ALLOWED.match(value):
        return False
    n = digits(value)
    return len(n) == 11 and n != n[0] * 11 and check_digits(n[:9]) == n[9:]


def formatted(value: str | None) -> str:
    n = digits(value)
    return f"{n[:3]}.{n[3:6]}.{n[6:9]}-{n[9:]}" if len(n) == 11 else (value or "")
