"""The count follows every published reservation event, even when a recount fails."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from shared import clock, db
from shared.migrations import upgrade
from shared.outbox import Relay, record_event
from tests.support import wait_for
from tests.use_cases import recorded


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

    def fails_once(session, offer_id, interval=None):
        calls.append(offer_id)
        if len(calls) == 1:
            raise RuntimeError("the recount failed")
        return real(session, offer_id, interval)

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


def test_a_count_put_off_by_coalescing_follows_without_another_reservation(sessions, at):
    """Under load an offer is counted once per interval: the changes in between wait for the next
    count, and the relay makes that count when it is due, though no batch comes after them. The
    injected clock is held still, so "within the interval" holds however slow the machine is."""
    from services.reservation.recounts import note_recounts, recounter
    from services.reservation.tables import outbox, pending_recounts, reservations as rows, tallies

    start = clock.now()
    at(start)
    offer_id = str(uuid.uuid4())

    def reserve(name):
        with sessions.begin() as session:
            session.execute(rows.insert().values(id=str(uuid.uuid4()), offer_id=offer_id, name=name,
                                                 email=f"{name}@x.org", email_key=f"{name}@x.org", status="active",
                                                 created_at=clock.now()))
            record_event(session, outbox, "reservation", "ReservationAccepted", {"offer_id": offer_id})

    def tally():
        with sessions() as session:
            return session.execute(select(tallies.c.count, tallies.c.version)
                                   .where(tallies.c.offer_id == offer_id)).first()

    def unsent():
        with sessions() as session:
            return session.execute(select(outbox.c.seq).where(outbox.c.sent_at.is_(None))).all()

    def noted():
        with sessions() as session:
            return session.execute(select(pending_recounts.c.offer_id)).scalars().all()

    reserve("ann")
    relay = Relay(sessions, outbox, _Delivered(), poll_seconds=0.02, on_sent=note_recounts,
                  follow_up=recounter(sessions, interval=0.2))
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: tuple(tally() or ()) == (1, 1), 20, what="the first count, at once")
        reserve("bob")
        reserve("cy")
        wait_for(lambda: not unsent() and noted() == [offer_id], 20, what="the reservations sent and noted")
        stop.wait(0.3)  # the relay goes on running (more than the interval, in real time)…
        assert tuple(tally()) == (1, 1) and noted() == [offer_id]  # …and the clock says it is not due
        at(start + timedelta(seconds=0.2))
        wait_for(lambda: tuple(tally() or ()) == (3, 2), 20, what="the put-off count, once due")
    finally:
        stop.set()
        thread.join(timeout=10)
    counts = [e.data for e in recorded(sessions, outbox, "ReservationCountChanged")]
    assert [(d["count"], d["version"]) for d in counts] == [(1, 1), (3, 2)]
    assert noted() == []



@pytest.mark.parametrize("with_follow_up", [False, True])
def test_an_idle_relay_waits_its_poll_between_looks_with_or_without_a_follow_up(sessions, with_follow_up):
    """Every service's relay idles at its poll (a relay that spun here cost auction 0.8 CPU-s a second)."""
    from services.reservation.recounts import note_recounts, recounter
    from services.reservation.tables import outbox

    extra = {"on_sent": note_recounts, "follow_up": recounter(sessions, 0.1)} if with_follow_up else {}
    relay = Relay(sessions, outbox, _Delivered(), poll_seconds=0.05, **extra)
    looks = []
    relay_once = relay.relay_once
    relay.relay_once = lambda: looks.append(1) or relay_once()
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    stop.wait(1.0)
    stop.set()
    thread.join(timeout=10)
    assert 0 < len(looks) <= 30  # one look per 0.05–0.1 s: ten to twenty in the second, however slow the machine


def test_put_off_work_runs_when_due_and_what_it_records_goes_out_at_once_however_long_the_poll(sessions):
    """The relay polls every 30 s here: the put-off follow-up still runs 0.2 s later (the idle wait
    is cut short), and the event it records is published in the same breath, not a poll later."""
    from services.reservation.tables import outbox

    calls = []

    def follow_up():
        calls.append(1)
        if len(calls) == 1:
            return 0.2  # put off
        if len(calls) == 2:
            with sessions.begin() as session:
                record_event(session, outbox, "reservation", "ReservationCountChanged", {"offer_id": "o1"})
        return None

    relay = Relay(sessions, outbox, _Delivered(), poll_seconds=30, follow_up=follow_up)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        def sent():
            with sessions() as session:
                return session.execute(select(outbox.c.sent_at).where(outbox.c.type == "ReservationCountChanged")
                                       ).scalar()
        wait_for(sent, 20, what="the follow-up's event published well before the next poll")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(calls) >= 2
