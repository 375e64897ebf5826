"""Dated steps exactly once with three auction replicas, one of them SIGKILLed mid-run."""
from __future__ import annotations

import json
import os
import signal
import statistics
import time
import uuid

import pytest
from sqlalchemy import select

from tests.conftest import own_system
from tests.support import Cobuy, RunningSystem, instant, wait_for

OFFERS = 200


@pytest.fixture
def scaled_system(servers, mailbox, output_dir, tmp_path):
    with own_system(servers, mailbox, tmp_path, output_dir / "cobuy-up-scaled.log",
                    ["--scale", "auction=3", "--web-workers", "1", "--gateway-workers", "1", "--restart"]) as running:
        yield running


def _step_lateness(system: RunningSystem) -> dict[str, list[float]]:
    from services.auction.tables import steps

    runtime = system.runtime("auction")
    with runtime.sessions() as session:
        rows = session.execute(select(steps)).all()
    runtime.engine.dispose()
    late: dict[str, list[float]] = {"invite": [], "close": []}
    for row in rows:
        if row.done_at is not None:
            late[row.kind].append((row.done_at - row.due_at).total_seconds())
    return late


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_invitations_and_closes_happen_once_each_with_a_replica_killed(scaled_system, mailbox, output_dir):
    cobuy = Cobuy(scaled_system.base_url)
    tag = uuid.uuid4().hex[:6]
    holder = cobuy.register_seller(name="EO Holder")
    others = [cobuy.register_seller() for _ in range(2)]
    start = 10.0
    offers = []
    for i in range(OFFERS):
        invite = start + 5.0 * i / OFFERS
        offers.append(cobuy.create_offer(holder, title=f"EO{tag} {i}", unit_price=1000, minimum_reservations=1,
                                         invite_at=instant(invite), closes_at=instant(invite + 6)))
    wait_for(lambda: time.time() > __import__("datetime").datetime.fromisoformat(offers[OFFERS // 3]["invite_at"])
             .timestamp(), 30, what="a third of the invitations to fall due")
    victims = scaled_system.pids("services.auction.worker")
    assert len(victims) == 3, victims
    os.kill(victims[0], signal.SIGKILL)

    wait_for(lambda: len(mailbox.matching(subject=f"EO{tag} ")) >= OFFERS * 3, 120, interval=0.5,
             what="every invitation and close mail")
    time.sleep(2)  # nothing more arrives later
    mails = mailbox.matching(subject=f"EO{tag} ")
    invitations = [(m.to, m.subject.rsplit(" ", 1)[-1]) for m in mails if m.subject.startswith("Invitation")]
    closes = [m.subject for m in mails if m.subject.startswith("Not concluded")]
    expected = {(s["email"], str(i)) for s in others for i in range(OFFERS)}
    assert sorted(invitations) == sorted(expected)  # each other seller, each offer, exactly once
    assert len(closes) == OFFERS and len(set(closes)) == OFFERS  # each offer closed once
    listed = cobuy.get("/api/v1/offers", params={"status": "closed", "per_page": 100}).json()
    assert listed["total"] >= OFFERS
    late = _step_lateness(scaled_system)
    report = {kind: {"n": len(v), "p50": round(statistics.median(v), 3), "p99": round(_pct(v, 0.99), 3),
                     "max": round(max(v), 3)} for kind, v in late.items()}
    (output_dir / "step-lateness.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    assert report["invite"]["n"] == OFFERS and report["close"]["n"] == OFFERS
