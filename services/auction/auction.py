"""auction's use cases: learn offers, judge counter-offers, run dated steps, decide the close."""
from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared import clock, lookup
from shared.db import db_now, insert_ignore
from shared.envelope import Envelope
from shared.outbox import record_event
from shared.problems import Problem

from . import SERVICE, metrics
from .rules import Condition, Verdict, accepts_counter_offers, close_outcome, counter_offer_kind, judge_counter_offer
from .tables import conditions, offers, outbox, steps

log = logging.getLogger(__name__)


def remember_offer(session: Session, data: dict) -> None:
    """From OfferPublished (or the read-your-writes look-up): the initial condition and its steps."""
    c = data["condition"]
    since = datetime.fromisoformat(c["since"])
    created = insert_ignore(session, offers, {
        "id": data["offer_id"], "title": data["title"], "currency": data["currency"],
        "opens_at": datetime.fromisoformat(data["opens_at"]),
        "invite_at": datetime.fromisoformat(data["invite_at"]),
        "closes_at": datetime.fromisoformat(data["closes_at"]),
        "min_decrement": data["min_decrement"],
        "holder_id": c["seller_id"], "holder_name": c["seller_name"], "holder_email": c["seller_email"],
        "unit_price": c["unit_price"], "minimum_reservations": c["minimum_reservations"],
        "condition_since": since, "version": 0, "invited": False, "status": "open", "outcome": None,
        "reservation_count": 0, "count_version": 0,
    }, ["id"])
    if not created:
        return
    session.execute(conditions.insert().values(
        offer_id=data["offer_id"], version=0, seller_id=c["seller_id"], seller_name=c["seller_name"],
        seller_email=c["seller_email"], unit_price=c["unit_price"],
        minimum_reservations=c["minimum_reservations"], kind="initial", at=since,
    ))
    session.execute(steps.insert(), [
        {"offer_id": data["offer_id"], "kind": "invite", "due_at": datetime.fromisoformat(data["invite_at"])},
        {"offer_id": data["offer_id"], "kind": "close", "due_at": datetime.fromisoformat(data["closes_at"])},
    ])


def on_offer_published(session: Session, event: Envelope) -> None:
    remember_offer(session, event.data)


def find_offer(session: Session, offer_id: str, for_update: bool = False):
    query = select(offers).where(offers.c.id == offer_id)
    return session.execute(query.with_for_update() if for_update else query).first()


def holding_condition(offer) -> dict:
    return {
        "seller_id": offer.holder_id, "seller_name": offer.holder_name, "unit_price": offer.unit_price,
        "minimum_reservations": offer.minimum_reservations, "since": clock.iso(offer.condition_since),
    }


REFUSALS = {
    Verdict.NOT_BETTER: "The counter-offer does not beat the holding condition.",
    Verdict.ALREADY_HOLDER: "You already hold this offer.",
    Verdict.RAISES_MINIMUM: "A counter-offer may not raise the minimum number of reservations.",
    Verdict.OFFER_CLOSED: "The offer is closed.",
}


def counter_offer(session: Session, offer_id: str, seller: dict, unit_price: int, minimum: int) -> dict:
    """Judge one counter-offer against the holding condition, under the offer's row lock."""
    offer = find_offer(session, offer_id, for_update=True)
    if offer is None:
        raise Problem(404, "offer_not_found", "No such offer.")
    now = clock.now()
    verdict = judge_counter_offer(
        Condition(seller["id"], unit_price, minimum),
        Condition(offer.holder_id, offer.unit_price, offer.minimum_reservations),
        offer.min_decrement,
        accepts_counter_offers(offer.status, now, offer.closes_at),
    )
    metrics.COUNTER_OFFERS.labels(verdict.value).inc()
    if verdict is not Verdict.BETTER:
        raise Problem(409, verdict.value, REFUSALS[verdict], condition=holding_condition(offer),
                      min_decrement=offer.min_decrement)
    version = offer.version + 1
    kind = counter_offer_kind(now, offer.invite_at)
    session.execute(update(offers).where(offers.c.id == offer_id).values(
        holder_id=seller["id"], holder_name=seller["name"], holder_email=seller["email"],
        unit_price=unit_price, minimum_reservations=minimum, condition_since=now, version=version,
    ))
    session.execute(conditions.insert().values(
        offer_id=offer_id, version=version, seller_id=seller["id"], seller_name=seller["name"],
        seller_email=seller["email"], unit_price=unit_price, minimum_reservations=minimum, kind=kind, at=now,
    ))
    condition = {"seller_id": seller["id"], "seller_name": seller["name"], "unit_price": unit_price,
                 "minimum_reservations": minimum, "since": clock.iso(now)}
    record_event(session, outbox, SERVICE, "OfferIntercepted", {
        "offer_id": offer_id, "version": version, "kind": kind, "condition": condition,
        "intercepted": {
            "seller_id": offer.holder_id, "seller_name": offer.holder_name, "seller_email": offer.holder_email,
            "unit_price": offer.unit_price, "minimum_reservations": offer.minimum_reservations,
        },
        "offer": {"title": offer.title, "currency": offer.currency, "closes_at": clock.iso(offer.closes_at),
                  "min_decrement": offer.min_decrement, "reservation_count": offer.reservation_count},
    })
    return {"offer_id": offer_id, "condition": condition, "intercepted_seller_id": offer.holder_id}


