"""idempotency keys bound to the request they first came with

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 11:40:00

Expand only: reservations.idempotency_key stays (no longer written) so that the previous release
still runs against this schema; the keys it holds are carried over with their fingerprints.
"""
import hashlib
import json

from alembic import op
import sqlalchemy as sa
import shared.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _fingerprint(name: str, email: str) -> str:
    # services.reservation.reservations.request_fingerprint, as it was when this migration was written
    return hashlib.sha256(json.dumps({"name": name, "email": email.lower()}, sort_keys=True).encode()).hexdigest()


def upgrade() -> None:
    keys = op.create_table(
        'idempotency_keys',
        sa.Column('offer_id', sa.String(length=36), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('reservation_id', sa.String(length=36), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=False),
        sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('offer_id', 'key'),
    )
    reservations = sa.table('reservations', sa.column('id'), sa.column('offer_id'), sa.column('idempotency_key'),
                            sa.column('name'), sa.column('email'),
                            sa.column('created_at', shared.db.UTCDateTime(timezone=True)))
    legacy = op.get_bind().execute(
        sa.select(reservations).where(reservations.c.idempotency_key.is_not(None))).all()
    if legacy:
        op.bulk_insert(keys, [
            {"offer_id": r.offer_id, "key": r.idempotency_key, "fingerprint": _fingerprint(r.name, r.email),
             "reservation_id": r.id, "status_code": 201, "created_at": r.created_at}
            for r in legacy
        ])


def downgrade() -> None:
    op.drop_table('idempotency_keys')
