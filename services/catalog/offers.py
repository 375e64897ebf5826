"""catalog's offers: publish them, read them; the read model from other services' events."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import clock
from shared.db import insert_ignore
from shared.envelope import Envelope
from shared.events import read
from shared.outbox import record_event
from shared.problems import Problem

from . import SERVICE
from .events import InitialCondition, OfferPublished
from .rules import judge_term
from .sellers import seller_by_id
from .tables import history, offers, outbox

TERM_PROBLEMS = {
    "closes_at": ("closes_at must be in the future.", "Must be in the future."),
    "invite_at": ("invite_at must fall inside the term.", "Must be after now and before closes_at."),
}


def check_term(opens_at: datetime, invite_at: datetime | None, closes_at: datetime) -> datetime:
    """Returns the invitation instant, or raises a 422 naming the faulty field."""
    term = judge_term(opens_at, invite_at, closes_at)
    if term.faulty_field:
        detail, message = TERM_PROBLEMS[term.faulty_field]
        raise Problem(422, "validation_failed", detail, errors={term.faulty_field: [message]})
    return term.invite_at


# ---- offers --------------------------------------------------------------------------------

def publish_offer(session: Session, seller: dict, data: dict) -> dict:
    now = clock.now()
    closes_at = clock.to_utc(data["closes_at"])
    invite_at = check_term(now, data.get("invite_at") and clock.to_utc(data["invite_at"]), closes_at)
    offer_id = str(uuid.uuid4())
    row = {
        "id": offer_id,
        "title": data["title"],
        "description": data.get("description") or "",
        "currency": data["currency"].lower(),
        "opens_at": now,
        "invite_at": invite_at,
        "closes_at": closes_at,
        "min_decrement": data.get("min_decrement") or 1,
        "offering_seller_id": seller["id"],
        "created_at": now,
        "holder_id": seller["id"],
        "holder_name": seller["name"],
        "unit_price": data["unit_price"],
        "minimum_reservations": data["minimum_reservations"],
        "condition_since": now,
        "condition_version": 0,
        "reservation_count": 0,
        "count_version": 0,
        "invited": False,
        "status": "open",
        "outcome": None,
        "version": 1,
        "changed_at": now,
        "verify_emails": bool(data.get("verify_emails")),
    }
    session.execute(offers.insert().values(**row))
    session.execute(history.insert().values(
        offer_id=offer_id, seq=0, seller_id=seller["id"], seller_name=seller["name"],
        unit_price=row["unit_price"], minimum_reservations=row["minimum_reservations"], at=now, kind="initial",
    ))
    record_event(session, outbox, SERVICE, published_event(row, seller))
    return get_offer(session, offer_id)


def published_event(row: dict, seller: dict) -> OfferPublished:
    """What other services need to know of a new offer (also served to their fallback look-up)."""
    return OfferPublished(
        offer_id=row["id"], title=row["title"], currency=row["currency"], opens_at=row["opens_at"],
        invite_at=row["invite_at"], closes_at=row["closes_at"], min_decrement=row["min_decrement"],
        condition=InitialCondition(
            seller_id=seller["id"], seller_name=seller["name"], seller_email=seller["email"],
            unit_price=row["unit_price"], minimum_reservations=row["minimum_reservations"], since=row["opens_at"],
        ),
        verify_emails=row["verify_emails"],
    )


def published_data_for(session: Session, offer_id: str) -> dict | None:
    row = session.execute(select(offers).where(offers.c.id == offer_id)).first()
    if row is None:
        return None
    row = dict(row._mapping)
    seller = seller_by_id(session, row["offering_seller_id"])
    # The initial condition, as it was published (the read model may have moved on since).
    initial = session.execute(
        select(history).where(history.c.offer_id == offer_id, history.c.seq == 0)
    ).one()
    row.update(unit_price=initial.unit_price, minimum_reservations=initial.minimum_reservations)
    return published_event(row, seller).to_data()


def _offer_dict(row, entries) -> dict:
    r = row._mapping
    return {
        "id": r["id"],
        "title": r["title"],
        "description": r["description"],
        "currency": r["currency"],
        "status": r["status"],
        "outcome": r["outcome"],
        "opens_at": r["opens_at"],
        "invite_at": r["invite_at"],
        "invited": r["invited"],
        "closes_at": r["closes_at"],
        "min_decrement": r["min_decrement"],
        "condition": {
            "seller_id": r["holder_id"],
            "seller_name": r["holder_name"],
            "unit_price": r["unit_price"],
            "minimum_reservations": r["minimum_reservations"],
            "since": r["condition_since"],
        },
        "offering_seller_id": r["offering_seller_id"],
        "reservation_count": r["reservation_count"],
        "verify_emails": r["verify_emails"],
        "history": [
            {
                "seller_id": e.seller_id,
                "seller_name": e.seller_name,
                "unit_price": e.unit_price,
                "minimum_reservations": e.minimum_reservations,
                "at": e.at,
                "kind": e.kind,
            }
            for e in entries
        ],
    }


def get_offer(session: Session, offer_id: str) -> dict | None:
    row = session.execute(select(offers).where(offers.c.id == offer_id)).first()
    if row is None:
        return None
    entries = session.execute(
        select(history).where(history.c.offer_id == offer_id).order_by(history.c.seq)
    ).all()
    return _offer_dict(row, entries)


def list_offers(session: Session, status: str | None, page: int, per_page: int, with_history: bool = True):
    query = select(offers)
    count_query = select(func.count()).select_from(offers)
    if status:
        query = query.where(offers.c.status == status)
        count_query = count_query.where(offers.c.status == status)
    order = offers.c.closed_at.desc() if status == "closed" else offers.c.created_at.desc()
    rows = session.execute(
        query.order_by(order, offers.c.id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    total = session.execute(count_query).scalar_one()
    if with_history:
        return [found["offer"] for found in _with_versions(session, rows)], total
    return [_offer_dict(r, []) for r in rows], total


def offers_of_seller(session: Session, seller_id: str, limit: int = 200) -> list[dict]:
    """The offers this seller published or held at some time (its conditions are in their history),
    newest first: what its dashboard sorts into held, intercepted and closed."""
    ever_held = select(history.c.offer_id).where(history.c.seller_id == seller_id)
    rows = session.execute(select(offers).where(offers.c.id.in_(ever_held))
                           .order_by(offers.c.created_at.desc(), offers.c.id).limit(limit)).all()
    return [found["offer"] for found in _with_versions(session, rows)]


def changed_offers(session: Session, since: datetime, ids: list[str] | None, limit: int) -> list[dict]:
    """Offers changed at or after `since` (only those of `ids` when given), oldest change first,
    each as {version, changed_at, offer}: what the gateway's live streams poll for."""
    query = select(offers).where(offers.c.changed_at >= since)
    if ids is not None:
        query = query.where(offers.c.id.in_(ids))
    rows = session.execute(query.order_by(offers.c.changed_at, offers.c.id).limit(limit)).all()
    return _with_versions(session, rows)


