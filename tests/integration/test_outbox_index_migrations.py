"""reservation 0008, catalog 0008 and auction 0003 add the outbox's partial indexes, on both dialects, from
the previous release's schema; their downgrade takes them away again, and the upgrade after it brings them
back. An operator's CONCURRENTLY build (docs/operations.md) is found, not built again."""
from __future__ import annotations

import uuid
from importlib import import_module

import pytest
from alembic import command
from sqlalchemy import text

from shared import db
from shared.migrations import alembic_config, upgrade
from tests.infra import postgres_schema

PREVIOUS = {"reservation": "0007", "catalog": "0007", "auction": "0002"}
NAMES = {"ix_outbox_waiting", "ix_outbox_quarantined"}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path, servers):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/outbox.db"
    if servers[0] is None:
        pytest.skip("no PostgreSQL configured (COBUY_DATABASE_URL)")
    return servers[0].replace("postgresql://", "postgresql+psycopg://", 1)


def _indexes(engine) -> dict[str, str]:
    """The outbox's partial indexes of ours: name -> definition."""
    with engine.connect() as connection:
        if db.is_postgres(connection):
            rows = connection.execute(text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'outbox'"))
        else:
            rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'"))
        return {name: definition for name, definition in rows if name in NAMES}


def _downgrade(engine, migrations, revision: str) -> None:
    cfg = alembic_config(migrations)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


@pytest.mark.parametrize("service", sorted(PREVIOUS))
def test_the_outbox_indexes_come_with_the_migration_and_go_with_its_downgrade(url, service):
    migrations = import_module(f"services.{service}.tables").MIGRATIONS
    schema = f"{service}_ix{uuid.uuid4().hex[:6]}"
    engine = db.make_engine(url, schema)
    try:
        upgrade(engine, migrations, schema, PREVIOUS[service])
        assert _indexes(engine) == {}
        upgrade(engine, migrations, schema)
        made = _indexes(engine)
        assert set(made) == NAMES
        assert all("WHERE" in definition.upper() for definition in made.values()), made  # partial, on both dialects
        _downgrade(engine, migrations, PREVIOUS[service])
        assert _indexes(engine) == {}
        upgrade(engine, migrations, schema)
        assert _indexes(engine) == made
    finally:
        if db.is_postgres(engine):
            with engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def test_an_operators_concurrent_build_is_found_not_built_again(servers):
    from services.reservation.tables import MIGRATIONS

    with postgres_schema(servers, "outbox_cic", "CREATE INDEX CONCURRENTLY is PostgreSQL's") as (engine, schema):
        upgrade(engine, MIGRATIONS, schema, "0007")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
            # docs/operations.md, with this schema for `reservation`
            admin.execute(text(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_outbox_waiting ON "{schema}".outbox (seq) '
                               "WHERE sent_at IS NULL AND quarantined_at IS NULL"))
            admin.execute(text(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_outbox_quarantined ON "{schema}".outbox '
                               "(seq) WHERE quarantined_at IS NOT NULL AND sent_at IS NULL"))
            before = dict(admin.execute(text(
                "SELECT c.relname, c.oid FROM pg_class AS c WHERE c.relname IN ('ix_outbox_waiting', "
                "'ix_outbox_quarantined') AND c.relnamespace = CAST(:schema AS regnamespace)"), {"schema": schema}).all())
        upgrade(engine, MIGRATIONS, schema)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0008"
            after = dict(connection.execute(text(
                "SELECT c.relname, c.oid FROM pg_class AS c JOIN pg_index AS i ON i.indexrelid = c.oid "
                "WHERE i.indisvalid AND c.relname IN ('ix_outbox_waiting', 'ix_outbox_quarantined') "
                "AND c.relnamespace = CAST(:schema AS regnamespace)"), {"schema": schema}).all())
        assert after == before and set(after) == NAMES
