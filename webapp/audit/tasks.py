"""Worker jobs of the audit domain: the remembered books check and the daily proof of liabilities."""
from __future__ import annotations

import logging

from .. import db

log = logging.getLogger("bs-market.audit")


def record_books_check(app):
    """Run the ledger invariants and remember the outcome, so /audit shows any alert."""
    failures = db.worker_call(app, "admin.record_books_check")
    for row in failures:
        log.error("ALERT books: %s: %s", row["check_name"], row["detail"])
    return failures


def publish_liabilities(app):
    """Publish the proof of liabilities when due (setting liabilities_snapshot_hours; hourly check)."""
    rows = db.worker_call(app, "admin.publish_liabilities_snapshot", admin_id=None, only_if_due=True)
    if rows and not rows[0]["replayed"]:
        log.info("published proof of liabilities %s: %s", rows[0]["snapshot_id"],
                 ", ".join(f"{r['currency']} {r['total']} ({r['leaf_count']} leaves)" for r in rows))
    return rows


def ensure_ledger_partitions(app):
    """Keep the ledger's monthly partitions three months ahead (no default partition: a month without
    one would stop posting; admin.check_books alerts a month ahead)."""
    rows = db.worker_call(app, "admin.ensure_ledger_partitions", months_ahead=3)
    for row in rows:
        if row["created"]:
            log.info("created the ledger partitions for %s", row["month"])
    return rows


JOBS = [(record_books_check, 300), (publish_liabilities, 3600), (ensure_ledger_partitions, 3600)]
