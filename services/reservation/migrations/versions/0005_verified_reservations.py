"""verified reservations (SPEC §10): the offer's verify_emails, each reservation's revision

Revision ID: 0005
Revises: 0004

Expand only: both columns have defaults, so the previous release still runs against this schema.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verify_emails', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.drop_column('revision')
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_column('verify_emails')
