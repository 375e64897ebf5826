"""Readiness reflects only the pod's own ability to serve: its database. A broker that cannot be reached
is what the outbox rides out (its state is a metric), so a service stays ready; the gateway does not
chain the services' readiness."""
from __future__ import annotations

import asyncio

import pytest
from unittest import mock

from services.catalog.app import create_app
from services.catalog.tables import MIGRATIONS
from shared import config as config_module
from shared.runtime import Runtime
from tests import infra


@pytest.fixture
def catalog(servers, tmp_path, monkeypatch):
    """catalog on its real database, with a broker URL nothing listens on."""
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COBUY_AMQP_URL", f"amqp://guest:guest@127.0.0.1:{infra.free_port()}//")
    if servers[0]:
        monkeypatch.setenv("COBUY_DATABASE_URL", servers[0])
    runtime = Runtime.create("catalog", config_module.load())
    runtime.migrate(MIGRATIONS)
    yield runtime
    runtime.engine.dispose()


def test_a_service_stays_ready_while_its_broker_is_unreachable(catalog):
    client = create_app(catalog).test_client()
    with mock.patch("kombu.Connection.connect", side_effect=AssertionError("a probe opened an AMQP connection")):
        reply = client.get("/readyz")
    assert reply.status_code == 200, reply.get_json()


def test_a_service_is_not_ready_without_its_database(catalog, monkeypatch):
    client = create_app(catalog).test_client()
    monkeypatch.setattr("shared.db.ping", mock.Mock(side_effect=OSError("connection refused")))
    reply = client.get("/readyz")
    assert reply.status_code == 503 and "database" in reply.get_json()["failures"]


def test_the_gateway_is_ready_whatever_the_services_say(tmp_path, monkeypatch):
    from aiohttp.test_utils import TestClient, TestServer

    from gateway.app import create_app as gateway_app

    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    for service in config_module.SERVICES:  # nothing listens there
        monkeypatch.setenv(f"COBUY_{service.upper()}_URL", f"http://127.0.0.1:{infra.free_port()}")

    async def probe():
        async with TestClient(TestServer(await gateway_app(config_module.load()))) as client:
            own = await client.get("/readyz")
            whole = await client.get("/readyz", params={"services": "all"})
            return own.status, whole.status, await whole.json()

    own, whole, body = asyncio.run(probe())
    assert own == 200
    assert whole == 503 and set(body["failures"]) == set(config_module.SERVICES)  # `cobuy up` waits on this one
