"""The database: connection pools and the one way Python talks to SQL.

    from webapp import db
    rows = db.call("api.get_wallet", user_id=current_user.id)
    row = db.call_one("api.transfer", user_id=…, recipient_email=…, …)

Each call is one `select * from <function>(name => value, …)`, its own
transaction (autocommit: one round trip), on a pooled connection of the `exchange_app` role, which can
execute api/admin functions and nothing else. A `BSxxx` error becomes a
`DomainError`, a value the database cannot read (SQLSTATE class 22: out of
range, not a number, NUL in a text) an `InputError` (a 422); a deadlock or
serialization failure is retried. There is no
SQL text anywhere else in the app (the audit section reads reporting views
through `audit_query`, on its own pool as `exchange_auditor`).

Code outside a request (worker jobs, the services they run, the mail
outbox) uses `worker_call(app, …)`: the worker logs in as `exchange_worker`,
the only role that may book what a provider said (a PIX paid, an order
filled, a payout made).

Each pool opens the first time it is used, never when the app is created:
`flask db upgrade` and `seed-demo` build the app too, on a database where the
roles the pools log in as may not exist yet.
"""
from __future__ import annotations

import functools
import logging
import re
import threading
import time

import psycopg
from flask import current_app
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from .errors import DomainError, InputError, is_domain_sqlstate, is_input_sqlstate

log = logging.getLogger(__name__)

FUNCTION_NAME = re.compile(r"^(api|admin)\.[a-z_][a-z0-9_]*$")
VIEW_NAME = re.compile(r"^reporting\.[a-z_][a-z0-9_]*$")
RETRY_SQLSTATES = {"40001", "40P01"}
INT4 = 2 ** 31


def _argument(value):
    """An integer beyond int4 goes as untyped text: PostgreSQL reads it as the parameter's type and
    answers 22003 when it does not fit, instead of finding no function for an int8/numeric argument."""
    if isinstance(value, int) and not isinstance(value, bool) and not -INT4 <= value < INT4:
        return str(value)
    return value


def make_pool(conninfo: str, name: str, max_size: int = 10) -> ConnectionPool:
    """A closed pool: `pool()` opens it on first use."""
    # Autocommit: a call is one statement, so it is its own transaction, in one
    # round trip (an explicit BEGIN/COMMIT around it cost two more per call).
    return ConnectionPool(conninfo, name=name, min_size=1, max_size=max_size, open=False,
                          # prepare_threshold=None: no server-side prepared statements,
                          # so the pools work through PgBouncer in transaction mode
                          # (a statement prepared on one server connection is unknown on the next).
                          kwargs={"row_factory": dict_row, "autocommit": True, "prepare_threshold": None,
                                  "application_name": f"bs-market-{name}"})


# name -> (the setting with its URL, the setting with its size or the size)
POOLS = {"app": ("APP_DATABASE_URL", "DB_POOL_MAX"),       # exchange_app: the web
         "audit": ("AUDIT_DATABASE_URL", 4),              # exchange_auditor: /audit
         "worker": ("WORKER_DATABASE_URL", 4)}            # exchange_worker: the jobs

_pool_lock = threading.Lock()


def init_app(app):
    """Check the database settings. No connection is made here: each pool opens on first use (`pool`)."""
    if not app.config.get("APP_DATABASE_URL"):
        raise RuntimeError("DATABASE_URL is not set: run `make run`, or export DATABASE_URL")
    app.extensions["db_pools"] = {}


def pool(app, name: str) -> ConnectionPool:
    """The pool `name` of POOLS, created and opened the first time it is asked for (closed with the process)."""
    pools = app.extensions["db_pools"]
    found = pools.get(name)
    if found is None:
        with _pool_lock:
            found = pools.get(name)
            if found is None:
                url_setting, size = POOLS[name]
                if not app.config.get(url_setting):
                    raise RuntimeError(f"{url_setting} is not set")
                max_size = app.config[size] if isinstance(size, str) else size
                found = make_pool(app.config[url_setting], name, max_size)
                found.open(wait=False)
                pools[name] = found
    return found


def close_pools(app) -> None:
    pools = app.extensions.get("db_pools", {})
    while pools:
        pools.popitem()[1].close()


def worker_call(app, function: str, **kwargs) -> list[dict]:
    """Call a function as exchange_worker: the one way code outside a request reaches SQL."""
    return call_with(pool(app, "worker"), function, kwargs)


# A step-up code refused inside an exit rolls back with it; SQL names the
# failure in DETAIL so it is counted afterwards (sql/security.sql).
TOTP_FAILED = re.compile(r"^totp_failed:(\d+):(.*)$")


def _note_totp_failure(connections: ConnectionPool, detail: str | None) -> None:
    match = TOTP_FAILED.match(detail or "")
    if match:
        try:
            with connections.connection() as conn, conn.transaction():
                conn.execute("select api.record_twofactor_failure(%s, %s)", (int(match.group(1)), match.group(2)))
        except psycopg.Error:
            log.exception("could not count a refused 2FA code")


def _translate(exc: psycopg.Error) -> Exception:
    diag = exc.diag
    if is_domain_sqlstate(diag.sqlstate):
        return DomainError(diag.sqlstate, diag.message_primary or str(exc), diag.column_name, diag.message_hint)
    if is_input_sqlstate(diag.sqlstate):
        log.warning("input refused by the database (%s): %s", diag.sqlstate, diag.message_primary)
        return InputError(diag.sqlstate, diag.column_name)
    if isinstance(exc, psycopg.DataError) and not diag.sqlstate:
        # Refused by psycopg before sending (a NUL in a text): nothing reached the database.
        log.warning("input refused by psycopg: %s", exc)
        return InputError("22000")
    return exc


