"""The count follows every published reservation event, even when a recount fails."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select

from shared import clock, db
from shared.migrations import upgrade
from shared.outbox import Relay, record_event
from tests.support import wait_for


class _Delivered:
    """Stands in for the broker: what this test proves happens after the publish."""

    def publish_many(self, envelopes):
        pass

    def reset(self):
        pass

    def heartbeat(self):
        pass


@pytest.fixture
def sessions(servers, tmp_path):
    from services.reservation.tables import MIGRATIONS

    schema = f"recount_{uuid.uuid4().hex[:8]}"
    url = servers[0].replace("postgresql://", "postgresql+psycopg://", 1) if servers[0] else \
        f"sqlite:///{tmp_path}/reservation.db"
    engine = db.make_engine(url, schema)  # a schema of its own beside the session's `cobuy up`
    try:
        upgrade(engine, MIGRATIONS, schema)
        yield db.session_factory(engine)
    finally:
        engine.dispose()


def test_a_recount_that_fails_once_is_done_later_without_another_reservation(sessions, monkeypatch):
    from services.reservation import reservations
    from services.reservation.recounts import note_recounts, recounter
    from services.reservation.tables import outbox, pending_recounts, reservations as rows, tallies

    real, calls = reservations.refresh_tally, []

    def fails_once(session, offer_id):
        calls.append(offer_id)
        if len(calls) == 1:
            raise RuntimeError("the recount failed")
        real(session, offer_id)

    monkeypatch.setattr(reservations, "refresh_tally", fails_once)
    offer_id = str(uuid.uuid4())
    with sessions.begin() as session:
        session.execute(rows.insert().values(id=str(uuid.uuid4()), offer_id=offer_id, name="Ann", email="ann@x.org",
                                             email_key="ann@x.org", status="active", created_at=clock.now()))
        record_event(session, outbox, "reservation", "ReservationAccepted", {"offer_id": offer_id})
    relay = Relay(sessions, outbox, _Delivered(), poll_seconds=0.02, on_sent=note_recounts,
                  follow_up=recounter(sessions))
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        def count():
            with sessions() as session:
                return session.execute(select(tallies.c.count).where(tallies.c.offer_id == offer_id)).scalar()

        wait_for(lambda: count() == 1, 20, what="the count refreshed after the failed recount")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(calls) >= 2
    with sessions() as session:
        assert session.execute(select(pending_recounts)).all() == []
