"""pruned forecast files: when a run's field or probability file was deleted by the retention

forecast_runs and ensemble_runs gain files_pruned_at, nullable: NULL while the run's file is kept,
the time it was deleted once it is older than NOWCAST_KEEP_FORECAST_FILES_DAYS behind the newest
scan. The run's dam results, alerts and verification stay; only the file is gone, and readers of
the file (maps, exports) say so instead of failing on a missing file. An index on (files_pruned_at,
issue_time) lets each cycle's pruning find the kept files past the retention without walking the
runs pruned before.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

import nowcast_core.db.schema

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('forecast_runs', 'ensemble_runs'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('files_pruned_at', nowcast_core.db.schema.UTCDateTime(), nullable=True))
            batch_op.create_index(f'ix_{table}_kept_issue_time', ['files_pruned_at', 'issue_time'], unique=False)


def downgrade() -> None:
    for table in ('ensemble_runs', 'forecast_runs'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_kept_issue_time')
            batch_op.drop_column('files_pruned_at')
