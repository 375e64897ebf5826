"""Durable recounts: the count follows every published reservation event, even through a failure.

The relay notes each offer whose reservations moved (`note_recounts`, its on_sent hook) in the
transaction that marks their events sent; `recount_pending` (its follow-up) recounts each noted
offer and deletes the note in one transaction. A recount that fails leaves its note, and the
relay tries again with backoff, so the count never stays stale waiting for another reservation.
"""
from __future__ import annotations

import logging
from typing import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.db import dialect_insert
from shared.envelope import Envelope
from shared.failures import describe

from . import reservations
from .tables import pending_recounts

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


def recount_pending(sessions: sessionmaker[Session]) -> None:
    """Recount every noted offer, each in its own transaction; raises when any failed (after
    trying the others), so the relay retries the rest later."""
    with sessions() as session:
        offer_ids = session.execute(select(pending_recounts.c.offer_id).order_by(pending_recounts.c.offer_id)
                                    ).scalars().all()
    failed: Exception | None = None
    for offer_id in offer_ids:
        try:
            _recount(sessions, offer_id)
        except Exception as exc:
            log.warning("recount of offer %s failed (%s); it stays noted", offer_id, describe(exc))
            failed = exc
    if failed is not None:
        raise failed


def _recount(sessions: sessionmaker[Session], offer_id: str) -> None:
    note = pending_recounts.c.offer_id == offer_id
    with sessions.begin() as session:
        if session.execute(select(pending_recounts.c.offer_id).where(note).with_for_update(skip_locked=True)).first():
            reservations.refresh_tally(session, offer_id)
            session.execute(delete(pending_recounts).where(note))
        # else: another relay holds it (and recounts it) or already did


def recounter(sessions: sessionmaker[Session]) -> Callable[[], None]:
    """The relay's follow-up."""
    return lambda: recount_pending(sessions)
