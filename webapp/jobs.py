"""The worker: APScheduler jobs, with exactly one leader across processes.

`flask --app wsgi worker` runs `run_worker`. A worker becomes the leader by
taking a PostgreSQL session advisory lock on a dedicated, direct connection
(`leader_url`: never through PgBouncer); the
others wait on standby and take over within seconds if the leader dies (its
connection closes and the lock with it). Only the leader runs jobs.

Jobs are plain functions `job(app)`; each domain lists its own in a `JOBS`
list in `webapp/<domain>/tasks.py` as (function, seconds between runs), and
`collect_jobs` names every one of those lists. Every job calls SQL functions through
`db.worker_call` (as exchange_worker, the role that may book what providers
said), one transaction each, and never holds a transaction open across an
external call.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from datetime import datetime, timezone

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler

from .audit import tasks as audit
from .auth import tasks as auth
from .crypto import tasks as crypto
from .deposits import tasks as deposits
from .market import tasks as market
from .notifications import tasks as notifications
from .p2p import tasks as p2p
from .privacy import tasks as privacy
from .withdrawals import tasks as withdrawals

log = logging.getLogger("bs-market.worker")

LEADER_LOCK = "bs-market:worker-leader"

# Every job belongs to a domain (the books check is in webapp/audit/tasks.py);
# tests add jobs of their own here.
CORE_JOBS: list = []


def collect_jobs() -> list:
    """Every job the leader runs: (function, seconds between runs)."""
    return [*CORE_JOBS, *deposits.JOBS, *withdrawals.JOBS, *crypto.JOBS, *market.JOBS, *p2p.JOBS, *audit.JOBS,
            *notifications.JOBS, *auth.JOBS, *privacy.JOBS]


def leader_url(app) -> str:
    """Where the leader lock is taken: a session advisory lock needs its own server session, so never
    through PgBouncer in transaction mode (which hands the server connection to others between
    transactions). DIRECT_DATABASE_URL, else DATABASE_URL's server as exchange_worker, else the worker's URL."""
    from .config import role_url
    if app.config.get("DIRECT_DATABASE_URL"):
        return app.config["DIRECT_DATABASE_URL"]
    if app.config.get("DATABASE_URL"):
        return role_url(app.config["DATABASE_URL"], "exchange_worker")
    return app.config["WORKER_DATABASE_URL"]


class Leadership:
    """A session advisory lock held on its own connection."""

    def __init__(self, conninfo: str, name: str):
        self.conninfo = conninfo
        self.name = name
        self.conn = None

    def try_acquire(self) -> bool:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.conninfo, autocommit=True,
                                            application_name=f"bs-market-worker:{self.name}")
            return self.conn.execute("select pg_try_advisory_lock(hashtext(%s))", (LEADER_LOCK,)).fetchone()[0]
        except psycopg.Error as exc:
            log.warning("leader election: %s", exc)
            self.conn = None
            return False

    def still_held(self) -> bool:
        try:
            self.conn.execute("select 1")
            return True
        except (psycopg.Error, AttributeError):
            return False

    def release(self):
        if self.conn is not None and not self.conn.closed:
            self.conn.close()


def run_job(app, function):
    def runner():
        with app.app_context():
            try:
                function(app)
            except Exception:  # a job must never stop the scheduler
                log.exception("job %s failed", function.__name__)
    runner.__name__ = function.__name__
    return runner


def run_worker(app, stop: threading.Event | None = None, poll_seconds: float = 2.0, name: str | None = None):
    """Wait to lead, then run the jobs until stopped or the lock is lost.

    The leader's connection is named `bs-market-worker:<name>` (host and pid by
    default), so `pg_stat_activity` shows which worker leads.
    """
    stop = stop or threading.Event()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per run of a 3 s job is noise
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    leadership = Leadership(leader_url(app), name)
    jobs = collect_jobs()
    log.info("worker started with %d jobs; waiting to lead", len(jobs))
    try:
        while not stop.is_set():
            if not leadership.try_acquire():
                stop.wait(poll_seconds)
                continue
            log.info("worker %s is the leader", name)
            scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
            for function, seconds in jobs:
                # first run right away, then every `seconds`
                scheduler.add_job(run_job(app, function), "interval", seconds=seconds, id=function.__name__,
                                  name=function.__name__,
                                  next_run_time=datetime.now(timezone.utc))
            scheduler.start()
            while not stop.is_set() and leadership.still_held():
                stop.wait(poll_seconds)
            scheduler.shutdown(wait=True)
            if not stop.is_set():
                log.warning("lost the leader lock; back to standby")
    finally:
        leadership.release()
    log.info("worker stopped")
