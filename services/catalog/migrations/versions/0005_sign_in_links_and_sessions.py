"""sellers on the web: one-time sign-in links and seller sessions, both stored as token hashes

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import shared.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sign_in_links',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('seller_id', sa.String(length=36), nullable=False),
    sa.Column('next_path', sa.String(length=500), nullable=False),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', shared.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['seller_id'], ['sellers.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_index('ix_sign_in_links_expires_at', 'sign_in_links', ['expires_at'], unique=False)
    op.create_table('seller_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('seller_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', shared.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['seller_id'], ['sellers.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_index('ix_seller_sessions_expires_at', 'seller_sessions', ['expires_at'], unique=False)
    op.create_index('ix_condition_history_seller_id', 'condition_history', ['seller_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_condition_history_seller_id', table_name='condition_history')
    op.drop_index('ix_seller_sessions_expires_at', table_name='seller_sessions')
    op.drop_table('seller_sessions')
    op.drop_index('ix_sign_in_links_expires_at', table_name='sign_in_links')
    op.drop_table('sign_in_links')
