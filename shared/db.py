"""Database plumbing: one engine per service, its own schema (PostgreSQL) or file (SQLite)."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from sqlalchemy import DateTime, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
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


def make_engine(url: str, schema: str, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

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
    engine = create_engine(
        url,
        connect_args={"options": f"-c search_path={schema}"},
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_recycle=1800,
    )
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return engine


def is_postgres(bind) -> bool:
    return bind.dialect.name == "postgresql"


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def dialect_insert(session: Session, table):
    """An INSERT that knows ON CONFLICT, in the session's dialect (PostgreSQL or SQLite)."""
    return (postgresql if is_postgres(session.get_bind()) else sqlite).insert(table)


def insert_ignore(session: Session, table, values: dict, index_elements: list[str]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on both dialects; True when the row was inserted.

    Uses RETURNING rather than rowcount, which drivers do not report alike for this statement.
    """
    stmt = (dialect_insert(session, table).values(values).on_conflict_do_nothing(index_elements=index_elements)
            .returning(table.c[index_elements[0]]))
    return session.execute(stmt).first() is not None


def db_now(session: Session) -> datetime:
    """The database's clock where it has one (PostgreSQL), else the process clock."""
    if is_postgres(session.get_bind()):
        return session.execute(text("SELECT clock_timestamp()")).scalar_one()
    return clock.now()


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit key for PostgreSQL advisory locks."""
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def advisory_lock(session: Session, key: int, shared: bool = False) -> None:
    """Transaction-scoped advisory lock (PostgreSQL); SQLite's BEGIN IMMEDIATE already serialises."""
    if is_postgres(session.get_bind()):
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        session.execute(text(f"SELECT {fn}(:k)"), {"k": key})


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def insert_ignore_many(session: Session, table, rows: list[dict], index_elements: list[str]) -> None:
    """Bulk INSERT … ON CONFLICT DO NOTHING (executemany: fast for thousands of rows)."""
    if not rows:
        return
    session.execute(dialect_insert(session, table).on_conflict_do_nothing(index_elements=index_elements), rows)
