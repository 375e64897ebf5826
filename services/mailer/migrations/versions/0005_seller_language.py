"""sellers' and purchasers' language, heard with SellerRegistered and the reservation events: their mails speak it (SPEC §12)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('sellers', 'purchasers'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('lang', sa.String(length=5), nullable=False, server_default='en'))


def downgrade() -> None:
    for table in ('sellers', 'purchasers'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('lang')
