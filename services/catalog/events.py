"""What catalog tells the other services (consumers: shared/topology.py; catalogue: docs/architecture.md)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.events import Event


@dataclass(frozen=True)
class SellerRegistered(Event):
    seller_id: str
    name: str
    email: str
    registered_at: datetime
    lang: str = "en"  # optional, same VERSION: the language the seller's mails speak (SPEC §12)


@dataclass(frozen=True)
class InitialCondition:
    seller_id: str
    seller_name: str
    seller_email: str
    unit_price: int
    minimum_reservations: int
    since: datetime


@dataclass(frozen=True)
class OfferPublished(Event):
    """Also what /internal/offers/<id> serves to a service that has not heard of the offer yet."""
    offer_id: str
    title: str
    currency: str
    opens_at: datetime
    invite_at: datetime
    closes_at: datetime
    min_decrement: int
    condition: InitialCondition
    verify_emails: bool = False  # SPEC §10; a new optional field, so VERSION stays 1


@dataclass(frozen=True)
class SignInLinkRequested(Event):
    """A seller asked for a sign-in link (SPEC §9). The token travels to the mailer only: catalog
    stores its hash, and it is worth nothing after `expires_at` (15 minutes) or once used."""
    seller_id: str
    name: str
    email: str
    token: str
    expires_at: datetime
