"""The pools open on first use, never when the app is created (issue 16).

`flask --app wsgi db upgrade` and `seed-demo` build the app (wsgi.py) before
the first migration has created the roles the pools log in as: a pool opened
then logged "role exchange_app does not exist" on every first `make run`.
"""
from __future__ import annotations

import logging
import time

from webapp import create_app, db
from webapp.config import role_url

ROLE = "bsm_role_not_created_yet"


def refusals(caplog) -> list[str]:
    """psycopg_pool's warnings: "error connecting in 'app': … role "…" does not exist" (or, on a cluster
    whose pg_hba names its users, "… authentication failed")."""
    return [r.getMessage() for r in caplog.records if r.name == "psycopg.pool" and "error connecting" in r.getMessage()]


def test_creating_the_app_connects_to_nothing_before_the_roles_exist(admin_url, caplog):
    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    missing = role_url(admin_url, ROLE)    # the cluster is there, the role is not (yet)
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": admin_url,
                      "APP_DATABASE_URL": missing, "AUDIT_DATABASE_URL": missing, "WORKER_DATABASE_URL": missing})
    try:
        time.sleep(1.0)   # a pool opened in the background tries at once, and again within a second
        assert refusals(caplog) == []
        assert app.extensions["db_pools"] == {}
        # The check can fail: the first use opens the pool, and its refusal is logged.
        db.pool(app, "app")
        deadline = time.monotonic() + 10
        while not refusals(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "error connecting in 'app'" in " ".join(refusals(caplog))
        assert set(app.extensions["db_pools"]) == {"app"}     # the others are still not opened
    finally:
        db.close_pools(app)
    assert app.extensions["db_pools"] == {}


def test_each_pool_logs_in_as_its_role(app):
    with app.app_context():
        for name, role in (("app", "exchange_app"), ("audit", "exchange_auditor"), ("worker", "exchange_worker")):
            with db.pool(app, name).connection() as conn:
                assert conn.execute("select current_user as r").fetchone()["r"] == role
            assert db.pool(app, name) is db.pool(app, name)   # opened once
