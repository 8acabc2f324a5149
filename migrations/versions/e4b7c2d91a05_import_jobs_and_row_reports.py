"""import jobs and their row reports (issue 4)

Revision ID: e4b7c2d91a05
Revises: 4fab2078b40f
Create Date: 2026-11-24 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = 'e4b7c2d91a05'
down_revision = '4fab2078b40f'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    op.create_table(
        'import_job',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('original_name', sa.String(length=255), nullable=False),
        sa.Column('stored_name', sa.String(length=64), nullable=False),
        sa.Column('file_sha256', sa.String(length=64), nullable=False),
        sa.Column('file_size', sa.Integer(), nullable=False),
        sa.Column('file_format', sa.String(length=8), nullable=False),
        sa.Column('encoding', sa.String(length=20), nullable=True),
        sa.Column('delimiter', sa.String(length=4), nullable=True),
        sa.Column('headers', JSON, nullable=False),
        sa.Column('mapping', JSON, nullable=False),
        sa.Column('options', JSON, nullable=False),
        sa.Column('dry_run', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('total_rows', sa.Integer(), nullable=True),
        sa.Column('committed_through', sa.Integer(), nullable=False),
        sa.Column('created_count', sa.Integer(), nullable=False),
        sa.Column('updated_count', sa.Integer(), nullable=False),
        sa.Column('unchanged_count', sa.Integer(), nullable=False),
        sa.Column('failed_count', sa.Integer(), nullable=False),
        sa.Column('notice_count', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(), nullable=True),
        sa.Column('cancel_requested', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], name=op.f('fk_import_job_user_id_ab_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_import_job')),
    )
    with op.batch_alter_table('import_job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_import_job_file_sha256'), ['file_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_import_job_user_id'), ['user_id'], unique=False)

    op.create_table(
        'import_row_error',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('line', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('raw', JSON, nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['import_job.id'], name=op.f('fk_import_row_error_job_id_import_job'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_import_row_error')),
    )
    with op.batch_alter_table('import_row_error', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_import_row_error_job_id'), ['job_id'], unique=False)


def downgrade():
    with op.batch_alter_table('import_row_error', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_import_row_error_job_id'))
    op.drop_table('import_row_error')
    with op.batch_alter_table('import_job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_import_job_user_id'))
        batch_op.drop_index(batch_op.f('ix_import_job_file_sha256'))
    op.drop_table('import_job')
