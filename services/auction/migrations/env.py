from alembic import context

from services.auction.tables import metadata
from shared.migrations import run_env

run_env(context, metadata)
