"""From events to planned deliveries. Handlers only plan (fast, one transaction, then ack);
the sender delivers. So a fan-out to 10,000 sellers never holds a broker delivery for long.

What an event carries into a bounded column is bounded here, whatever its producer checked:
one odd value must never make the insert fail and the event dead-letter with everyone's mail."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import clock
from shared.db import insert_ignore, insert_ignore_many
from shared.envelope import Envelope

from .tables import batches, deliveries, sellers

log = logging.getLogger(__name__)

CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # SPEC §7, the gateway's own rule
NAME_LENGTH, ADDRESS_LENGTH, ID_LENGTH = 100, 254, 36  # the columns' lengths


def storable_correlation_id(value: object) -> str | None:
    """A correlation id only helps to trace: one that breaks the rule is dropped, not refused."""
    return value if isinstance(value, str) and CORRELATION_ID.fullmatch(value) else None


def one_line(value: object, length: int = NAME_LENGTH) -> str:
    """A display name as one printable line that fits its column (and can inject no header)."""
    text = "".join(c if c.isprintable() else " " for c in str(value or ""))
    return " ".join(text.split())[:length]


def deliverable(address: object) -> bool:
    """An address SMTP can carry (RFC 5321: 254 characters) and a column can store."""
    return (isinstance(address, str) and 3 <= len(address) <= ADDRESS_LENGTH and "@" in address
            and address.isprintable() and not any(c.isspace() for c in address))


def storable_id(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= ID_LENGTH and value.isprintable() else None


def message_id(event_id: str, recipient: str, template: str, domain: str) -> str:
    """Stable: the same (event, recipient, template) always gets the same Message-ID."""
    digest = hashlib.sha256(f"{event_id}|{recipient.lower()}|{template}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def plan(session: Session, event: Envelope, template: str, context: dict,
         recipients: list[tuple[str, str, dict]], domain: str) -> None:
    """recipients: (email, name, per-recipient extras)."""
    batch_id = f"{event.id}:{template}"
    now = clock.now()
    insert_ignore(session, batches, {"id": batch_id, "template": template, "context": json.dumps(context),
                                     "created_at": now}, ["id"])
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
    insert_ignore_many(session, deliveries, rows, ["event_id", "recipient", "template"])


class Planner:
    def __init__(self, mail_domain: str):
        self.domain = mail_domain

    def on_seller_registered(self, session: Session, event: Envelope) -> None:
        d = event.data
        if storable_id(d["seller_id"]) is None or not deliverable(d["email"]):
            log.warning("seller of event %s has an id or address we cannot store or mail; not invited", event.id)
            return
        insert_ignore(session, sellers, {"id": d["seller_id"], "name": one_line(d["name"]), "email": d["email"],
                                         "registered_at": datetime.fromisoformat(d["registered_at"])}, ["id"])

    def on_reservation_accepted(self, session: Session, event: Envelope) -> None:
        d = event.data
        plan(session, event, "reservation_accepted", {"offer_id": d["offer_id"], **d["offer"]},
             [(d["email"], d["name"], {"reservation_id": d["reservation_id"], "cancel_token": d["cancel_token"]})],
             self.domain)

    def on_reservation_cancelled(self, session: Session, event: Envelope) -> None:
        d = event.data
        plan(session, event, "reservation_cancelled", {"offer_id": d["offer_id"], **d["offer"]},
             [(d["email"], d["name"], {})], self.domain)

    def on_offer_intercepted(self, session: Session, event: Envelope) -> None:
        d = event.data
        lost = d["intercepted"]
        context = {"offer_id": d["offer_id"], **d["offer"], "condition": d["condition"], "kind": d["kind"],
                   "previous": {k: lost[k] for k in ("unit_price", "minimum_reservations")}}
        plan(session, event, "offer_intercepted", context, [(lost["seller_email"], lost["seller_name"], {})],
             self.domain)

    def on_offer_invited(self, session: Session, event: Envelope) -> None:
        """Every registered seller except the holder at the invitation instant."""
        d = event.data
        rows = session.execute(
            select(sellers.c.email, sellers.c.name).where(sellers.c.id != d["holder_id"])
        ).all()
        plan(session, event, "invitation", d, [(r.email, r.name, {}) for r in rows], self.domain)

    def on_offer_closed(self, session: Session, event: Envelope) -> None:
        d = event.data
        concluded = d["outcome"] == "concluded"
        holder = d["condition"]
        context = {k: d[k] for k in ("offer_id", "title", "currency", "outcome", "final_count", "closes_at")}
        context["condition"] = {k: holder[k] for k in ("seller_id", "seller_name", "unit_price",
                                                       "minimum_reservations")}
        purchasers = [(p["email"], p["name"], {"reservation_id": p["id"]}) for p in d["purchasers"]]
        plan(session, event, "contract_concluded" if concluded else "contract_failed", context, purchasers,
             self.domain)
        holder_context = {**context, "purchasers": d["purchasers"]}
        plan(session, event, "concluded_holder" if concluded else "failed_holder", holder_context,
             [(holder["seller_email"], holder["seller_name"], {})], self.domain)

    def handlers(self) -> dict:
        return {
            "SellerRegistered": self.on_seller_registered,
            "ReservationAccepted": self.on_reservation_accepted,
            "ReservationCancelled": self.on_reservation_cancelled,
            "OfferIntercepted": self.on_offer_intercepted,
            "OfferInvited": self.on_offer_invited,
            "OfferClosed": self.on_offer_closed,
        }