def on_count_changed(session: Session, event: Envelope) -> None:
    data = event.data
    # The count can overtake OfferPublished: without the offer, the count would be lost.
    if not lookup.learn_if_unknown(session, data["offer_id"], find_offer, remember_offer):
        return
    session.execute(update(offers).where(offers.c.id == data["offer_id"], offers.c.count_version < data["version"])
                    .values(reservation_count=data["count"], count_version=data["version"]))


# ---- dated steps ----------------------------------------------------------------------------------

def _invite(session: Session, offer) -> None:
    session.execute(update(offers).where(offers.c.id == offer.id).values(invited=True))
    record_event(session, outbox, SERVICE, "OfferInvited", {
        "offer_id": offer.id, "title": offer.title, "currency": offer.currency,
        "invite_at": clock.iso(offer.invite_at), "closes_at": clock.iso(offer.closes_at),
        "holder_id": offer.holder_id, "holder_name": offer.holder_name,
        "unit_price": offer.unit_price, "minimum_reservations": offer.minimum_reservations,
        "min_decrement": offer.min_decrement, "reservation_count": offer.reservation_count,
    })


def _reach_deadline(session: Session, offer) -> None:
    session.execute(update(offers).where(offers.c.id == offer.id).values(status="closing"))
    record_event(session, outbox, SERVICE, "OfferDeadlineReached", {
        "offer_id": offer.id,
        "offer": {"offer_id": offer.id, "title": offer.title, "currency": offer.currency,
                  "closes_at": clock.iso(offer.closes_at), "condition": holding_condition(offer)},
    })


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
    def __init__(self, sessions: sessionmaker[Session], horizon_seconds: float = 0.25):
        self.sessions = sessions
        self.horizon_seconds = horizon_seconds

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                done, wait = run_due_steps(self.sessions, horizon=self.horizon_seconds)
                if not done:
                    stop.wait(wait)
            except Exception:
                log.exception("scheduler tick failed; retrying")
                stop.wait(1.0)


# ---- the close -------------------------------------------------------------------------------------

def on_reservations_finalised(session: Session, event: Envelope) -> None:
    """Reservation has cut the offer at its deadline; decide the outcome on the final tally."""
    data = event.data
    offer = find_offer(session, data["offer_id"], for_update=True)
    if offer is None or offer.status == "closed":
        return
    outcome = close_outcome(data["final_count"], offer.minimum_reservations)
    now = clock.now()
    session.execute(update(offers).where(offers.c.id == offer.id).values(
        status="closed", outcome=outcome, reservation_count=data["final_count"]))
    record_event(session, outbox, SERVICE, "OfferClosed", {
        "offer_id": offer.id, "title": offer.title, "currency": offer.currency, "outcome": outcome,
        "final_count": data["final_count"], "closed_at": clock.iso(now), "closes_at": clock.iso(offer.closes_at),
        "condition": {**holding_condition(offer), "seller_email": offer.holder_email},
        "purchasers": data["reservations"],
    })


HANDLERS = {
    "OfferPublished": on_offer_published,
    "ReservationCountChanged": on_count_changed,
    "ReservationsFinalised": on_reservations_finalised,
}
