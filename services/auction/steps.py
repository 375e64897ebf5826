"""auction's dated steps: the invitation and the deadline of each offer, claimed by one replica each."""
from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared import doorbell
from shared.db import db_now
from shared.outbox import record_event

from . import SERVICE, metrics
from .events import OfferDeadlineReached, OfferInvited, OfferSnapshot
from .offers import find_offer, holding_condition
from .tables import offers, outbox, steps

log = logging.getLogger(__name__)
RUNG_LOOK_SECONDS = 0.25  # the scheduler's looks when rung come no closer than this (a crowd's events ring each)


def _invite(session: Session, offer) -> None:
    session.execute(update(offers).where(offers.c.id == offer.id).values(invited=True))
    record_event(session, outbox, SERVICE, OfferInvited(
        offer_id=offer.id, title=offer.title, currency=offer.currency, invite_at=offer.invite_at,
        closes_at=offer.closes_at, holder_id=offer.holder_id, holder_name=offer.holder_name,
        unit_price=offer.unit_price, minimum_reservations=offer.minimum_reservations,
        min_decrement=offer.min_decrement, reservation_count=offer.reservation_count,
    ))


def _reach_deadline(session: Session, offer) -> None:
    session.execute(update(offers).where(offers.c.id == offer.id).values(status="closing"))
    record_event(session, outbox, SERVICE, OfferDeadlineReached(
        offer_id=offer.id,
        offer=OfferSnapshot(offer_id=offer.id, title=offer.title, currency=offer.currency,
                            closes_at=offer.closes_at, condition=holding_condition(offer)),
    ))


def run_due_steps(sessions: sessionmaker[Session], limit: int = 100, horizon: float = 0.25) -> tuple[int, float]:
    """Claim due steps (SKIP LOCKED: each goes to one replica) and apply them in one transaction
    with their outbox events, so a step is done exactly when its event is recorded.

    Returns (steps done, seconds until the next step is due, at most `horizon`): a replica
    sleeps until the next known step instead of polling, and looks again within `horizon` for
    steps that offers published meanwhile may have added.
    """
    with sessions.begin() as session:
        now = db_now(session)
        due = session.execute(
            select(steps).where(steps.c.done_at.is_(None), steps.c.due_at <= now)
            .order_by(steps.c.due_at).limit(limit).with_for_update(skip_locked=True)
        ).all()
        if not due:
            upcoming = session.execute(select(func.min(steps.c.due_at)).where(steps.c.done_at.is_(None))).scalar()
            wait = horizon if upcoming is None else (upcoming - now).total_seconds()
            return 0, min(max(wait, 0.02), horizon)  # due but locked: another replica is on it
        for step in due:
            offer = find_offer(session, step.offer_id, for_update=True)
            if step.kind == "invite" and offer.status == "open":
                _invite(session, offer)
            elif step.kind == "close":
                _reach_deadline(session, offer)
            session.execute(update(steps).where(steps.c.offer_id == step.offer_id, steps.c.kind == step.kind)
                            .values(done_at=now))
            metrics.STEP_LATENESS.labels(step.kind).observe(max((now - step.due_at).total_seconds(), 0))
    return len(due), 0.0


class Scheduler:
    """Sleeps until the next known step, or until this process's consumer rings its bell (it
    published an offer, so there may be a sooner step), or `horizon_seconds`: the look for steps
    that another replica's consumer added and rang only its own bell for, which that replica's
    scheduler runs on time anyway."""

    def __init__(self, sessions: sessionmaker[Session], horizon_seconds: float = 1.0):
        self.sessions = sessions
        self.horizon_seconds = horizon_seconds

    def run(self, stop: threading.Event) -> None:
        bell = doorbell.bell()
        while not stop.is_set():
            bell.clear()  # before the look: a ring during it makes the wait below return at once
            looked = time.monotonic()
            try:
                done, wait = run_due_steps(self.sessions, horizon=self.horizon_seconds)
                if not done:
                    doorbell.wait(bell, stop, wait, looked, RUNG_LOOK_SECONDS)
            except Exception:
                log.exception("scheduler tick failed; retrying")
                stop.wait(1.0)
