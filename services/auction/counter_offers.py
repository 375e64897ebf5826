"""auction's counter-offers: each judged against the holding condition (rules.py), under the offer's row lock."""
from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from shared import clock
from shared.events import as_data
from shared.outbox import record_event
from shared.problems import Problem

from . import SERVICE, metrics
from .events import HoldingCondition, InterceptedCondition, InterceptedOffer, OfferIntercepted
from .offers import holding_condition, known_offer
from .rules import (Condition, Verdict, accepts_counter_offers, counter_offer_kind, judge_counter_offer,
                    what_would_win)
from .tables import conditions, offers, outbox

REFUSALS = {
    Verdict.NOT_BETTER: "The counter-offer does not beat the holding condition.",
    Verdict.ALREADY_HOLDER: "You already hold this offer.",
    Verdict.RAISES_MINIMUM: "A counter-offer may not raise the minimum number of reservations.",
    Verdict.OFFER_CLOSED: "The offer is closed.",
}


def counter_offer(session: Session, offer_id: str, seller: dict, unit_price: int, minimum: int) -> dict:
    """Judge one counter-offer against the holding condition, under the offer's row lock."""
    offer = known_offer(session, offer_id, for_update=True)
    now = clock.now()
    verdict = judge_counter_offer(
        Condition(seller["id"], unit_price, minimum),
        Condition(offer.holder_id, offer.unit_price, offer.minimum_reservations),
        offer.min_decrement,
        accepts_counter_offers(offer.status, now, offer.closes_at),
    )
    metrics.COUNTER_OFFERS.labels(verdict.value).inc()
    if verdict is not Verdict.BETTER:
        holding = Condition(offer.holder_id, offer.unit_price, offer.minimum_reservations)
        hints = what_would_win(holding, offer.min_decrement) \
            if verdict in (Verdict.NOT_BETTER, Verdict.RAISES_MINIMUM) else {}
        raise Problem(409, verdict.value, REFUSALS[verdict], condition=as_data(holding_condition(offer)),
                      min_decrement=offer.min_decrement, **hints)
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
    condition = HoldingCondition(seller_id=seller["id"], seller_name=seller["name"], unit_price=unit_price,
                                 minimum_reservations=minimum, since=now)
    record_event(session, outbox, SERVICE, OfferIntercepted(
        offer_id=offer_id, version=version, kind=kind, condition=condition,
        intercepted=InterceptedCondition(
            seller_id=offer.holder_id, seller_name=offer.holder_name, seller_email=offer.holder_email,
            unit_price=offer.unit_price, minimum_reservations=offer.minimum_reservations,
        ),
        offer=InterceptedOffer(title=offer.title, currency=offer.currency, closes_at=offer.closes_at,
                               min_decrement=offer.min_decrement, reservation_count=offer.reservation_count),
    ))
    return {"offer_id": offer_id, "condition": as_data(condition), "intercepted_seller_id": offer.holder_id}
