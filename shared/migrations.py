"""Alembic, driven from code: each service keeps its own migrations folder and version table."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, MetaData

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