def offers_by_id(session: Session, ids: list[str]) -> list[dict]:
    """The current state of these offers, each as {version, offer} (a stream's first event)."""
    return _with_versions(session, session.execute(select(offers).where(offers.c.id.in_(ids))).all())


def _with_versions(session: Session, rows) -> list[dict]:
    entries: dict[str, list] = {r.id: [] for r in rows}
    if rows:
        for e in session.execute(
            select(history).where(history.c.offer_id.in_(list(entries))).order_by(history.c.seq)
        ).all():
            entries[e.offer_id].append(e)
    return [{"version": r.version, "changed_at": r.changed_at, "offer": _offer_dict(r, entries[r.id])}
            for r in rows]


# ---- the read model, from other services' events ------------------------------------------------
# What catalog reads of each event (shared/events.py: a key it does not name is ignored).

@dataclass(frozen=True)
class HeardCondition:
    seller_id: str
    seller_name: str
    unit_price: int
    minimum_reservations: int
    since: datetime


@dataclass(frozen=True)
class HeardInterception:
    offer_id: str
    version: int
    kind: str
    condition: HeardCondition


@dataclass(frozen=True)
class HeardCount:
    offer_id: str
    count: int
    version: int


@dataclass(frozen=True)
class HeardClose:
    offer_id: str
    outcome: str
    final_count: int
    closed_at: datetime


def _changed() -> dict:
    """What every change of the read model also sets: the live streams follow `version`."""
    return {"version": offers.c.version + 1, "changed_at": clock.now()}


def on_offer_intercepted(session: Session, event: Envelope) -> None:
    heard = read(HeardInterception, event.data)
    condition = heard.condition
    insert_ignore(session, history, {
        "offer_id": heard.offer_id, "seq": heard.version, "seller_id": condition.seller_id,
        "seller_name": condition.seller_name, "unit_price": condition.unit_price,
        "minimum_reservations": condition.minimum_reservations, "at": condition.since, "kind": heard.kind,
    }, ["offer_id", "seq"])
    # In order per offer: an older condition never overwrites a newer one.
    session.execute(
        update(offers)
        .where(offers.c.id == heard.offer_id, offers.c.condition_version < heard.version)
        .values(
            holder_id=condition.seller_id, holder_name=condition.seller_name,
            unit_price=condition.unit_price, minimum_reservations=condition.minimum_reservations,
            condition_since=condition.since, condition_version=heard.version, **_changed(),
        )
    )


def on_offer_invited(session: Session, event: Envelope) -> None:
    session.execute(update(offers).where(offers.c.id == event.data["offer_id"], offers.c.invited.is_(False))
                    .values(invited=True, **_changed()))


def on_count_changed(session: Session, event: Envelope) -> None:
    heard = read(HeardCount, event.data)
    session.execute(
        update(offers)
        .where(offers.c.id == heard.offer_id, offers.c.count_version < heard.version, offers.c.status == "open")
        .values(reservation_count=heard.count, count_version=heard.version, **_changed())
    )


def on_offer_closed(session: Session, event: Envelope) -> None:
    heard = read(HeardClose, event.data)
    session.execute(
        update(offers)
        .where(offers.c.id == heard.offer_id, offers.c.status != "closed")
        .values(status="closed", outcome=heard.outcome, reservation_count=heard.final_count,
                closed_at=heard.closed_at, **_changed())
    )


HANDLERS = {
    "OfferIntercepted": on_offer_intercepted,
    "OfferInvited": on_offer_invited,
    "ReservationCountChanged": on_count_changed,
    "OfferClosed": on_offer_closed,
}
