"""reservation's use cases: reserve, cancel, list for the holder, the close cut, the count.

Term and close are enforced here, on reservation's own data: every reservation takes a
shared advisory lock on its offer; the close cut takes it exclusively, so it waits for
every reservation already in flight and every later one sees the offer closed.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared import clock, lookup, metrics
from shared.db import advisory_lock, insert_ignore, lock_key
from shared.envelope import Envelope
from shared.outbox import record_event
from shared.problems import Problem

from . import SERVICE
from .tables import offers, outbox, reservations, tallies

log = logging.getLogger(__name__)

COUNTED_EVENTS = ("ReservationAccepted", "ReservationCancelled")


def cancel_token(secret: str, reservation_id: str) -> str:
    """Derived, not stored: the purchaser's proof, checked by recomputing it."""
    return hmac.new(secret.encode(), f"cancel|{reservation_id}".encode(), hashlib.sha256).hexdigest()[:40]


# ---- what reservation knows of offers --------------------------------------------------------

def remember_offer(session: Session, data: dict) -> None:
    condition = data["condition"]
    insert_ignore(session, offers, {
        "id": data["offer_id"],
        "title": data["title"],
        "currency": data["currency"],
        "closes_at": datetime.fromisoformat(data["closes_at"]),
        "holder_id": condition["seller_id"],
        "holder_name": condition["seller_name"],
        "unit_price": condition["unit_price"],
        "minimum_reservations": condition["minimum_reservations"],
        "condition_version": 0,
        "closed": False,
    }, ["id"])


def on_offer_published(session: Session, event: Envelope) -> None:
    remember_offer(session, event.data)


def on_offer_intercepted(session: Session, event: Envelope) -> None:
    data, condition = event.data, event.data["condition"]
    # An interception can overtake OfferPublished, which would then restore the old condition.
    if not lookup.learn_if_unknown(session, data["offer_id"], find_offer, remember_offer):
        return
    session.execute(
        update(offers)
        .where(offers.c.id == data["offer_id"], offers.c.condition_version < data["version"])
        .values(holder_id=condition["seller_id"], holder_name=condition["seller_name"],
                unit_price=condition["unit_price"], minimum_reservations=condition["minimum_reservations"],
                condition_version=data["version"])
    )


def find_offer(session: Session, offer_id: str):
    return session.execute(select(offers).where(offers.c.id == offer_id)).first()


def _is_closed(offer) -> bool:
    return offer.closed or clock.now() >= offer.closes_at


def _reservation_dict(row, secret: str) -> dict:
    return {"id": row.id, "offer_id": row.offer_id, "status": row.status, "cancel_token": cancel_token(secret, row.id)}


def _accepted_event(session: Session, offer, reservation_id: str, name: str, email: str, secret: str) -> None:
    record_event(session, outbox, SERVICE, "ReservationAccepted", {
        "reservation_id": reservation_id,
        "offer_id": offer.id,
        "name": name,
        "email": email,
        "cancel_token": cancel_token(secret, reservation_id),
        "offer": {
            "title": offer.title, "currency": offer.currency, "closes_at": clock.iso(offer.closes_at),
            "unit_price": offer.unit_price, "minimum_reservations": offer.minimum_reservations,
            "holder_name": offer.holder_name,
        },
    })


# ---- reserve, cancel, list ---------------------------------------------------------------------

class OfferUnknown(Exception):
    """The offer's OfferPublished event has not reached reservation yet (or there is no such offer)."""


def reserve(session: Session, offer_id: str, name: str, email: str, idempotency_key: str | None,
            secret: str) -> tuple[dict, bool]:
    """Returns (reservation, created). A repeat for the same e-mail returns the existing one.

    The hot path is five statements: the shared lock, the offer, the insert, the event, COMMIT.
    """
    advisory_lock(session, lock_key("offer", offer_id), shared=True)
    offer = find_offer(session, offer_id)
    if offer is None:
        raise OfferUnknown(offer_id)
    if _is_closed(offer):
        metrics.RESERVATIONS.labels("closed").inc()
        raise Problem(409, "offer_closed", "This offer is closed to reservations.")
    if idempotency_key:
        earlier = session.execute(select(reservations).where(
            reservations.c.offer_id == offer_id, reservations.c.idempotency_key == idempotency_key)).first()
        if earlier is not None:
            return _reservation_dict(earlier, secret), False
    email_key = email.lower()
    reservation_id = str(uuid.uuid4())
    try:
        inserted = insert_ignore(session, reservations, {
            "id": reservation_id, "offer_id": offer_id, "name": name, "email": email, "email_key": email_key,
            "status": "active", "idempotency_key": idempotency_key, "created_at": clock.now(),
        }, ["offer_id", "email_key"])
    except IntegrityError:  # the other unique key: this Idempotency-Key names another e-mail
        raise Problem(409, "idempotency_key_reused", "This Idempotency-Key was used for another reservation.") from None
    if inserted:
        _accepted_event(session, offer, reservation_id, name, email, secret)
        metrics.RESERVATIONS.labels("accepted").inc()
        return {"id": reservation_id, "offer_id": offer_id, "status": "active",
                "cancel_token": cancel_token(secret, reservation_id)}, True
    existing = session.execute(select(reservations).where(
        reservations.c.offer_id == offer_id, reservations.c.email_key == email_key)).one()
    if existing.status == "active":
        metrics.RESERVATIONS.labels("repeat").inc()
        return _reservation_dict(existing, secret), False
    # Cancelled earlier, reserving again: the same reservation becomes active again.
    session.execute(update(reservations).where(reservations.c.id == existing.id)
                    .values(status="active", cancelled_at=None, name=name, created_at=clock.now()))
    _accepted_event(session, offer, existing.id, name, email, secret)
    metrics.RESERVATIONS.labels("accepted").inc()
    return {**_reservation_dict(existing, secret), "status": "active"}, True


