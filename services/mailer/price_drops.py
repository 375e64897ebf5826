"""Price-drop mails (SPEC §10): when a counter-offer takes an offer, every purchaser with an active
reservation is told the new condition, once per window.

- **Who**: the mailer keeps its own list of each offer's purchasers (`purchasers`), from the
  reservation events it already hears for the confirmation and cancellation mails, plus
  `ReservationVerified`. Each event carries the reservation's `revision`, so a cancel that overtakes
  its acceptance (they travel through different queues) is not undone by it. Why here and not
  asked of reservation: docs/architecture.md, "Price drops".
- **When**: the first interception plans a window due `delay` after it; interceptions before it
  leaves fold into it (the mail is rendered from the newest condition when the window leaves). The
  first interception after it plans the next window, due no earlier than `interval` after the last
  one left: so at most one price-drop mail per purchaser and offer per interval.
- **Once**: the window is expanded into delivery rows in one transaction with marking it sent, under
  its row lock (`SKIP LOCKED`: any number of mailer workers); the rows are unique per (window,
  recipient) as every delivery is. An interception's planner locks the same row, so it either folds
  into a window that has not left, or plans the next one: never neither.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from types import SimpleNamespace

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared import clock, doorbell
from shared.db import dialect_insert, insert_for, insert_ignore, is_postgres
from shared.envelope import Envelope
from shared.events import read

from . import metrics
from .planning import deliverable, language, one_line, plan, storable_id
from .tables import price_conditions, price_drops, purchasers

log = logging.getLogger(__name__)

TEMPLATE = "price_drop"
IDLE_LOOK_SECONDS = 1.0  # an idle expander's look for a window falling due (it used to look four times a second)
RUNG_LOOK_SECONDS = 0.25  # rung by the consumer, it looks no sooner than this after its last look
WINDOW_NAMESPACE = uuid.UUID("5f0c1a52-3b7e-4c41-9d0e-7a1f2b3c4d5e")


# ---- the rule (pure) ------------------------------------------------------------------------------

def next_window_due(intercepted_at: datetime, last_planned: bool, last_sent_at: datetime | None,
                    delay: timedelta, interval: timedelta) -> datetime | None:
    """When the window this interception starts is due; None when it folds into the window that is
    planned and has not left yet (the mail will name the newest condition when it leaves)."""
    if not last_planned:
        return intercepted_at + delay
    if last_sent_at is None:
        return None
    return max(intercepted_at + delay, last_sent_at + interval)


def window_event_id(offer_id: str, seq: int) -> str:
    """The window's stand-in for an event id (36 characters, as a delivery's event_id): stable, so
    the window's mail to a recipient always has the same Message-ID and delivery row."""
    return str(uuid.uuid5(WINDOW_NAMESPACE, f"{offer_id}|{seq}"))


# ---- what the mailer reads of reservation's events ------------------------------------------------

@dataclass(frozen=True)
class HeardPurchaser:
    reservation_id: object  # bounded by storable_id, whatever was sent
    offer_id: object
    name: object
    email: object
    revision: int = 0  # absent from events of a reservation service before SPEC §10
    lang: object = "en"  # the language she reserved in (SPEC §12)


def note_purchaser(session: Session, heard: HeardPurchaser, active: bool) -> None:
    note_purchasers(session, [(heard, active)])


def note_purchasers(session: Session, heard: list[tuple[HeardPurchaser, bool]]) -> None:
    """Keep what the newest event of each reservation says (by revision; equal revisions, of events
    from before revisions existed, as they come), in one statement for them all. Of one reservation
    named twice, only the one the statement would keep goes in: an upsert may not touch a row twice."""
    rows: dict[str, dict] = {}
    for h, active in heard:
        if not noteable(h):
            continue
        before = rows.get(h.reservation_id)
        if before is None or before["revision"] <= h.revision:
            rows[h.reservation_id] = {
                "reservation_id": h.reservation_id, "offer_id": h.offer_id, "email": h.email, "name": one_line(h.name),
                "active": active, "revision": int(h.revision), "lang": language(h.lang)}
    if rows:
        # in one order, whatever the events' order: two mailer replicas upserting the same purchasers
        # lock their rows in the same order, and never wait on each other in a circle
        session.execute(_noting(is_postgres(session)), [rows[k] for k in sorted(rows)])


def noteable(h: HeardPurchaser) -> bool:
    """Whether the purchaser can be stored; if not, said in the log (under the event's correlation id)."""
    if not isinstance(h.revision, int) or storable_id(h.reservation_id) is None or storable_id(h.offer_id) is None \
            or not deliverable(h.email):
        log.warning("reservation event with an id or address we cannot store; not noted for price drops")
        return False
    return True


@lru_cache(maxsize=2)
def _noting(postgres: bool):
    """note_purchaser's upsert, built once (each reservation event makes one)."""
    stmt = insert_for(postgres, purchasers)
    return stmt.on_conflict_do_update(
        index_elements=["reservation_id"],
        set_={"email": stmt.excluded.email, "name": stmt.excluded.name, "active": stmt.excluded.active,
              "revision": stmt.excluded.revision, "lang": stmt.excluded.lang},
        where=purchasers.c.revision <= stmt.excluded.revision)


def _instant(event: Envelope) -> datetime:
    """When the interception happened (the envelope's instant; never later than now)."""
    try:
        return min(clock.to_utc(datetime.fromisoformat(event.occurred_at)), clock.now())
    except (TypeError, ValueError):
        return clock.now()


