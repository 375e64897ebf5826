"""The platform's spine on the real broker and database: outbox → relay (confirms) → consumer
(inbox, ack after commit) → exactly one effect, through crashes, redeliveries, a broker
restart and poison messages."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from kombu import Producer

from shared import metrics
from shared.envelope import Envelope
from tests.integration.spine_app import EVENT, Spine
from tests.support import ROOT, wait_for


@pytest.fixture
def spine(servers, tmp_path, monkeypatch):
    database_url, amqp_url, prefix = servers
    if amqp_url is None:
        pytest.skip("crash/redelivery guarantees are the real broker's: no RabbitMQ here (embedded transport)")
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COBUY_AMQP_URL", amqp_url)
    tag = os.urandom(3).hex()
    monkeypatch.setenv("COBUY_EXCHANGE_PREFIX", f"{prefix}-spine-{tag}")
    monkeypatch.setenv("SPINE_SCHEMA", f"spine_{tag}")
    if database_url:
        monkeypatch.setenv("COBUY_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("COBUY_DATABASE_URL", raising=False)
    spine = Spine()
    yield spine
    spine.engine.dispose()


class Loops:
    """Relay and consumer running in this process until the test ends."""

    def __init__(self, *loops):
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=loop, args=(self.stop,), daemon=True) for loop in loops]
        for thread in self.threads:
            thread.start()

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def _peer(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.integration.spine_app", mode], cwd=ROOT, env=os.environ.copy(),
                          capture_output=True, timeout=60)


def _duplicates() -> float:
    return metrics.EVENTS_DUPLICATE.labels(EVENT)._value.get()


def test_each_event_crosses_once(spine):
    spine.produce(100)
    loops = Loops(spine.relay().run, spine.consumer().run)
    try:
        wait_for(lambda: spine.effect_counts() == (100, 100), 30, what="100 effects")
        time.sleep(0.5)
        assert spine.effect_counts() == (100, 100) and spine.unsent() == 0
    finally:
        loops.close()


def test_consumer_killed_before_ack_redelivers_with_one_effect(spine):
    spine.produce(20)
    relay = Loops(spine.relay().run)
    try:
        wait_for(lambda: spine.unsent() == 0, 20, what="all published")
        crashed = _peer("consume-crash-before-ack")
        assert crashed.returncode == 9, crashed.stderr.decode()[-2000:]
        assert spine.effect_counts() == (1, 1)  # committed, never acked
        before = _duplicates()
        consumer = Loops(spine.consumer().run)
        try:
            wait_for(lambda: spine.effect_counts() == (20, 20), 30, what="20 effects")
            time.sleep(0.5)
            assert spine.effect_counts() == (20, 20)
            assert _duplicates() - before == 1  # the redelivered one was seen and skipped
        finally:
            consumer.close()
    finally:
        relay.close()


def test_relay_killed_after_publish_publishes_again_with_one_effect(spine):
    spine.produce(20)
    crashed = _peer("relay-crash-after-publish")
    assert crashed.returncode == 9, crashed.stderr.decode()[-2000:]
    assert spine.unsent() == 20  # published and confirmed, never marked sent
    before = _duplicates()
    loops = Loops(spine.relay().run, spine.consumer().run)
    try:
        wait_for(lambda: spine.effect_counts() == (20, 20) and spine.unsent() == 0, 30, what="20 effects")
        wait_for(lambda: _duplicates() - before == 20, 10, what="20 duplicates skipped")
        assert spine.effect_counts() == (20, 20)
    finally:
        loops.close()


@pytest.mark.skipif(not shutil.which("rabbitmqctl"), reason="needs rabbitmqctl to restart the broker's app")
def test_broker_app_restart_mid_stream_loses_nothing(spine):
    loops = Loops(spine.relay().run, spine.consumer().run)
    produced: list[str] = []
    producer = threading.Thread(target=lambda: [produced.extend(spine.produce(1)) or time.sleep(0.01)
                                                for _ in range(300)])
    try:
        producer.start()
        wait_for(lambda: spine.effect_counts()[0] >= 30, 20, what="the stream to flow")
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)
        time.sleep(2)
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
        subprocess.run(["rabbitmqctl", "-q", "await_startup"], timeout=120)
        producer.join(timeout=60)
        assert len(produced) == 300
        wait_for(lambda: spine.effect_counts() == (300, 300), 90, interval=0.2, what="all 300 effects after the restart")
    finally:
        loops.close()


def test_poison_messages_go_to_the_dead_letter_queue_and_the_consumer_keeps_going(spine):
    loops = Loops(spine.relay().run, spine.consumer().run)
    try:
        with spine.bus.connect() as connection:
            spine.bus.declare(connection)
            producer = Producer(connection.channel(), exchange=spine.bus.exchange)
            producer.publish(b"\x00not json at all", routing_key=EVENT, content_type="application/octet-stream",
                             content_encoding="binary")
            producer.publish({"no": "envelope"}, routing_key=EVENT, serializer="json")
            producer.publish(Envelope(type="SomethingElse", data={}, producer="x").to_dict(), routing_key=EVENT,
                             serializer="json")
        spine.produce(5)
        wait_for(lambda: spine.effect_counts() == (5, 5), 30, what="the good events after the poison")
        with spine.bus.connect() as connection:
            queue = spine.bus.dead_queue(connection.channel())
            dead = []
            deadline = time.monotonic() + 10
            while len(dead) < 3 and time.monotonic() < deadline:
                message = queue.get(no_ack=True, accept=["json", "application/octet-stream"])
                if message is None:
                    time.sleep(0.1)
                    continue
                dead.append(message)
        assert len(dead) == 3
        reasons = " | ".join(m.headers["x-cobuy-error"] for m in dead)
        assert "undecodable" in reasons and "malformed envelope" in reasons and "no handler" in reasons
    finally:
        loops.close()


def test_a_batch_is_confirmed_as_a_whole_and_an_unroutable_event_fails_it(spine):
    """Confirms are awaited per batch: 300 events reach their queue; an event no queue is bound
    for fails the whole call (mandatory + return), so the relay would publish the batch again."""
    from shared.messaging import Publisher, Unroutable

    publisher = Publisher(spine.bus)
    try:
        with spine.bus.connect() as connection:
            spine.bus.declare(connection)
        batch = [Envelope(EVENT, {"n": i}, "test") for i in range(300)]
        publisher.publish_many(batch)
        queue = next(iter(spine.bus.queues.values()))
        with spine.bus.connect() as connection:
            waiting = queue(connection.channel()).queue_declare(passive=True).message_count
        assert waiting == 300 and not publisher._unconfirmed
        with pytest.raises(Unroutable, match="NobodyListens"):
            publisher.publish_many([Envelope(EVENT, {"n": 300}, "test"), Envelope("NobodyListens", {}, "test")])
    finally:
        publisher.reset()
