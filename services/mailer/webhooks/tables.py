"""The webhook tables, in the mailer's schema and metadata (migration 0003)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from shared.db import UTCDateTime

from ..tables import metadata

# A seller's endpoint. The secret is kept as issued: signing needs it (an HMAC key cannot be hashed
# like an API key); it is shown once, at registration, and never in a listing.
endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("seller_id", String(36), nullable=False),
    Column("seller_name", String(100), nullable=False),
    Column("seller_email", String(254), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),  # space-separated event types
    Column("secret", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("failing_since", UTCDateTime, nullable=True),  # first failure since the last success
    Column("disabled_at", UTCDateTime, nullable=True),
    Index("ix_webhook_endpoints_seller", "seller_id"),
)

# One message to one endpoint: planned once (unique), delivered at least once.
messages = Table(
    "webhook_messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("endpoint_id", String(36), nullable=False),
    Column("message_id", String(40), nullable=False),  # webhook-id: the same on every attempt
    Column("event_type", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(10), nullable=False),  # pending | sending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=True),
    Column("claim_token", String(32), nullable=True),  # fencing, as for mail (docs/mail-delivery.md)
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("endpoint_id", "message_id", name="uq_webhook_message"),
    Index("ix_webhook_messages_due", "state", "next_attempt_at"),
)

# The delivery log a seller reads: one row per attempt.
attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("endpoint_id", String(36), nullable=False),
    Column("message_id", String(40), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("status", Integer, nullable=True),  # the HTTP status; none when no answer came
    Column("latency_ms", Integer, nullable=False),
    Column("error", String(200), nullable=True),
    Column("response", Text, nullable=True),  # the first bytes of the answer's body
    Index("ix_webhook_attempts_endpoint", "endpoint_id", "id"),
)

# What the webhooks need of an offer: its holder (for offer.count_changed) and the count's pace.
offers = Table(
    "webhook_offers",
    metadata,
    Column("offer_id", String(36), primary_key=True),
    Column("holder_id", String(36), nullable=True),
    Column("holder_version", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    Column("count_version", Integer, nullable=False),
    Column("told_version", Integer, nullable=False),  # the count version last planned
    Column("told_at", UTCDateTime, nullable=True),
)