def cancel(session: Session, reservation_id: str, token: str | None, secret: str) -> None:
    row = session.execute(select(reservations).where(reservations.c.id == reservation_id)).first()
    if row is None:
        raise Problem(404, "reservation_not_found", "No such reservation.")
    if not token or not hmac.compare_digest(token, cancel_token(secret, reservation_id)):
        raise Problem(403, "wrong_cancel_token", "The cancel token does not match this reservation.")
    advisory_lock(session, lock_key("offer", row.offer_id), shared=True)
    offer = find_offer(session, row.offer_id)
    if _is_closed(offer):
        raise Problem(409, "offer_closed", "The offer is closed: reservations can no longer be cancelled.")
    row = session.execute(select(reservations).where(reservations.c.id == reservation_id)).one()
    if row.status == "cancelled":
        return
    session.execute(update(reservations).where(reservations.c.id == reservation_id)
                    .values(status="cancelled", cancelled_at=clock.now()))
    record_event(session, outbox, SERVICE, "ReservationCancelled", {
        "reservation_id": row.id, "offer_id": row.offer_id, "name": row.name, "email": row.email,
        "offer": {"title": offer.title, "currency": offer.currency, "closes_at": clock.iso(offer.closes_at)},
    })
    metrics.RESERVATIONS.labels("cancelled").inc()


def active_reservations(session: Session, offer_id: str) -> list:
    return session.execute(
        select(reservations.c.id, reservations.c.name, reservations.c.email, reservations.c.created_at)
        .where(reservations.c.offer_id == offer_id, reservations.c.status == "active")
        .order_by(reservations.c.created_at, reservations.c.id)
    ).all()


def list_for_holder(session: Session, offer_id: str, seller: dict) -> list[dict]:
    offer = find_offer(session, offer_id)
    if offer is None:
        raise Problem(404, "offer_not_found", "No such offer.")
    if offer.holder_id != seller["id"]:
        raise Problem(403, "not_holder", "Only the seller holding the offer sees its reservations.")
    return [{"id": r.id, "name": r.name, "email": r.email, "at": r.created_at}
            for r in active_reservations(session, offer_id)]


# ---- the close cut -------------------------------------------------------------------------------

def on_deadline_reached(session: Session, event: Envelope) -> None:
    """Close the offer to reservations and hand the final tally to the auction."""
    offer_id = event.data["offer_id"]
    advisory_lock(session, lock_key("offer", offer_id))  # waits for every in-flight reservation
    if find_offer(session, offer_id) is None:
        remember_offer(session, event.data["offer"])
    session.execute(update(offers).where(offers.c.id == offer_id).values(closed=True))
    rows = active_reservations(session, offer_id)
    record_event(session, outbox, SERVICE, "ReservationsFinalised", {
        "offer_id": offer_id,
        "final_count": len(rows),
        "reservations": [{"id": r.id, "name": r.name, "email": r.email} for r in rows],
    })


# ---- the count -----------------------------------------------------------------------------------

def refresh_tally(session: Session, offer_id: str) -> None:
    """Recount one offer under a lock on its tally row, so versions follow the truth."""
    insert_ignore(session, tallies, {"offer_id": offer_id, "count": 0, "version": 0}, ["offer_id"])
    tally = session.execute(select(tallies).where(tallies.c.offer_id == offer_id).with_for_update()).one()
    count = session.execute(select(func.count()).select_from(reservations).where(
        reservations.c.offer_id == offer_id, reservations.c.status == "active")).scalar_one()
    if count == tally.count and tally.version > 0:
        return
    version = tally.version + 1
    session.execute(update(tallies).where(tallies.c.offer_id == offer_id).values(count=count, version=version))
    record_event(session, outbox, SERVICE, "ReservationCountChanged",
                 {"offer_id": offer_id, "count": count, "version": version})


def refresh_open_tallies(sessions: sessionmaker[Session]) -> None:
    """On start: counts from before durable recounts (recounts.py), or moved by hand, are made true."""
    with sessions() as session:
        offer_ids = session.execute(select(offers.c.id).where(offers.c.closed.is_(False))).scalars().all()
    for offer_id in offer_ids:
        with sessions.begin() as session:
            refresh_tally(session, offer_id)


HANDLERS = {
    "OfferPublished": on_offer_published,
    "OfferIntercepted": on_offer_intercepted,
    "OfferDeadlineReached": on_deadline_reached,
}
