"""Audit: the auditors' read-only section (/audit) and the public proof of liabilities.

/audit reads reporting views only, through `db.audit_query` on the
`exchange_auditor` pool, so it cannot write even by a bug. The proof-of-
liabilities pages (/proof-of-liabilities, public; /proof-of-liabilities/me,
the customer's own leaf and path) live on this blueprint too.
"""
from flask import Blueprint

bp = Blueprint("audit", __name__)

from . import views, labels  # noqa: E402,F401
