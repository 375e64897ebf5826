"""A minimal producer and consumer built from shared/ alone, for the spine tests.

The consumer's effect is deliberately NOT idempotent (it inserts a row per application),
so only the inbox stands between a redelivery and a double effect.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import uuid

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from shared import config as config_module, db
from shared.messaging import Bus, Consumer, Publisher
from shared.outbox import Relay, inbox_table, outbox_table, record_event

EVENT = "SpinePinged"
SUBSCRIPTIONS = {"spine": (EVENT,)}

metadata = MetaData()
pings = Table("pings", metadata, Column("id", String(36), primary_key=True))
effects = Table("effects", metadata, Column("n", Integer, primary_key=True, autoincrement=True),
                Column("ping_id", String(36), nullable=False))
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


class Spine:
    def __init__(self):
        config = config_module.load()
        self.config = dataclasses.replace(config, relay_poll_seconds=0.02)
        schema = os.environ.get("SPINE_SCHEMA", "spine")
        self.engine = db.make_engine(self.config.database_url_for(schema), schema)
        metadata.create_all(self.engine)
        self.sessions = db.session_factory(self.engine)
        self.bus = Bus(self.config, SUBSCRIPTIONS)

    def produce(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            ping_id = str(uuid.uuid4())
            with self.sessions.begin() as session:
                session.execute(pings.insert().values(id=ping_id))
                record_event(session, outbox, "spine", EVENT, {"ping_id": ping_id})
            ids.append(ping_id)
        return ids

    @staticmethod
    def apply(session, envelope) -> None:
        session.execute(effects.insert().values(ping_id=envelope.data["ping_id"]))

    def consumer(self, cls=Consumer, burst: int = 1) -> Consumer:
        return cls(self.bus, "spine", self.sessions, inbox, {EVENT: self.apply}, prefetch=10, burst=burst)

    def relay(self, publisher: Publisher | None = None) -> Relay:
        return Relay(self.sessions, outbox, publisher or Publisher(self.bus), poll_seconds=0.02, batch_size=50)

    def effect_counts(self) -> tuple[int, int]:
        """(applications, distinct pings applied)."""
        with self.sessions() as session:
            return (session.execute(select(func.count()).select_from(effects)).scalar_one(),
                    session.execute(select(func.count(func.distinct(effects.c.ping_id)))).scalar_one())

    def unsent(self) -> int:
        with self.sessions() as session:
            return session.execute(select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))).scalar_one()


class _CrashBeforeAck(Consumer):
    def ack(self, message):
        os._exit(9)  # the effect is committed; the broker never hears of it


class _CrashAfterPublish(Publisher):
    def publish_many(self, envelopes):
        super().publish_many(envelopes)  # confirmed by the broker…
        os._exit(9)  # …but the relay dies before marking the rows sent


if __name__ == "__main__":
    import threading

    spine = Spine()
    stop = threading.Event()
    if sys.argv[1] == "consume-crash-before-ack":
        spine.consumer(_CrashBeforeAck).run(stop)
    elif sys.argv[1] == "consume-burst-crash-before-ack":
        spine.consumer(_CrashBeforeAck, burst=10).run(stop)
    elif sys.argv[1] == "relay-crash-after-publish":
        spine.relay(_CrashAfterPublish(spine.bus)).run(stop)
    sys.exit(3)  # neither crashed: the seam did not fire
