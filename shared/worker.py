"""Runs a service's background loops (consumer, outbox relay, scheduler, sender) in one process.

SIGTERM/SIGINT stop every loop; a loop that dies unexpectedly stops the process with an
error, so the supervisor (cobuy up, gunicorn, Kubernetes) sees it instead of a silent half-worker.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Callable

from shared import config

log = logging.getLogger(__name__)

Loop = Callable[[threading.Event], None]


def run(service: str, loops: dict[str, Loop]) -> int:
    stop = threading.Event()
    failed = threading.Event()

    def _signal(signum, _frame):
        log.info("%s worker: signal %s, stopping", service, signum)
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)

    def _guard(name: str, loop: Loop) -> None:
        try:
            loop(stop)
        except BaseException:
            log.exception("%s worker: loop %s died", service, name)
            failed.set()
            stop.set()
            return
        if not stop.is_set():
            log.error("%s worker: loop %s returned unexpectedly", service, name)
            failed.set()
            stop.set()

    port = config.get().worker_metrics_port
    if port:  # in its own container a worker serves its metrics itself
        from shared import metrics

        metrics.serve(port)
    threads = [threading.Thread(target=_guard, args=(n, fn), name=n, daemon=True) for n, fn in loops.items()]
    for thread in threads:
        thread.start()
    log.info("%s worker running: %s", service, ", ".join(loops))
    while not stop.wait(0.5):
        pass
    for thread in threads:
        thread.join(timeout=10)
    code = 1 if failed.is_set() else 0
    log.info("%s worker stopped (exit %d)", service, code)
    sys.stdout.flush()
    return code

