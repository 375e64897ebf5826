"""Price-drop mails (SPEC §10) on a real SQLite session, no server: the window rule by table, who is
told (the purchasers as reservation's events describe them, in any order), and each window once."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.mailer.planning import Planner
from services.mailer.price_drops import PriceDrops, next_window_due
from services.mailer.tables import MIGRATIONS, batches, deliveries, price_drops
from shared import clock
from shared.envelope import Envelope
from tests.use_cases import T0

DELAY, INTERVAL = timedelta(seconds=30), timedelta(minutes=10)
OFFER = {"title": "Kettle", "currency": "usd", "closes_at": "2030-01-01T13:00:00+00:00", "min_decrement": 10,
         "reservation_count": 3}
LOST = {"seller_id": "s1", "seller_name": "First", "seller_email": "first@example.org", "unit_price": 5000,
        "minimum_reservations": 3}


@pytest.mark.parametrize("planned, sent_after, due_after", [
    (False, None, DELAY),                     # the first interception: 30 s after it
    (True, None, None),                       # a window not left yet: folds into it
    (True, timedelta(seconds=-60), INTERVAL - timedelta(seconds=60)),  # left a minute ago: 10 min after it
    (True, -INTERVAL, DELAY),                 # left long ago: 30 s after this one
])
def test_next_window_due_by_table(planned, sent_after, due_after):
    sent_at = T0 + sent_after if sent_after is not None else None
    due = next_window_due(T0, planned, sent_at, DELAY, INTERVAL)
    assert due == (None if due_after is None else T0 + due_after)


@pytest.fixture
def sessions(sessions_for, at):
    at(T0)
    return sessions_for("mailer", MIGRATIONS)


PLANNER = Planner("cobuy.example", PriceDrops("cobuy.example", DELAY.total_seconds(), INTERVAL.total_seconds()))


def feed(sessions, type_: str, data: dict, occurred_at=None) -> None:
    event = Envelope(type_, data, "producer", occurred_at=clock.iso(occurred_at or clock.now()))
    with sessions.begin() as session:
        PLANNER.handlers()[type_](session, event)


def purchaser(sessions, i: int, type_: str = "ReservationAccepted", revision: int = 1, **extra) -> None:
    data = {"reservation_id": f"r{i}", "offer_id": "o1", "name": f"P{i}", "email": f"p{i}@example.org",
            "revision": revision, "cancel_token": "t", "offer": {**OFFER, "unit_price": 5000,
                                                                  "minimum_reservations": 3, "holder_name": "First"},
            **extra}
    feed(sessions, type_, data)


version = iter(range(1, 1000))


def intercept(sessions, price: int, was: int = 5000, at=None) -> None:
    feed(sessions, "OfferIntercepted", {
        "offer_id": "o1", "version": next(version), "kind": "voluntary",
        "condition": {"seller_id": "s2", "seller_name": f"Rival {price}", "unit_price": price,
                      "minimum_reservations": 3, "since": clock.iso(at or T0)},
        "intercepted": {**LOST, "unit_price": was}, "offer": OFFER}, occurred_at=at)


def expand_all(sessions) -> None:
    while PLANNER.price_drops.expand_one(sessions):
        pass


def price_drop_mails(sessions) -> list[tuple[str, int]]:
    with sessions() as session:
        rows = session.execute(select(deliveries.c.recipient, batches.c.context)
                               .join(batches, batches.c.id == deliveries.c.batch_id)
                               .where(deliveries.c.template == "price_drop").order_by(deliveries.c.id)).all()
    return [(r.recipient, json.loads(r.context)["condition"]["unit_price"]) for r in rows]


def test_interceptions_within_the_delay_fold_into_one_mail_per_active_purchaser_naming_the_last(sessions, at):
    for i in range(3):
        purchaser(sessions, i)
    intercept(sessions, 4900, at=T0)
    at(T0 + timedelta(seconds=10))
    intercept(sessions, 4800, was=4900, at=clock.now())
    at(T0 + timedelta(seconds=29))
    intercept(sessions, 4700, was=4800, at=clock.now())
    expand_all(sessions)
    assert price_drop_mails(sessions) == []  # not before 30 s after the first
    at(T0 + timedelta(seconds=30))
    expand_all(sessions)
    expand_all(sessions)
    assert sorted(price_drop_mails(sessions)) == [(f"p{i}@example.org", 4700) for i in range(3)]
    with sessions() as session:
        assert session.execute(select(price_drops.c.was_price)).scalar_one() == 5000


def test_after_a_mail_the_next_waits_for_the_interval_and_folds_what_came_meanwhile(sessions, at):
    purchaser(sessions, 0)
    intercept(sessions, 4900, at=T0)
    at(T0 + DELAY)
    expand_all(sessions)
    at(T0 + DELAY + timedelta(minutes=1))
    intercept(sessions, 4800, was=4900, at=clock.now())
    at(T0 + DELAY + timedelta(minutes=5))
    intercept(sessions, 4700, was=4800, at=clock.now())
    at(T0 + DELAY + INTERVAL - timedelta(seconds=1))
    expand_all(sessions)
    assert price_drop_mails(sessions) == [("p0@example.org", 4900)]
    at(T0 + DELAY + INTERVAL)
    expand_all(sessions)
    assert price_drop_mails(sessions) == [("p0@example.org", 4900), ("p0@example.org", 4700)]


def test_cancelled_and_unconfirmed_purchasers_get_none_whatever_order_their_events_came_in(sessions, at):
    purchaser(sessions, 0)                                           # active
    purchaser(sessions, 1, "ReservationCancelled", revision=2)       # the cancel overtook the acceptance
    purchaser(sessions, 1, revision=1)
    purchaser(sessions, 2, status="pending", verify_token="v")       # never confirmed
    purchaser(sessions, 3, "ReservationVerified", revision=2)        # confirmed (overtook its acceptance)
    purchaser(sessions, 3, status="pending", verify_token="v", revision=1)
    intercept(sessions, 4900)
    at(T0 + DELAY)
    expand_all(sessions)
    assert sorted(price_drop_mails(sessions)) == [("p0@example.org", 4900), ("p3@example.org", 4900)]


def test_a_window_due_after_the_close_sends_nothing(sessions, at):
    purchaser(sessions, 0)
    intercept(sessions, 4900)
    feed(sessions, "OfferClosed", {"offer_id": "o1", "title": "Kettle", "currency": "usd", "outcome": "failed",
                                   "final_count": 1, "closed_at": clock.iso(T0), "closes_at": clock.iso(T0),
                                   "condition": {**LOST, "seller_id": "s2"},
                                   "purchasers": [{"id": "r0", "name": "P0", "email": "p0@example.org"}]})
    at(T0 + DELAY)
    expand_all(sessions)
    assert price_drop_mails(sessions) == []
    with sessions() as session:
        assert session.execute(select(price_drops.c.sent_at, price_drops.c.recipients)).one()[1] == 0


def test_a_redelivered_interception_plans_no_second_window(sessions, at):
    purchaser(sessions, 0)
    event = Envelope("OfferIntercepted", {
        "offer_id": "o1", "version": 1, "kind": "voluntary",
        "condition": {"seller_id": "s2", "seller_name": "Rival", "unit_price": 4900, "minimum_reservations": 3,
                      "since": clock.iso(T0)},
        "intercepted": LOST, "offer": OFFER}, "auction")
    for _ in range(2):
        with sessions.begin() as session:
            PLANNER.handlers()["OfferIntercepted"](session, event)
    at(T0 + DELAY)
    expand_all(sessions)
    assert price_drop_mails(sessions) == [("p0@example.org", 4900)]
