"""Alembic, driven from code: each service keeps its own migrations folder and version table."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, MetaData, TextClause, text

from shared.db import advisory_lock, lock_key


def alembic_config(migrations_dir: Path) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir))
    return cfg


class SchemaBehind(Exception):
    """The database is at an older revision than this code needs: the release's Job has not run."""


def upgrade(engine: Engine, migrations_dir: Path, service: str, revision: str = "head") -> None:
    """Migrate to head; safe when several replicas start at once (one waits for the other)."""
    cfg = alembic_config(migrations_dir)
    from sqlalchemy.orm import Session

    with engine.begin() as connection:
        advisory_lock(Session(bind=connection), lock_key("migrate", service))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def require_current(engine: Engine, migrations_dir: Path) -> None:
    """A pod in a cluster never migrates (the release's Job does, once): it only checks that the
    schema is at this code's head or ahead of it. Ahead is a revision this code does not know, from a
    newer release: expand/contract migrations keep the older code working on it (a rollback)."""
    script = ScriptDirectory.from_config(alembic_config(migrations_dir))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    heads = set(script.get_heads())
    if current == heads or any(not _known(script, revision) for revision in current):
        return
    raise SchemaBehind(f"the schema is at {sorted(current) or 'nothing'} and this code needs {sorted(heads)}: "
                       f"run this release's migration Job (`cobuy migrate`) first")


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def run_env(context: EnvironmentContext, target_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    connection = context.config.attributes.get("connection")
    if connection is None:  # `alembic revision --autogenerate` from a developer's shell
        from sqlalchemy import create_engine

        connection = create_engine(context.config.get_main_option("sqlalchemy.url")).connect()
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def create_partial_index(name: str, table: str, columns: list[str], where: TextClause) -> None:
    """In a migration: the index, unless a valid one of that name is there already. On a large table an
    operator builds it first, CONCURRENTLY, so that the migration does not hold writes while it reads the
    table (docs/operations.md). A concurrent build that failed (a timeout, a cancel) leaves an INVALID
    index, which the planner never uses and IF NOT EXISTS would take for the index: it is dropped and
    built here."""
    from alembic import op

    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.execute(text(
            "SELECT 1 FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND c.relnamespace = to_regnamespace(current_schema()) AND NOT i.indisvalid"),
            {"name": name}).first():
        op.drop_index(name, table_name=table)
    op.create_index(name, table, columns, unique=False, if_not_exists=True, postgresql_where=where,
                    sqlite_where=where)
