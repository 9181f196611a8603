"""The commands a newcomer and an operator run: db upgrade, seed-demo, worker leadership."""
import os
import subprocess
import sys
import threading
import time

import psycopg

from webapp import jobs


def flask(db_url, *args, check=True):
    env = dict(os.environ, DATABASE_URL=db_url, SECRET_KEY="test")
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], env=env,
                          capture_output=True, text=True, check=check, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_db_upgrade_twice_changes_nothing_and_seed_is_idempotent(admin_url):
    dbname = f"bsm_cli_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {dbname}")
        conn.execute(f"create database {dbname}")
    url = admin_url.rsplit("/", 1)[0] + f"/{dbname}"
    first = flask(url, "db", "upgrade")
    assert "applied migration 0001_foundation.sql" in first.stdout
    second = flask(url, "db", "upgrade")
    assert "applied migration" not in second.stdout and "sql/ unchanged" in second.stdout

    refused = flask(url, "seed-demo", check=False)             # not a development database
    assert refused.returncode != 0 and "desenvolvimento" in refused.stderr
    flask(url, "seed-demo", "--mark-development")
    out = flask(url, "seed-demo").stdout
    assert "alice@example.com" in out and "demo-pass-2026" in out
    assert "6 demo P2P offers by carla@example.com, diego@example.com" in out
    with psycopg.connect(url) as conn:
        rows = dict(conn.execute("""select currency, available from reporting.user_balances
                                    where email = 'alice@example.com'""").fetchall())
        assert str(rows["BRL"]) == "10000.00"
        # alice, bob, admin, auditor and the two demo makers with their six offers, once however often it runs
        assert conn.execute("select count(*) from core.users").fetchone()[0] == 6
        assert conn.execute("select count(*) from core.p2p_offers where status = 'active'").fetchone()[0] == 6
        assert conn.execute("select count(*) from admin.check_books()").fetchone()[0] == 0


def leader_name(db_url):
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("""select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid
                               where l.locktype = 'advisory' and l.granted
                                 and l.objid = (hashtext(%s)::bigint & 4294967295)""", (jobs.LEADER_LOCK,)).fetchall()
    return [r[0].split(":", 1)[1] for r in rows]


def test_two_workers_one_leader_and_failover(app, db_url):
    runs = []
    original = jobs.CORE_JOBS
    jobs.CORE_JOBS = [(lambda a: runs.append(time.monotonic()), 1)]
    stops = {name: threading.Event() for name in ("w1", "w2")}
    threads = [threading.Thread(target=jobs.run_worker, args=(app, stop, 0.2, name), daemon=True)
               for name, stop in stops.items()]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2)
        leaders = leader_name(db_url)
        assert len(leaders) == 1, leaders
        runs_before = len(runs)
        assert runs_before >= 1
        stops[leaders[0]].set()  # the leader stops: the other takes over
        time.sleep(2.5)
        new_leaders = leader_name(db_url)
        assert len(new_leaders) == 1 and new_leaders != leaders
        assert len(runs) > runs_before  # jobs go on under the new leader
    finally:
        for stop in stops.values():
            stop.set()
        for thread in threads:
            thread.join(timeout=10)
        jobs.CORE_JOBS = original
