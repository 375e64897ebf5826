"""auction's event entry points: which use case each event it hears runs."""
from __future__ import annotations

from sqlalchemy.orm import Session

from shared import config as config_module, lookup
from shared.envelope import Envelope
from shared.events import read

from .closing import HeardTally, close
from .offers import HeardCount, apply_count, published_offer, remember_offer


def on_offer_published(session: Session, event: Envelope) -> None:
    remember_offer(session, event.data)


def on_count_changed(session: Session, event: Envelope) -> None:
    count = read(HeardCount, event.data)
    # The count can overtake OfferPublished: without the offer, the count would be lost.
    lookup.learning_in_event(session, lambda: apply_count(session, count), published_offer(config_module.get()),
                             remember_offer)


def on_reservations_finalised(session: Session, event: Envelope) -> None:
    close(session, read(HeardTally, event.data))


HANDLERS = {
    "OfferPublished": on_offer_published,
    "ReservationCountChanged": on_count_changed,
    "ReservationsFinalised": on_reservations_finalised,
}
