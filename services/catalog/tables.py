"""catalog's own tables. Nobody else reads or writes them."""
from pathlib import Path

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, MetaData, String, Table, Text, false

from shared.db import UTCDateTime
from shared.outbox import inbox_table, outbox_table
from shared.ratelimit import rate_limit_table

MIGRATIONS = Path(__file__).parent / "migrations"
metadata = MetaData()

sellers = Table(
    "sellers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("email", String(254), nullable=False, unique=True),
    Column("api_key_hash", String(64), nullable=False, unique=True),
    Column("registered_at", UTCDateTime, nullable=False),
    Column("lang", String(5), nullable=False, server_default="en"),  # the language of its mails (SPEC §12)
)

# The offer as published, plus the read model the pages show (condition, count, status…),
# kept up to date from auction's and reservation's events.
offers = Table(
    "offers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("opens_at", UTCDateTime, nullable=False),
    Column("invite_at", UTCDateTime, nullable=False),
    Column("closes_at", UTCDateTime, nullable=False),
    Column("min_decrement", Integer, nullable=False),
    Column("offering_seller_id", String(36), ForeignKey("sellers.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("holder_id", String(36), nullable=False),
    Column("holder_name", String(100), nullable=False),
    Column("unit_price", Integer, nullable=False),
    Column("minimum_reservations", Integer, nullable=False),
    Column("condition_since", UTCDateTime, nullable=False),
    Column("condition_version", Integer, nullable=False),
    Column("reservation_count", Integer, nullable=False),
    Column("count_version", Integer, nullable=False),
    Column("invited", Boolean, nullable=False),
    Column("status", String(8), nullable=False),
    Column("outcome", String(10), nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
    # SPEC §10: reservations start pending until the purchaser opens the link in the confirmation.
    Column("verify_emails", Boolean, nullable=False, server_default=false()),
    # Every change of the read model raises `version` and stamps `changed_at`: the live streams
    # ask for what changed since an instant (docs/adr/0009-live-streams-poll-the-read-model.md).
    Column("version", Integer, nullable=False, server_default="1"),
    Column("changed_at", UTCDateTime, nullable=True),
    Index("ix_offers_status_created", "status", "created_at"),
    Index("ix_offers_changed_at", "changed_at"),
)

history = Table(
    "condition_history",
    metadata,
    Column("offer_id", String(36), ForeignKey("offers.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("seller_id", String(36), nullable=False),
    Column("seller_name", String(100), nullable=False),
    Column("unit_price", Integer, nullable=False),
    Column("minimum_reservations", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(10), nullable=False),
    Index("ix_condition_history_seller_id", "seller_id"),  # a seller's dashboard: the offers it ever held
)

# Sellers on the web (docs/adr/0010-seller-sessions-in-catalog.md): a sign-in link and a session are
# each a 256-bit random token of which only the SHA-256 is stored, so a copy of the table opens nothing.
sign_in_links = Table(
    "sign_in_links",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("seller_id", String(36), ForeignKey("sellers.id"), nullable=False),
    Column("next_path", String(500), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Index("ix_sign_in_links_expires_at", "expires_at"),
)

seller_sessions = Table(
    "seller_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("seller_id", String(36), ForeignKey("sellers.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_seller_sessions_expires_at", "expires_at"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
rate_limits = rate_limit_table(metadata)
