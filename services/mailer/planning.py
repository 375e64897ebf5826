"""From events to planned deliveries. Handlers only plan (fast, one transaction, then ack);
the sender delivers. So a fan-out to 10,000 sellers never holds a broker delivery for long."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import clock
from shared.db import insert_ignore, insert_ignore_many
from shared.envelope import Envelope

from .tables import batches, deliveries, sellers


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
    for email, name, extra in recipients:
        key = email.lower()
        if key in seen:
            continue
        seen.add(key)
        rows.append({
            "event_id": event.id, "template": template, "recipient": key, "recipient_name": name,
            "batch_id": batch_id, "extra": json.dumps(extra), "offer_id": context.get("offer_id"),
            "correlation_id": event.correlation_id, "message_id": message_id(event.id, key, template, domain),
            "state": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now,
        })
    insert_ignore_many(session, deliveries, rows, ["event_id", "recipient", "template"])


class Planner:
    def __init__(self, mail_domain: str):
        self.domain = mail_domain

    def on_seller_registered(self, session: Session, event: Envelope) -> None:
        d = event.data
        insert_ignore(session, sellers, {"id": d["seller_id"], "name": d["name"], "email": d["email"],
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
