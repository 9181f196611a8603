"""Worker jobs of privacy: anonymise closed accounts past the retention period, then delete their files.

The database decides which accounts are due and what to anonymise (admin.anonymise_due_accounts, one
transaction) and records which stored files must go (core.file_deletions). Deleting a file is an action
outside the database: it happens here, after that commit, and each deletion is then recorded by its row
id. A file already gone counts as deleted, so a crash between the unlink and the record repeats nothing
harmful.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .. import db, uploads

log = logging.getLogger("bs-market.privacy")


def stored_path(app, store: str, path: str) -> Path:
    """Where a file of a store lives (webapp/uploads.py), never outside it (ValueError)."""
    return uploads.path_of(store, path, app)


def anonymise_due_accounts(app) -> dict:
    """Anonymise the closed accounts whose retention period has passed; returns counts by outcome."""
    outcomes: dict = {}
    for row in db.worker_call(app, "admin.anonymise_due_accounts", max_rows=50):
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
        if row["outcome"] == "blocked":
            log.warning("privacy: closed account %s is due for anonymisation but holds money again", row["user_id"])
    if outcomes:
        log.info("privacy: anonymisation %s", outcomes)
    return outcomes


def delete_files(app) -> dict:
    """Delete the stored files the database queued, each recorded once done."""
    done = {"deleted": 0, "failed": 0}
    for row in db.worker_call(app, "admin.file_deletions_due", max_rows=100):
        try:
            stored_path(app, row["store"], row["path"]).unlink(missing_ok=True)
        except (OSError, ValueError) as exc:
            db.worker_call(app, "admin.record_file_deletion", deletion_id=row["deletion_id"], error=str(exc))
            done["failed"] += 1
            continue
        db.worker_call(app, "admin.record_file_deletion", deletion_id=row["deletion_id"])
        done["deleted"] += 1
    if done["deleted"] or done["failed"]:
        log.info("privacy: files %s", done)
    return done


JOBS = [(anonymise_due_accounts, 3600), (delete_files, 60)]
