"""An idle relay asks whether anything is in line in one round trip (`shared.outbox.IdleLook`) before it
polls in a transaction: ten times a second, in every service, that was an idle stack's biggest cost. The
look must never say "empty" when something waits, must read the line and not the week behind it, and
must give its pooled connection back as SQLAlchemy expects it (in transactions, not autocommit)."""
from __future__ import annotations

import json
import threading
import time

from sqlalchemy import func, select, text, update

from shared import clock, db
from shared.envelope import Envelope
from shared.migrations import upgrade
from shared.outbox import IdleLook, Relay
from tests.infra import postgres_schema
from tests.integration.test_outbox_history import Accepting, busy_outbox  # noqa: F401  (the fixture)
from tests.plans import MODES, blocks_read, executed_plan
from tests.support import wait_for

class Publishing(Accepting):
    def heartbeat(self) -> None:
        pass


WHY = "the idle look is PostgreSQL's (elsewhere the relay always polls)"


def _outbox(servers, prefix):
    from services.reservation.tables import MIGRATIONS

    schema = postgres_schema(servers, prefix, WHY)
    engine, name = schema.__enter__()
    upgrade(engine, MIGRATIONS, name)
    return schema, engine


def _put(engine, **values) -> None:
    from services.reservation.tables import outbox

    envelope = Envelope("ReservationAccepted", {"n": 1}, "reservation")
    with engine.begin() as connection:
        connection.execute(outbox.insert().values(event_id=envelope.id, type=envelope.type, attempts=0,
                                                  body=json.dumps(envelope.to_dict()), created_at=clock.now(),
                                                  **values))


def test_the_look_says_empty_only_when_nothing_waits_in_line(servers):
    from services.reservation.tables import outbox

    schema, engine = _outbox(servers, "idle_look")
    try:
        look = IdleLook(engine, outbox)
        assert look.empty()
        _put(engine, quarantined_at=clock.now())  # set aside: not in line, relay_once skips it too
        _put(engine, sent_at=clock.now())
        assert look.empty()
        _put(engine)
        assert not look.empty()
        with engine.begin() as connection:
            connection.execute(update(outbox).where(outbox.c.sent_at.is_(None), outbox.c.quarantined_at.is_(None))
                               .values(sent_at=clock.now()))
        assert look.empty()
    finally:
        schema.__exit__(None, None, None)


def test_a_look_gives_its_connection_back_in_transactions_and_a_failed_one_says_look_properly(servers):
    from services.reservation.tables import outbox

    schema, engine = _outbox(servers, "idle_look_conn")
    try:
        look = IdleLook(engine, outbox)
        assert look.empty()
        # The pool's one connection, after the look: a rolled-back transaction must leave nothing
        # (a connection left in autocommit would have kept the row).
        sessions = db.session_factory(engine)
        with sessions() as session:
            session.execute(text("SELECT 1"))
            _put_in(session)
            session.rollback()
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(outbox)).scalar_one() == 0
        # Every connection it pooled killed under it (a restart, a failover): the look fails, says
        # "look properly" rather than "empty", and does not hand the dead connection out again.
        with postgres_schema(servers, "idle_look_admin", WHY) as (admin, _):
            with admin.connect() as connection:
                connection.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND datname = current_database() AND query LIKE '%EXISTS (SELECT 1 FROM \"outbox\"%'"))
        _put(engine)
        assert not look.empty()
        assert not look.empty()  # on a new connection, and truly: an event is in line
    finally:
        schema.__exit__(None, None, None)


def _put_in(session) -> None:
    from services.reservation.tables import outbox

    envelope = Envelope("ReservationAccepted", {"n": 1}, "reservation")
    session.execute(outbox.insert().values(event_id=envelope.id, type=envelope.type, attempts=0,
                                           body=json.dumps(envelope.to_dict()), created_at=clock.now()))


def test_the_look_reads_the_line_not_the_week_of_published_events(busy_outbox):
    from services.reservation.tables import outbox

    engine = busy_outbox
    with engine.begin() as connection:
        connection.execute(text("UPDATE outbox SET sent_at = now()"))  # 30,200 taken out of line: dead entries
    begin, settings, statement, commit = IdleLook(engine, outbox).sql.split("; ")
    assert (begin, commit) == ("BEGIN", "COMMIT")
    assert IdleLook(engine, outbox).empty()  # the first look may step over what died; the next must not
    for mode in MODES:
        plan = executed_plan(engine, statement, {}, mode, (settings,))
        assert blocks_read(plan) <= 200, (mode, blocks_read(plan), json.dumps(plan))


def test_an_idle_relay_looks_instead_of_polling_and_publishes_what_comes_next(servers):
    from services.reservation.tables import outbox

    schema, engine = _outbox(servers, "idle_relay")
    try:
        accepting = Publishing()
        relay = Relay(db.session_factory(engine), outbox, accepting, poll_seconds=0.02)
        polls = []
        once = relay.relay_once
        relay.relay_once = lambda: polls.append(time.monotonic()) or once()
        stop = threading.Event()
        thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
        thread.start()
        try:
            time.sleep(1.0)  # ~25 idle rounds at 0.04 s
            assert len(polls) <= 2, f"{len(polls)} polls in an idle second: the look is not used"
            _put(engine)
            wait_for(lambda: len(accepting.published) == 1, 5, what="the event published after the idle second")
        finally:
            stop.set()
            thread.join(timeout=10)
    finally:
        schema.__exit__(None, None, None)
