"""mailer's own tables: who the sellers are, and the delivery log."""
from pathlib import Path

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint, text

from shared.db import UTCDateTime
from shared.outbox import inbox_table

MIGRATIONS = Path(__file__).parent / "migrations"
metadata = MetaData()

sellers = Table(
    "sellers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("email", String(254), nullable=False),
    Column("registered_at", UTCDateTime, nullable=False),
    Column("lang", String(5), nullable=False, server_default="en"),  # the language of its mails (SPEC §12)
)

# What one event asks to say (shared by all its recipients): rendered at send time.
batches = Table(
    "batches",
    metadata,
    Column("id", String(80), primary_key=True),  # "<event id>:<template>"
    Column("template", String(40), nullable=False),
    Column("context", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

PENDING_ONLY = text("state = 'pending'")  # ix_deliveries_pending's predicate, the same in both dialects

# The delivery log: one row per (event, recipient, template).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("template", String(40), nullable=False),
    Column("recipient", String(254), nullable=False),
    Column("recipient_name", String(100), nullable=False),
    Column("batch_id", String(80), nullable=False),
    Column("extra", Text, nullable=False),
    Column("offer_id", String(36), nullable=True),
    Column("correlation_id", String(64), nullable=True),
    Column("message_id", String(200), nullable=False),
    Column("state", String(8), nullable=False),  # pending | claimed | sending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=True),  # when the lease was taken or last renewed
    # A fresh random token per claim; every later write by the claimer checks it (fencing), so a
    # sender whose lease ran out and was taken over can no longer change the row.
    Column("claim_token", String(32), nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("event_id", "recipient", "template", name="uq_delivery"),
    Index("ix_deliveries_due", "state", "next_attempt_at"),
    Index("ix_deliveries_offer", "offer_id"),
    # What the claimer walks, in id order: the pending rows only. Through the primary key it read every
    # row sent before the first pending one, and the log keeps every mail ever sent (~35 ms a claim of
    # 20 behind 200,000 sent ones; bench/claim_history.py). The claim names 'pending' as a literal,
    # or a prepared statement's generic plan could not use the index.
    Index("ix_deliveries_pending", "id", postgresql_where=PENDING_ONLY, sqlite_where=PENDING_ONLY),
)

inbox = inbox_table(metadata)

# ---- price drops (SPEC §10; services/mailer/price_drops.py) ------------------------------------

# Who holds a live reservation of which offer, as reservation's events tell it. `revision` orders one
# reservation's events, which travel through different queues: an older one never overwrites a newer.
purchasers = Table(
    "purchasers",
    metadata,
    Column("reservation_id", String(36), primary_key=True),
    Column("offer_id", String(36), nullable=False),
    Column("email", String(254), nullable=False),
    Column("name", String(100), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("lang", String(5), nullable=False, server_default="en"),  # the language she reserved in (SPEC §12)
    Index("ix_purchasers_offer_active", "offer_id", "active"),
)

# The newest condition of each offer (of OfferIntercepted, highest version), what a price-drop mail
# names when it leaves; `closed` once the offer closed (no price drop is sent after it).
price_conditions = Table(
    "price_conditions",
    metadata,
    Column("offer_id", String(36), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("context", Text, nullable=False),
    Column("closed", Boolean, nullable=False),
)

# One row per price-drop window of an offer: planned by the first interception after the previous
# window left, expanded into deliveries once, at `due_at`.
price_drops = Table(
    "price_drops",
    metadata,
    Column("offer_id", String(36), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("due_at", UTCDateTime, nullable=False),
    Column("was_price", Integer, nullable=False),  # the price the interception that started it beat
    Column("sent_at", UTCDateTime, nullable=True),  # when it was expanded into deliveries
    Column("recipients", Integer, nullable=True),
    Index("ix_price_drops_due", "sent_at", "due_at"),
)
