"""A container never falls back to the embedded database and broker: `cobuy serve` refuses to start
without its servers, and a pod never migrates: it waits for the release's Job, or refuses when behind."""
import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from services.catalog.tables import MIGRATIONS
from shared import migrations
from shared.runtime import Runtime
from tests.support import ROOT


def _serve(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
    clean.update({"COBUY_DATA_DIR": str(tmp_path), **env})
    return subprocess.run([sys.executable, "-m", "cobuy.cli", "serve", "catalog", "--role", "worker"],
                          cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env", [
    {},
    {"COBUY_DATABASE_URL": "", "COBUY_AMQP_URL": "amqp://guest:guest@127.0.0.1:1//"},
    {"COBUY_DATABASE_URL": "postgresql://cobuy@127.0.0.1:1/cobuy", "COBUY_AMQP_URL": " "},
])
def test_serve_refuses_to_start_without_a_database_url_and_a_broker_url(tmp_path, env):
    result = _serve(tmp_path, **env)
    assert result.returncode != 0
    assert "missing or empty" in result.stderr and "cobuy up" in result.stderr
    assert not (tmp_path / "catalog.db").exists()  # no embedded island was started


def _catalog(tmp_path, monkeypatch):
    from shared import config as config_module

    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    for name in ("COBUY_DATABASE_URL", "COBUY_AMQP_URL"):
        monkeypatch.delenv(name, raising=False)
    return Runtime.create("catalog", config_module.load())


def test_a_pod_serves_a_schema_at_or_ahead_of_its_code(tmp_path, monkeypatch):
    runtime = _catalog(tmp_path, monkeypatch)
    runtime.migrate(MIGRATIONS)
    migrations.require_current(runtime.engine, MIGRATIONS)  # at head
    with runtime.engine.begin() as connection:  # a later release's migration (expand) ran since
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed0099'"))
    migrations.require_current(runtime.engine, MIGRATIONS)


def test_a_pod_refuses_a_schema_behind_its_code_and_names_the_job(tmp_path, monkeypatch):
    runtime = _catalog(tmp_path, monkeypatch)
    first = sorted(p.name for p in (MIGRATIONS / "versions").glob("0001_*.py"))
    assert first
    migrations.upgrade(runtime.engine, MIGRATIONS, "catalog", "0001")
    with pytest.raises(migrations.SchemaBehind, match="cobuy migrate"):
        migrations.require_current(runtime.engine, MIGRATIONS)
    empty = _catalog(tmp_path / "empty", monkeypatch)
    with pytest.raises(migrations.SchemaBehind):
        migrations.require_current(empty.engine, MIGRATIONS)
