"""The outbox keeps a week of published events. The relay's poll, `status` (every 5 s) and the prune must
find the few events in line, or the few old enough to forget, without reading the week — whatever
PostgreSQL's statistics say about the table."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event as sa_event, text

from shared import clock, db
from shared.envelope import Envelope
from shared.migrations import upgrade
from shared.outbox import Relay
from tests.plans import MODES, blocks_read, executed_plan


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


def test_the_relay_reads_the_events_in_line_not_the_week_of_published_ones(servers):
    from services.reservation.tables import MIGRATIONS, outbox

    if servers[0] is None:
        pytest.skip("the plans are PostgreSQL's")
    schema = f"outbox_history_{uuid.uuid4().hex[:8]}"
    engine = db.make_engine(servers[0].replace("postgresql://", "postgresql+psycopg://", 1), schema)
    try:
        upgrade(engine, MIGRATIONS, schema)
        with engine.begin() as connection:
            # As in B1: a busy table that autovacuum has not reached yet, its statistics gathered while
            # it was young (every event in line then). Every event went in line and was published (an
            # UPDATE: the row it was in line as is dead, and so are its index entries), a week of them;
            # a few are in line now.
            connection.execute(text("ALTER TABLE outbox SET (autovacuum_enabled = false)"))
            _events(connection, 200, sent_days_ago=None)
            connection.execute(text("ANALYZE outbox"))
            _events(connection, 30000, sent_days_ago=None)
            connection.execute(text("UPDATE outbox SET sent_at = now() - interval '3 days'"))
            connection.execute(text("UPDATE outbox SET sent_at = now() - interval '8 days' WHERE seq <= 10"))
            _events(connection, 1, sent_days_ago=None, quarantined=True)
        statements: list = []

        def keep(_conn, _cursor, statement, parameters, _context, _many):
            if "set_config" in statement or "outbox" in statement and not statement.lstrip().startswith("UPDATE"):
                statements.append((statement, parameters))

        relay = Relay(db.session_factory(engine), outbox, Accepting(), retention=timedelta(days=7))
        for _ in range(2):  # the relay polls all the time: the first look may step over what died since,
            # the second must not (a bitmap scan did, on every poll)
            with engine.begin() as connection:
                _events(connection, 5, sent_days_ago=None)
            statements.clear()
            sa_event.listen(engine, "before_cursor_execute", keep)
            try:
                assert relay.relay_once() == 5
                status = relay.status()
                relay.prune()
            finally:
                sa_event.remove(engine, "before_cursor_execute", keep)
        assert (status["pending"], status["quarantined"], len(status["quarantined_rows"])) == (0, 1, 1)
        settings = tuple(dict.fromkeys(statement for statement, _ in statements if "set_config" in statement))
        reads = [(statement, parameters) for statement, parameters in statements if "set_config" not in statement]
        assert len(reads) == 6  # the poll; status's two counts, its oldest and its list; the prune
        with engine.begin() as connection:
            _events(connection, 5, sent_days_ago=None)  # in line again, for the poll's plan
        for statement, parameters in reads:
            for mode in MODES:  # psycopg prepares a statement run often: the generic plan too
                plan = executed_plan(engine, statement, parameters, mode, settings)
                # the index's pages of entries marked dead (~85 for 30,000), not the 3,750 pages of their rows
                assert blocks_read(plan) <= 200, (statement, mode, blocks_read(plan), json.dumps(plan))
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
