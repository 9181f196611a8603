"""Apply versioned migrations, then the repeatable SQL of sql/.

`flask --app wsgi db upgrade` runs `upgrade(database_url)`:

1. each `migrations/NNNN_name.sql` not yet recorded in
   `core.schema_migrations` is applied in its own transaction and recorded;
2. the files listed in `sql/manifest.txt` are applied, in that order, in one
   transaction, unless their combined hash is the one recorded last time —
   so a second run changes nothing.

Both run as the database owner (the role in DATABASE_URL).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
SQL = ROOT / "sql"
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files() -> list[Path]:
    files = sorted(p for p in MIGRATIONS.glob("*.sql") if MIGRATION_NAME.match(p.name))
    numbers = [p.name[:4] for p in files]
    if len(numbers) != len(set(numbers)):
        raise SystemExit(f"two migrations share a number: {numbers}")
    return files


def sql_files() -> list[Path]:
    names = [line.strip() for line in (SQL / "manifest.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return [SQL / name for name in names]


def sql_hash() -> str:
    digest = hashlib.sha256()
    for path in sql_files():
        digest.update(path.relative_to(SQL).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def upgrade(database_url: str, log=print) -> dict:
    """Bring the database at `database_url` up to date. Returns what was done."""
    done = {"migrations": [], "sql": False}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        # One upgrade at a time (two `release` processes, or a test run).
        conn.execute("select pg_advisory_lock(hashtext('bs-market:upgrade'))")
        try:
            with conn.transaction():
                conn.execute("create schema if not exists core")
                conn.execute("""create table if not exists core.schema_migrations (
                                  version text primary key,
                                  applied_at timestamptz not null default now())""")
            applied = {row[0] for row in conn.execute("select version from core.schema_migrations")}
            for path in migration_files():
                if path.name in applied:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("insert into core.schema_migrations (version) values (%s)", (path.name,))
                done["migrations"].append(path.name)
                log(f"applied migration {path.name}")

            current = sql_hash()
            marker = f"sql:{current}"
            last = conn.execute("select version from core.schema_migrations where version like 'sql:%' "
                                "order by applied_at desc limit 1").fetchone()
            if last is None or last[0] != marker or done["migrations"]:
                with conn.transaction():
                    for path in sql_files():
                        conn.execute(path.read_text())
                    conn.execute("delete from core.schema_migrations where version like 'sql:%'")
                    conn.execute("insert into core.schema_migrations (version) values (%s)", (marker,))
                done["sql"] = True
                log(f"applied sql/ ({len(sql_files())} files, {current[:12]})")
            else:
                log("sql/ unchanged")
        finally:
            conn.execute("select pg_advisory_unlock(hashtext('bs-market:upgrade'))")
    return done
