"""pooled dam members: what each dam's probabilities were pooled with

dam_probabilities gains steps_accum_mm_members (JSON: the STEPS members' catchment accumulations the
row's quantiles and probabilities were pooled with) and steps_weight (their weight), both nullable:
rows of unpooled runs, and rows stored before this migration, keep NULL, and the alert weighs their
own members equally as before.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dam_probabilities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('steps_accum_mm_members', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('steps_weight', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dam_probabilities', schema=None) as batch_op:
        batch_op.drop_column('steps_weight')
        batch_op.drop_column('steps_accum_mm_members')
