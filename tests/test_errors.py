"""The error codes: sql/ERROR_CODES.md and webapp/errors.py HTTP_STATUS say the same thing.

A code raised by SQL but missing from either list would reach the customer as
a 500 (or with the wrong status), so every `errcode = 'BS…'` in sql/ must be
listed too.
"""
from __future__ import annotations

import re
from pathlib import Path

from webapp.errors import HTTP_STATUS, DomainError, is_domain_sqlstate

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\|\s*(BS[A-Z0-9]{3})\s*\|(.*)\|\s*(\d{3})\s*\|\s*$")


def documented() -> dict[str, int]:
    codes: dict[str, int] = {}
    for line in (ROOT / "sql" / "ERROR_CODES.md").read_text().splitlines():
        match = ROW.match(line.strip())
        if match:
            code, meaning, status = match.groups()
            assert code not in codes, f"{code} listed twice in ERROR_CODES.md"
            assert meaning.strip(), f"{code} has no meaning in ERROR_CODES.md"
            codes[code] = int(status)
    return codes


def raised_in_sql() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "sql").rglob("*.sql")) + sorted((ROOT / "migrations").glob("*.sql")):
        for code in re.findall(r"errcode\s*=\s*'(BS[A-Z0-9]{3})'", path.read_text()):
            found.setdefault(code, set()).add(path.name)
    return found


def test_error_codes_md_and_http_status_agree():
    docs = documented()
    assert len(docs) >= 17, docs
    assert docs == HTTP_STATUS
    # the codes the foundation depends on, with the statuses of the house rules
    for code, status in {"BSA01": 403, "BSA02": 403, "BSN01": 404, "BSV01": 422, "BSV02": 422, "BSV03": 422,
                         "BSF01": 422, "BSI01": 409, "BSH01": 409, "BSH02": 409, "BSH03": 422, "BSU01": 409,
                         "BSS01": 409, "BSL01": 422, "BSP01": 503, "BSX01": 500, "BSX02": 500}.items():
        assert HTTP_STATUS[code] == status, code


def test_statuses_are_http_errors():
    for code, status in HTTP_STATUS.items():
        assert re.fullmatch(r"BS[A-Z0-9]{3}", code), code
        assert 400 <= status <= 599, (code, status)
        assert DomainError(code, "mensagem").status == status
        assert is_domain_sqlstate(code)
    # a code nobody listed is a bug: 500
    assert DomainError("BSZ99", "?").status == 500
    assert not is_domain_sqlstate("23505") and not is_domain_sqlstate(None)


def test_every_code_raised_in_sql_is_listed():
    raised = raised_in_sql()
    assert "BSF01" in raised and "BSX02" in raised
    missing = {code: sorted(files) for code, files in raised.items() if code not in HTTP_STATUS}
    assert missing == {}
