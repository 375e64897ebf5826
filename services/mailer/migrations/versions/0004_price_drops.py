"""price drops (SPEC §10): the purchasers of each offer, its newest condition, its price-drop windows

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
    op.create_table(
        'purchasers',
        sa.Column('reservation_id', sa.String(length=36), primary_key=True),
        sa.Column('offer_id', sa.String(length=36), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
    )
    op.create_index('ix_purchasers_offer_active', 'purchasers', ['offer_id', 'active'])
    op.create_table(
        'price_conditions',
        sa.Column('offer_id', sa.String(length=36), primary_key=True),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('context', sa.Text(), nullable=False),
        sa.Column('closed', sa.Boolean(), nullable=False),
    )
    op.create_table(
        'price_drops',
        sa.Column('offer_id', sa.String(length=36), primary_key=True),
        sa.Column('seq', sa.Integer(), primary_key=True),
        sa.Column('due_at', shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('was_price', sa.Integer(), nullable=False),
        sa.Column('sent_at', shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('recipients', sa.Integer(), nullable=True),
    )
    op.create_index('ix_price_drops_due', 'price_drops', ['sent_at', 'due_at'])


def downgrade() -> None:
    op.drop_table('price_drops')
    op.drop_table('price_conditions')
    op.drop_index('ix_purchasers_offer_active', 'purchasers')
    op.drop_table('purchasers')
