"""Database plumbing: one engine per service, its own schema (PostgreSQL) or file (SQLite)."""
from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timezone
from functools import lru_cache

from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, DateTime, Engine, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from shared import clock


class UTCDateTime(TypeDecorator):
    """Instants stored in UTC; always read back timezone-aware (SQLite forgets offsets)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = clock.to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def make_engine(url: str, schema: str, pool_size: int = 5, search_path: str = "option") -> Engine:
    """search_path: "option" sends `-c search_path=<schema>` when connecting; "role" sends nothing and
    relies on the role's own setting (PgBouncer in transaction mode keeps no startup option), see
    `_use_role_search_path`.

    hide_parameters: a failing statement's error (logged, dead-lettered) names the SQL but never
    its values, which can be cancel tokens or e-mail addresses."""
    if url.startswith("sqlite"):
        _private_file(make_url(url).database)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=pool_size, max_overflow=pool_size * 2, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # pysqlite's own transaction handling is off; we BEGIN IMMEDIATE ourselves so that
            # every transaction is a serialised writer (SQLite has no row locks).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    by_role = search_path == "role"
    engine = create_engine(
        url,
        # Through a transaction pooler the next transaction may run on another server connection,
        # which has not prepared psycopg's statements: no server-side prepared statements there.
        connect_args={"prepare_threshold": None} if by_role else {"options": f"-c search_path={schema}"},
        hide_parameters=True,  # a failed statement's message reaches logs and dead-letter headers
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_recycle=1800,
    )
    _ping_when_idle(engine)
    if by_role:
        _use_role_search_path(engine, schema)
        return engine
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return engine


class RoleSearchPathError(RuntimeError):
    """A service's role does not land in its schema: its connections would read another one."""


def _use_role_search_path(engine: Engine, schema: str) -> None:
    """The service's role owns its schema and has it as its search_path; set both when missing.

    A role may change its own defaults, and with CREATE on the database make a schema it owns, so no
    administrator step is needed beyond creating the role. The role default applies to sessions opened
    afterwards: the check runs on a new connection, and fails (rather than write into the wrong schema)
    where a pooler still holds server connections opened before the setting.
    """
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION CURRENT_USER'))
        if _schemas_searched(conn) != [schema]:
            conn.execute(text(f'ALTER ROLE CURRENT_USER SET search_path = "{schema}"'))
    engine.dispose()
    with engine.connect() as conn:
        searched = _schemas_searched(conn)
        user = conn.execute(text("SELECT current_user")).scalar_one()
    if searched != [schema]:
        raise RoleSearchPathError(
            f"role {user} searches {searched}, not [{schema!r}]: run ALTER ROLE \"{user}\" SET search_path = "
            f"\"{schema}\" and reconnect the pooler's server connections (PgBouncer RECONNECT)")


def _schemas_searched(conn) -> list[str]:
    return list(conn.execute(text("SELECT current_schemas(false)")).scalar_one())


def _private_file(path: str | None) -> None:
    """An SQLite database holds events with cancel tokens: mode 0600 (its -wal and -shm files
    inherit the database file's mode)."""
    if not path or path == ":memory:" or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


PING_AFTER_IDLE_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle in the pool.

    A ping on every checkout is one more round trip per transaction, and on two cores the round
    trips are the cost. A connection checked in moments ago is as good as the ping would prove;
    one that sat idle is pinged, and a dead one is replaced before anyone uses it. A connection
    the server dropped mid-burst fails its statement instead: SQLAlchemy then invalidates the
    pool, and `is_disconnect` tells a caller the transaction can be retried.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy):
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS:
            try:
                engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:  # whatever the driver raises for a dead connection
                raise DisconnectionError(str(exc)) from exc


def driver_row(connection: Connection, statement: str, parameters: dict):
    """The one row of the driver's own SQL (psycopg's parameters, PostgreSQL only), run on the
    connection's DBAPI connection inside its transaction but without SQLAlchemy's result machinery,
    which builds a textual statement's result metadata from the cursor's description on every run:
    ~15 % of a reservation's instructions (bench/reserve_cpu.py --instructions). Otherwise as
    `exec_driver_sql`: a connection not yet in a transaction begins one (SQLAlchemy's autobegin),
    and a failure goes through SQLAlchemy's own handling of a failed execution — its exception, the
    values hidden as the engine hides them, the `handle_error` hooks, and on a disconnect this
    connection and every other one the pool holds invalidated (a restart drops them all, and
    `_ping_when_idle` does not ping one checked in moments ago). That handler is private to
    SQLAlchemy: tests/integration/test_reservation_at_once.py pins each of these behaviours."""
    return _on_driver_cursor(connection, statement, parameters, lambda cursor: cursor.fetchone())


def driver_rows(connection: Connection, statement: str, parameters: dict) -> list:
    """Every row of the driver's own SQL, as driver_row runs it."""
    return _on_driver_cursor(connection, statement, parameters, lambda cursor: cursor.fetchall())