class PriceDrops:
    def __init__(self, mail_domain: str, delay_seconds: float = 30.0, interval_seconds: float = 600.0):
        self.domain = mail_domain
        self.delay = timedelta(seconds=delay_seconds)
        self.interval = timedelta(seconds=interval_seconds)

    # -- planning, in the consumer's transaction ------------------------------------------------

    @staticmethod
    def note_purchaser(session: Session, data: dict, active: bool) -> None:
        note_purchaser(session, read(HeardPurchaser, data), active)

    @staticmethod
    def heard(data: dict) -> HeardPurchaser | None:
        """The purchaser an event names, if storable (call it under the event's correlation id)."""
        h = read(HeardPurchaser, data)
        return h if noteable(h) else None

    @staticmethod
    def note_purchasers(session: Session, noted: list[tuple[HeardPurchaser, bool]]) -> None:
        """note_purchaser for each (PriceDrops.heard, active), in one statement."""
        note_purchasers(session, noted)

    def on_interception(self, session: Session, event: Envelope, offer_id: str, version: int, context: dict,
                        was_price: int) -> None:
        """Remember the newest condition, then fold into the planned window or plan the next."""
        if storable_id(offer_id) is None or not isinstance(version, int) or not isinstance(was_price, int):
            log.warning("interception of event %s names an offer or version we cannot store; no price drop", event.id)
            return
        stmt = dialect_insert(session, price_conditions).values(
            offer_id=offer_id, version=version, context=json.dumps(context), closed=False)
        session.execute(stmt.on_conflict_do_update(
            index_elements=["offer_id"], set_={"version": stmt.excluded.version, "context": stmt.excluded.context},
            where=price_conditions.c.version < stmt.excluded.version))
        # Locks the last window: a window being expanded is waited for, and then seen as sent.
        last = session.execute(
            select(price_drops).where(price_drops.c.offer_id == offer_id)
            .order_by(price_drops.c.seq.desc()).limit(1).with_for_update()
        ).first()
        due = next_window_due(_instant(event), last is not None, last.sent_at if last else None,
                              self.delay, self.interval)
        if due is None:
            return
        # A concurrent planner that took this seq first planned the same window: this one folds into it.
        insert_ignore(session, price_drops, {"offer_id": offer_id, "seq": (last.seq + 1) if last else 1,
                                             "due_at": due, "was_price": was_price}, ["offer_id", "seq"])

    def on_close(self, session: Session, offer_id: str) -> None:
        """No price drop after the close: a window still planned leaves with no recipient."""
        if storable_id(offer_id) is None:
            return
        stmt = dialect_insert(session, price_conditions).values(offer_id=offer_id, version=-1, context="{}",
                                                                closed=True)
        session.execute(stmt.on_conflict_do_update(index_elements=["offer_id"], set_={"closed": True}))

    # -- expanding a due window into deliveries ---------------------------------------------------

    def expand_one(self, sessions: sessionmaker[Session]) -> bool:
        """Expand the next due window, if any, in one transaction; True when one was."""
        with sessions.begin() as session:
            now = clock.now()
            window = session.execute(
                select(price_drops).where(price_drops.c.sent_at.is_(None), price_drops.c.due_at <= now)
                .order_by(price_drops.c.due_at).limit(1).with_for_update(skip_locked=True)
            ).first()
            if window is None:
                return False
            condition = session.execute(
                select(price_conditions).where(price_conditions.c.offer_id == window.offer_id)).first()
            recipients = []
            if condition is not None and not condition.closed:
                recipients = session.execute(
                    select(purchasers.c.email, purchasers.c.name, purchasers.c.reservation_id, purchasers.c.lang)
                    .where(purchasers.c.offer_id == window.offer_id, purchasers.c.active.is_(True))
                ).all()
                stand_in = SimpleNamespace(id=window_event_id(window.offer_id, window.seq), correlation_id=None)
                plan(session, stand_in, TEMPLATE, {**json.loads(condition.context), "was_price": window.was_price},
                     [(r.email, r.name, {"reservation_id": r.reservation_id, "lang": language(r.lang)})
                      for r in recipients], self.domain)
            session.execute(update(price_drops)
                            .where(price_drops.c.offer_id == window.offer_id, price_drops.c.seq == window.seq)
                            .values(sent_at=now, recipients=len(recipients)))
        metrics.PRICE_DROP_RECIPIENTS.inc(len(recipients))
        log.info("price drop %s #%d: %d purchasers", window.offer_id, window.seq, len(recipients))
        return True

    def run(self, sessions: sessionmaker[Session], stop: threading.Event) -> None:
        """A look a second for a due window, and one as soon as this process's consumer applied an
        event (an interception plans a window; no sooner than a quarter second after the last look).
        A window is due `delay` after its interception, so it leaves within a second of that. None is
        lost by a worker that dies mid-expansion (its transaction rolls back and the window stays due)."""
        bell = doorbell.bell()
        while not stop.is_set():
            bell.clear()  # before the look: a ring during it makes the wait below return at once
            looked = time.monotonic()
            try:
                if self.expand_one(sessions):
                    doorbell.ring()  # its mails are committed: the claimer looks now
                    continue
            except Exception:
                log.exception("expanding a price-drop window failed; retrying")
                stop.wait(1.0)
                continue
            doorbell.wait(bell, stop, IDLE_LOOK_SECONDS, looked, RUNG_LOOK_SECONDS)
