"""A worker's liveness is its loops' heartbeat: a real catalog worker, on its own database, answers
`/healthz` on its metrics port (what the Kubernetes livenessProbe asks), 200 while its loops turn and
503 naming the loop that is stuck — here its outbox relay, wedged behind a lock on its table."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from tests import infra
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
STALE_SECONDS = 2


@pytest.fixture
def worker(servers, tmp_path):
    database_url, amqp_url, prefix = servers
    if database_url is None:
        pytest.skip("the wedge is a PostgreSQL lock: no PostgreSQL here")
    with infra.postgres_database() as url:
        port = infra.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
        env.update({"COBUY_DATABASE_URL": url, "COBUY_DATA_DIR": str(tmp_path), "COBUY_LOG_LEVEL": "WARNING",
                    "COBUY_EXCHANGE_PREFIX": f"{prefix}-{uuid.uuid4().hex[:4]}",
                    "COBUY_WORKER_METRICS_PORT": str(port), "COBUY_WORKER_STALE_SECONDS": str(STALE_SECONDS)})
        if amqp_url:
            env["COBUY_AMQP_URL"] = amqp_url
        process = subprocess.Popen([sys.executable, "-m", "services.catalog.worker"], cwd=ROOT, env=env)
        try:
            yield f"http://127.0.0.1:{port}", url.replace("postgresql+psycopg://", "postgresql://")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _health(base: str) -> tuple[int, dict] | None:
    try:
        reply = requests.get(f"{base}/healthz", timeout=2)
    except requests.RequestException:
        return None
    return reply.status_code, reply.json()


def test_a_worker_whose_relay_is_wedged_fails_its_liveness_and_recovers_when_freed(worker):
    base, database_url = worker
    wait_for(lambda: (_health(base) or (0,))[0] == 200, 60, interval=0.2, what="the worker's /healthz")
    time.sleep(2 * STALE_SECONDS)  # idle loops wait on purpose, and still beat: it stays alive
    status, body = _health(base)
    assert status == 200 and set(body["loops"]) == {"consumer", "relay"}, body
    assert "cobuy_outbox_pending" in requests.get(f"{base}/metrics", timeout=2).text

    with psycopg.connect(database_url) as lock:  # an outage the relay cannot get past: it waits on the lock
        lock.execute("LOCK TABLE catalog.outbox IN ACCESS EXCLUSIVE MODE")
        wedged = wait_for(lambda: (h := _health(base)) and h[0] == 503 and h, 30, interval=0.2,
                          what="/healthz to fail while the relay is stuck")
        assert set(wedged[1]["stale"]) == {"relay"}, wedged  # the consumer still turns
        lock.rollback()
    wait_for(lambda: (_health(base) or (0,))[0] == 200, 30, interval=0.2, what="/healthz to recover")
