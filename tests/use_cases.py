"""Helpers for the service-level tests (tests/unit/test_*_use_cases.py): what a use case recorded
in its outbox, and the events other services send it, as their producers shape them."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import Table, select

from shared import clock
from shared.envelope import Envelope

T0 = datetime.fromisoformat("2030-01-01T12:00:00+00:00")
SECRET = "test-secret"


def recorded(sessions, outbox: Table, type_: str | None = None) -> list[Envelope]:
    """The events a service recorded, oldest first (of one type, if given)."""
    query = select(outbox.c.body).order_by(outbox.c.seq)
    if type_:
        query = query.where(outbox.c.type == type_)
    with sessions() as session:
        return [Envelope.from_dict(json.loads(body)) for body in session.execute(query).scalars()]


def offer_published(offer_id: str = "o1", *, opens_at: datetime = T0, minutes: int = 10, unit_price: int = 5000,
                    minimum: int = 3, min_decrement: int = 10, verify_emails: bool = False) -> Envelope:
    """OfferPublished as catalog records it: open for `minutes`, the invitation at 80 % of the term."""
    closes_at = opens_at + timedelta(minutes=minutes)
    return Envelope("OfferPublished", {
        "offer_id": offer_id, "title": "Kettle", "currency": "usd", "opens_at": clock.iso(opens_at),
        "invite_at": clock.iso(opens_at + timedelta(minutes=minutes * 0.8)), "closes_at": clock.iso(closes_at),
        "min_decrement": min_decrement,
        "condition": {"seller_id": "s1", "seller_name": "First", "seller_email": "first@example.org",
                      "unit_price": unit_price, "minimum_reservations": minimum, "since": clock.iso(opens_at)},
        "verify_emails": verify_emails,
    }, "catalog")
