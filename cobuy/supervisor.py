"""`cobuy up`: every process of cobuy in the foreground, stopped together.

The gateway, each service's web app (gunicorn) and worker, and in embedded mode the SMTP
sink, each as its own process. Nothing is restarted silently: if one process dies, the
supervisor says which and stops the rest, so the operator (or the test) sees it.
"""
from __future__ import annotations

import ctypes
import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

from shared.config import SERVICES, Config

@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    address: str = "-"  # where it answers, for the table `cobuy up` prints
    process: subprocess.Popen | None = field(default=None, repr=False)


def _die_with_parent() -> None:
    """Children get SIGTERM if the supervisor itself is killed (Linux prctl)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def parse_scale(text: str | None) -> dict[str, int]:
    scale = {name: 1 for name in SERVICES}
    for part in filter(None, (text or "").split(",")):
        name, _, count = part.partition("=")
        name = name.strip()
        if name not in scale or not count.strip().isdigit() or int(count) < 1:
            raise SystemExit(f"--scale: expected service=N with a service among {', '.join(SERVICES)}; got {part!r}")
        scale[name] = int(count)
    return scale


def plan(config: Config, scale: dict[str, int], web_workers: int, gateway_workers: int) -> list[Child]:
    base_env = dict(os.environ)
    # In a terminal the processes speak up only for warnings and errors (COBUY_LOG_LEVEL=INFO for more);
    # what `cobuy up` itself has to say is the table printed once everything answers.
    base_env.setdefault("COBUY_LOG_LEVEL", "WARNING")
    base_env.update({
        "COBUY_DATA_DIR": str(config.data_dir),
        "COBUY_HTTP_PORT": str(config.http_port),
        "COBUY_INTERNAL_SECRET": config.internal_secret,
        "PYTHONUNBUFFERED": "1",
    })
    children: list[Child] = []
    if config.smtp_url is None:
        host, port = config.smtp_address()
        base_env["COBUY_SMTP_URL"] = f"smtp://{host}:{port}"
        children.append(Child("smtp-sink", [sys.executable, "-m", "shared.smtpsink", "--host", host, "--port",
                                            str(port), "--folder", str(config.data_dir / "mail")], base_env,
                              f"smtp://{host}:{port}"))

    def env_for(service: str) -> dict[str, str]:
        folder = config.data_dir / "metrics" / service
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        return {**base_env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}

    for service in SERVICES:
        env = env_for(service)
        for replica in range(scale[service]):
            children.append(Child(f"{service}-web-{replica + 1}", gunicorn_argv(
                service, web_workers, f"127.0.0.1:{config.service_port(service)}", reuse_port=True,
                log_level=env["COBUY_LOG_LEVEL"]), env, f"http://127.0.0.1:{config.service_port(service)}"))
            children.append(Child(f"{service}-worker-{replica + 1}",
                                  [sys.executable, "-m", f"services.{service}.worker"], env, "events in and out"))
    bind_host = config.bind_host
    address = f"http://{bind_host}:{config.http_port}"
    if config.operator_port:
        address += f" (operator :{config.operator_port})"
    children.append(Child("gateway", gunicorn_argv("gateway", gateway_workers, f"{bind_host}:{config.http_port}",
                                                   reuse_port=True, log_level=base_env["COBUY_LOG_LEVEL"],
                                                   operator_port=config.operator_port),
                          env_for("gateway"), address))
    return children


# A service keeps an idle keep-alive connection longer than the gateway's pool does: the one that
# closes first must be the client, or the gateway may send a request on a connection the service is
# closing at that instant (gunicorn's default is 2 s; the race answered 502 to one request in a burst).
SERVICE_KEEPALIVE_SECONDS = 75


def gunicorn_argv(component: str, workers: int, bind: str, reuse_port: bool = False,
                  log_level: str | None = None, operator_port: int | None = None) -> list[str]:
    """How every web process runs, under `cobuy up` and in a container alike. The gateway with an
    operator port listens on it too, on the same host (gateway/app.operator_port_only splits them)."""
    log_level = (log_level or os.environ.get("COBUY_LOG_LEVEL") or "INFO").lower()
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:shared.gunicorn_conf", "--no-control-socket",
            "--graceful-timeout", "10", "--timeout", "60", "--workers", str(workers), "--bind", bind,
            "--log-level", log_level]
    if reuse_port:  # replicas share one port under `cobuy up`
        argv.append("--reuse-port")
    if component == "gateway":
        if operator_port:
            argv += ["--bind", f"{bind.rsplit(':', 1)[0]}:{operator_port}"]
        return argv + ["--worker-class", "aiohttp.GunicornUVLoopWebWorker", "gateway.app:create_app"]
    return argv + ["--worker-class", "gthread", "--threads", "4", "--keep-alive", str(SERVICE_KEEPALIVE_SECONDS),
                   f"services.{component}.app:create_app()"]


def _spawn(child: Child) -> None:
    child.process = subprocess.Popen(child.argv, env=child.env, preexec_fn=_die_with_parent, start_new_session=True)


def _ready(url: str) -> bool:
    """Whether the gateway answers ready. Anything but a 200 is "not yet": a refused connection, and
    also an answer that is not HTTP. Before the gateway listens, a connection to its port on loopback
    can be made from that very port (TCP's simultaneous open) and read back its own request, which
    http.client refuses as a bad status line: that once stopped a whole `cobuy up` in CI."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except (OSError, http.client.HTTPException):
        return False


def run(config: Config, scale: dict[str, int], web_workers: int = 2, gateway_workers: int = 2,
        ready_timeout: float = 90.0, restart: bool = False) -> int:
    from cobuy.operations import migrate_all

    config.data_dir.mkdir(parents=True, exist_ok=True)
    if config.smtp_url is None:
        (config.data_dir / "mail").mkdir(exist_ok=True)
    migrate_all(config)
    children = plan(config, scale, web_workers, gateway_workers)
    stopping = False

    def _stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for child in children:
        _spawn(child)
    deadline = time.monotonic() + ready_timeout
    announced = False
    exit_code = 0
    restarts: dict[str, int] = {}
    while not stopping:
        for child in children:
            code = child.process.poll()
            if code is None:
                continue
            if restart and restarts.get(child.name, 0) < 5:
                restarts[child.name] = restarts.get(child.name, 0) + 1
                print(f"cobuy: {child.name} exited with code {code}; RESTARTING it "
                      f"({restarts[child.name]} of 5)", file=sys.stderr, flush=True)
                _spawn(child)
                continue
            print(f"cobuy: {child.name} exited with code {code}; stopping everything", file=sys.stderr, flush=True)
            exit_code = 1
            stopping = True
            break
        if stopping:
            break
        if not announced:
            if _ready(f"http://127.0.0.1:{config.operator_http_port}/readyz?services=all"):
                print(ready_table(config, children), flush=True)
                announced = True
            elif time.monotonic() > deadline:
                print("cobuy: the gateway did not become ready in time; stopping", file=sys.stderr, flush=True)
                exit_code = 1
                break
        time.sleep(0.2)
    _shutdown(children)
    return exit_code


def ready_table(config: Config, children: list[Child]) -> str:
    """What `cobuy up` says once the gateway answers: each process and where, then where to go."""
    database = "PostgreSQL" if config.database_url else f"SQLite files under {config.data_dir}"
    broker = "RabbitMQ" if config.amqp_url else "the embedded broker"
    width = max(len(child.name) for child in children)
    lines = [f"cobuy is up on {database} and {broker}.", ""]
    lines += [f"  {child.name:<{width}}  {child.address:<24}  pid {child.process.pid}" for child in children]
    lines += ["", f"  open   {config.public_url}/"]
    if config.smtp_url is None:
        lines.append(f"  mails  {config.data_dir / 'mail'} (one .eml file each)")
    lines.append("  stop   Ctrl-C")
    return "\n".join(lines)


def _shutdown(children: list[Child], grace: float = 15.0) -> None:
    for child in reversed(children):
        if child.process and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            print(f"cobuy: {child.name} did not stop in time; killing it", file=sys.stderr, flush=True)
            child.process.kill()
            child.process.wait()
    print("cobuy: stopped", flush=True)
