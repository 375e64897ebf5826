"""reservation's use cases: reserve, cancel, list for the holder, the close cut, the count.

Term and close are enforced here, on reservation's own data: every reservation takes a
shared advisory lock on its offer; the close cut takes it exclusively, so it waits for
every reservation already in flight and every later one sees the offer closed.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Callable

import requests
from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared import clock, languages, lookup
from shared import config as config_module
from shared.config import Config
from shared.db import advisory_lock, dialect_insert, driver_row, insert_ignore, is_postgres, lock_key
from shared.envelope import Envelope
from shared.events import read
from shared.outbox import outbox_row, record_event
from shared.problems import Problem

from . import SERVICE, metrics
from .events import (
    CancelledOffer,
    Purchaser,
    ReservationAccepted,
    ReservationCancelled,
    ReservationCountChanged,
    ReservationsFinalised,
    ReservationVerified,
    ReservedOffer,
)
from .rules import Verification, activates, initial_status, is_closed, reserve_outcome, verification
from .tables import idempotency_keys, offers, outbox, reservations, tallies

log = logging.getLogger(__name__)

COUNTED_EVENTS = (ReservationAccepted.type_name(), ReservationCancelled.type_name(), ReservationVerified.type_name())


def cancel_token(secret: str, reservation_id: str) -> str:
    """Derived, not stored: the purchaser's proof, checked by recomputing it."""
    return hmac.new(secret.encode(), f"cancel|{reservation_id}".encode(), hashlib.sha256).hexdigest()[:40]


def verify_token(secret: str, reservation_id: str, revision: int) -> str:
    """Derived like the cancel token, and for one revision of the reservation: the one at which it
    became pending. Confirming raises the revision, so the link works once (SPEC §10)."""
    return hmac.new(secret.encode(), f"verify|{reservation_id}|{revision}".encode(), hashlib.sha256).hexdigest()[:40]


def _matches(token: str, expected: str) -> bool:
    # bytes: compare_digest refuses a str with non-ASCII characters (a TypeError, so a 500)
    return hmac.compare_digest(token.encode("utf-8", "surrogateescape"), expected.encode())


def link_revision(secret: str, reservation_id: str, revision: int, token: str) -> int | None:
    """The revision a verify link was made for, of the two it can be (now, or just before a confirm)."""
    for candidate in (revision, revision - 1):
        if candidate >= 0 and _matches(token, verify_token(secret, reservation_id, candidate)):
            return candidate
    return None


# ---- what reservation knows of offers --------------------------------------------------------
# What it reads of other services' events (shared/events.py: a key it does not name is ignored).

@dataclass(frozen=True)
class HeardCondition:
    seller_id: str
    seller_name: str
    unit_price: int
    minimum_reservations: int


@dataclass(frozen=True)
class HeardOffer:
    """Of OfferPublished, of catalog's /internal/offers/<id>, and of OfferDeadlineReached's snapshot."""
    offer_id: str
    title: str
    currency: str
    closes_at: datetime
    condition: HeardCondition
    verify_emails: bool = False  # SPEC §10; absent from offers published before it


@dataclass(frozen=True)
class HeardInterception:
    offer_id: str
    version: int
    condition: HeardCondition


class OfferUnknown(lookup.Unknown):
    # The offer's OfferPublished has not reached reservation yet (or there is no such offer).
    code_when_unknown, detail_when_unknown = "offer_not_found", "No such offer."


def published_offer(config: Config) -> Callable[[str], dict | None]:
    return partial(lookup.published, config, "catalog", "/internal/offers")  # the offer as catalog published it


def remember_offer(session: Session, data: dict) -> None:
    offer = read(HeardOffer, data)
    condition = offer.condition
    insert_ignore(session, offers, {
        "id": offer.offer_id,
        "title": offer.title,
        "currency": offer.currency,
        "closes_at": offer.closes_at,
        "holder_id": condition.seller_id,
        "holder_name": condition.seller_name,
        "unit_price": condition.unit_price,
        "minimum_reservations": condition.minimum_reservations,
        "condition_version": 0,
        "closed": False,
        "verify_emails": offer.verify_emails,
    }, ["id"])


