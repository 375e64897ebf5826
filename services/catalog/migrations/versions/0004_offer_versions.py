"""offer versions: a per-offer version and the instant of the last change, for the live streams

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import shared.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('changed_at', shared.db.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE offers SET changed_at = COALESCE(closed_at, created_at)")
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.create_index('ix_offers_changed_at', ['changed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_index('ix_offers_changed_at')
        batch_op.drop_column('changed_at')
        batch_op.drop_column('version')
