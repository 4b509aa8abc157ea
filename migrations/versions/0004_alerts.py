"""alerts: per-run dam alert levels, level changes, webhook outbox and attempts, service state

Creates and drops only its own tables.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import nowcast_core.db.schema

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

UTC_TIME = nowcast_core.db.schema.UTCDateTime


def upgrade() -> None:
    op.create_table('dam_alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('dam_id', sa.String(length=64), nullable=False),
    sa.Column('issue_time', UTC_TIME(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('previous_level', sa.String(length=16), nullable=False),
    sa.Column('observed_2h_mm', sa.Float(), nullable=False),
    sa.Column('observed_scans', sa.Integer(), nullable=False),
    sa.Column('forecast_1h_mm', sa.Float(), nullable=False),
    sa.Column('total_3h_mm', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('computed_at', UTC_TIME(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['forecast_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'dam_id', name='uq_dam_alert_run_dam')
    )
    with op.batch_alter_table('dam_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dam_alerts_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dam_alerts_dam_id'), ['dam_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dam_alerts_issue_time'), ['issue_time'], unique=False)

    op.create_table('alert_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('dam_id', sa.String(length=64), nullable=False),
    sa.Column('issue_time', UTC_TIME(), nullable=False),
    sa.Column('from_level', sa.String(length=16), nullable=False),
    sa.Column('to_level', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', UTC_TIME(), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['dam_alerts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('alert_id')
    )
    with op.batch_alter_table('alert_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_changes_dam_id'), ['dam_id'], unique=False)

    op.create_table('webhook_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('change_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTC_TIME(), nullable=False),
    sa.Column('created_at', UTC_TIME(), nullable=False),
    sa.Column('delivered_at', UTC_TIME(), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['change_id'], ['alert_changes.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('change_id', 'url', name='uq_outbox_change_url')
    )
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_outbox_change_id'), ['change_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_outbox_status'), ['status'], unique=False)

    op.create_table('webhook_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('attempted_at', UTC_TIME(), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['webhook_outbox.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_attempts_outbox_id'), ['outbox_id'], unique=False)

    op.create_table('service_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', UTC_TIME(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('service_state')
    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_attempts_outbox_id'))
    op.drop_table('webhook_attempts')
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_outbox_status'))
        batch_op.drop_index(batch_op.f('ix_webhook_outbox_change_id'))
    op.drop_table('webhook_outbox')
    with op.batch_alter_table('alert_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_changes_dam_id'))
    op.drop_table('alert_changes')
    with op.batch_alter_table('dam_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dam_alerts_issue_time'))
        batch_op.drop_index(batch_op.f('ix_dam_alerts_dam_id'))
        batch_op.drop_index(batch_op.f('ix_dam_alerts_run_id'))
    op.drop_table('dam_alerts')
