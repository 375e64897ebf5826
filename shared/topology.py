"""The message topology: one durable topic exchange, routing key = event type,
one durable queue per (consumer service, event handler), and a dead-letter exchange.

Every process declares the whole topology on start (idempotent). Publishing with
`mandatory` then turns an event nobody subscribes to into an error, and kombu's
embedded filesystem transport, which keeps bindings per process, routes correctly.
The event catalogue itself is in docs/architecture.md.
"""
from __future__ import annotations

SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "catalog": (
        "OfferIntercepted",
        "OfferInvited",
        "OfferClosed",
        "ReservationCountChanged",
    ),
    "reservation": ("OfferPublished", "OfferIntercepted", "OfferDeadlineReached"),
    "auction": ("OfferPublished", "ReservationCountChanged", "ReservationsFinalised"),
    "mailer": (
        "SellerRegistered",
        "SignInLinkRequested",
        "ReservationAccepted",
        "ReservationCancelled",
        "ReservationVerified",
        "OfferIntercepted",
        "OfferInvited",
        "OfferClosed",
        "OfferPublished",  # webhooks: an offer's first holder, for offer.count_changed
        "ReservationCountChanged",  # webhooks: offer.count_changed
    ),
}


def queue_name(prefix: str, service: str, event_type: str) -> str:
    return f"{prefix}.{service}.{event_type}"


def exchange_name(prefix: str) -> str:
    return f"{prefix}.events"


def dead_letter_exchange_name(prefix: str) -> str:
    return f"{prefix}.dead"


def dead_letter_queue_name(prefix: str) -> str:
    return f"{prefix}.dead-letter"
