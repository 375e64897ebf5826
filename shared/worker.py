"""Runs a service's background loops (consumer, outbox relay, scheduler, sender) in one process.

SIGTERM/SIGINT stop every loop; a loop that dies unexpectedly stops the process with an
error, so the supervisor (cobuy up, gunicorn, Kubernetes) sees it instead of a silent half-worker.

A loop that is alive but stuck (a statement waiting on a lock forever, a socket that never answers)
is caught by its heartbeat: every loop asks its stop event whether to stop at least once a second
while it works or waits (`Pulse`), and each time it asks, it beats. In its own container the
worker answers `/healthz` on its metrics port: 503, naming the loops, when one has not beaten for
`COBUY_WORKER_STALE_SECONDS`; the Kubernetes livenessProbe then restarts the pod.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from shared import config, doorbell

log = logging.getLogger(__name__)

Loop = Callable[[threading.Event], None]
BEAT_SECONDS = 1.0  # the longest a waiting loop goes without beating


class Heartbeats:
    """When each loop last asked whether to stop (time.monotonic)."""

    def __init__(self, loops):
        started = time.monotonic()
        self._last = {name: started for name in loops}

    def beat(self, name: str) -> None:
        self._last[name] = time.monotonic()

    def ages(self) -> dict[str, float]:
        now = time.monotonic()
        return {name: round(now - last, 1) for name, last in self._last.items()}

    def stale(self, within: float) -> dict[str, float]:
        return {name: age for name, age in self.ages().items() if age > within}


class Pulse:
    """The process's stop event as one loop sees it: asking it anything is a beat, and a long wait
    is cut into slices of BEAT_SECONDS so that waiting on purpose never looks like being stuck."""

    def __init__(self, stop: threading.Event, name: str, heartbeats: Heartbeats):
        self._stop = stop
        self._name = name
        self._heartbeats = heartbeats

    def is_set(self) -> bool:
        self._heartbeats.beat(self._name)
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._heartbeats.beat(self._name)
            step = BEAT_SECONDS if deadline is None else min(BEAT_SECONDS, deadline - time.monotonic())
            if step <= 0:
                return self._stop.is_set()
            if self._stop.wait(step):
                return True

    def set(self) -> None:
        self._stop.set()


def serve_operator_port(port: int, heartbeats: Heartbeats, stale_after: float) -> ThreadingHTTPServer:
    """`/metrics` for Prometheus and `/healthz` for the livenessProbe, on the worker's own port."""
    from shared import metrics

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = metrics.render()
                status = 200
            elif path == "/healthz":
                stale = heartbeats.stale(stale_after)
                status = 503 if stale else 200
                body = json.dumps({"status": "stale" if stale else "ok", "stale": stale,
                                   "loops": heartbeats.ages(), "stale_after_seconds": stale_after}).encode()
                content_type = "application/json"
                if stale:
                    log.error("worker liveness: loops %s have not beaten for over %.0f s", stale, stale_after)
            else:
                status, body, content_type = 404, b"not found\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # probes every few seconds: not worth a log line each
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="operator-port", daemon=True).start()
    return server


def run(service: str, loops: dict[str, Loop]) -> int:
    stop = threading.Event()
    failed = threading.Event()
    heartbeats = Heartbeats(loops)

    def _signal(signum, _frame):
        log.info("%s worker: signal %s, stopping", service, signum)
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)

    def _guard(name: str, loop: Loop) -> None:
        try:
            loop(Pulse(stop, name, heartbeats))
        except BaseException:
            log.exception("%s worker: loop %s died", service, name)
            failed.set()
            stop.set()
            return
        if not stop.is_set():
            log.error("%s worker: loop %s returned unexpectedly", service, name)
            failed.set()
            stop.set()

    settings = config.get()
    if settings.worker_metrics_port:  # in its own container a worker serves its metrics and liveness itself
        serve_operator_port(settings.worker_metrics_port, heartbeats, settings.worker_stale_seconds)
    threads = [threading.Thread(target=_guard, args=(n, fn), name=n, daemon=True) for n, fn in loops.items()]
    for thread in threads:
        thread.start()
    log.info("%s worker running: %s", service, ", ".join(loops))
    while not stop.wait(0.5):
        pass
    doorbell.ring()  # loops waiting on their bells see the stop at once
    for thread in threads:
        thread.join(timeout=10)
    code = 1 if failed.is_set() else 0
    log.info("%s worker stopped (exit %d)", service, code)
    sys.stdout.flush()
    return code
