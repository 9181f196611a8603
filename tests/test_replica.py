"""Auditors on a streaming replica (issue 17, docs/SCALING.md): a hot standby of the test cluster,
a real ledger transfer on the primary, seen on the standby through the audit pages; the auditor
cannot write on either, and the standby refuses writes from anyone."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from webapp.config import role_url
from devserver.cluster import Cluster

from tests.conftest import free_port, url_for_db


@pytest.fixture(scope="module")
def cluster_pair(pg):
    """A small primary of its own (the session's test cluster holds hundreds of databases by the end
    of a run: a base backup of it takes minutes), one migrated database with the demo data, and a
    hot standby of it."""
    if pg is None:
        pytest.skip("needs private test clusters (TEST_DATABASE_ADMIN_URL is an external server)")
    from bench.two_phase import prepare_shard, start_cluster, stop_cluster
    primary = start_cluster(free_port(), "primary")
    base = Path(tempfile.mkdtemp(prefix="bsm-replica-")) / "pg"
    standby = Cluster(base=base, port=free_port())
    try:
        db_url, users = prepare_shard(primary, "replica_test")
        standby.replicate_from(primary)
        standby.start()
        yield {"primary": primary, "standby": standby, "db_url": db_url, "users": users}
    finally:
        standby.destroy()
        shutil.rmtree(base.parent, ignore_errors=True)
        stop_cluster(primary)


def replay_lag(primary_url: str, standby_url: str, timeout: float = 30.0) -> float:
    """Seconds until the standby has replayed everything the primary wrote up to now."""
    with psycopg.connect(primary_url, autocommit=True) as conn:
        target = conn.execute("select pg_current_wal_lsn()").fetchone()[0]
    started = time.monotonic()
    with psycopg.connect(standby_url, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            if conn.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
                return time.monotonic() - started
            time.sleep(0.01)
    raise AssertionError(f"the standby did not replay {target} within {timeout} s")


def test_a_transfer_on_the_primary_is_read_by_the_auditor_on_the_standby(cluster_pair):
    from webapp import create_app, db
    replica, db_url, demo = cluster_pair["standby"], cluster_pair["db_url"], cluster_pair["users"]
    dbname = db_url.rsplit("/", 1)[1]
    standby_url = url_for_db(replica.url("postgres"), dbname)
    replay_lag(db_url, replica.url("postgres"))   # the test's database exists there too
    with psycopg.connect(standby_url, autocommit=True) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is True

    alice = demo["alice@example.com"]
    web = psycopg.connect(role_url(db_url, "exchange_app"), autocommit=True, row_factory=dict_row)
    entry = web.execute("select * from api.transfer(user_id => %s, recipient_email => 'bob@example.com', "
                        "currency => 'BRL', amount => 12.34, idempotency_key => 'replica-1')",
                        (alice,)).fetchone()["entry_id"]
    web.close()
    lag = replay_lag(db_url, replica.url("postgres"))
    print(f"replay lag after a transfer: {lag * 1000:.1f} ms")

    # The reporting views, as exchange_auditor, on the standby.
    with psycopg.connect(role_url(standby_url, "exchange_auditor"), autocommit=True, row_factory=dict_row) as conn:
        legs = conn.execute("select amount from reporting.journal where entry_id = %s order by leg", (entry,)).fetchall()
        assert sorted(r["amount"] for r in legs) == [Decimal("-12.34"), Decimal("12.34")]
        assert conn.execute("select count(*) as n from reporting.trial_balance where total <> 0").fetchone()["n"] == 0

    # The audit pages, their pool on the standby (AUDIT_DATABASE_URL), the rest on the primary.
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": db_url,
                      "APP_DATABASE_URL": role_url(db_url, "exchange_app"),
                      "AUDIT_DATABASE_URL": role_url(standby_url, "exchange_auditor"),
                      "WORKER_DATABASE_URL": role_url(db_url, "exchange_worker"), "DB_POOL_MAX": 2})
    try:
        from tests.conftest import Forms
        client = app.test_client()
        response = Forms(client).post("/login", {"email": "auditor@example.com", "password": "demo-pass-2026"})
        assert response.status_code == 302
        page = client.get(f"/audit/views/journal?f_entry_id={entry}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert re.search(r"12[.,]34", html), html[:3000]
        with db.pool(app, "audit").connection() as conn:
            assert conn.execute("select pg_is_in_recovery() as r").fetchone()["r"] is True
    finally:
        db.close_pools(app)


def test_the_auditor_cannot_write_on_either_and_the_standby_refuses_writes(cluster_pair):
    replica, db_url, demo = cluster_pair["standby"], cluster_pair["db_url"], cluster_pair["users"]
    dbname = db_url.rsplit("/", 1)[1]
    standby_url = url_for_db(replica.url("postgres"), dbname)
    replay_lag(db_url, replica.url("postgres"))
    alice = demo["alice@example.com"]
    writes = [
        "insert into core.entries (kind) values ('forged')",
        "update core.accounts set balance = balance + 1",
        "delete from core.idempotency_keys",
        f"select * from admin.adjust_balance({alice}, {alice}, 'BRL', 1.00, 'forged credit', 'k1')",
        f"select * from api.transfer({alice}, 'bob@example.com', 'BRL', 1.00, 'k2')",
        "create table reporting.forged (x int)",
    ]
    for url in (db_url, standby_url):
        with psycopg.connect(role_url(url, "exchange_auditor"), autocommit=True) as conn:
            for statement in writes:
                with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
                    conn.execute(statement)
    # On the standby nobody writes, not even the owner (a superuser).
    with psycopg.connect(standby_url, autocommit=True) as conn:
        for statement in ("create table core.forged (x int)",
                          "update core.accounts set balance = balance + 1",
                          "select nextval('core.entries_id_seq')"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute(statement)
    # and the books on the primary are untouched
    with psycopg.connect(db_url, autocommit=True) as conn:
        from tests.conftest import books
        books(conn)
    assert os.path.exists(replica.datadir / "standby.signal")
