"""A private PostgreSQL 15 cluster for development and tests.

`make run` and `make test` use this when DATABASE_URL is not set: the data
directory and the socket live in an ignored folder (`.local/pg`) and the
server listens on its own port on 127.0.0.1, so nothing on the machine is
touched. PostgreSQL refuses to run as root, so when we are root the server
runs as the unprivileged `postgres` user (created if missing); in that case
the data directory must be reachable by that user, and a checkout inside a
root-only home directory keeps its cluster under the system temp directory.

    python -m devserver.cluster start    # init if needed, start, print the owner URL
    python -m devserver.cluster stop
    python -m devserver.cluster url
    python -m devserver.cluster psql     # psql on it as the owner
    python -m devserver.cluster backup   # `make backup`: pg_basebackup into <base>/backups/<UTC time>
    TARGET_TIME='2026-12-02 17:40:00+00' python -m devserver.cluster restore
                                         # `make restore`: that backup + the WAL archive, replayed up to
                                         # TARGET_TIME into a new data directory, started and promoted

WAL archiving is on (docs/RELIABILITY.md): every finished WAL segment is copied into `<base>/wal-archive`
(archive_timeout bounds how old the newest unarchived change can be); a base backup plus that archive
restores the cluster to any moment since the backup.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 54329
DB_NAME = "bsmarket"
SUPERUSER = "postgres"


def pg_bindir() -> Path:
    """Where initdb, pg_ctl and postgres live (pg_config --bindir)."""
    for candidate in (os.environ.get("PG_BINDIR"),):
        if candidate:
            return Path(candidate)
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    except (OSError, subprocess.CalledProcessError):
        pass
    for version in ("15", "16", "17"):
        path = Path(f"/usr/lib/postgresql/{version}/bin")
        if (path / "initdb").exists():
            return path
    raise SystemExit("PostgreSQL binaries not found: install postgresql-15 or set PG_BINDIR")


def _is_root() -> bool:
    return os.geteuid() == 0


def _run_as() -> list[str]:
    """Prefix that runs a server command as an unprivileged user when we are root."""
    if not _is_root():
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--"]


def _reachable_by_postgres(path: Path) -> bool:
    """True if every parent of `path` can be traversed by the postgres user."""
    if not _is_root():
        return True
    probe = path
    while not probe.exists():
        probe = probe.parent
    result = subprocess.run(_run_as() + ["test", "-x", str(probe)], capture_output=True)
    return result.returncode == 0


def default_base() -> Path:
    """`.local/pg` in the project, or a temp folder when postgres cannot reach it."""
    base = PROJECT / ".local" / "pg"
    if _reachable_by_postgres(PROJECT):
        return base
    digest = hashlib.sha1(str(PROJECT).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"bs-market-{digest}" / "pg"


class Cluster:
    """One PostgreSQL cluster: data directory, socket directory and port."""

    def __init__(self, base: Path | None = None, port: int | None = None, archive: bool | None = None):
        # WAL archiving: on for the `make run` cluster (the default base), off for throwaway ones unless asked
        self.archive = (base is None) if archive is None else archive
        self.base = Path(base) if base else default_base()
        self.datadir = self.base / "data"
        self.sockdir = self.base / "run"
        self.logfile = self.base / "server.log"
        self.port = port or int(os.environ.get("PGPORT_PRIVATE", DEFAULT_PORT))
        self.bindir = pg_bindir()
        self.archive_dir = self.base / "wal-archive"
        self.backups_dir = self.base / "backups"

    # -- helpers ---------------------------------------------------------
    def _server_cmd(self, *args: str, check=True, capture=True):
        cmd = _run_as() + [str(self.bindir / args[0]), *args[1:]]
        return subprocess.run(cmd, check=check, capture_output=capture, text=True)

    def _prepare_dirs(self):
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            pg = pwd.getpwnam("postgres")
            for path in (self.base, self.sockdir):
                os.chown(path, pg.pw_uid, pg.pw_gid)
            if self.datadir.exists():
                os.chown(self.datadir, pg.pw_uid, pg.pw_gid)
            # the postgres user needs to traverse the parents it just created
            for parent in list(self.base.parents)[:3]:
                if parent.exists() and str(parent).startswith(tempfile.gettempdir()):
                    parent.chmod(parent.stat().st_mode | 0o711)

    def url(self, dbname: str = DB_NAME, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    # -- lifecycle -------------------------------------------------------
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized():
            return False
        result = self._server_cmd("pg_ctl", "status", "-D", str(self.datadir), check=False)
        return result.returncode == 0

    def init(self):
        self._prepare_dirs()
        self._server_cmd("initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust",
                         "--encoding=UTF8", "--locale=C.UTF-8")
        # A private cluster: loopback only, its own socket folder, tuned for a
        # small machine running many short transactions.
        settings = f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.sockdir}'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
log_min_messages = warning
log_min_error_statement = panic
# two-phase commit for the cross-shard transfer lab (docs/SCALING.md)
max_prepared_transactions = 20
"""
        with open(self.datadir / "postgresql.conf", "a") as fh:
            fh.write(settings)
        if self.archive:
            self.enable_archiving()

    def archiving_settings(self, archive_dir: Path) -> str:
        """WAL archiving into `archive_dir` (never overwriting a segment already there)."""
        return f"""
# WAL archiving (make backup / make restore, docs/RELIABILITY.md)
wal_level = replica
archive_mode = on
archive_command = 'test ! -f {archive_dir}/%f && cp %p {archive_dir}/%f'
archive_timeout = 60
"""

    def enable_archiving(self):
        """Turn WAL archiving on (a cluster made before it existed gets it at its next start)."""
        conf = self.datadir / "postgresql.conf"
        self._own_dir(self.archive_dir)
        if "archive_mode = on" in conf.read_text():
            return
        with open(conf, "a") as fh:
            fh.write(self.archiving_settings(self.archive_dir))

    def _own_dir(self, path: Path):
        """A directory the server user owns (created if missing)."""
        path.mkdir(parents=True, exist_ok=True)
        if _is_root():
            pg = pwd.getpwnam("postgres")
            os.chown(path, pg.pw_uid, pg.pw_gid)

    def start(self, wait_seconds: float = 30):
        if not self.initialized():
            self.init()
        self._prepare_dirs()
        if self.archive and not self.running():
            self.enable_archiving()
        if self.running():
            return
        started = self._server_cmd("pg_ctl", "start", "-w", "-t", str(int(wait_seconds)), "-D", str(self.datadir),
                                   "-l", str(self.logfile), "-o", f"-p {self.port} -k {self.sockdir}", check=False)
        if started.returncode != 0:
            log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}: {started.stderr.strip()}\n{log}")
        deadline = time.time() + wait_seconds
        while time.time() < deadline:
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start; see {self.logfile}")

    def replicate_from(self, primary: "Cluster") -> None:
        """Make this cluster a hot standby of `primary` (streaming replication): a base backup
        (`pg_basebackup -R`, as the unprivileged user when we are root) on its first start; it then
        keeps replaying the primary's WAL and answers read-only queries on its own port."""
        if self.initialized():
            return
        self._prepare_dirs()
        self._server_cmd("pg_basebackup", "-D", str(self.datadir), "-h", "127.0.0.1", "-p", str(primary.port),
                         "-U", SUPERUSER, "-R", "-X", "stream", "-c", "fast")
        # The copied postgresql.conf names the primary's port and socket folder: this one's win.
        with open(self.datadir / "postgresql.conf", "a") as fh:
            fh.write(f"\n# hot standby of port {primary.port}\nport = {self.port}\n"
                     f"unix_socket_directories = '{self.sockdir}'\nhot_standby = on\n")

    def stop(self, mode: str = "fast"):
        if self.running():
            self._server_cmd("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.datadir), check=False)

    def ensure_database(self, dbname: str = DB_NAME):
        import psycopg
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
            if not exists:
                conn.execute(f'create database "{dbname}"')

    # -- backups -----------------------------------------------------------
    def backup(self, dest: Path | None = None) -> Path:
        """`make backup`: a base backup (pg_basebackup, as the server's unprivileged user, WAL streamed
        into it) in `<base>/backups/<UTC time>`; with the WAL archive it restores to any later moment."""
        self._own_dir(self.backups_dir)
        dest = dest or self.backups_dir / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self._server_cmd("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
                         "-D", str(dest), "-X", "stream", "-c", "fast", "--no-password")
        return dest

    def latest_backup(self, before: str | None = None) -> Path:
        """The newest backup (named by its UTC start time), or the newest one started before `before`."""
        backups = sorted(p for p in self.backups_dir.glob("*T*Z") if (p / "PG_VERSION").exists()) \
            if self.backups_dir.exists() else []
        if before:
            limit = _utc(before).strftime("%Y%m%dT%H%M%SZ")
            backups = [p for p in backups if p.name <= limit]
        if not backups:
            raise SystemExit(f"no base backup in {self.backups_dir}" + (f" before {before}" if before else "")
                             + ": run `make backup` first")
        return backups[-1]

    def restore(self, backup: Path, target: "Cluster", target_time: str | None = None,
                wait_seconds: float = 120) -> "Cluster":
        """Restore `backup` into `target` (a new, empty cluster base): copy it, replay this cluster's WAL
        archive up to `target_time` (recovery_target_time; None: to the end of the archive), start it
        and promote it. The restored server archives into its own `wal-archive`, never into ours."""
        if target.initialized():
            raise SystemExit(f"{target.datadir} already holds a cluster: restore into a new directory")
        target._prepare_dirs()
        target._own_dir(target.archive_dir)
        as_server = lambda *cmd: subprocess.run(_run_as() + list(cmd), check=True)  # noqa: E731
        as_server("cp", "-a", str(backup), str(target.datadir))
        as_server("chmod", "700", str(target.datadir))
        recovery = f"""
# restored by devserver.cluster from {backup}
port = {target.port}
unix_socket_directories = '{target.sockdir}'
restore_command = 'cp {self.archive_dir}/%f %p'
recovery_target_action = 'promote'
"""
        if target_time:
            recovery += f"recovery_target_time = '{target_time}'\n"
        recovery += target.archiving_settings(target.archive_dir)
        for name in ("postgresql.auto.conf", "recovery.signal"):
            path = target.base / f".{name}.new"
            path.write_text(recovery if name.endswith(".conf") else "")
            # append / create as the server user (the data directory is theirs, mode 0700)
            as_server("sh", "-c", f"cat {path} >> {target.datadir / name}")
            path.unlink()
        try:
            target.start(wait_seconds=wait_seconds)
        except RuntimeError as exc:
            if "recovery ended before configured recovery target" in str(exc):
                raise RuntimeError(f"the WAL archive ends before {target_time}: changes reach it when their "
                                   "segment is full or archive_timeout (60 s) passes; wait a minute (or run "
                                   "`select pg_switch_wal()` on the source) and restore again") from exc
            raise
        import psycopg
        deadline = time.time() + wait_seconds
        with psycopg.connect(target.url("postgres"), autocommit=True) as conn:
            while conn.execute("select pg_is_in_recovery()").fetchone()[0]:
                if time.time() > deadline:
                    raise RuntimeError(f"the restored cluster did not promote; see {target.logfile}")
                time.sleep(0.2)
        return target

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def _utc(moment: str) -> datetime:
    """A TARGET_TIME as PostgreSQL reads it ('2026-12-02 17:40:00+00', ISO 8601; no zone = UTC)."""
    parsed = datetime.fromisoformat(moment.strip().replace(" ", "T"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "url"
    cluster = Cluster()
    if command == "start":
        cluster.start()
        cluster.ensure_database()
        print(cluster.url())
    elif command == "stop":
        cluster.stop()
    elif command == "url":
        print(cluster.url())
    elif command == "psql":
        # `make psql`: psql as the owner on the running database (DATABASE_URL when set).
        url = os.environ.get("DATABASE_URL") or cluster.url()
        psql = shutil.which("psql") or str(cluster.bindir / "psql")
        os.execv(psql, [psql, url, *argv[2:]])
    elif command == "backup":
        print(cluster.backup())
    elif command == "restore":
        # TARGET_TIME (empty: to the end of the archive), BACKUP (default: the newest one before it),
        # RESTORE_PORT (default DEFAULT_PORT + 1): a new cluster under <base>/restores/<UTC time>.
        target_time = os.environ.get("TARGET_TIME") or None
        backup = Path(os.environ["BACKUP"]) if os.environ.get("BACKUP") else cluster.latest_backup(target_time)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = Cluster(base=cluster.base / "restores" / stamp, archive=True,
                         port=int(os.environ.get("RESTORE_PORT", DEFAULT_PORT + 1)))
        cluster.restore(backup, target, target_time)
        print(f"restored {backup.name} to {target_time or 'the end of the archive'} in {target.datadir}")
        print(target.url())
    elif command == "status":
        print("running" if cluster.running() else "stopped", cluster.datadir)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
