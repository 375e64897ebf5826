"""`cobuy serve`: one component as a container runs it — check its servers are configured, wait for
them and for the release's migrations, then exec gunicorn (web) or run the worker. Compose and
Kubernetes call this; the migrations themselves run once per release (`cobuy migrate`, a Job)."""
from __future__ import annotations

import os
import sys
import time

from cobuy.supervisor import gunicorn_argv
from shared import config as config_module

SERVERS = ("COBUY_DATABASE_URL", "COBUY_AMQP_URL")


def require_servers(component: str) -> None:
    """An empty Secret must not turn each pod into its own island (SQLite and a file broker in its
    /tmp, ready all the same): the embedded mode is for `cobuy up` on a workstation only."""
    missing = [name for name in SERVERS if not os.environ.get(name, "").strip()]
    if missing:
        raise SystemExit(f"cobuy serve {component}: {' and '.join(missing)} missing or empty. A container "
                         f"needs PostgreSQL and RabbitMQ; the embedded database and broker are for `cobuy up`.")


def _wait_for(what: str, check, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Exception as exc:  # any failure means "not yet"
            if time.monotonic() > deadline:
                raise SystemExit(f"gave up waiting for {what} after {timeout:.0f}s: {exc}")
            print(f"waiting for {what}: {exc}", file=sys.stderr, flush=True)
            time.sleep(2)


def serve(component: str, role: str, workers: int, bind: str) -> int:
    if component != "gateway":  # the gateway holds no data: it only forwards to the services
        require_servers(component)
        os.environ.setdefault("COBUY_MIGRATIONS", "job")
    config = config_module.get()
    os.makedirs(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", f"/tmp/cobuy-metrics-{component}-{role}"),
                exist_ok=True)
    if component == "gateway":
        os.execv(sys.executable, gunicorn_argv(component, workers, bind, operator_port=config.operator_port))
    from shared.runtime import Runtime

    runtime = Runtime.create(component, config)
    _wait_for("the database", lambda: runtime.engine.connect().close())
    _wait_for("the broker", runtime.bus.ping)
    _wait_for("this release's migrations", lambda: _schema_ready(runtime, component), timeout=300)
    runtime.engine.dispose()
    if role == "worker":
        module = __import__(f"services.{component}.worker", fromlist=["main"])
        return module.main()
    os.execv(sys.executable, gunicorn_argv(component, workers, bind))
    return 1  # not reached: execv replaces this process


def _schema_ready(runtime, component: str) -> None:
    from cobuy.operations import schema_directory

    runtime.prepare_schema(schema_directory(component))
