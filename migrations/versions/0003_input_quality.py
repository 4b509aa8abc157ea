"""input quality: plausibility of scans and of each run's inputs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:00:00.000000

Rows stored before this revision were never checked: their quality is "unchecked".
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mean_mm_h', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('quality', sa.Text(), server_default='unchecked', nullable=False))

    with op.batch_alter_table('forecast_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_quality', sa.Text(), server_default='unchecked', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('forecast_runs', schema=None) as batch_op:
        batch_op.drop_column('input_quality')

    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.drop_column('quality')
        batch_op.drop_column('mean_mm_h')
