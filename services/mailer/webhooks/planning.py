"""From events to webhook messages: one row per (event, endpoint), planned once (a unique key, in
the consumer's transaction with its inbox row), delivered at least once by delivery.py.

Each message is a versioned JSON document `{type, version, timestamp, data}`; the webhook-id is
derived from the event and the endpoint, so a redelivered event plans nothing twice and a retried
message carries the same id (receivers dedupe on it).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import clock
from shared.db import insert_ignore, insert_ignore_many
from shared.envelope import Envelope
from shared.events import read

from .rules import COUNT_INTERVAL, count_may_be_told
from .tables import endpoints, messages, offers

log = logging.getLogger(__name__)
VERSION = 1  # of the documents: a new optional field keeps it, anything else is a new version


def message_id(key: str, endpoint_id: str) -> str:
    return "msg_" + hashlib.sha256(f"{key}|{endpoint_id}".encode()).hexdigest()[:32]


def document(event_type: str, timestamp: str, data: dict) -> str:
    return json.dumps({"type": event_type, "version": VERSION, "timestamp": timestamp, "data": data},
                      separators=(",", ":"), sort_keys=True)


def plan(session: Session, key: str, event_type: str, timestamp: str, data: dict, seller_ids: list[str] | None,
         excluded_seller: str | None = None) -> int:
    """A message for every live endpoint subscribed to `event_type` of the sellers named (None:
    every seller but `excluded_seller`). Returns how many were planned."""
    query = select(endpoints.c.id, endpoints.c.events).where(endpoints.c.disabled_at.is_(None))
    if seller_ids is not None:
        query = query.where(endpoints.c.seller_id.in_(seller_ids))
    if excluded_seller is not None:
        query = query.where(endpoints.c.seller_id != excluded_seller)
    now = clock.now()
    payload = document(event_type, timestamp, data)
    rows = [{"endpoint_id": e.id, "message_id": message_id(key, e.id), "event_type": event_type,
             "payload": payload, "state": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
            for e in session.execute(query).all() if event_type in e.events.split()]
    insert_ignore_many(session, messages, rows, ["endpoint_id", "message_id"])
    return len(rows)


@dataclass(frozen=True)
class HeardHolder:
    seller_id: str


@dataclass(frozen=True)
class HeardPublication:
    offer_id: str
    condition: HeardHolder


@dataclass(frozen=True)
class HeardCondition:
    seller_id: str
    seller_name: str
    unit_price: int
    minimum_reservations: int


@dataclass(frozen=True)
class HeardInterceptedOffer:
    title: str
    currency: str
    closes_at: str


@dataclass(frozen=True)
class HeardInterception:
    offer_id: str
    version: int
    kind: str
    condition: HeardCondition
    intercepted: HeardCondition
    offer: HeardInterceptedOffer


@dataclass(frozen=True)
class HeardInvitation:
    offer_id: str
    title: str
    currency: str
    closes_at: str
    holder_id: str
    holder_name: str
    unit_price: int
    minimum_reservations: int
    min_decrement: int
    reservation_count: int


@dataclass(frozen=True)
class HeardClose:
    offer_id: str
    title: str
    currency: str
    outcome: str
    final_count: int
    closed_at: str
    condition: HeardCondition
    purchasers: list[dict]


@dataclass(frozen=True)
class HeardCount:
    offer_id: str
    count: int
    version: int


def _offer_row(session: Session, offer_id: str) -> None:
    insert_ignore(session, offers, {"offer_id": offer_id, "holder_id": None, "holder_version": -1, "count": 0,
                                    "count_version": -1, "told_version": -1, "told_at": None}, ["offer_id"])


def _condition(c: HeardCondition) -> dict:
    return {"seller_name": c.seller_name, "unit_price": c.unit_price, "minimum_reservations": c.minimum_reservations}


class WebhookPlanner:
    def __init__(self, public_url: str = ""):
        self.public_url = public_url

    def on_offer_published(self, session: Session, event: Envelope) -> None:
        p = read(HeardPublication, event.data)
        _offer_row(session, p.offer_id)
        session.execute(update(offers).where(offers.c.offer_id == p.offer_id, offers.c.holder_version < 0)
                        .values(holder_id=p.condition.seller_id, holder_version=0))
        tell_count(session, p.offer_id)  # a count heard before the offer waited for its holder

    def on_offer_intercepted(self, session: Session, event: Envelope) -> None:
        i = read(HeardInterception, event.data)
        _offer_row(session, i.offer_id)
        session.execute(update(offers).where(offers.c.offer_id == i.offer_id, offers.c.holder_version < i.version)
                        .values(holder_id=i.condition.seller_id, holder_version=i.version))
        plan(session, event.id, "offer.intercepted", event.occurred_at, {
            "offer_id": i.offer_id, "title": i.offer.title, "currency": i.offer.currency,
            "closes_at": i.offer.closes_at, "kind": i.kind, "your_condition": _condition(i.intercepted),
            "new_condition": _condition(i.condition), "offer_url": self._offer_url(i.offer_id),
        }, [i.intercepted.seller_id])

    def on_offer_invited(self, session: Session, event: Envelope) -> None:
        """Every seller but the holder is invited (claim 1), as by mail."""
        i = read(HeardInvitation, event.data)
        plan(session, event.id, "offer.invited", event.occurred_at, {
            "offer_id": i.offer_id, "title": i.title, "currency": i.currency, "closes_at": i.closes_at,
            "holder_name": i.holder_name, "unit_price": i.unit_price, "minimum_reservations": i.minimum_reservations,
            "min_decrement": i.min_decrement, "reservation_count": i.reservation_count,
            "offer_url": self._offer_url(i.offer_id),
        }, None, excluded_seller=i.holder_id)

    def on_offer_closed(self, session: Session, event: Envelope) -> None:
        c = read(HeardClose, event.data)
        plan(session, event.id, "offer.closed", event.occurred_at, {
            "offer_id": c.offer_id, "title": c.title, "currency": c.currency, "outcome": c.outcome,
            "final_count": c.final_count, "closed_at": c.closed_at, "condition": _condition(c.condition),
            "purchasers": [{"name": p.get("name"), "email": p.get("email")} for p in c.purchasers],
        }, [c.condition.seller_id])

    def on_reservation_count_changed(self, session: Session, event: Envelope) -> None:
        c = read(HeardCount, event.data)
        _offer_row(session, c.offer_id)
        session.execute(update(offers).where(offers.c.offer_id == c.offer_id, offers.c.count_version < c.version)
                        .values(count=c.count, count_version=c.version))
        tell_count(session, c.offer_id)

    def _offer_url(self, offer_id: str) -> str:
        return f"{self.public_url}/offers/{offer_id}"

    def handlers(self) -> dict:
        return {
            "OfferPublished": self.on_offer_published,
            "OfferIntercepted": self.on_offer_intercepted,
            "OfferInvited": self.on_offer_invited,
            "OfferClosed": self.on_offer_closed,
            "ReservationCountChanged": self.on_reservation_count_changed,
        }


def tell_count(session: Session, offer_id: str) -> bool:
    """Plan offer.count_changed for the holder when the count moved since it was last told and the
    last one is a minute old; otherwise the deliverer's sweep (untold_counts) tells it later. Locks
    the offer's row, so concurrent handlers and sweeps tell each version once."""
    row = session.execute(select(offers).where(offers.c.offer_id == offer_id).with_for_update()).first()
    now = clock.now()
    if (row is None or row.holder_id is None or row.count_version <= row.told_version
            or not count_may_be_told(row.told_at, now)):
        return False
    plan(session, f"count:{offer_id}:{row.count_version}", "offer.count_changed", clock.iso(now),
         {"offer_id": offer_id, "count": row.count}, [row.holder_id])
    session.execute(update(offers).where(offers.c.offer_id == offer_id)
                    .values(told_version=row.count_version, told_at=now))
    return True


def untold_counts(session: Session, limit: int = 100) -> list[str]:
    """Offers whose latest count the holder has not been told, the minute being up."""
    cutoff = clock.now() - COUNT_INTERVAL
    return list(session.execute(
        select(offers.c.offer_id).where(offers.c.count_version > offers.c.told_version,
                                        offers.c.holder_id.is_not(None),
                                        offers.c.told_at <= cutoff).limit(limit)
    ).scalars())


def with_webhooks(mail_handlers: dict, webhook_handlers: dict) -> dict:
    """One handler per event type for the mailer's consumer: mails and webhooks are planned in the
    same transaction, under the same inbox row, so either both are planned or neither."""
    combined = dict(mail_handlers)
    for event_type, handler in webhook_handlers.items():
        mail = combined.get(event_type)
        combined[event_type] = handler if mail is None else _both(mail, handler)
    return combined


def _both(first, second):
    def handle(session: Session, event: Envelope) -> None:
        first(session, event)
        second(session, event)
    return handle
