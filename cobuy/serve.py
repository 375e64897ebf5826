"""`cobuy serve`: one component as a container runs it — wait for its dependencies, migrate,
then exec gunicorn (web) or run the worker. Compose and Kubernetes call this."""
from __future__ import annotations

import os
import sys
import time

from cobuy.supervisor import gunicorn_argv
from shared import config as config_module

def _wait_for(what: str, check, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Exception as exc:  # any failure means "not yet"
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} unreachable after {timeout:.0f}s: {exc}")
            print(f"waiting for {what}: {exc}", file=sys.stderr, flush=True)
            time.sleep(2)


def serve(component: str, role: str, workers: int, bind: str) -> int:
    config = config_module.get()
    os.makedirs(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", f"/tmp/cobuy-metrics-{component}-{role}"),
                exist_ok=True)
    if component == "gateway":
        os.execv(sys.executable, gunicorn_argv(component, workers, bind))
    from shared.runtime import Runtime

    runtime = Runtime.create(component, config)
    _wait_for("the database", lambda: runtime.engine.connect().close())
    _wait_for("the broker", runtime.bus.ping)
    if role == "worker":
        module = __import__(f"services.{component}.worker", fromlist=["main"])
        return module.main()
    from cobuy.operations import migrate_all

    migrate_all(config, (component,))
    os.execv(sys.executable, gunicorn_argv(component, workers, bind))
    return 1  # not reached: execv replaces this process
