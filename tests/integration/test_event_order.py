"""Events of one offer come by different relays and queues, so they can arrive in any order.
An event about an offer a service has not heard of yet must not be lost: the service learns the
offer from catalog (as published) and then applies the event."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from shared import clock, lookup
from shared.envelope import Envelope


def _published(offer_id: str) -> dict:
    now = clock.now()
    return {"offer_id": offer_id, "title": "Kettle", "currency": "usd", "opens_at": clock.iso(now),
            "invite_at": clock.iso(now + timedelta(minutes=8)), "closes_at": clock.iso(now + timedelta(minutes=10)),
            "min_decrement": 1,
            "condition": {"seller_id": "s1", "seller_name": "First", "seller_email": "first@example.org",
                          "unit_price": 5000, "minimum_reservations": 3, "since": clock.iso(now)}}


@pytest.fixture
def sessions_for(sessions_for, monkeypatch):
    """Catalog's look-up answers every offer but "gone" as _published would announce it."""
    monkeypatch.setattr(lookup, "published", lambda _config, _service, _path, offer_id: _published(offer_id)
                        if offer_id != "gone" else None)
    return sessions_for


def test_a_count_that_overtakes_the_offer_reaches_the_auction(sessions_for):
    from services.auction import handlers as auction
    from services.auction.tables import MIGRATIONS
    from services.auction.tables import offers, steps

    sessions = sessions_for("auction", MIGRATIONS)
    with sessions.begin() as session:
        auction.on_count_changed(session, Envelope("ReservationCountChanged",
                                                   {"offer_id": "o1", "count": 2, "version": 1}, "reservation"))
        auction.on_count_changed(session, Envelope("ReservationCountChanged",
                                                   {"offer_id": "gone", "count": 1, "version": 1}, "reservation"))
    with sessions.begin() as session:  # the OfferPublished that comes later changes nothing
        auction.on_offer_published(session, Envelope("OfferPublished", _published("o1"), "catalog"))
    with sessions() as session:
        offer = session.execute(select(offers).where(offers.c.id == "o1")).one()
        assert (offer.reservation_count, offer.count_version) == (2, 1)
        assert sorted(s.kind for s in session.execute(select(steps).where(steps.c.offer_id == "o1"))) == ["close", "invite"]
        assert session.execute(select(offers).where(offers.c.id == "gone")).first() is None


def test_an_interception_that_overtakes_the_offer_reaches_reservation(sessions_for):
    from services.reservation import reservations
    from services.reservation.tables import MIGRATIONS
    from services.reservation.tables import offers

    sessions = sessions_for("reservation", MIGRATIONS)
    intercepted = {"offer_id": "o1", "version": 1, "condition": {
        "seller_id": "s2", "seller_name": "Rival", "unit_price": 4900, "minimum_reservations": 3}}
    with sessions.begin() as session:
        reservations.on_offer_intercepted(session, Envelope("OfferIntercepted", intercepted, "auction"))
    with sessions.begin() as session:
        reservations.on_offer_published(session, Envelope("OfferPublished", _published("o1"), "catalog"))
    with sessions() as session:
        offer = session.execute(select(offers).where(offers.c.id == "o1")).one()
        assert (offer.holder_name, offer.unit_price, offer.condition_version) == ("Rival", 4900, 1)
