"""One bad event never stops the others, a passing outage is waited out, idle connections stay
alive, and secrets stay out of logs and dead letters: on the real broker and database."""
from __future__ import annotations

import json
import logging
import time
import uuid

import requests
from sqlalchemy import text, update

from shared import clock
from shared.envelope import Envelope
from shared.messaging import Consumer
from tests.integration.spine_app import EVENT, Spine, inbox, outbox, pings
from tests.integration.test_spine import Loops, spine  # noqa: F401  (the fixture)
from tests.support import wait_for

CANCEL_TOKEN = "3f9a1c0b7d2e4f6a8b9c0d1e2f3a4b5c6d7e8f90"  # the shape of a real one: 40 hex digits


def _insert_raw(spine: Spine, envelope: Envelope) -> None:
    """An outbox row as an older release (or a bug) could have written it: no validation on the way in."""
    with spine.sessions.begin() as session:
        session.execute(pings.insert().values(id=envelope.data["ping_id"]))
        session.execute(outbox.insert().values(event_id=envelope.id, type=envelope.type,
                                               body=json.dumps(envelope.to_dict()), created_at=clock.now(),
                                               attempts=0))


def _dead_letters(spine: Spine, count: int, timeout: float = 15) -> list:
    dead = []
    with spine.bus.connect() as connection:
        queue = spine.bus.dead_queue(connection.channel())
        queue.declare()  # as every process does on start: the consumer's thread may not have yet
        deadline = time.monotonic() + timeout
        while len(dead) < count and time.monotonic() < deadline:
            message = queue.get(no_ack=True, accept=["json", "application/octet-stream"])
            if message is None:
                time.sleep(0.1)
                continue
            dead.append(message)
    return dead


def _consumer(spine: Spine, handler, **kwargs) -> Consumer:
    return Consumer(spine.bus, "spine", spine.sessions, inbox, {EVENT: handler}, prefetch=10, **kwargs)


def test_a_row_the_relay_cannot_publish_is_quarantined_with_its_reason_and_the_others_flow(spine):
    spine.produce(3)
    poison = Envelope(EVENT, {"ping_id": str(uuid.uuid4())}, "spine", correlation_id="x" * 300)
    _insert_raw(spine, poison)
    spine.produce(3)
    relay = spine.relay()
    loops = Loops(relay.run, spine.consumer().run)
    try:
        wait_for(lambda: spine.effect_counts() == (6, 6), 30, what="the six good events past the poison")
        status = wait_for(lambda: (s := relay.status())["quarantined"] == 1 and s, 10, what="one quarantined row")
        assert status["pending"] == 0
        [row] = status["quarantined_rows"]
        assert row["id"] == poison.id and row["type"] == EVENT
        assert "ubyte format" in row["reason"]

        # The operator fixes the row (here: a sane correlation id), then puts it back in line.
        fixed = Envelope(EVENT, poison.data, "spine", id=poison.id, correlation_id="fixed")
        with spine.sessions.begin() as session:
            session.execute(update(outbox).where(outbox.c.event_id == poison.id)
                            .values(body=json.dumps(fixed.to_dict())))
        assert relay.retry([poison.id]) == 1
        wait_for(lambda: spine.effect_counts() == (7, 7), 30, what="the retried event applied")
        assert relay.status()["quarantined"] == 0 and spine.unsent() == 0
    finally:
        loops.close()


def test_an_event_that_is_not_an_envelope_is_quarantined_not_retried_forever(spine):
    with spine.sessions.begin() as session:
        session.execute(outbox.insert().values(event_id=str(uuid.uuid4()), type=EVENT, body="{not json",
                                               created_at=clock.now(), attempts=0))
    spine.produce(2)
    relay = spine.relay()
    loops = Loops(relay.run, spine.consumer().run)
    try:
        wait_for(lambda: spine.effect_counts() == (2, 2), 30, what="the good events")
        [row] = wait_for(lambda: relay.status()["quarantined_rows"], 10, what="the unreadable row quarantined")
        assert "JSON" in row["reason"] or "Expecting" in row["reason"]
    finally:
        loops.close()


def test_a_handler_failing_on_a_restarting_service_is_retried_until_it_recovers_not_dead_lettered(spine):
    recovers_at = time.monotonic() + 2

    def needs_catalog(session, envelope):
        if time.monotonic() < recovers_at:
            raise requests.ConnectionError("catalog is restarting")
        spine.apply(session, envelope)

    loops = Loops(spine.relay().run, _consumer(spine, needs_catalog).run)
    try:
        spine.produce(1)
        wait_for(lambda: spine.effect_counts() == (1, 1), 30, what="the event applied after the outage")
    finally:
        loops.close()
    assert _dead_letters(spine, 1, timeout=1) == []


def test_a_handler_error_no_retry_can_fix_is_dead_lettered_with_its_class(spine):
    def malformed(session, envelope):
        return envelope.data["no such field"]

    loops = Loops(spine.relay().run, _consumer(spine, malformed).run)
    try:
        spine.produce(1)
        [dead] = _dead_letters(spine, 1)
    finally:
        loops.close()
    assert dead.headers["x-cobuy-error"].startswith("KeyError")


def test_a_failing_statement_leaves_no_secret_in_the_logs_or_the_dead_letter(spine, caplog):
    def leaks(session, envelope):
        session.execute(text("INSERT INTO no_such_table (token) VALUES (:token)"), {"token": CANCEL_TOKEN})

    def raises_with_token(session, envelope):
        raise ValueError(f"cannot use cancel token {CANCEL_TOKEN}")

    caplog.set_level(logging.INFO)
    for handler in (leaks, raises_with_token):
        caplog.clear()
        loops = Loops(spine.relay().run, _consumer(spine, handler).run)
        try:
            spine.produce(1)
            [dead] = _dead_letters(spine, 1)
        finally:
            loops.close()
        assert handler.__name__ in caplog.text  # the failure is logged, with where it happened…
        assert CANCEL_TOKEN not in caplog.text  # …but without the value
        assert CANCEL_TOKEN not in dead.headers["x-cobuy-error"]


def test_an_idle_publisher_keeps_its_connection_through_missed_heartbeats(spine, monkeypatch, caplog):
    monkeypatch.setenv("COBUY_AMQP_HEARTBEAT", "1")
    quick = Spine()
    relay = quick.relay()
    loops = Loops(relay.run, quick.consumer().run)
    try:
        quick.produce(1)
        wait_for(lambda: quick.effect_counts() == (1, 1), 20, what="the first event")
        caplog.clear()
        caplog.set_level(logging.WARNING)
        time.sleep(3.5)  # more than two heartbeat intervals with nothing to publish
        quick.produce(1)
        wait_for(lambda: quick.effect_counts() == (2, 2), 20, what="the event after the quiet spell")
    finally:
        loops.close()
        quick.engine.dispose()
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("shared")]
    assert problems == [], [r.getMessage() for r in problems]
