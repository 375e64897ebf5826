"""reservation's own tables."""
from pathlib import Path

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, UniqueConstraint, false

from shared.db import UTCDateTime
from shared.outbox import inbox_table, outbox_table
from shared.ratelimit import rate_limit_table

MIGRATIONS = Path(__file__).parent / "migrations"
metadata = MetaData()

# What reservation knows of an offer: enough to enforce the term, check the holder and
# write a confirmation that names the offer. Filled from OfferPublished / OfferIntercepted.
offers = Table(
    "offers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("closes_at", UTCDateTime, nullable=False),
    Column("holder_id", String(36), nullable=False),
    Column("holder_name", String(100), nullable=False),
    Column("unit_price", Integer, nullable=False),
    Column("minimum_reservations", Integer, nullable=False),
    Column("condition_version", Integer, nullable=False),
    Column("closed", Boolean, nullable=False),
    Column("verify_emails", Boolean, nullable=False, server_default=false()),  # SPEC §10
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("offer_id", String(36), nullable=False),
    Column("name", String(100), nullable=False),
    Column("email", String(254), nullable=False),
    Column("email_key", String(254), nullable=False),
    Column("status", String(10), nullable=False),  # active | cancelled | pending | lapsed (SPEC §10)
    # Raised by every change of status: it orders the reservation's events for their consumers, and
    # a verify link is made for one revision (so it works once).
    Column("revision", Integer, nullable=False, server_default="0"),
    Column("idempotency_key", String(200), nullable=True),  # no longer written: see idempotency_keys
    Column("created_at", UTCDateTime, nullable=False),
    Column("cancelled_at", UTCDateTime, nullable=True),
    Column("lang", String(5), nullable=False, server_default="en"),  # the language the purchaser reserved in, for their mails (SPEC §12)
    UniqueConstraint("offer_id", "email_key", name="uq_reservation_offer_email"),
    UniqueConstraint("offer_id", "idempotency_key", name="uq_reservation_idempotency"),
    Index("ix_reservations_offer_status", "offer_id", "status"),
)

# Each Idempotency-Key, bound to the request it first came with (IETF Idempotency-Key draft):
# a repeat with the same fingerprint gets the first answer, another body a 422.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("offer_id", String(36), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("reservation_id", String(36), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# The derived count, refreshed after reservation events are published (never per request), at most
# once per coalescing interval per offer (recounts.py): `counted_at` is when it was last counted.
tallies = Table(
    "tallies",
    metadata,
    Column("offer_id", String(36), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("counted_at", UTCDateTime, nullable=True),
)

# Offers whose count must be recomputed: noted by the relay in the transaction that marks their
# reservation events sent, deleted in the transaction of the recount, so none is ever lost.
pending_recounts = Table(
    "pending_recounts",
    metadata,
    Column("offer_id", String(36), primary_key=True),
    Column("noted_at", UTCDateTime, nullable=False),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
rate_limits = rate_limit_table(metadata)
