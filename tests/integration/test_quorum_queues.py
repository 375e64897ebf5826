"""COBUY_AMQP_QUEUE_TYPE=quorum: the durable queues (the dead-letter queue too) are declared as quorum
queues, replicated on a RabbitMQ cluster; events are published, consumed and dead-lettered as before.
On this machine's RabbitMQ, in a vhost of the test's own."""
from __future__ import annotations

import pytest

from shared import config as config_module
from shared.envelope import Envelope
from shared.messaging import Bus, Publisher
from tests import infra
from tests.support import wait_for

SUBSCRIPTIONS = {"catalog": ("OfferPublished",)}


@pytest.fixture
def quorum_bus(servers, tmp_path, monkeypatch):
    if servers[1] is None:
        pytest.skip("the embedded broker has one queue type")
    with infra.own_vhost() as (amqp_url, prefix, vhost):
        for name, value in {"COBUY_AMQP_URL": amqp_url, "COBUY_EXCHANGE_PREFIX": prefix,
                            "COBUY_AMQP_QUEUE_TYPE": "quorum", "COBUY_DATA_DIR": str(tmp_path)}.items():
            monkeypatch.setenv(name, value)
        bus = Bus(config_module.load(), SUBSCRIPTIONS)
        yield bus, vhost


def test_queues_are_quorum_queues_that_carry_and_dead_letter_events(quorum_bus):
    bus, vhost = quorum_bus
    queue = bus.queues[("catalog", "OfferPublished")]
    publisher = Publisher(bus)
    try:
        publisher.publish_many([Envelope("OfferPublished", {"offer_id": "o-1"}, "catalog"),
                                Envelope("OfferPublished", {"offer_id": "o-2"}, "catalog")])
    finally:
        publisher.reset()
    assert infra.queue_types(vhost) == {queue.name: "quorum", bus.dead_queue.name: "quorum"}
    with bus.connect() as connection:
        channel = connection.channel()
        first = queue(channel).get(no_ack=False)
        assert first.payload["data"] == {"offer_id": "o-1"}
        first.ack()
        second = queue(channel).get(no_ack=False)
        second.reject()  # requeue=False: the queue's dead-letter exchange takes it
        dead = wait_for(lambda: bus.dead_queue(channel).get(no_ack=True), 5, interval=0.1,
                        what="the rejected event in the dead-letter queue")  # dead-lettering is asynchronous
        assert dead.payload["data"] == {"offer_id": "o-2"}


def test_an_unknown_queue_type_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COBUY_AMQP_QUEUE_TYPE", "mirrored")
    with pytest.raises(ValueError, match="COBUY_AMQP_QUEUE_TYPE"):
        config_module.load()
