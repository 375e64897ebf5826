"""Durable, coalesced recounts: the count follows every published reservation event, even through a
failure, at most once per interval per offer.

The relay notes each offer whose reservations moved (`note_recounts`, its on_sent hook) in the
transaction that marks their events sent; `recount_pending` (its follow-up) recounts each noted
offer and deletes the note in one transaction. A recount that fails leaves its note, and the
relay tries again with backoff, so the count never stays stale waiting for another reservation.

A count is a state, not a delta: an offer counted less than `interval` ago keeps its note, and
the relay calls the follow-up again when the first such note is due. So under load an offer is
counted (one `count(*)`) and announced (one `ReservationCountChanged`, to catalog, auction, the
mailer and the live pages) a few times a second however many reservations it takes, the first
change after a quiet spell at once, and the last one always (its note stays until it is counted).
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.db import dialect_insert
from shared.envelope import Envelope
from shared.failures import describe

from . import reservations
from .tables import pending_recounts, tallies

log = logging.getLogger(__name__)


def note_recounts(session: Session, envelopes: list[Envelope]) -> None:
    """In the relay's mark-sent transaction. The upsert (not DO NOTHING) waits for a recount holding
    the note, then writes it again: a recount that counted before this batch's reservations
    committed cannot delete the only note of them."""
    offer_ids = sorted({e.data.get("offer_id") for e in envelopes if e.type in reservations.COUNTED_EVENTS} - {None})
    if not offer_ids:
        return
    stmt = dialect_insert(session, pending_recounts).values(
        [{"offer_id": offer_id, "noted_at": clock.now()} for offer_id in offer_ids])  # sorted: one lock order
    session.execute(stmt.on_conflict_do_update(index_elements=["offer_id"], set_={"noted_at": stmt.excluded.noted_at}))


def recount_pending(sessions: sessionmaker[Session], interval: timedelta = timedelta(0)) -> float | None:
    """Recount every noted offer that is due, each in its own transaction. Returns the seconds until
    the next noted offer is due (None: nothing left); raises when any failed (after trying the
    others), so the relay retries the rest later."""
    now = clock.now()
    with sessions() as session:
        noted = session.execute(
            select(pending_recounts.c.offer_id, tallies.c.counted_at)
            .join_from(pending_recounts, tallies, tallies.c.offer_id == pending_recounts.c.offer_id, isouter=True)
            .order_by(pending_recounts.c.offer_id)).all()
    failed: Exception | None = None
    wait: float | None = None
    for offer_id, counted_at in noted:
        if not reservations.recount_due(counted_at, now, interval):
            wait = _sooner(wait, (counted_at + interval - now).total_seconds())
            continue
        try:
            if not _recount(sessions, offer_id, interval):  # another relay counted it meanwhile
                wait = _sooner(wait, interval.total_seconds())
        except Exception as exc:
            log.warning("recount of offer %s failed (%s); it stays noted", offer_id, describe(exc))
            failed = exc
    if failed is not None:
        raise failed
    return wait


def _sooner(wait: float | None, seconds: float) -> float:
    return max(0.0, seconds if wait is None else min(wait, seconds))


def _recount(sessions: sessionmaker[Session], offer_id: str, interval: timedelta) -> bool:
    """False when the offer was counted less than `interval` ago (by another relay): it stays noted."""
    note = pending_recounts.c.offer_id == offer_id
    with sessions.begin() as session:
        if session.execute(select(pending_recounts.c.offer_id).where(note).with_for_update(skip_locked=True)).first():
            if not reservations.refresh_tally(session, offer_id, interval):
                return False
            session.execute(delete(pending_recounts).where(note))
        # else: another relay holds it (and recounts it) or already did
    return True


def recounter(sessions: sessionmaker[Session], interval: float = 0.0) -> Callable[[], float | None]:
    """The relay's follow-up: recounts each noted offer at most once per `interval` seconds."""
    window = timedelta(seconds=interval)
    return lambda: recount_pending(sessions, window)
