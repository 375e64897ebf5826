"""the outbox's partial indexes: the relay's poll and `status` read the events in line, not a week of sent ones

Revision ID: 0003
Revises: 0002
"""
from shared.outbox import create_outbox_indexes, drop_outbox_indexes


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_indexes()


def downgrade() -> None:
    drop_outbox_indexes()
