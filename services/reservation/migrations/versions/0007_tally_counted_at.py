"""the tally's last count instant: recounts of one offer are coalesced to a few a second

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

from shared.db import UTCDateTime


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tallies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('counted_at', UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tallies', schema=None) as batch_op:
        batch_op.drop_column('counted_at')
