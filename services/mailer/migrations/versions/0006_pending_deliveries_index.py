"""the claimer's index: pending deliveries in id order, so a claim does not read the history of sent mail

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

from shared.migrations import create_partial_index


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # IF NOT EXISTS: on a large delivery log an operator builds it first, CONCURRENTLY (docs/operations.md);
    # an INVALID one, left by such a build that failed, is dropped and built.
    create_partial_index('ix_deliveries_pending', 'deliveries', ['id'], sa.text("state = 'pending'"))


def downgrade() -> None:
    op.drop_index('ix_deliveries_pending', table_name='deliveries')
