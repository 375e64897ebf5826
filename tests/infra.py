"""Real servers for the tests: testcontainers where Docker runs, else the COBUY_* URLs of this
machine (a fresh database and vhost per run, dropped after), else embedded — except under CI,
where a missing server is a failure, not a skip."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import pytest
from sqlalchemy import create_engine, make_url, text

if TYPE_CHECKING:
    from sqlalchemy import Engine

IN_CI = os.environ.get("CI", "").lower() == "true"


def _require(what: str, reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI: {reason}")


def _docker_running() -> bool:
    try:
        import docker
        from docker.errors import DockerException

        try:
            docker.from_env().ping()
            return True
        except DockerException:
            return False
    except ImportError:
        return False


def _admin_url(url: str):
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A database of this run's own; None means embedded SQLite."""
    base = os.environ.get("COBUY_DATABASE_URL")
    container = None
    if not base and _docker_running():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine").start()
        base = container.get_connection_url()
    if not base:
        _require("PostgreSQL", "set COBUY_DATABASE_URL")
        yield None
        return
    admin = _admin_url(base)
    name = f"cobuy_t_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _require("PostgreSQL", f"cannot create a database at {admin.render_as_string()}: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    url = admin.set(database=name).render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
    try:
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
        if container is not None:
            container.stop()


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbitmq_vhost() -> Iterator[tuple[str | None, str]]:
    """(amqp url, exchange prefix) of this run's own; (None, prefix) means the embedded broker."""
    base = os.environ.get("COBUY_AMQP_URL")
    prefix = f"cobuy-t-{uuid.uuid4().hex[:8]}"
    container = None
    if not base and _docker_running():
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3-management").start()
        params = container.get_connection_params()
        base = f"amqp://guest:guest@{params.host}:{params.port}//"
    if not base:
        _require("RabbitMQ", "set COBUY_AMQP_URL")
        yield None, prefix
        return
    if not _reachable(base):
        _require("RabbitMQ", f"{base} is unreachable")
        pytest.skip(f"RabbitMQ unreachable at {base}")
    vhost = None
    if container is None and shutil.which("rabbitmqctl"):
        try:
            vhost = prefix
            _rabbitmqctl("add_vhost", vhost)
            user = make_url(base.replace("amqp://", "postgresql://")).username or "guest"
            _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        except (subprocess.SubprocessError, OSError):
            vhost = None
    scheme, rest = base.split("://", 1)
    url = f"{scheme}://{rest.split('/', 1)[0]}/{vhost}" if vhost else base
    try:
        yield url, prefix
    finally:
        if vhost:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
        if container is not None:
            container.stop()


def queue_types(vhost: str) -> dict[str, str]:
    """Each queue of a vhost on this machine's RabbitMQ and its type (classic, quorum)."""
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", "name", "type"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    return dict(line.split("\t") for line in listed.strip().splitlines())


@contextmanager
def own_vhost() -> Iterator[tuple[str, str, str]]:
    """(amqp url, exchange prefix, vhost) for a test that acts on the broker itself (takes it away,
    declares other queue types): a vhost of its own, so no other test is touched."""
    with rabbitmq_vhost() as (amqp_url, prefix):
        vhost = amqp_url.rsplit("/", 1)[1] if amqp_url else ""
        if vhost in ("", "/"):
            if IN_CI:
                pytest.fail("rabbitmqctl is needed in CI to give this test a vhost of its own")
            pytest.skip("no vhost of this test's own (no RabbitMQ, or rabbitmqctl missing)")
        yield amqp_url, prefix, vhost


def _reachable(amqp_url: str) -> bool:
    rest = amqp_url.split("://", 1)[1].split("/", 1)[0]
    hostport = rest.rsplit("@", 1)[-1]
    host, _, port = hostport.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 5672)), timeout=3):
            return True
    except OSError:
        return False


def free_port_block(size: int = 6) -> int:
    """A base port with `size` free ports above it (gateway, four services, mail sink)."""
    import random

    for _ in range(200):
        base = random.randrange(20000, 60000, 10)
        ok = True
        for port in range(base, base + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_schema(servers, prefix: str, why: str) -> Iterator[tuple["Engine", str]]:
    """An engine on this run's PostgreSQL bound to a fresh schema `<prefix>_<random>`, and the schema's
    name; the schema is dropped after. Without PostgreSQL the test is skipped, saying `why` it needs it."""
    from shared import db

    if servers[0] is None:
        pytest.skip(why)
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = db.make_engine(servers[0].replace("postgresql://", "postgresql+psycopg://", 1), schema)
    try:
        yield engine, schema
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
