"""PgBouncer in transaction mode in front of a PostgreSQL server (DESIGN.md §7, docs/SCALING.md).

`USE_PGBOUNCER=1 make run` and the test suite start one (Debian's `pgbouncer`
package); the web (exchange_app), the worker's jobs (exchange_worker) and the
audit pool connect through it, while migrations, `make psql` and the worker's
leader lock (a session advisory lock: DIRECT_DATABASE_URL) go straight to the
server.

Transaction mode hands a server connection to a client for one transaction
only, so nothing may rely on session state: psycopg runs with
`prepare_threshold=None` (no server-side prepared statements, webapp/db.py),
settings are `SET LOCAL` or function `SET` clauses, advisory locks are
`pg_advisory_xact_lock` (except the leader's, on its direct connection), and
nothing LISTENs through it (pg_notify is fine: it is sent at commit).

    python -m devserver.pgbouncer --target-port 54329 --port 6432   # in the foreground, as make run does
"""
from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .cluster import _is_root, _run_as

ROLES = ("exchange_app", "exchange_worker", "exchange_auditor", "exchange_admin", "postgres")
INSTALL_HINT = ("pgbouncer not found: install Debian's package (`apt-get install -y pgbouncer`; "
                "then `service pgbouncer stop`: this project starts its own), or run without USE_PGBOUNCER")


def binary() -> str | None:
    return shutil.which("pgbouncer") or (os.path.exists("/usr/sbin/pgbouncer") and "/usr/sbin/pgbouncer") or None


def via(url: str, port: int, host: str = "127.0.0.1") -> str:
    """The same role and database as `url`, through the bouncer listening on host:port."""
    params = conninfo_to_dict(url)
    params.update(host=host, port=str(port))
    return make_conninfo(**params)


class Bouncer:
    """One pgbouncer process: a config folder, a port, the server it pools."""

    def __init__(self, base: Path, port: int, target_host: str, target_port: int,
                 passwords: dict[str, str] | None = None, pool_size: int = 20, server_idle_timeout: int = 60):
        self.base = Path(base)
        self.port = port
        self.target_host, self.target_port = target_host, target_port
        self.passwords = passwords or {}
        self.pool_size = pool_size
        self.server_idle_timeout = server_idle_timeout
        self.config = self.base / "pgbouncer.ini"
        self.logfile = self.base / "pgbouncer.log"
        self.process: subprocess.Popen | None = None

    def write_config(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        # Development clusters trust loopback: pgbouncer only needs the role
        # names. With passwords (roles' URLs that carry one), clients prove them
        # with SCRAM and pgbouncer logs in to the server with the same ones.
        users = "".join(f'"{role}" "{self.passwords.get(role, "")}"\n'
                        for role in sorted(set(ROLES) | set(self.passwords)))
        (self.base / "userlist.txt").write_text(users)
        auth = "scram-sha-256" if self.passwords else "trust"
        self.config.write_text(f"""\
; written by devserver/pgbouncer.py
[databases]
; every database of the server, pooled per (database, role)
* = host={self.target_host} port={self.target_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = {auth}
auth_file = {self.base / "userlist.txt"}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = {self.pool_size}
server_idle_timeout = {self.server_idle_timeout}
autodb_idle_timeout = {self.server_idle_timeout}
ignore_startup_parameters = extra_float_digits
logfile = {self.logfile}
admin_users = postgres
""")
        if _is_root():
            pg = pwd.getpwnam("postgres")
            for path in (self.base, self.config, self.base / "userlist.txt"):
                os.chown(path, pg.pw_uid, pg.pw_gid)
            (self.base / "userlist.txt").chmod(0o600)
            if self.logfile.exists():
                os.chown(self.logfile, pg.pw_uid, pg.pw_gid)
        return self.config

    def command(self) -> list[str]:
        """pgbouncer in the foreground (it refuses to run as root: as postgres then)."""
        path = binary()
        if not path:
            raise SystemExit(INSTALL_HINT)
        self.write_config()
        return _run_as() + [path, str(self.config)]

    def wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
        raise RuntimeError(f"pgbouncer did not start on port {self.port}\n{log}")

    def start(self) -> "Bouncer":
        self.process = subprocess.Popen(self.command(), start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)   # the group: runuser and pgbouncer
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        self.process = None

    def url(self, url: str) -> str:
        return via(url, self.port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="folder for the config, user list and log")
    parser.add_argument("--port", type=int, default=6432)
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--target-port", type=int, required=True)
    args = parser.parse_args(argv)
    bouncer = Bouncer(Path(args.base), args.port, args.target_host, args.target_port)
    cmd = bouncer.command()
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
