"""probabilistic nowcasts: ensemble runs, dam probabilities, probability verification counts;
the probability behind each stored alert level

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

import nowcast_core.db.schema

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

UTC_TIME = nowcast_core.db.schema.UTCDateTime


def upgrade() -> None:
    op.create_table('ensemble_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issue_time', UTC_TIME(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('version', sa.String(length=128), nullable=False),
    sa.Column('is_production', sa.Boolean(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('n_members', sa.Integer(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('probability_path', sa.Text(), nullable=False),
    sa.Column('probability_checksum', sa.String(length=64), nullable=False),
    sa.Column('input_quality', sa.Text(), server_default='unchecked', nullable=False),
    sa.Column('stored_at', UTC_TIME(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['forecast_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('issue_time', 'method', name='uq_ensemble_issue_method')
    )
    with op.batch_alter_table('ensemble_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ensemble_runs_issue_time'), ['issue_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_ensemble_runs_run_id'), ['run_id'], unique=False)

    op.create_table('dam_probabilities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ensemble_id', sa.Integer(), nullable=False),
    sa.Column('dam_id', sa.String(length=64), nullable=False),
    sa.Column('lead_minutes', sa.Integer(), nullable=False),
    sa.Column('valid_time', UTC_TIME(), nullable=False),
    sa.Column('accum_mm', sa.Float(), nullable=False),
    sa.Column('accum_mm_p10', sa.Float(), nullable=False),
    sa.Column('accum_mm_p50', sa.Float(), nullable=False),
    sa.Column('accum_mm_p90', sa.Float(), nullable=False),
    sa.Column('accum_mm_members', sa.JSON(), nullable=False),
    sa.Column('prob_accum_ge', sa.JSON(), nullable=False),
    sa.Column('prob_rate_ge', sa.JSON(), nullable=False),
    sa.Column('observed_accum_mm', sa.Float(), nullable=True),
    sa.Column('crps_accum_mm', sa.Float(), nullable=True),
    sa.Column('observed_rank', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['ensemble_id'], ['ensemble_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ensemble_id', 'dam_id', 'lead_minutes', name='uq_dam_probability')
    )
    with op.batch_alter_table('dam_probabilities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dam_probabilities_ensemble_id'), ['ensemble_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dam_probabilities_dam_id'), ['dam_id'], unique=False)

    op.create_table('probability_verification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ensemble_id', sa.Integer(), nullable=False),
    sa.Column('lead_minutes', sa.Integer(), nullable=False),
    sa.Column('valid_time', UTC_TIME(), nullable=False),
    sa.Column('threshold_mm_h', sa.Float(), nullable=False),
    sa.Column('n_pixels', sa.Integer(), nullable=False),
    sa.Column('brier_sum', sa.Float(), nullable=False),
    sa.Column('bin_n', sa.JSON(), nullable=False),
    sa.Column('bin_prob_sum', sa.JSON(), nullable=False),
    sa.Column('bin_events', sa.JSON(), nullable=False),
    sa.Column('verified_at', UTC_TIME(), nullable=False),
    sa.ForeignKeyConstraint(['ensemble_id'], ['ensemble_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ensemble_id', 'lead_minutes', 'threshold_mm_h', name='uq_probability_verification')
    )
    with op.batch_alter_table('probability_verification', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probability_verification_ensemble_id'), ['ensemble_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_probability_verification_valid_time'), ['valid_time'], unique=False)

    with op.batch_alter_table('dam_alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('probability', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dam_alerts', schema=None) as batch_op:
        batch_op.drop_column('probability')
    op.drop_table('probability_verification')
    op.drop_table('dam_probabilities')
    op.drop_table('ensemble_runs')
