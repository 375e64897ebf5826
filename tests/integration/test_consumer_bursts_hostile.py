"""What a slow database, a hostile producer and a crash do to a consumer's bursts (Consumer(burst=N),
docs/adr/0016-consumer-bursts.md), each found by a red-team review before it was fixed: a burst must keep
its connection alive, a malformed envelope must dead-letter alone, hostile ids must not take the burst
down, and the embedded transport must give the same guarantees. On the real broker and database, and on
the embedded ones."""
from __future__ import annotations

import dataclasses
import logging
import time

import pytest
from kombu import Producer

from shared.envelope import Envelope
from shared.messaging import Bus, Consumer
from tests.integration.spine_app import EVENT, SUBSCRIPTIONS, inbox
from tests.integration.test_consumer_bursts import _published
from tests.integration.test_poison_and_retries import _dead_letters
from tests.integration.test_spine import Loops, _duplicates, spine  # noqa: F401  (the fixture)
from tests.support import wait_for


def _lost_connections(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "lost its connection" in r.getMessage()]


def test_a_burst_slower_than_the_heartbeat_keeps_its_connection_and_applies_each_event_once(spine, caplog):
    """Each event takes 0.6 s (a slow database, a fan-out): one by one, the acks between them are the
    traffic that keeps the connection alive; a burst of 10 is 6 s of silence towards the broker, whose
    2 s heartbeat closes a connection it has not heard from in two intervals."""
    burst = 10
    caplog.set_level(logging.WARNING, logger="shared.messaging")
    bus = Bus(dataclasses.replace(spine.config, amqp_heartbeat=2), SUBSCRIPTIONS)

    def slow(session, envelope):
        time.sleep(0.6)
        spine.apply(session, envelope)

    spine.produce(20)
    _published(spine, 20)
    before = _duplicates()
    loops = Loops(Consumer(bus, "spine", spine.sessions, inbox, {EVENT: slow}, prefetch=10, burst=burst).run)
    try:
        wait_for(lambda: spine.effect_counts() == (20, 20), 60, what="20 effects")
        time.sleep(1)
    finally:
        loops.close()
    # no connection dropped by the broker, no burst redelivered because its connection died under it
    assert (len(_lost_connections(caplog)), _duplicates() - before) == (0, 0)


@pytest.mark.parametrize("burst", [1, 10])
def test_an_envelope_whose_version_is_not_a_number_dead_letters_and_the_burst_around_it_applies(spine, caplog, burst):
    """A producer's envelope with "version": "two" (or a list) is malformed: it must dead-letter like
    any other malformed envelope, not throw the consumer off its connection again and again."""
    caplog.set_level(logging.WARNING, logger="shared.messaging")
    with spine.bus.connect() as connection:
        spine.bus.declare(connection)
        producer = Producer(connection.channel(), exchange=spine.bus.exchange)
        for i in range(10):
            envelope = Envelope(EVENT, {"ping_id": f"p{i}"}, "spine").to_dict()
            if i == 4:
                envelope["version"] = "two"
            producer.publish(envelope, routing_key=EVENT, serializer="json", delivery_mode=2)
    loops = Loops(Consumer(spine.bus, "spine", spine.sessions, inbox, {EVENT: spine.apply}, prefetch=10,
                           burst=burst).run)
    try:
        wait_for(lambda: spine.effect_counts() == (9, 9), 15, what=f"the 9 good events (so far {spine.effect_counts()})")
        [dead] = _dead_letters(spine, 1)
    finally:
        loops.close()
    assert len(_lost_connections(caplog)) == 0


def _publish(spine, bodies) -> None:
    with spine.bus.connect() as connection:
        spine.bus.declare(connection)
        producer = Producer(connection.channel(), exchange=spine.bus.exchange)
        for body in bodies:
            producer.publish(body, routing_key=EVENT, serializer="json", delivery_mode=2)


def test_hostile_ids_and_a_twice_published_event_in_one_burst_apply_once_and_dead_letter_alone(spine):
    """A NUL byte and a 5,000-character id (neither storable in the inbox) in the middle of a burst,
    and one event published twice into the same burst."""
    good = [Envelope(EVENT, {"ping_id": f"p{i}"}, "spine").to_dict() for i in range(8)]
    bodies = good[:3] + [{**good[0], "id": "nul\x00id", "data": {"ping_id": "bad1"}}] + good[3:6] \
        + [good[3]] + [{**good[0], "id": "x" * 5000, "data": {"ping_id": "bad2"}}] + good[6:]
    _publish(spine, bodies)
    before = _duplicates()
    loops = Loops(Consumer(spine.bus, "spine", spine.sessions, inbox, {EVENT: spine.apply}, prefetch=20,
                           burst=20).run)
    try:
        wait_for(lambda: spine.effect_counts() == (8, 8), 30, what="the 8 good events")
        dead = _dead_letters(spine, 2)
        time.sleep(0.5)
        assert spine.effect_counts() == (8, 8)
    finally:
        loops.close()
    assert len(dead) == 2 and all(d.headers["x-cobuy-error"].startswith("DataError") for d in dead)
    assert _duplicates() - before == 1


@pytest.fixture
def embedded_spine(tmp_path, monkeypatch):
    """The spine on the embedded broker and database (`COBUY_AMQP_URL` and `COBUY_DATABASE_URL` unset)."""
    from tests.integration.spine_app import Spine

    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("COBUY_AMQP_URL", raising=False)
    monkeypatch.delenv("COBUY_DATABASE_URL", raising=False)
    spine = Spine()
    yield spine
    spine.engine.dispose()


def test_the_embedded_broker_and_database_apply_a_burst_once_and_dead_letter_its_poison_alone(embedded_spine):
    from tests.integration.test_consumer_bursts import _Recording

    spine = embedded_spine
    ids = spine.produce(30)
    _published(spine, 30)
    handler = _Recording(spine, {ids[7]})
    loops = Loops(Consumer(spine.bus, "spine", spine.sessions, inbox, {EVENT: handler}, prefetch=10, burst=10).run)
    try:
        wait_for(lambda: spine.effect_counts() == (29, 29), 30, what="29 effects")
        [dead] = _dead_letters(spine, 1)
        time.sleep(0.5)
        assert spine.effect_counts() == (29, 29)
    finally:
        loops.close()
    assert ids[7] in (dead.body.decode() if isinstance(dead.body, bytes) else dead.body)
    per_transaction = {t: handler.transactions.count(t) for t in set(handler.transactions)}
    assert max(per_transaction.values()) > 1  # bursts did happen on the embedded transport


def test_an_embedded_consumer_killed_between_a_bursts_commit_and_its_acks_redelivers_it_once(embedded_spine):
    from tests.integration.test_spine import _peer

    spine = embedded_spine
    spine.produce(20)
    _published(spine, 20)
    crashed = _peer("consume-burst-crash-before-ack")
    assert crashed.returncode == 9, crashed.stderr.decode()[-2000:]
    committed, _ = spine.effect_counts()
    assert committed > 1  # a burst committed, none of it acked
    before = _duplicates()
    loops = Loops(spine.consumer(burst=10).run)
    try:
        wait_for(lambda: spine.effect_counts() == (20, 20), 30, what="20 effects")
        time.sleep(1.5)
        assert spine.effect_counts() == (20, 20)
        assert _duplicates() - before == committed
    finally:
        loops.close()
