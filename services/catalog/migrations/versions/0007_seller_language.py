"""sellers' language: the one their mails speak (SPEC §12); those registered before speak English

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sellers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lang', sa.String(length=5), nullable=False, server_default='en'))


def downgrade() -> None:
    with op.batch_alter_table('sellers', schema=None) as batch_op:
        batch_op.drop_column('lang')
