"""latency: when each scan arrived in the inbox (frames.arrived_at)

The forecast side needs no column: forecast_runs.finished_at is set just before each run's
commit, with microseconds on SQLite and PostgreSQL, and is shown as ``stored_at``.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

import nowcast_core.db.schema

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.add_column(sa.Column('arrived_at', nowcast_core.db.schema.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.drop_column('arrived_at')
