"""The mailer plans the confirmations that arrive together in a statement per table
(`Planner.on_reservations_accepted`, run by the consumer's bursts): what it stores must be what
planning them one by one stores, on SQLite and on PostgreSQL, where an upsert may not touch one
row twice in a statement (one reservation named by two events of one run)."""
from __future__ import annotations

from sqlalchemy import select

from services.mailer.planning import Planner
from services.mailer.tables import MIGRATIONS, batches, deliveries, purchasers
from shared import db
from shared.envelope import Envelope
from shared.migrations import upgrade
from tests.infra import postgres_schema
from tests.use_cases import T0

OFFER = {"title": "Kettle", "currency": "usd", "closes_at": "2030-01-01T12:10:00+00:00", "unit_price": 5000,
         "minimum_reservations": 3, "holder_name": "First"}


def accepted(reservation_id: str, email: str, revision: int, **more) -> Envelope:
    return Envelope("ReservationAccepted", {"reservation_id": reservation_id, "offer_id": "o1", "name": "Ann",
                                            "email": email, "cancel_token": reservation_id * 40, "offer": OFFER,
                                            "revision": revision, **more}, "reservation")


EVENTS = [
    accepted("a", "Ann@Example.org", 1),
    accepted("b", "not an address", 1),  # not deliverable: skipped, the others planned
    accepted("c", "new@example.org", 2),
    accepted("c", "old@example.org", 1),  # the same reservation, an older revision arriving later
    accepted("d", "dee@example.org", 1, status="pending", verify_token="v" * 40, lang="ja"),
]


def stored(sessions) -> dict:
    with sessions() as session:
        return {
            "deliveries": sorted(tuple(r) for r in session.execute(select(
                deliveries.c.event_id, deliveries.c.template, deliveries.c.recipient, deliveries.c.recipient_name,
                deliveries.c.batch_id, deliveries.c.extra, deliveries.c.message_id, deliveries.c.state))),
            "batches": sorted(tuple(r) for r in session.execute(select(batches.c.id, batches.c.context))),
            "purchasers": sorted(tuple(r) for r in session.execute(select(
                purchasers.c.reservation_id, purchasers.c.email, purchasers.c.active, purchasers.c.revision,
                purchasers.c.lang))),
        }


def plan_both_ways(alone, together) -> tuple[dict, dict]:
    handler = Planner("cobuy.example").handlers()["ReservationAccepted"]
    for event in EVENTS:
        with alone.begin() as session:
            handler(session, event)
    with together.begin() as session:
        handler.many(session, EVENTS)
    return stored(alone), stored(together)


def check(one_by_one: dict, at_once: dict) -> None:
    assert at_once == one_by_one
    assert sorted(d[2] for d in at_once["deliveries"]) == sorted(
        ["ann@example.org", "new@example.org", "old@example.org", "dee@example.org"])
    assert len(at_once["batches"]) == 5
    # c's newest revision is kept, whatever came last; d waits for her verify link before price drops
    assert at_once["purchasers"] == [("a", "Ann@Example.org", True, 1, "en"), ("c", "new@example.org", True, 2, "en"),
                                     ("d", "dee@example.org", False, 1, "ja")]


def test_confirmations_planned_together_are_what_planning_them_one_by_one_stores(sessions_for, tmp_path, at):
    at(T0)
    alone = sessions_for("mailer", MIGRATIONS)
    (tmp_path / "together").mkdir()
    engine = db.make_engine(f"sqlite:///{tmp_path / 'together' / 'mailer.db'}", "mailer")
    try:
        upgrade(engine, MIGRATIONS, "mailer")
        check(*plan_both_ways(alone, db.session_factory(engine)))
    finally:
        engine.dispose()


def test_on_postgresql_one_reservation_twice_in_a_run_is_one_row_of_the_upsert(servers, at):
    at(T0)
    why = "an upsert touching a row twice in one statement is PostgreSQL's error"
    with postgres_schema(servers, "alone", why) as (alone, schema_a), \
            postgres_schema(servers, "together", why) as (together, schema_b):
        upgrade(alone, MIGRATIONS, schema_a)
        upgrade(together, MIGRATIONS, schema_b)
        check(*plan_both_ways(db.session_factory(alone), db.session_factory(together)))