def on_offer_published(session: Session, event: Envelope) -> None:
    remember_offer(session, event.data)


def on_offer_intercepted(session: Session, event: Envelope) -> None:
    heard = read(HeardInterception, event.data)
    # An interception can overtake OfferPublished, which would then restore the old condition.
    lookup.learning_in_event(session, lambda: apply_interception(session, heard), published_offer(config_module.get()),
                             remember_offer)


def apply_interception(session: Session, heard: HeardInterception) -> None:
    known_offer(session, heard.offer_id)
    condition = heard.condition
    session.execute(
        update(offers)
        .where(offers.c.id == heard.offer_id, offers.c.condition_version < heard.version)
        .values(holder_id=condition.seller_id, holder_name=condition.seller_name,
                unit_price=condition.unit_price, minimum_reservations=condition.minimum_reservations,
                condition_version=heard.version)
    )


def find_offer(session: Session, offer_id: str):
    return session.execute(select(offers).where(offers.c.id == offer_id)).first()


def known_offer(session: Session, offer_id: str):
    offer = find_offer(session, offer_id)
    if offer is None:
        raise OfferUnknown(offer_id)
    return offer


def _is_closed(offer) -> bool:
    return is_closed(offer.closed, offer.closes_at, clock.now())


def _reservation_dict(row, secret: str) -> dict:
    return {"id": row.id, "offer_id": row.offer_id, "status": row.status, "cancel_token": cancel_token(secret, row.id)}


def _accepted_event(session: Session, offer, row, secret: str) -> None:
    pending = row.status == "pending"
    record_event(session, outbox, SERVICE, ReservationAccepted(
        reservation_id=row.id, offer_id=offer.id, name=row.name, email=row.email, lang=row.lang,
        cancel_token=cancel_token(secret, row.id),
        offer=ReservedOffer(title=offer.title, currency=offer.currency, closes_at=offer.closes_at,
                            unit_price=offer.unit_price, minimum_reservations=offer.minimum_reservations,
                            holder_name=offer.holder_name),
        status=row.status, verify_token=verify_token(secret, row.id, row.revision) if pending else None,
        revision=row.revision,
    ))


# ---- reserve, cancel, list ---------------------------------------------------------------------

