"""The outbox keeps a week of published events. The relay's poll, `status` (every 5 s) and the prune must
find the few events in line, or the few old enough to forget, without reading the week — whatever
PostgreSQL's statistics say about the table."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from shared import clock, db
from shared.envelope import Envelope
from shared.migrations import upgrade
from shared.outbox import Relay
from tests.infra import postgres_schema
from tests.plans import MODES, Statements, blocks_read, executed_plan


class Accepting:
    """The broker, for a test of what the relay reads: takes every batch."""

    def __init__(self):
        self.published: list[Envelope] = []

    def publish_many(self, envelopes: list[Envelope]) -> None:
        self.published.extend(envelopes)

    def reset(self) -> None:
        pass


def _events(connection, count: int, *, sent_days_ago: float | None, quarantined: bool = False) -> None:
    now = clock.now()
    sent = None if sent_days_ago is None else now - timedelta(days=sent_days_ago)
    connection.execute(text(
        "INSERT INTO outbox (event_id, type, body, created_at, sent_at, attempts, quarantined_at) "
        "SELECT gen_random_uuid()::text, 'ReservationAccepted', :body, :created, :sent, 0, :quarantined "
        "FROM generate_series(1, :count)"),
        {"body": json.dumps(Envelope("ReservationAccepted", {"note": "x" * 600}, "reservation").to_dict()),
         "created": sent or now, "sent": sent, "quarantined": now if quarantined else None, "count": count})


@pytest.fixture(params=["young", "none"])
def busy_outbox(servers, request):
    """A reservation outbox that autovacuum has not reached yet: 30,000 events went in line (and are
    taken out by each test), behind 200 that were in line when the statistics were gathered (young), or
    with no statistics at all (none: an outbox that grew in a burst, a new or freshly migrated service)."""
    from services.reservation.tables import MIGRATIONS

    with postgres_schema(servers, "outbox_history", "the plans are PostgreSQL's") as (engine, schema):
        upgrade(engine, MIGRATIONS, schema)
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE outbox SET (autovacuum_enabled = false)"))
            _events(connection, 200, sent_days_ago=None)
            if request.param == "young":
                connection.execute(text("ANALYZE outbox"))
            _events(connection, 30000, sent_days_ago=None)
        yield engine


def test_the_relay_reads_the_events_in_line_not_the_week_of_published_ones(busy_outbox):
    """young: statistics gathered while the table was young (B1). none: an outbox that grew in a burst before
    autovacuum first came (a new service, or a freshly migrated one): PostgreSQL then plans the poll as a
    bitmap scan of ix_outbox_waiting and a sort, every poll visiting every event taken out of line since."""
    from services.reservation.tables import outbox

    engine = busy_outbox
    with engine.begin() as connection:
        # Every event went in line and was published (an UPDATE: the row it was in line as is dead, and
        # so are its index entries), a week of them; a few are in line now.
        connection.execute(text("UPDATE outbox SET sent_at = now() - interval '3 days'"))
        connection.execute(text("UPDATE outbox SET sent_at = now() - interval '8 days' WHERE seq <= 10"))
        _events(connection, 1, sent_days_ago=None, quarantined=True)
    relay = Relay(db.session_factory(engine), outbox, Accepting(), retention=timedelta(days=7))
    for _ in range(2):  # the relay polls all the time: the first look may step over what died since,
        # the second must not (a bitmap scan did, on every poll)
        with engine.begin() as connection:
            _events(connection, 5, sent_days_ago=None)
        with Statements(engine, lambda s: "outbox" in s and not s.lstrip().startswith("UPDATE")) as run:
            assert relay.relay_once() == 5
            status = relay.status()
            relay.prune()
    assert (status["pending"], status["quarantined"], len(status["quarantined_rows"])) == (0, 1, 1)
    assert len(run.kept) == 6  # the poll; status's two counts, its oldest and its list; the prune
    with engine.begin() as connection:
        _events(connection, 5, sent_days_ago=None)  # in line again, for the poll's plan
    for statement, parameters, settings in run.kept:
        # each read with the settings its own transaction sent, none where it sent none (the prune)
        for mode in MODES:  # psycopg prepares a statement run often: the generic plan too
            plan = executed_plan(engine, statement, parameters, mode, settings)
            # the index's pages of entries marked dead (~85 for 30,000), not the 3,750 pages of their rows
            assert blocks_read(plan) <= 200, (statement, settings, mode, blocks_read(plan), json.dumps(plan))


def test_the_relays_poll_on_its_own_reads_the_events_in_line(busy_outbox):
    """As above, the poll alone: `status` (every 5 s) walks ix_outbox_waiting with an index scan, which marks
    the dead entries, and a bitmap scan after it skips them, so the test above cannot tell whether the poll's
    own transaction sent the settings. Between two `status` calls a busy relay takes thousands of events out
    of line; each poll of its own must not visit them all again."""
    from services.reservation.tables import outbox

    engine = busy_outbox
    with engine.begin() as connection:
        connection.execute(text("UPDATE outbox SET sent_at = now()"))  # taken out of line since the last status
    relay = Relay(db.session_factory(engine), outbox, Accepting(), retention=timedelta(days=7))
    for _ in range(2):  # the first poll may step over what died since; the second must not
        with engine.begin() as connection:
            _events(connection, 5, sent_days_ago=None)
        with Statements(engine, lambda s: "outbox" in s and s.lstrip().startswith("SELECT")) as run:
            assert relay.relay_once() == 5
    [(statement, parameters, settings)] = run.kept
    with engine.begin() as connection:
        _events(connection, 5, sent_days_ago=None)
    for mode in MODES:
        plan = executed_plan(engine, statement, parameters, mode, settings)
        assert blocks_read(plan) <= 200, (settings, mode, blocks_read(plan), json.dumps(plan))