@functools.lru_cache(maxsize=1024)
def _call_query(function: str, names: tuple[str, ...]) -> str:
    """`select * from "api"."f"("a" => %(a)s, …)`: composed once per function and argument names."""
    if not FUNCTION_NAME.match(function):
        raise ValueError(f"not an api/admin function: {function!r}")
    schema, name = function.split(".")
    args = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in names)
    return sql.SQL("select * from {}.{}({})").format(sql.Identifier(schema), sql.Identifier(name), args).as_string()


def call_with(connections: ConnectionPool, function: str, kwargs: dict, retries: int = 3) -> list[dict]:
    """Run one SQL function with named arguments in its own transaction."""
    query = _call_query(function, tuple(kwargs))
    kwargs = {key: _argument(value) for key, value in kwargs.items()}
    for attempt in range(retries + 1):
        try:
            with connections.connection() as conn:
                return conn.execute(query, kwargs).fetchall()   # one statement: atomic on its own
        except psycopg.Error as exc:
            if exc.diag.sqlstate in RETRY_SQLSTATES and attempt < retries:
                time.sleep(0.01 * (attempt + 1))
                continue
            _note_totp_failure(connections, exc.diag.message_detail)
            raise _translate(exc) from exc
    raise AssertionError("unreachable")


def call(function: str, **kwargs) -> list[dict]:
    """Call an api.*/admin.* function as exchange_app; rows as dicts."""
    return call_with(pool(current_app, "app"), function, kwargs)


def call_one(function: str, **kwargs) -> dict | None:
    rows = call(function, **kwargs)
    return rows[0] if rows else None


class AuditQueryError(ValueError):
    """A filter value the view's column cannot take (e.g. letters for an id): a 400, not a 500."""


def _audit_select(view: str, columns: sql.Composable, filters: dict | None) -> tuple[sql.Composed, dict]:
    if not VIEW_NAME.match(view):
        raise ValueError(f"not a reporting view: {view!r}")
    schema, name = view.split(".")
    query = sql.SQL("select {} from {}.{}").format(columns, sql.Identifier(schema), sql.Identifier(name))
    params: dict = {}
    if filters:
        # Identifiers are quoted and values are parameters; the caller
        # whitelists the column names against audit_columns().
        keys = {column: f"f{i}" for i, column in enumerate(filters)}
        query += sql.SQL(" where ") + sql.SQL(" and ").join(
            sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(key)) for column, key in keys.items())
        params.update({keys[column]: value for column, value in filters.items()})
    return query, params


def _audit_run(run):
    """Run `run(conn)` on the auditor pool, read-only."""
    try:
        with pool(current_app, "audit").connection() as conn:
            conn.read_only = True
            with conn.transaction():
                return run(conn)
    except psycopg.errors.DataError as exc:
        raise AuditQueryError(exc.diag.message_primary or str(exc)) from exc


def audit_query(view: str, order_by: str | None = None, descending: bool = False,
                limit: int = 50, offset: int = 0, filters: dict | None = None) -> list[dict]:
    """Read a reporting view as exchange_auditor (cannot write, even by a bug)."""
    query, params = _audit_select(view, sql.SQL("*"), filters)
    if order_by:
        query += sql.SQL(" order by {} {} nulls last").format(sql.Identifier(order_by),
                                                              sql.SQL("desc" if descending else "asc"))
    query += sql.SQL(" limit {} offset {}").format(sql.Literal(int(limit)), sql.Literal(int(offset)))
    return _audit_run(lambda conn: conn.execute(query, params).fetchall())


def audit_columns(view: str) -> list[str]:
    """The column names of a reporting view (`select * … limit 0`: the auditor cannot read the catalog tables)."""
    query, _ = _audit_select(view, sql.SQL("*"), None)
    query += sql.SQL(" limit 0")

    def run(conn):
        cursor = conn.execute(query)
        return [column.name for column in cursor.description]
    return _audit_run(run)


def audit_count(view: str, filters: dict | None = None) -> int:
    """How many rows a reporting view has (with the same equality filters as audit_query)."""
    query, params = _audit_select(view, sql.SQL("count(*) as n"), filters)
    return _audit_run(lambda conn: conn.execute(query, params).fetchone()["n"])


def audit_stream(view: str, order_by: str | None = None, descending: bool = False,
                 filters: dict | None = None, batch: int = 1000):
    """Yield the column names, then every row (a tuple) of a reporting view, through a server-side cursor.

    For CSV export: memory stays flat however large the view. The connection
    is held (read-only, as exchange_auditor) until the generator is exhausted or closed.
    """
    query, params = _audit_select(view, sql.SQL("*"), filters)
    if order_by:
        query += sql.SQL(" order by {} {} nulls last").format(sql.Identifier(order_by),
                                                              sql.SQL("desc" if descending else "asc"))
    with pool(current_app, "audit").connection() as conn:
        conn.read_only = True
        with conn.transaction():
            with conn.cursor(name="audit_export", row_factory=tuple_row) as cursor:
                cursor.itersize = batch
                try:
                    cursor.execute(query, params)
                except psycopg.errors.DataError as exc:
                    raise AuditQueryError(exc.diag.message_primary or str(exc)) from exc
                yield [column.name for column in cursor.description]
                yield from cursor
