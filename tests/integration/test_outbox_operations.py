"""`cobuy outbox status` shows quarantined events with their reasons; `cobuy outbox retry` puts one back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from sqlalchemy import select

from shared import clock, config as config_module
from shared.runtime import Runtime
from tests.support import ROOT


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cobuy.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_outbox_status_lists_a_quarantined_event_and_retry_puts_it_back_in_line(tmp_path):
    # Its own embedded data dir: the session's PostgreSQL schemas belong to the shared `cobuy up`.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
    env["COBUY_DATA_DIR"] = str(tmp_path)
    assert _cli(env, "migrate").returncode == 0
    from services.reservation.tables import outbox

    runtime = Runtime.create("reservation", config_module.Config(**{
        **config_module.load().__dict__, "data_dir": tmp_path, "database_url": None}))
    event_id = str(uuid.uuid4())
    try:
        with runtime.sessions.begin() as session:
            session.execute(outbox.insert().values(
                event_id=event_id, type="ReservationAccepted", body="{}", created_at=clock.now(), attempts=1,
                quarantined_at=clock.now(), last_error="Unroutable: no queue is bound for ReservationAccepted"))

        status = json.loads(_cli(env, "outbox", "status").stdout)
        assert status["reservation"]["pending"] == 0 and status["reservation"]["quarantined"] == 1
        [row] = status["reservation"]["quarantined_rows"]
        assert row["id"] == event_id and row["type"] == "ReservationAccepted" and "Unroutable" in row["reason"]

        retried = _cli(env, "outbox", "retry", event_id)
        assert retried.returncode == 0 and "1 event(s)" in retried.stdout
        status = json.loads(_cli(env, "outbox", "status").stdout)
        assert status["reservation"]["pending"] == 1 and status["reservation"]["quarantined"] == 0
        assert _cli(env, "outbox", "retry", event_id).returncode == 1  # nothing quarantined by that id any more
        with runtime.sessions() as session:
            assert session.execute(select(outbox.c.quarantined_at).where(outbox.c.event_id == event_id)).scalar() is None
    finally:
        runtime.engine.dispose()
