"""the claimer's index: pending deliveries in id order, so a claim does not read the history of sent mail

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # IF NOT EXISTS: on a large delivery log an operator builds it first, CONCURRENTLY (docs/operations.md).
    # Such a build that failed (a timeout, a cancel) leaves an INVALID index, which the planner never uses
    # and IF NOT EXISTS would take for the index: it is dropped and built here.
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.execute(sa.text(
            "SELECT 1 FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'ix_deliveries_pending' AND c.relnamespace = to_regnamespace(current_schema()) "
            "AND NOT i.indisvalid")).first():
        op.drop_index('ix_deliveries_pending', table_name='deliveries')
    op.create_index('ix_deliveries_pending', 'deliveries', ['id'], unique=False, if_not_exists=True,
                    postgresql_where=sa.text("state = 'pending'"), sqlite_where=sa.text("state = 'pending'"))


def downgrade() -> None:
    op.drop_index('ix_deliveries_pending', table_name='deliveries')
