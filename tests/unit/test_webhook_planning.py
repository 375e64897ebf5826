"""Webhook planning on a real SQLite session, no server: which messages each event plans, once."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from services.mailer.tables import MIGRATIONS
from services.mailer.webhooks.planning import WebhookPlanner, tell_count, untold_counts
from services.mailer.webhooks.tables import endpoints, messages
from shared.envelope import Envelope
from tests.use_cases import T0

ALL = "offer.invited offer.intercepted offer.count_changed offer.closed"
CONDITION = {"seller_id": "s1", "seller_name": "First", "unit_price": 5000, "minimum_reservations": 3}


@pytest.fixture
def sessions(sessions_for, at):
    at(T0)
    return sessions_for("mailer", MIGRATIONS)


def endpoint(sessions, endpoint_id: str, seller_id: str, events: str = ALL, disabled: bool = False) -> None:
    with sessions.begin() as session:
        session.execute(insert(endpoints).values(
            id=endpoint_id, seller_id=seller_id, seller_name=seller_id, seller_email=f"{seller_id}@example.org",
            url=f"https://{seller_id}.example.org/hook", events=events, secret="whsec_" + "A" * 44, created_at=T0,
            disabled_at=T0 if disabled else None))


def hear(sessions, type_: str, data: dict, event: Envelope | None = None) -> Envelope:
    event = event or Envelope(type_, data, "producer")
    with sessions.begin() as session:
        WebhookPlanner("https://cobuy.example").handlers()[type_](session, event)
    return event


def planned(sessions) -> list[tuple[str, str, dict]]:
    with sessions() as session:
        rows = session.execute(select(messages.c.endpoint_id, messages.c.event_type, messages.c.payload)
                               .order_by(messages.c.id)).all()
    return [(r.endpoint_id, r.event_type, json.loads(r.payload)["data"]) for r in rows]


def published(offer_id: str = "o1", holder: str = "s1") -> dict:
    return {"offer_id": offer_id, "condition": {**CONDITION, "seller_id": holder}}


def intercepted(version: int, new_holder: str, old_holder: str) -> dict:
    return {"offer_id": "o1", "version": version, "kind": "voluntary",
            "condition": {**CONDITION, "seller_id": new_holder, "unit_price": 4900},
            "intercepted": {**CONDITION, "seller_id": old_holder, "seller_email": "x@example.org"},
            "offer": {"title": "Kettle", "currency": "usd", "closes_at": "2030-01-01T13:00:00+00:00"}}


def count(version: int, value: int) -> dict:
    return {"offer_id": "o1", "count": value, "version": version}


INVITED = {"offer_id": "o1", "title": "Kettle", "currency": "usd", "closes_at": "2030-01-01T13:00:00+00:00",
           "invite_at": "2030-01-01T12:30:00+00:00", "holder_id": "s1", "holder_name": "First", "unit_price": 5000,
           "minimum_reservations": 3, "min_decrement": 10, "reservation_count": 2}


def test_an_invitation_plans_one_message_per_subscribed_live_endpoint_of_every_seller_but_the_holder(sessions):
    endpoint(sessions, "e-holder", "s1")
    endpoint(sessions, "e2", "s2")
    endpoint(sessions, "e2-closes-only", "s2", events="offer.closed")
    endpoint(sessions, "e3-disabled", "s3", disabled=True)
    event = hear(sessions, "OfferInvited", INVITED)
    hear(sessions, "OfferInvited", INVITED, event)  # the broker delivers it again
    assert [(e, t) for e, t, _ in planned(sessions)] == [("e2", "offer.invited")]
    assert planned(sessions)[0][2]["offer_url"] == "https://cobuy.example/offers/o1"


def test_an_interception_tells_the_seller_who_lost_and_the_close_tells_the_holder(sessions):
    endpoint(sessions, "e1", "s1")
    endpoint(sessions, "e2", "s2")
    hear(sessions, "OfferIntercepted", intercepted(1, "s2", "s1"))
    hear(sessions, "OfferClosed", {"offer_id": "o1", "title": "Kettle", "currency": "usd", "outcome": "concluded",
                                   "final_count": 3, "closed_at": "2030-01-01T13:00:00+00:00",
                                   "condition": {**CONDITION, "seller_id": "s2"},
                                   "purchasers": [{"id": "r1", "name": "Ann", "email": "ann@example.org"}]})
    (e1, t1, d1), (e2, t2, d2) = planned(sessions)
    assert (e1, t1, d1["your_condition"]["unit_price"], d1["new_condition"]["unit_price"]) == (
        "e1", "offer.intercepted", 5000, 4900)
    assert (e2, t2, d2["outcome"], d2["purchasers"]) == (
        "e2", "offer.closed", "concluded", [{"name": "Ann", "email": "ann@example.org"}])


def test_count_changes_reach_the_holder_at_most_once_a_minute_and_the_latest_is_told_after_it(sessions, at):
    endpoint(sessions, "e1", "s1")
    hear(sessions, "OfferPublished", published())
    hear(sessions, "ReservationCountChanged", count(1, 1))
    at(T0 + timedelta(seconds=10))
    hear(sessions, "ReservationCountChanged", count(2, 2))
    hear(sessions, "ReservationCountChanged", count(3, 3))
    assert [d["count"] for _, _, d in planned(sessions)] == [1]
    with sessions() as session:
        assert untold_counts(session) == []
    at(T0 + timedelta(seconds=60))
    with sessions() as session:
        assert untold_counts(session) == ["o1"]
    with sessions.begin() as session:
        assert tell_count(session, "o1")
    with sessions.begin() as session:
        assert not tell_count(session, "o1"), "told once"
    assert [d["count"] for _, _, d in planned(sessions)] == [1, 3]


def test_an_older_count_never_overwrites_a_newer_one(sessions, at):
    endpoint(sessions, "e1", "s1")
    hear(sessions, "OfferPublished", published())
    hear(sessions, "ReservationCountChanged", count(5, 5))
    at(T0 + timedelta(minutes=2))
    hear(sessions, "ReservationCountChanged", count(4, 4))
    assert [d["count"] for _, _, d in planned(sessions)] == [5]


def test_a_count_heard_before_its_offer_waits_for_the_holder(sessions):
    endpoint(sessions, "e1", "s1")
    hear(sessions, "ReservationCountChanged", count(1, 1))
    assert planned(sessions) == []
    hear(sessions, "OfferPublished", published())
    assert [(e, t, d["count"]) for e, t, d in planned(sessions)] == [("e1", "offer.count_changed", 1)]


def test_the_count_goes_to_the_newest_holder_whatever_order_the_interceptions_arrive_in(sessions, at):
    for seller in ("s1", "s2", "s3"):
        endpoint(sessions, f"e-{seller}", seller, events="offer.count_changed")
    hear(sessions, "OfferPublished", published())
    hear(sessions, "OfferIntercepted", intercepted(2, "s3", "s2"))
    hear(sessions, "OfferIntercepted", intercepted(1, "s2", "s1"))  # overtaken on the way
    hear(sessions, "ReservationCountChanged", count(1, 1))
    assert [e for e, _, _ in planned(sessions)] == ["e-s3"]


def test_an_endpoint_not_subscribed_to_an_event_type_gets_none_of_it(sessions):
    endpoint(sessions, "e1", "s1")
    with sessions.begin() as session:
        session.execute(update(endpoints).values(events="offer.closed"))
    hear(sessions, "OfferPublished", published())
    hear(sessions, "ReservationCountChanged", count(1, 1))
    assert planned(sessions) == []
