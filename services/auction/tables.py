"""auction's own tables."""
from pathlib import Path

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table

from shared.db import UTCDateTime
from shared.outbox import inbox_table, outbox_table

MIGRATIONS = Path(__file__).parent / "migrations"
metadata = MetaData()

offers = Table(
    "offers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("opens_at", UTCDateTime, nullable=False),
    Column("invite_at", UTCDateTime, nullable=False),
    Column("closes_at", UTCDateTime, nullable=False),
    Column("min_decrement", Integer, nullable=False),
    # The holding condition; `version` counts accepted conditions (0 = the initial one).
    Column("holder_id", String(36), nullable=False),
    Column("holder_name", String(100), nullable=False),
    Column("holder_email", String(254), nullable=False),
    Column("unit_price", Integer, nullable=False),
    Column("minimum_reservations", Integer, nullable=False),
    Column("condition_since", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("invited", Boolean, nullable=False),
    Column("status", String(8), nullable=False),  # open → closing → closed
    Column("outcome", String(10), nullable=True),
    Column("reservation_count", Integer, nullable=False),
    Column("count_version", Integer, nullable=False),
)

conditions = Table(
    "conditions",
    metadata,
    Column("offer_id", String(36), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("seller_id", String(36), nullable=False),
    Column("seller_name", String(100), nullable=False),
    Column("seller_email", String(254), nullable=False),
    Column("unit_price", Integer, nullable=False),
    Column("minimum_reservations", Integer, nullable=False),
    Column("kind", String(10), nullable=False),
    Column("at", UTCDateTime, nullable=False),
)

# Dated steps, claimed exactly once with FOR UPDATE SKIP LOCKED against the database's clock.
steps = Table(
    "steps",
    metadata,
    Column("offer_id", String(36), primary_key=True),
    Column("kind", String(10), primary_key=True),  # invite | close
    Column("due_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime, nullable=True),
    Index("ix_steps_due", "done_at", "due_at"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
