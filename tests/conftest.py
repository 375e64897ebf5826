"""Fixtures: this run's PostgreSQL database and RabbitMQ vhost (or embedded), a mail sink,
and one `cobuy up` shared by the end-to-end tests."""
from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared import clock, db
from shared.migrations import upgrade
from tests import infra
from tests.support import ROOT, Cobuy, MailBox, RunningSystem

OUTPUT = ROOT / "test-output"


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory):
    """Each service's SQLite database, migrated once per run: a test gets a copy in milliseconds."""
    folder = tmp_path_factory.mktemp("migrated")
    made: dict[str, Path] = {}

    def path_for(service: str, migrations: Path) -> Path:
        if service not in made:
            engine = db.make_engine(f"sqlite:///{folder / service}.db", service)
            upgrade(engine, migrations, service)
            engine.dispose()
            made[service] = folder / f"{service}.db"
        return made[service]

    return path_for


@pytest.fixture
def sessions_for(tmp_path, migrated_template):
    """sessions_for(service, MIGRATIONS): a session factory on a fresh, migrated SQLite database of
    the service's own, under tmp_path (no server)."""
    engines = []

    def make(service: str, migrations: Path):
        path = tmp_path / f"{service}.db"
        shutil.copyfile(migrated_template(service, migrations), path)
        engine = db.make_engine(f"sqlite:///{path}", service)
        engines.append(engine)
        return db.session_factory(engine)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def at():
    """at(instant) moves the injected clock there; the real clock is back after the test."""
    yield lambda instant: clock.set_clock(lambda: instant)
    clock.set_clock(None)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def servers():
    """(database url or None, amqp url or None, exchange prefix)."""
    with infra.postgres_database() as database_url, infra.rabbitmq_vhost() as (amqp_url, prefix):
        yield database_url, amqp_url, prefix


@pytest.fixture(scope="session")
def mailbox():
    box = MailBox(infra.free_port())
    box.sink.controller.start()
    yield box
    box.sink.controller.stop()


def system_env(servers, mailbox: MailBox, data_dir: Path, **extra: str) -> dict[str, str]:
    database_url, amqp_url, prefix = servers
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
    env.update({
        "COBUY_HTTP_PORT": str(infra.free_port_block()),
        "COBUY_DATA_DIR": str(data_dir),
        "COBUY_SMTP_URL": f"smtp://127.0.0.1:{mailbox.sink.port}",
        "COBUY_EXCHANGE_PREFIX": prefix,
        "COBUY_RATE_LIMIT": "off",
        "COBUY_MAIL_LEASE_SECONDS": "3",
        "COBUY_LOG_LEVEL": "WARNING",
    })
    if database_url:
        env["COBUY_DATABASE_URL"] = database_url
    if amqp_url:
        env["COBUY_AMQP_URL"] = amqp_url
    env.update(extra)
    return env


@contextmanager
def own_system(servers, mailbox: MailBox, data_dir: Path, log_path: Path, args: list[str], **env: str):
    """Another `cobuy up` beside the session's, on a fresh database and exchange prefix of its own."""
    database_url, amqp_url, prefix = servers

    @contextmanager
    def database():
        if database_url is None:
            yield None
        else:
            with infra.postgres_database() as url:
                yield url

    with database() as url:
        running = RunningSystem(system_env((url, amqp_url, f"{prefix}-{uuid.uuid4().hex[:4]}"), mailbox, data_dir,
                                           **env), log_path, args=args).start()
        running.database_url = url
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="session")
def system(servers, mailbox, output_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cobuy-data")
    running = RunningSystem(system_env(servers, mailbox, data_dir), output_dir / "cobuy-up.log").start()
    yield running
    code = running.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    assert code == 0, f"cobuy up did not stop cleanly (exit {code}); see {running.log_path}"


@pytest.fixture
def cobuy(system) -> Cobuy:
    return Cobuy(system.base_url, sellers=system.sellers)


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]
