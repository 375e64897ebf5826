"""What reservation tells the other services (consumers: shared/topology.py; catalogue: docs/architecture.md)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.events import Event


@dataclass(frozen=True)
class ReservedOffer:
    """The offer as the purchaser's confirmation describes it."""
    title: str
    currency: str
    closes_at: datetime
    unit_price: int
    minimum_reservations: int
    holder_name: str


@dataclass(frozen=True)
class ReservationAccepted(Event):
    reservation_id: str
    offer_id: str
    name: str
    email: str
    cancel_token: str
    offer: ReservedOffer
    lang: str = "en"  # optional, same VERSION: the language of the purchaser's mails (SPEC §12)
    # Optional fields added for SPEC §10 (VERSION stays 1): `pending` until the purchaser opens the
    # verify link (given only then); `revision` orders one reservation's events across queues.
    status: str = "active"
    verify_token: str | None = None
    revision: int = 0


@dataclass(frozen=True)
class CancelledOffer:
    title: str
    currency: str
    closes_at: datetime


@dataclass(frozen=True)
class ReservationCancelled(Event):
    reservation_id: str
    offer_id: str
    name: str
    email: str
    offer: CancelledOffer
    lang: str = "en"  # optional, same VERSION: the language of the purchaser's mails (SPEC §12)
    revision: int = 0  # SPEC §10, optional: orders one reservation's events across queues


@dataclass(frozen=True)
class ReservationVerified(Event):
    """A pending reservation (offer with verify_emails) confirmed by its purchaser: it counts now."""
    reservation_id: str
    offer_id: str
    name: str
    email: str
    revision: int


@dataclass(frozen=True)
class ReservationCountChanged(Event):
    offer_id: str
    count: int
    version: int  # consumers keep the highest


@dataclass(frozen=True)
class Purchaser:
    id: str
    name: str
    email: str
    lang: str = "en"


@dataclass(frozen=True)
class ReservationsFinalised(Event):
    """The offer is cut at its deadline: the final tally, for the auction's decision."""
    offer_id: str
    final_count: int
    reservations: list[Purchaser]
