"""auction's close: the outcome decided on reservation's final tally."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from shared import clock
from shared.outbox import record_event

from . import SERVICE
from .events import ClosingCondition, OfferClosed, Purchaser
from .offers import find_offer
from .rules import close_outcome
from .tables import offers, outbox

# What auction reads of ReservationsFinalised.


@dataclass(frozen=True)
class HeardPurchaser:
    id: str
    name: str
    email: str
    lang: str = "en"  # the language of their mails, passed on to the mailer


@dataclass(frozen=True)
class HeardTally:
    offer_id: str
    final_count: int
    reservations: list[HeardPurchaser]


def close(session: Session, tally: HeardTally) -> None:
    """Reservation has cut the offer at its deadline; decide the outcome on the final tally."""
    offer = find_offer(session, tally.offer_id, for_update=True)
    if offer is None or offer.status == "closed":
        return
    outcome = close_outcome(tally.final_count, offer.minimum_reservations)
    now = clock.now()
    session.execute(update(offers).where(offers.c.id == offer.id).values(
        status="closed", outcome=outcome, reservation_count=tally.final_count))
    record_event(session, outbox, SERVICE, OfferClosed(
        offer_id=offer.id, title=offer.title, currency=offer.currency, outcome=outcome,
        final_count=tally.final_count, closed_at=now, closes_at=offer.closes_at,
        condition=ClosingCondition(
            seller_id=offer.holder_id, seller_name=offer.holder_name, unit_price=offer.unit_price,
            minimum_reservations=offer.minimum_reservations, since=offer.condition_since,
            seller_email=offer.holder_email,
        ),
        purchasers=[Purchaser(id=p.id, name=p.name, email=p.email, lang=p.lang) for p in tally.reservations],
    ))
