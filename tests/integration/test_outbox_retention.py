"""The outbox keeps a week of published events, and every unpublished one, however old."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from shared import clock, db
from shared.migrations import upgrade
from shared.outbox import Relay


def test_published_events_older_than_the_retention_are_pruned_and_nothing_else(tmp_path):
    from services.reservation.tables import MIGRATIONS
    from services.reservation.tables import outbox

    engine = db.make_engine(f"sqlite:///{tmp_path}/reservation.db", "reservation")
    try:
        upgrade(engine, MIGRATIONS, "reservation")
        sessions = db.session_factory(engine)
        now = clock.now()
        rows = {"old-sent": now - timedelta(days=8), "recent-sent": now - timedelta(days=6), "old-unsent": None}
        with sessions.begin() as session:
            session.execute(outbox.insert(), [
                {"event_id": name, "type": "T", "body": "{}", "created_at": now - timedelta(days=9), "sent_at": sent,
                 "attempts": 0} for name, sent in rows.items()])
        relay = Relay(sessions, outbox, publisher=None, retention=timedelta(days=7))
        assert relay.prune() == 1
        assert relay.prune() == 0
        with sessions() as session:
            left = set(session.execute(select(outbox.c.event_id)).scalars())
        assert left == {"recent-sent", "old-unsent"}
    finally:
        engine.dispose()
