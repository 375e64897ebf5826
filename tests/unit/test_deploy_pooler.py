"""The prod overlay's PgBouncer pooler: services reach their own schema through it as their own role."""
from __future__ import annotations

import re

from tests.unit.test_deploy import _objects

SERVICES = ("catalog", "reservation", "auction", "mailer")


def _env(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"][0]["env"]


def test_prod_services_connect_through_a_transaction_pooler_as_their_own_role_without_a_startup_option():
    objects = _objects("overlays/prod")
    pooler = next(o for o in objects if o["kind"] == "Pooler")
    assert pooler["spec"]["pgbouncer"]["poolMode"] == "transaction" and pooler["spec"]["type"] == "rw"
    assert pooler["spec"]["template"]["metadata"]["labels"] == {"cobuy/server": "database"}  # NetworkPolicy
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "cobuy-config")
    assert config["data"]["COBUY_DATABASE_SEARCH_PATH"] == "role"
    deployments = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] != "gateway"]
    assert len(deployments) == 2 * len(SERVICES)
    for deployment in deployments:
        service = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        env = {e["name"]: e for e in _env(deployment)}
        assert env["COBUY_DATABASE_URL"] == {
            "name": "COBUY_DATABASE_URL",
            "value": f"postgresql://cobuy_{service}@{pooler['metadata']['name']}:5432/cobuy"}
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"cobuy-db-{service}", "key": "password"}


def test_prod_roles_own_their_schemas_and_the_migration_job_uses_each_role_directly():
    objects = _objects("overlays/prod")
    cluster = next(o for o in objects if o["kind"] == "Cluster")
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    assert set(roles) == {f"cobuy_{s}" for s in SERVICES}
    assert all(r["login"] and r["passwordSecret"]["name"] == f"cobuy-db-{n[6:]}" for n, r in roles.items())
    database = next(o for o in objects if o["kind"] == "Database")
    assert database["spec"]["name"] == cluster["spec"]["bootstrap"]["initdb"]["database"]
    assert {s["name"]: s["owner"] for s in database["spec"]["schemas"]} == {s: f"cobuy_{s}" for s in SERVICES}
    (job,) = [o for o in objects if o["kind"] == "Job"]
    env = _env(job)
    names = [e["name"] for e in env]
    for service in SERVICES:
        url = next(e["value"] for e in env if e["name"] == f"COBUY_{service.upper()}_DATABASE_URL")
        assert re.fullmatch(rf"postgresql://cobuy_{service}:\$\((\w+)\)@cobuy-db-rw:5432/cobuy", url)
        password = re.search(r"\$\((\w+)\)", url).group(1)
        # Kubernetes expands $(VAR) only from variables defined earlier in the list
        assert names.index(password) < names.index(f"COBUY_{service.upper()}_DATABASE_URL")


def test_the_prod_connection_budget_fits_the_primary():
    objects = _objects("overlays/prod")
    cluster = next(o for o in objects if o["kind"] == "Cluster")
    pooler = next(o for o in objects if o["kind"] == "Pooler")
    max_connections = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
    per_role = int(pooler["spec"]["pgbouncer"]["parameters"]["default_pool_size"])
    # each pooler instance keeps its own pool per (database, role), i.e. per service; plus the
    # migration Job (one connection per service at a time) and PostgreSQL's reserved superuser slots
    server_side = pooler["spec"]["instances"] * per_role * len(SERVICES)
    assert server_side + len(SERVICES) + 3 <= max_connections
