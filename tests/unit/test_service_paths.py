"""A service reached directly, not through the gateway (nothing promises it is reached only that
way), refuses a path value it cannot store as the gateway does: 400 malformed_path, never a 500
from the database (PostgreSQL's text cannot hold a NUL; before, POST /api/v1/offers/a%00b/
reservations to reservation's own port answered 500). Every route with a path variable, every
method, in each service's app on SQLite."""
from __future__ import annotations

import importlib

import pytest

from shared import config as config_module
from shared.runtime import Runtime

SERVICES = ["catalog", "reservation", "auction", "mailer"]


@pytest.fixture(params=SERVICES)
def app(request, tmp_path, monkeypatch):
    for name in ("COBUY_DATABASE_URL", "COBUY_AMQP_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    runtime = Runtime.create(request.param, config_module.load())
    runtime.migrate(importlib.import_module(f"services.{request.param}.tables").MIGRATIONS)
    module = importlib.import_module(f"services.{request.param}.app")
    yield module.create_app(runtime)
    runtime.engine.dispose()


@pytest.mark.parametrize("bad", ["a%00b", "a%1Fb", "%7F"])
def test_a_path_value_with_a_control_character_is_a_400_on_every_route(app, bad):
    tried = 0
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        if not rule.arguments or rule.endpoint == "static":
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<{name}>", bad).replace(f"<int:{name}>", "1")
            path = path.replace(f"<path:{name}>", bad)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            reply = client.open(path, method=method, json={}, headers={"Content-Type": "application/json"})
            tried += 1
            assert reply.status_code == 400, (method, path, reply.status_code, reply.get_data(as_text=True)[:200])
            assert reply.get_json()["code"] == "malformed_path", (method, path)
    assert tried, "no route with a path variable was tried"
