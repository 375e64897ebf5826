"""What auction knows of offers: learned from OfferPublished (or catalog's look-up), and their count."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import lookup
from shared.config import Config
from shared.db import insert_ignore
from shared.events import read

from .events import HoldingCondition
from .tables import conditions, offers, steps

# What auction reads of other services' events (shared/events.py: a key it does not name is ignored).


@dataclass(frozen=True)
class HeardCondition:
    seller_id: str
    seller_name: str
    seller_email: str
    unit_price: int
    minimum_reservations: int
    since: datetime


@dataclass(frozen=True)
class HeardOffer:
    """Of OfferPublished and of catalog's /internal/offers/<id>."""
    offer_id: str
    title: str
    currency: str
    opens_at: datetime
    invite_at: datetime
    closes_at: datetime
    min_decrement: int
    condition: HeardCondition


@dataclass(frozen=True)
class HeardCount:
    offer_id: str
    count: int
    version: int


class OfferUnknown(lookup.Unknown):
    # The offer's OfferPublished has not reached auction yet (or there is no such offer).
    code_when_unknown, detail_when_unknown = "offer_not_found", "No such offer."


def published_offer(config: Config) -> Callable[[str], dict | None]:
    return partial(lookup.published, config, "catalog", "/internal/offers")  # the offer as catalog published it


def remember_offer(session: Session, data: dict) -> None:
    """The initial condition and its steps."""
    offer = read(HeardOffer, data)
    c = offer.condition
    created = insert_ignore(session, offers, {
        "id": offer.offer_id, "title": offer.title, "currency": offer.currency,
        "opens_at": offer.opens_at, "invite_at": offer.invite_at, "closes_at": offer.closes_at,
        "min_decrement": offer.min_decrement,
        "holder_id": c.seller_id, "holder_name": c.seller_name, "holder_email": c.seller_email,
        "unit_price": c.unit_price, "minimum_reservations": c.minimum_reservations,
        "condition_since": c.since, "version": 0, "invited": False, "status": "open", "outcome": None,
        "reservation_count": 0, "count_version": 0,
    }, ["id"])
    if not created:
        return
    session.execute(conditions.insert().values(
        offer_id=offer.offer_id, version=0, seller_id=c.seller_id, seller_name=c.seller_name,
        seller_email=c.seller_email, unit_price=c.unit_price,
        minimum_reservations=c.minimum_reservations, kind="initial", at=c.since,
    ))
    session.execute(steps.insert(), [
        {"offer_id": offer.offer_id, "kind": "invite", "due_at": offer.invite_at},
        {"offer_id": offer.offer_id, "kind": "close", "due_at": offer.closes_at},
    ])


def find_offer(session: Session, offer_id: str, for_update: bool = False):
    query = select(offers).where(offers.c.id == offer_id)
    return session.execute(query.with_for_update() if for_update else query).first()


def known_offer(session: Session, offer_id: str, for_update: bool = False):
    offer = find_offer(session, offer_id, for_update)
    if offer is None:
        raise OfferUnknown(offer_id)
    return offer


def holding_condition(offer) -> HoldingCondition:
    return HoldingCondition(seller_id=offer.holder_id, seller_name=offer.holder_name, unit_price=offer.unit_price,
                            minimum_reservations=offer.minimum_reservations, since=offer.condition_since)


def apply_count(session: Session, count: HeardCount) -> None:
    known_offer(session, count.offer_id)
    session.execute(update(offers).where(offers.c.id == count.offer_id, offers.c.count_version < count.version)
                    .values(reservation_count=count.count, count_version=count.version))
