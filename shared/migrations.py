"""Alembic, driven from code: each service keeps its own migrations folder and version table."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.environment import EnvironmentContext
from sqlalchemy import Engine, MetaData

from shared.db import advisory_lock, lock_key


def alembic_config(migrations_dir: Path) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir))
    return cfg


def upgrade(engine: Engine, migrations_dir: Path, service: str) -> None:
    """Migrate to head; safe when several replicas start at once (one waits for the other)."""
    cfg = alembic_config(migrations_dir)
    from sqlalchemy.orm import Session

    with engine.begin() as connection:
        advisory_lock(Session(bind=connection), lock_key("migrate", service))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def run_env(context: EnvironmentContext, target_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    connection = context.config.attributes.get("connection")
    if connection is None:  # `alembic revision --autogenerate` from a developer's shell
        from sqlalchemy import create_engine

        connection = create_engine(context.config.get_main_option("sqlalchemy.url")).connect()
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()

