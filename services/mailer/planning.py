"""From events to planned deliveries. Handlers only plan (fast, one transaction, then ack);
the sender delivers. So a fan-out to 10,000 sellers never holds a broker delivery for long.

What an event carries into a bounded column is bounded here, whatever its producer checked:
one odd value must never make the insert fail and the event dead-letter with everyone's mail."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import clock, languages, logs
from shared.db import insert_ignore, insert_ignore_many
from shared.envelope import Envelope
from shared.messaging import Together
from shared.events import read

from .tables import batches, deliveries, sellers

log = logging.getLogger(__name__)

NAME_LENGTH, ADDRESS_LENGTH, ID_LENGTH = 100, 254, 36  # the columns' lengths


def storable_correlation_id(value: object) -> str | None:
    """A correlation id only helps to trace: one that breaks the rule is dropped, not refused."""
    return value if logs.can_travel(value) else None


def one_line(value: object, length: int = NAME_LENGTH) -> str:
    """A display name as one printable line that fits its column (and can inject no header)."""
    text = "".join(c if c.isprintable() else " " for c in str(value or ""))
    return " ".join(text.split())[:length]


def deliverable(address: object) -> bool:
    """An address SMTP can carry (RFC 5321: 254 characters) and a column can store."""
    return (isinstance(address, str) and 3 <= len(address) <= ADDRESS_LENGTH and "@" in address
            and address.isprintable() and not any(c.isspace() for c in address))


def language(value: object) -> str:
    """The language a mail speaks: one we have words for, else English (an older event has none)."""
    return languages.supported(value) or languages.DEFAULT


def storable_id(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= ID_LENGTH and value.isprintable() else None


def message_id(event_id: str, recipient: str, template: str, domain: str) -> str:
    """Stable: the same (event, recipient, template) always gets the same Message-ID."""
    digest = hashlib.sha256(f"{event_id}|{recipient.lower()}|{template}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def plan(session: Session, event: Envelope, template: str, context: dict,
         recipients: list[tuple[str, str, dict]], domain: str) -> None:
    """recipients: (email, name, per-recipient extras)."""
    store(session, *planned(event, template, context, recipients, domain))


def planned(event: Envelope, template: str, context: dict, recipients: list[tuple[str, str, dict]],
            domain: str) -> tuple[list[dict], list[dict]]:
    """What `plan` stores: the batch row, and a delivery row for each deliverable recipient (once)."""
    batch_id = f"{event.id}:{template}"
    now = clock.now()
    batch = {"id": batch_id, "template": template, "context": json.dumps(context), "created_at": now}
    rows, seen = [], set()
    offer_id, correlation_id = storable_id(context.get("offer_id")), storable_correlation_id(event.correlation_id)
    for email, name, extra in recipients:
        if not deliverable(email):
            log.warning("%s of event %s: a recipient address of %d characters is not deliverable; skipped",
                        template, event.id, len(str(email or "")))
            continue
        key = email.lower()
        if key in seen:
            continue
        seen.add(key)
        rows.append({
            "event_id": event.id, "template": template, "recipient": key, "recipient_name": one_line(name),
            "batch_id": batch_id, "extra": json.dumps(extra), "offer_id": offer_id,
            "correlation_id": correlation_id, "message_id": message_id(event.id, key, template, domain),
            "state": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now,
        })
    return [batch], rows


def store(session: Session, batch_rows: list[dict], delivery_rows: list[dict]) -> None:
    """Batches, then their deliveries, each in one statement however many events they come from."""
    insert_ignore_many(session, batches, batch_rows, ["id"])
    insert_ignore_many(session, deliveries, delivery_rows, ["event_id", "recipient", "template"])


# What the mailer reads of each event (shared/events.py: a key it does not name is ignored). A `dict`
# is what the producer describes of the offer or condition, handed to the templates as it comes.

@dataclass(frozen=True)
class HeardSeller:
    seller_id: object  # checked by storable_id: the mailer bounds what it stores, whatever was sent
    name: object
    email: object
    registered_at: str
    lang: object = languages.DEFAULT


@dataclass(frozen=True)
class HeardReservation:
    offer_id: str
    reservation_id: str
    name: str
    email: str
    offer: dict
    lang: object = field(default=languages.DEFAULT, kw_only=True)  # older events have none


@dataclass(frozen=True)
class HeardAcceptance(HeardReservation):
    cancel_token: str
    status: str = "active"  # SPEC §10: "pending" until the purchaser opens the verify link
    verify_token: str | None = None


@dataclass(frozen=True)
class HeardLoser:
    seller_name: str
    seller_email: str
    unit_price: int
    minimum_reservations: int
    seller_id: object = None  # for their language


@dataclass(frozen=True)
class HeardInterception:
    offer_id: str
    version: int
    kind: str
    condition: dict
    intercepted: HeardLoser
    offer: dict


@dataclass(frozen=True)
class HeardClosingCondition:
    seller_id: str
    seller_name: str
    seller_email: str
    unit_price: int
    minimum_reservations: int


@dataclass(frozen=True)
class HeardClose:
    offer_id: str
    title: str
    currency: str
    outcome: str
    final_count: int
    closes_at: str
    condition: HeardClosingCondition
    purchasers: list[dict]


@dataclass(frozen=True)
class HeardSignInLink:
    seller_id: str
    name: str
    email: str
    token: str
    expires_at: str


class Planner:
    def __init__(self, mail_domain: str, price_drops=None):
        from .price_drops import PriceDrops  # here, not at the top: it plans with this module's plan()

        self.domain = mail_domain
        self.price_drops = price_drops or PriceDrops(mail_domain)

    def on_seller_registered(self, session: Session, event: Envelope) -> None:
        seller = read(HeardSeller, event.data)
        if storable_id(seller.seller_id) is None or not deliverable(seller.email):
            log.warning("seller of event %s has an id or address we cannot store or mail; not invited", event.id)
            return
        insert_ignore(session, sellers, {"id": seller.seller_id, "name": one_line(seller.name), "email": seller.email,
                                         "registered_at": datetime.fromisoformat(seller.registered_at),
                                         "lang": language(seller.lang)}, ["id"])

    @staticmethod
    def seller_language(session: Session, seller_id: object) -> str:
        """The language a seller registered in (English for one the mailer has not heard of)."""
        found = session.execute(select(sellers.c.lang).where(sellers.c.id == storable_id(seller_id))).scalar()
        return language(found)

    def on_sign_in_link_requested(self, session: Session, event: Envelope) -> None:
        """The token is in the batch's context until the mail is sent: it is good for 15 minutes and
        once only, and catalog keeps only its hash (docs/adr/0010-seller-sessions-in-catalog.md)."""
        link = read(HeardSignInLink, event.data)
        plan(session, event, "sign_in_link", {"token": link.token, "expires_at": link.expires_at},
             [(link.email, link.name, {"lang": self.seller_language(session, link.seller_id)})], self.domain)

    def on_reservation_accepted(self, session: Session, event: Envelope) -> None:
        self.on_reservations_accepted(session, [event])

    def on_reservations_accepted(self, session: Session, events: list[Envelope]) -> None:
        """A confirmation each, planned in a statement per table for them all (the consumer hands
        over the run of them that arrived together: under load, a purchaser's mail is most of what
        the mailer does, and its statements were most of that)."""
        batch_rows, delivery_rows, noted = [], [], []
        for event in events:
            token = logs.set_correlation_id(event.correlation_id)  # what is logged of it names its request
            try:
                r = read(HeardAcceptance, event.data)
                extra = {"reservation_id": r.reservation_id, "cancel_token": r.cancel_token, "lang": language(r.lang)}
                if r.status == "pending" and r.verify_token:
                    extra["verify_token"] = r.verify_token
                batch, rows = planned(event, "reservation_accepted", {"offer_id": r.offer_id, **r.offer},
                                      [(r.email, r.name, extra)], self.domain)
                heard = self.price_drops.heard(event.data)
            finally:
                logs.reset_correlation_id(token)
            batch_rows += batch
            delivery_rows += rows
            if heard is not None:
                noted.append((heard, r.status == "active"))
        store(session, batch_rows, delivery_rows)
        self.price_drops.note_purchasers(session, noted)

    def on_reservation_cancelled(self, session: Session, event: Envelope) -> None:
        r = read(HeardReservation, event.data)
        plan(session, event, "reservation_cancelled", {"offer_id": r.offer_id, **r.offer},
             [(r.email, r.name, {"lang": language(r.lang)})], self.domain)
        self._note_purchaser(session, event, active=False)

    def on_reservation_verified(self, session: Session, event: Envelope) -> None:
        """No mail (the page the purchaser opened says it); from now on price drops reach them."""
        self._note_purchaser(session, event, active=True)

    def _note_purchaser(self, session: Session, event: Envelope, active: bool) -> None:
        self.price_drops.note_purchaser(session, event.data, active)

    def on_offer_intercepted(self, session: Session, event: Envelope) -> None:
        i = read(HeardInterception, event.data)
        lost = i.intercepted
        context = {"offer_id": i.offer_id, **i.offer, "condition": i.condition, "kind": i.kind,
                   "previous": {"unit_price": lost.unit_price, "minimum_reservations": lost.minimum_reservations}}
        plan(session, event, "offer_intercepted", context,
             [(lost.seller_email, lost.seller_name, {"lang": self.seller_language(session, lost.seller_id)})],
             self.domain)
        condition = {k: i.condition.get(k) for k in ("seller_name", "unit_price", "minimum_reservations")}
        self.price_drops.on_interception(
            session, event, i.offer_id, i.version,
            {"offer_id": i.offer_id, **{k: i.offer.get(k) for k in ("title", "currency", "closes_at")},
             "condition": condition}, lost.unit_price)

    def on_offer_invited(self, session: Session, event: Envelope) -> None:
        """Every registered seller except the holder at the invitation instant. The templates get the
        whole event: it is the offer as the invitation describes it."""
        rows = session.execute(
            select(sellers.c.email, sellers.c.name, sellers.c.lang).where(sellers.c.id != event.data["holder_id"])
        ).all()
        plan(session, event, "invitation", event.data, [(r.email, r.name, {"lang": language(r.lang)}) for r in rows],
             self.domain)

    def on_offer_closed(self, session: Session, event: Envelope) -> None:
        c = read(HeardClose, event.data)
        concluded = c.outcome == "concluded"
        holder = c.condition
        context = {"offer_id": c.offer_id, "title": c.title, "currency": c.currency, "outcome": c.outcome,
                   "final_count": c.final_count, "closes_at": c.closes_at,
                   "condition": {"seller_id": holder.seller_id, "seller_name": holder.seller_name,
                                 "seller_email": holder.seller_email, "unit_price": holder.unit_price,
                                 "minimum_reservations": holder.minimum_reservations}}
        purchasers = [(p["email"], p["name"], {"reservation_id": p["id"], "lang": language(p.get("lang"))})
                      for p in c.purchasers]
        plan(session, event, "contract_concluded" if concluded else "contract_failed", context, purchasers,
             self.domain)
        holder_context = {**context, "purchasers": c.purchasers}
        plan(session, event, "concluded_holder" if concluded else "failed_holder", holder_context,
             [(holder.seller_email, holder.seller_name, {"lang": self.seller_language(session, holder.seller_id)})],
             self.domain)
        self.price_drops.on_close(session, c.offer_id)

    def handlers(self) -> dict:
        return {
            "SellerRegistered": self.on_seller_registered,
            "SignInLinkRequested": self.on_sign_in_link_requested,
            "ReservationAccepted": Together(self.on_reservations_accepted),
            "ReservationCancelled": self.on_reservation_cancelled,
            "ReservationVerified": self.on_reservation_verified,
            "OfferIntercepted": self.on_offer_intercepted,
            "OfferInvited": self.on_offer_invited,
            "OfferClosed": self.on_offer_closed,
        }
