"""export jobs (CL-IO-3: large client exports run in the background, the file kept in EXPORT_FOLDER)

Revision ID: e8ee57cb2464
Revises: 7648898eceaa
Create Date: 2026-11-23 13:58:47.340964

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = 'e8ee57cb2464'
down_revision = '7648898eceaa'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    op.create_table(
        'export_job',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('fmt', sa.String(length=8), nullable=False),
        sa.Column('request', JSON, nullable=False),
        sa.Column('row_count', sa.Integer(), nullable=True),
        sa.Column('file_name', sa.String(length=64), nullable=True),
        sa.Column('download_name', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], name=op.f('fk_export_job_user_id_ab_user'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_export_job')),
    )
    with op.batch_alter_table('export_job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_export_job_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('export_job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_export_job_user_id'))
    op.drop_table('export_job')
