"""structure verification: FSS sums and the area at 5 mm/h per (run, lead)

lead_verification gains area_forecast_px and area_observed_px (pixels at or above 5 mm/h in the
forecast and in the observation), nullable: rows verified before this migration carry no
structure sums and keep NULL (skill treats them as absent, not as zero). The new table fss_sums
holds, per verification, threshold (1, 5 mm/h) and window (1, 5, 15 km), the additive sums of
F^2, O^2 and F O from which the FSS of any pool of forecasts follows exactly.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lead_verification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('area_forecast_px', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('area_observed_px', sa.Integer(), nullable=True))

    op.create_table('fss_sums',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('verification_id', sa.Integer(), nullable=False),
    sa.Column('threshold_mm_h', sa.Float(), nullable=False),
    sa.Column('window_km', sa.Integer(), nullable=False),
    sa.Column('forecast_sq', sa.Float(), nullable=False),
    sa.Column('observed_sq', sa.Float(), nullable=False),
    sa.Column('product', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['verification_id'], ['lead_verification.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('verification_id', 'threshold_mm_h', 'window_km', name='uq_fss_sums_thr_window')
    )
    with op.batch_alter_table('fss_sums', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fss_sums_verification_id'), ['verification_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('fss_sums', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fss_sums_verification_id'))

    op.drop_table('fss_sums')
    with op.batch_alter_table('lead_verification', schema=None) as batch_op:
        batch_op.drop_column('area_observed_px')
        batch_op.drop_column('area_forecast_px')
