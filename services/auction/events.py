"""What auction tells the other services (consumers: shared/topology.py; catalogue: docs/architecture.md)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.events import Event


@dataclass(frozen=True)
class HoldingCondition:
    seller_id: str
    seller_name: str
    unit_price: int
    minimum_reservations: int
    since: datetime


@dataclass(frozen=True)
class InterceptedCondition:
    """The condition a counter-offer beat, with the seller to tell (claim 2)."""
    seller_id: str
    seller_name: str
    seller_email: str
    unit_price: int
    minimum_reservations: int


@dataclass(frozen=True)
class InterceptedOffer:
    title: str
    currency: str
    closes_at: datetime
    min_decrement: int
    reservation_count: int


@dataclass(frozen=True)
class OfferIntercepted(Event):
    offer_id: str
    version: int  # of the holding condition; consumers keep the highest
    kind: str  # voluntary or invited
    condition: HoldingCondition
    intercepted: InterceptedCondition
    offer: InterceptedOffer


@dataclass(frozen=True)
class OfferInvited(Event):
    offer_id: str
    title: str
    currency: str
    invite_at: datetime
    closes_at: datetime
    holder_id: str
    holder_name: str
    unit_price: int
    minimum_reservations: int
    min_decrement: int
    reservation_count: int


@dataclass(frozen=True)
class OfferSnapshot:
    """Enough for reservation to cut an offer it has not heard of yet."""
    offer_id: str
    title: str
    currency: str
    closes_at: datetime
    condition: HoldingCondition


@dataclass(frozen=True)
class OfferDeadlineReached(Event):
    offer_id: str
    offer: OfferSnapshot


@dataclass(frozen=True)
class ClosingCondition:
    seller_id: str
    seller_name: str
    unit_price: int
    minimum_reservations: int
    since: datetime
    seller_email: str


@dataclass(frozen=True)
class Purchaser:
    id: str
    name: str
    email: str
    lang: str = "en"  # optional, same VERSION: the language of the purchaser's mails (SPEC §12)


@dataclass(frozen=True)
class OfferClosed(Event):
    offer_id: str
    title: str
    currency: str
    outcome: str  # concluded or failed
    final_count: int
    closed_at: datetime
    closes_at: datetime
    condition: ClosingCondition
    purchasers: list[Purchaser]