def _on_driver_cursor(connection: Connection, statement: str, parameters: dict, fetch):
    if not connection.in_transaction():
        connection.begin()
    try:
        with connection.connection.dbapi_connection.cursor(row_factory=namedtuple_row) as cursor:
            cursor.execute(statement, parameters)
            return fetch(cursor)
    except BaseException as exc:
        if isinstance(exc, Exception) and not isinstance(exc, connection.dialect.loaded_dbapi.Error):
            raise  # not the database's (a value the driver cannot send): itself, as exec_driver_sql gives it
        # the database's, or an interrupt (SQLAlchemy invalidates a connection left mid-statement)
        connection._handle_dbapi_exception(exc, statement, parameters, None, None)


def driver_sql(statement, dialect) -> tuple[str, dict]:
    """A Core statement compiled once for the driver's cursor (driver_rows): its SQL, and the values
    of the literals it binds, to which a caller adds its own named parameters. Every bound value
    must be a plain one (no IN list expanded at execution), and every value goes to the driver as
    it is: no type's bind processing runs (UTCDateTime's included), so an instant must already be
    timezone-aware, as clock.now() is."""
    compiled = statement.compile(dialect=dialect)
    if compiled.post_compile_params:
        raise ValueError("a statement for the driver's cursor cannot expand parameters at execution")
    # the caller's own are the bindparams declared without a value; a literal may be None (NULL)
    callers = {compiled.escaped_bind_names.get(name, name) for name, bind in compiled.binds.items() if bind.required}
    return compiled.string, {k: v for k, v in compiled.params.items() if k not in callers}


def is_disconnect(exc: BaseException) -> bool:
    """The connection was gone. Before COMMIT nothing happened; during COMMIT it may have: only a
    transaction that is idempotent (a repeat finds its own earlier effect) may simply run again."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def is_postgres(bind) -> bool:
    """bind: an Engine, a Connection or a Session."""
    if isinstance(bind, Session):
        bind = bind.get_bind()
    return bind.dialect.name == "postgresql"


# A queue in a table (the outbox's events in line, the mailer's pending mails): its read is "the oldest
# n in line, FOR UPDATE SKIP LOCKED", and the one good plan walks the line's partial index in order and
# stops at n. Taking a row out of line is an UPDATE: its old version is dead, and so is its entry in the
# index, until VACUUM (on a busy table a minute or more later). A plain index scan marks each dead entry
# the first time it steps over it and skips it after; a bitmap scan never does, and visited every row
# taken out of line since the last VACUUM on every read (the outbox: 3,800 buffers a poll behind 30,000).
# PostgreSQL's choice rests on statistics, and those of a table that grew in a burst (a fan-out, B1)
# are missing or were gathered when it was young: it sorted all 10,000 pending mails of a fan-out to
# claim 20 (670 buffers, 5 ms a claim), or scanned the outbox to count a few events. For the read's
# transaction only (PgBouncer's transaction mode keeps it), in one round trip:
QUEUE_PLANS = ("SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true), "
               "set_config('enable_sort', 'off', true)")


def queue_plans(session: Session | Connection) -> None:
    if is_postgres(session):
        session.execute(text(QUEUE_PLANS))


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def dialect_insert(session: Session, table):
    """An INSERT that knows ON CONFLICT, in the session's dialect (PostgreSQL or SQLite)."""
    return insert_for(is_postgres(session), table)


def insert_for(postgres: bool, table):
    """dialect_insert by dialect rather than session: for a statement built once per dialect."""
    return (postgresql if postgres else sqlite).insert(table)


@lru_cache(maxsize=256)
def _ignoring(postgres: bool, table, index_elements: tuple[str, ...], returning: bool):
    """INSERT … ON CONFLICT DO NOTHING into `table`, built once and given its values as parameters:
    SQLAlchemy then finds the compiled form by the statement's memoized cache key, instead of building
    and keying a new statement on every call (~0.1 ms each; every consumed event makes one or more)."""
    stmt = insert_for(postgres, table).on_conflict_do_nothing(index_elements=list(index_elements))
    return stmt.returning(table.c[index_elements[0]]) if returning else stmt


def insert_ignore(session: Session, table, values: dict, index_elements: list[str]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on both dialects; True when the row was inserted.

    Uses RETURNING rather than rowcount, which drivers do not report alike for this statement.
    """
    stmt = _ignoring(is_postgres(session), table, tuple(index_elements), True)
    return session.execute(stmt, values).first() is not None


def db_now(session: Session) -> datetime:
    """The database's clock where it has one (PostgreSQL), else the process clock."""
    if is_postgres(session):
        return session.execute(text("SELECT clock_timestamp()")).scalar_one()
    return clock.now()


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit key for PostgreSQL advisory locks."""
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def advisory_lock(session: Session, key: int, shared: bool = False) -> None:
    """Transaction-scoped advisory lock (PostgreSQL); SQLite's BEGIN IMMEDIATE already serialises."""
    if is_postgres(session):
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        session.execute(text(f"SELECT {fn}(:k)"), {"k": key})


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def insert_ignore_many(session: Session, table, rows: list[dict], index_elements: list[str]) -> None:
    """Bulk INSERT … ON CONFLICT DO NOTHING (executemany: fast for thousands of rows)."""
    if not rows:
        return
    session.execute(_ignoring(is_postgres(session), table, tuple(index_elements), False), rows)
