"""PgBouncer in transaction mode in front of the web and the worker (issue 17, docs/SCALING.md).

The whole web suite already runs through the session's PgBouncer (tests/conftest.py routes every
test app's pools through it); these tests prove that it really does, and that what needs a session
of its own (the worker's leader lock) does not go through it.
"""
from __future__ import annotations

import subprocess
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from devserver import pgbouncer as pgbouncer_module
from webapp import db, jobs

pytestmark = pytest.mark.skipif(not pgbouncer_module.binary(), reason="pgbouncer is not installed")


@pytest.fixture
def bouncer(pgbouncer):
    if pgbouncer is None:
        pytest.skip("no session PgBouncer (TEST_PGBOUNCER=0 or an external server)")
    return pgbouncer


def show(bouncer, what: str) -> str:
    """The PgBouncer admin console (simple query protocol only: psql)."""
    return subprocess.run(["psql", "-At", "-h", "127.0.0.1", "-p", str(bouncer.port), "-U", "postgres",
                           "pgbouncer", "-c", f"show {what}"], capture_output=True, text=True, check=True).stdout


def test_the_test_apps_pools_go_through_pgbouncer_in_transaction_mode(app, bouncer, db_url, demo, owner, pg):
    for key in ("APP_DATABASE_URL", "WORKER_DATABASE_URL", "AUDIT_DATABASE_URL"):
        assert conninfo_to_dict(app.config[key])["port"] == str(bouncer.port), key
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    before = owner.execute("select balance from core.accounts where user_id = %s and currency = 'BRL' "
                           "and purpose = 'available'", (bob,)).fetchone()["balance"]
    # Many transactions over the pool's few client connections: each one a
    # transaction on whichever server connection PgBouncer hands out.
    with app.app_context():
        for i in range(30):
            db.call("api.transfer", user_id=alice, recipient_email="bob@example.com", currency="BRL",
                    amount=Decimal("1.00"), idempotency_key=f"via-bouncer-{i}")
        # a repeat (same key) still moves nothing: idempotency does not depend on the session
        replay = db.call("api.transfer", user_id=alice, recipient_email="bob@example.com", currency="BRL",
                         amount=Decimal("1.00"), idempotency_key="via-bouncer-0")
    assert replay[0]["replayed"] is True
    after = owner.execute("select balance from core.accounts where user_id = %s and currency = 'BRL' "
                          "and purpose = 'available'", (bob,)).fetchone()["balance"]
    assert after - before == Decimal("30.00")
    dbname = conninfo_to_dict(db_url)["dbname"]
    pools = [line.split("|") for line in show(bouncer, "pools").splitlines()]
    mine = {row[1]: row for row in pools if row[0] == dbname}
    assert "exchange_app" in mine, pools
    assert mine["exchange_app"][-1] == "transaction"   # pool_mode, the last column
    # the app's connections sent no session-level prepared statement (prepare_threshold=None)
    with db.pool(app, "app").connection() as conn:
        assert conn.prepare_threshold is None
    from tests.conftest import books
    books(owner)


def test_the_worker_leader_lock_is_on_a_direct_connection(app, bouncer, pg, owner):
    """A session advisory lock through PgBouncer would sit on a server connection that other clients
    get between transactions; the leader's is taken on its own connection to the server."""
    url = jobs.leader_url(app)
    assert conninfo_to_dict(url)["port"] == str(pg.port)
    leader = jobs.Leadership(url, "direct-test")
    try:
        assert leader.try_acquire()
        holder = owner.execute("select l.pid from pg_locks l where l.locktype = 'advisory' and l.granted "
                               "and l.objid = (hashtext(%s)::bigint & 4294967295)::oid",
                               (jobs.LEADER_LOCK,)).fetchone()
        # the real backend: the lock lives and dies with this connection
        assert holder["pid"] == leader.conn.info.backend_pid
        assert not jobs.Leadership(url, "second").try_acquire()
    finally:
        leader.release()
    # Through PgBouncer the client does not even know which backend holds a session lock:
    # the backend pid it is told is PgBouncer's own, not the server's.
    with psycopg.connect(app.config["WORKER_DATABASE_URL"], autocommit=True, prepare_threshold=None) as pooled:
        server_pid = pooled.execute("select pg_backend_pid()").fetchone()[0]
        assert server_pid != pooled.info.backend_pid


def test_two_workers_through_pgbouncer_elect_one_leader(app, bouncer):
    """Two workers whose jobs go through PgBouncer: exactly one leads (the lock is direct), and its
    jobs run through the bouncer."""
    ran = []
    original = jobs.CORE_JOBS
    jobs.CORE_JOBS = [(lambda a: ran.append(db.worker_call(a, "admin.check_books")), 1)]
    stops = [threading.Event(), threading.Event()]
    try:
        threads = [threading.Thread(target=jobs.run_worker, args=(app, stop, 0.2, f"w{i}"), daemon=True)
                   for i, stop in enumerate(stops)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while not ran and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ran and ran[0] == []   # the job ran, through the bouncer, and the books are healthy
        with psycopg.connect(app.config["DATABASE_URL"], autocommit=True) as conn:
            leaders = conn.execute("select count(*) from pg_locks where locktype = 'advisory' and granted "
                                   "and objid = (hashtext(%s)::bigint & 4294967295)::oid",
                                   (jobs.LEADER_LOCK,)).fetchone()[0]
        assert leaders == 1
    finally:
        jobs.CORE_JOBS = original
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(timeout=10)