def request_fingerprint(name: str, email: str) -> str:
    """What an Idempotency-Key is bound to: the request as it was understood (the e-mail in any case)."""
    canonical = json.dumps({"name": name, "email": email.lower()}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def reserve(bind: Session | Connection, offer_id: str, name: str, email: str, idempotency_key: str | None,
            secret: str, lang: str = languages.DEFAULT) -> tuple[dict, int]:
    """Returns (reservation, HTTP status): 201 when this request made the reservation active, 200 for
    a repeat of an active one. A replayed Idempotency-Key gets the first answer, status included.

    bind: a Session, or a Connection in a transaction (what the API passes: the common case then
    makes no ORM Session at all, and the general path makes one on the same transaction).
    On PostgreSQL a new reservation without a key is two statements (`_reserve_at_once`); anything
    else (a repeat, a return after a cancel, a key, a closed offer) takes the general path below.
    """
    if idempotency_key is None and is_postgres(bind):
        made = _reserve_at_once(bind if isinstance(bind, Connection) else bind.connection(),
                                offer_id, name, email, secret, lang)
        if made is not None:
            return made
        # the shared lock is held already; taking it again in the same transaction is a no-op
    if isinstance(bind, Session):
        return _reserve_in_session(bind, offer_id, name, email, idempotency_key, secret, lang)
    # joins the connection's transaction, and neither commits nor ends it: the caller's `begin()` does
    with Session(bind=bind, join_transaction_mode="rollback_only") as session:
        return _reserve_in_session(session, offer_id, name, email, idempotency_key, secret, lang)


def _reserve_in_session(session: Session, offer_id: str, name: str, email: str, idempotency_key: str | None,
                        secret: str, lang: str) -> tuple[dict, int]:
    advisory_lock(session, lock_key("offer", offer_id), shared=True)
    offer = known_offer(session, offer_id)
    fingerprint = request_fingerprint(name, email) if idempotency_key else ""
    if idempotency_key:
        first_answer = _replay(session, offer_id, idempotency_key, fingerprint, secret)
        if first_answer is not None:
            return first_answer
    if _is_closed(offer):
        metrics.RESERVATIONS.labels("closed").inc()
        raise Problem(409, "offer_closed", "This offer is closed to reservations.")
    reservation, status = _reserve(session, offer, name, email, secret, lang)
    if idempotency_key and not insert_ignore(session, idempotency_keys, {
            "offer_id": offer_id, "key": idempotency_key, "fingerprint": fingerprint,
            "reservation_id": reservation["id"], "status_code": status, "created_at": clock.now()},
            ["offer_id", "key"]):
        # Another request with this key committed while this one worked: its answer is the answer
        # (or a mismatch, which rolls back what this one did).
        return _replay(session, offer_id, idempotency_key, fingerprint, secret)
    return reservation, status


# The lock, then the offer as it was when the statement began: before the lock was granted, so its
# `closed` may be stale (a close cut that held the lock exclusively has committed since). It serves
# the event's description of the offer; whether the offer is closed is asked again below.
_LOCK_AND_OFFER = (
    "SELECT o.id, o.title, o.currency, o.closes_at, o.unit_price, o.minimum_reservations, o.holder_name, "
    "o.closed, o.verify_emails "
    "FROM (SELECT pg_advisory_xact_lock_shared(%(lock_key)s)) AS locked LEFT JOIN offers AS o ON o.id = %(offer_id)s")

# A statement that begins after the lock was granted sees every close cut that went before it: the
# reservation is inserted only if the offer is open and the e-mail new to it, and its event with it.
# Both are the driver's SQL (psycopg's parameters), run on the transaction's own driver connection
# (shared.db.driver_row: nothing compiled, no result metadata built, SQLAlchemy's errors kept).
_INSERT_WITH_EVENT = (
    "WITH inserted AS ("
    " INSERT INTO reservations (id, offer_id, name, email, email_key, status, revision, created_at, lang)"
    " SELECT %(id)s, o.id, %(name)s, %(email)s, %(email_key)s, %(status)s, 1, %(created_at)s, %(lang)s"
    " FROM offers AS o WHERE o.id = %(offer_id)s AND NOT o.closed AND o.verify_emails = %(verify_emails)s"
    " ON CONFLICT (offer_id, email_key) DO NOTHING RETURNING id),"
    " recorded AS ("
    " INSERT INTO outbox (event_id, type, body, created_at, attempts)"
    " SELECT %(event_id)s, %(event_type)s, %(body)s, %(created_at)s, 0 FROM inserted)"
    " SELECT count(*) AS inserted FROM inserted")  # a WITH's INSERT runs whether or not it is read


def _reserve_at_once(connection: Connection, offer_id: str, name: str, email: str, secret: str,
                     lang: str) -> tuple[dict, int] | None:
    """The common case on PostgreSQL, a new e-mail on an open offer, in two statements instead of
    four: the lock with the offer, then the reservation with its event. The reservation's id is
    made here, so its tokens and its event are known before the insert (revision 1, like `_claim`'s).
    None when it did not apply (the e-mail has a reservation already, or the offer looks closed):
    nothing was written, the lock is held, and the general path decides."""
    offer = driver_row(connection, _LOCK_AND_OFFER, {"lock_key": lock_key("offer", offer_id), "offer_id": offer_id})
    if offer.id is None:
        raise OfferUnknown(offer_id)
    if _is_closed(offer):
        return None
    reservation_id, now, status = str(uuid.uuid4()), clock.now(), initial_status(offer.verify_emails)
    token = cancel_token(secret, reservation_id)
    _, event = outbox_row(SERVICE, ReservationAccepted(
        reservation_id=reservation_id, offer_id=offer.id, name=name, email=email, lang=lang, cancel_token=token,
        offer=ReservedOffer(title=offer.title, currency=offer.currency, closes_at=clock.to_utc(offer.closes_at),
                            unit_price=offer.unit_price, minimum_reservations=offer.minimum_reservations,
                            holder_name=offer.holder_name),
        status=status, verify_token=verify_token(secret, reservation_id, 1) if status == "pending" else None,
        revision=1,
    ))
    written = driver_row(connection, _INSERT_WITH_EVENT, {
        "id": reservation_id, "offer_id": offer.id, "name": name, "email": email, "email_key": email.lower(),
        "status": status, "created_at": now, "lang": lang, "verify_emails": offer.verify_emails,
        "event_id": event["event_id"], "event_type": event["type"], "body": event["body"],
    })
    if not written.inserted:
        return None
    metrics.RESERVATIONS.labels("accepted").inc()
    return {"id": reservation_id, "offer_id": offer.id, "status": status, "cancel_token": token}, 201


def _replay(session: Session, offer_id: str, key: str, fingerprint: str, secret: str) -> tuple[dict, int] | None:
    """The first answer given to this key, or None if the key is new. Another body: 422, and
    nothing of the first reservation in it."""
    bound = session.execute(select(idempotency_keys).where(
        idempotency_keys.c.offer_id == offer_id, idempotency_keys.c.key == key)).first()
    if bound is None:
        return None
    if not hmac.compare_digest(bound.fingerprint, fingerprint):
        raise Problem(422, "idempotency_key_mismatch",
                      "This Idempotency-Key was first sent with another request body; use a new key.")
    row = session.execute(select(reservations).where(reservations.c.id == bound.reservation_id)).one()
    offer = find_offer(session, offer_id)
    # The first answer, as it was: every key was bound to a live reservation (201: just made, so in
    # its offer's initial status; 200: a repeat of a pending or active one), whatever became of it
    # since; replaying the key changes nothing.
    first = initial_status(offer.verify_emails)
    if bound.status_code == 200 and row.status in ("pending", "active"):
        first = row.status
    return {**_reservation_dict(row, secret), "status": first}, bound.status_code


def _reserve(session: Session, offer, name: str, email: str, secret: str, lang: str) -> tuple[dict, int]:
    """One reservation per (offer, e-mail): the statements find what the purchaser had, the rule
    says what the request does with it."""
    row, status_before = _claim(session, offer, name, email, lang)
    if not activates(reserve_outcome(status_before)):
        metrics.RESERVATIONS.labels("repeat").inc()
        return _reservation_dict(row, secret), 200
    _accepted_event(session, offer, row, secret)
    metrics.RESERVATIONS.labels("accepted").inc()
    return _reservation_dict(row, secret), 201


def _claim(session: Session, offer, name: str, email: str, lang: str) -> tuple:
    """(the reservation, its status before this request: None when it is new). Each state change
    is one conditional statement, so of many identical requests at once exactly one changes the
    state and so records the event."""
    email_key = email.lower()
    status = initial_status(offer.verify_emails)
    inserted = session.execute(
        dialect_insert(session, reservations).values(
            id=str(uuid.uuid4()), offer_id=offer.id, name=name, email=email, email_key=email_key,
            status=status, revision=1, created_at=clock.now(), lang=lang,
        ).on_conflict_do_nothing(index_elements=["offer_id", "email_key"]).returning(*reservations.c)
    ).first()
    if inserted is not None:
        return inserted, None
    this_one = (reservations.c.offer_id == offer.id, reservations.c.email_key == email_key)
    reactivated = session.execute(
        update(reservations).where(*this_one, reservations.c.status == "cancelled")
        .values(status=status, cancelled_at=None, name=name, created_at=clock.now(), lang=lang,
                revision=reservations.c.revision + 1)
        .returning(*reservations.c)
    ).first()
    if reactivated is not None:
        return reactivated, "cancelled"
    existing = session.execute(select(reservations).where(*this_one)).one()
    return existing, existing.status


def purchasers_reservation(session: Session, reservation_id: str, token: str | None, secret: str):
    """The reservation, for the purchaser who shows its cancel token; else 404 / 403."""
    row = session.execute(select(reservations).where(reservations.c.id == reservation_id)).first()
    if row is None:
        raise Problem(404, "reservation_not_found", "No such reservation.")
    if not token:
        raise Problem(403, "cancel_token_missing",
                      "Send the cancel token given at creation in the X-Cancel-Token header.")
    if not _matches(token, cancel_token(secret, reservation_id)):
        raise Problem(403, "wrong_cancel_token", "The cancel token does not match this reservation.")
    return row


def cancel(session: Session, reservation_id: str, token: str | None, secret: str) -> None:
    """Cancel once: of many cancels at once, the one whose UPDATE changed the status records the
    event (and so the one mail); the others find it cancelled and answer the same 204."""
    row = purchasers_reservation(session, reservation_id, token, secret)
    advisory_lock(session, lock_key("offer", row.offer_id), shared=True)
    offer = find_offer(session, row.offer_id)
    if _is_closed(offer):
        raise Problem(409, "offer_closed", "The offer is closed: reservations can no longer be cancelled.")
    cancelled = session.execute(
        update(reservations)
        .where(reservations.c.id == reservation_id, reservations.c.status.in_(("active", "pending")))
        .values(status="cancelled", cancelled_at=clock.now(), revision=reservations.c.revision + 1)
        .returning(*reservations.c)
    ).first()
    if cancelled is None:
        return
    record_event(session, outbox, SERVICE, ReservationCancelled(
        reservation_id=cancelled.id, offer_id=cancelled.offer_id, name=cancelled.name, email=cancelled.email,
        lang=cancelled.lang,
        offer=CancelledOffer(title=offer.title, currency=offer.currency, closes_at=offer.closes_at),
        revision=cancelled.revision,
    ))
    metrics.RESERVATIONS.labels("cancelled").inc()


VERIFY_REFUSALS = {
    Verification.ALREADY_CONFIRMED: (409, "already_verified", "This reservation is confirmed already: the link "
                                                              "works once."),
    Verification.NOT_PENDING: (409, "not_pending", "This reservation was cancelled or has lapsed: there is "
                                                   "nothing to confirm."),
    Verification.WRONG_LINK: (403, "wrong_verify_token", "The verify token does not match this reservation."),
}


def verify(session: Session, reservation_id: str, token: str, secret: str) -> dict:
    """Confirm a pending reservation with the link from its confirmation mail (SPEC §10). Under the
    offer's shared advisory lock, like a reservation, so against the close cut it is all or nothing:
    it commits before the cut (and is in its list) or it sees the offer closed (409). Of many
    confirmations at once, the one whose conditional UPDATE changed the row records the event."""
    row = session.execute(select(reservations).where(reservations.c.id == reservation_id)).first()
    if row is None:
        raise Problem(404, "reservation_not_found", "No such reservation.")
    advisory_lock(session, lock_key("offer", row.offer_id), shared=True)
    row = session.execute(select(reservations).where(reservations.c.id == reservation_id)).one()
    outcome = verification(row.status, link_revision(secret, row.id, row.revision, token), row.revision)
    if outcome is not Verification.CONFIRMS:
        raise Problem(*VERIFY_REFUSALS[outcome])
    if _is_closed(find_offer(session, row.offer_id)):
        raise Problem(409, "offer_closed", "The offer is closed: the reservation lapsed unconfirmed.")
    confirmed = session.execute(
        update(reservations)
        .where(reservations.c.id == reservation_id, reservations.c.status == "pending",
               reservations.c.revision == row.revision)
        .values(status="active", revision=reservations.c.revision + 1).returning(*reservations.c)
    ).first()
    if confirmed is None:  # another request confirmed it, or cancelled it, first: say which
        now = session.execute(select(reservations).where(reservations.c.id == reservation_id)).one()
        outcome = verification(now.status, link_revision(secret, now.id, now.revision, token), now.revision)
        raise Problem(*VERIFY_REFUSALS.get(outcome, VERIFY_REFUSALS[Verification.ALREADY_CONFIRMED]))
    record_event(session, outbox, SERVICE, ReservationVerified(
        reservation_id=confirmed.id, offer_id=confirmed.offer_id, name=confirmed.name, email=confirmed.email,
        revision=confirmed.revision))
    metrics.RESERVATIONS.labels("verified").inc()
    return {"id": confirmed.id, "offer_id": confirmed.offer_id, "status": confirmed.status}


def active_reservations(session: Session, offer_id: str) -> list:
    return session.execute(
        select(reservations.c.id, reservations.c.name, reservations.c.email, reservations.c.created_at,
               reservations.c.lang)
        .where(reservations.c.offer_id == offer_id, reservations.c.status == "active")
        .order_by(reservations.c.created_at, reservations.c.id)
    ).all()


def catch_up_on_holder(sessions: sessionmaker[Session], config: Config, offer_id: str) -> None:
    """Before the holder check: the condition as auction holds it now, so a seller who has just won
    the offer (its 201 came before the OfferIntercepted event did) is the holder here too, and the
    seller it displaced no longer is. If auction cannot answer, the copy here is the answer (it lags
    by well under a second)."""
    try:
        now = lookup.published(config, "auction", "/internal/conditions", offer_id)
    except requests.RequestException:
        log.warning("auction did not answer for the holder of %s; using reservation's copy", offer_id)
        return
    if now is not None:
        with sessions.begin() as session:
            apply_interception(session, read(HeardInterception, now))


def list_for_holder(session: Session, offer_id: str, seller: dict) -> list[dict]:
    offer = known_offer(session, offer_id)
    if offer.holder_id != seller["id"]:
        raise Problem(403, "not_holder", "Only the seller holding the offer sees its reservations.")
    return [{"id": r.id, "name": r.name, "email": r.email, "at": r.created_at}
            for r in active_reservations(session, offer_id)]


# ---- the close cut -------------------------------------------------------------------------------

def on_deadline_reached(session: Session, event: Envelope) -> None:
    """An offer reservation has not heard of yet is learned from the event's own snapshot."""
    offer_id = event.data["offer_id"]
    lookup.learning(lambda: cut(session, offer_id), lambda _: event.data["offer"], partial(remember_offer, session))


def cut(session: Session, offer_id: str) -> None:
    """Close the offer to reservations and hand the final tally to the auction."""
    advisory_lock(session, lock_key("offer", offer_id))  # waits for every in-flight reservation
    known_offer(session, offer_id)
    session.execute(update(offers).where(offers.c.id == offer_id).values(closed=True))
    # SPEC §10: unconfirmed reservations lapse here; nothing more is said to them.
    session.execute(update(reservations)
                    .where(reservations.c.offer_id == offer_id, reservations.c.status == "pending")
                    .values(status="lapsed", revision=reservations.c.revision + 1))
    rows = active_reservations(session, offer_id)
    record_event(session, outbox, SERVICE, ReservationsFinalised(
        offer_id=offer_id, final_count=len(rows),
        reservations=[Purchaser(id=r.id, name=r.name, email=r.email, lang=r.lang) for r in rows],
    ))


# ---- the count -----------------------------------------------------------------------------------

def refresh_tally(session: Session, offer_id: str, interval: timedelta | None = None) -> bool:
    """Recount one offer under a lock on its tally row, so versions follow the truth. With an
    interval, an offer counted less than that long ago is left alone (False): its recount is due
    later, and is coalesced with whatever else moves the count meanwhile."""
    now = clock.now()
    tally = session.execute(select(tallies).where(tallies.c.offer_id == offer_id).with_for_update()).first()
    if tally is None:
        insert_ignore(session, tallies, {"offer_id": offer_id, "count": 0, "version": 0}, ["offer_id"])
        tally = session.execute(select(tallies).where(tallies.c.offer_id == offer_id).with_for_update()).one()
    elif interval is not None and not recount_due(tally.counted_at, now, interval):
        return False
    count = session.execute(select(func.count()).select_from(reservations).where(
        reservations.c.offer_id == offer_id, reservations.c.status == "active")).scalar_one()
    if count == tally.count and tally.version > 0:
        session.execute(update(tallies).where(tallies.c.offer_id == offer_id).values(counted_at=now))
        return True
    version = tally.version + 1
    session.execute(update(tallies).where(tallies.c.offer_id == offer_id)
                    .values(count=count, version=version, counted_at=now))
    record_event(session, outbox, SERVICE, ReservationCountChanged(offer_id=offer_id, count=count, version=version))
    return True


def recount_due(counted_at: datetime | None, now: datetime, interval: timedelta) -> bool:
    """Never counted, counted at least `interval` ago, or "in the future" (a clock set back)."""
    return counted_at is None or not (now - interval < counted_at <= now)


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
