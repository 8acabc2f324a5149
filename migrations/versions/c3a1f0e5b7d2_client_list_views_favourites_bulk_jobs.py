"""client list: saved views, column layouts, favourites, bulk jobs, list indexes (issue 3)

Revision ID: c3a1f0e5b7d2
Revises: 4fab2078b40f
Create Date: 2026-11-24 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = 'c3a1f0e5b7d2'
down_revision = '4fab2078b40f'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

LIST_INDEXES = [
    ('ix_client_type_created_id', ['client_type', 'created_at', 'id']),
    ('ix_client_project_created_id', ['project_id', 'created_at', 'id']),
    ('ix_client_country', ['country']),
    ('ix_client_state', ['state']),
    ('ix_client_updated_at', ['updated_at']),
    ('ix_client_last_login_at', ['last_login_at']),
    ('ix_client_last_action_at', ['last_action_at']),
    ('ix_client_future_action_at', ['future_action_at']),
    ('ix_client_last_duplicate_at', ['last_duplicate_at']),
    ('ix_client_external_id', ['external_id']),
    ('ix_client_contact_origin_id', ['contact_origin_id']),
]
TRGM_COLUMNS = ('email', 'full_name', 'first_name', 'last_name', 'phone', 'uid', 'external_id', 'description')


def upgrade():
    op.create_table(
        'client_list_view',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('filters', JSON, nullable=False),
        sa.Column('columns', JSON, nullable=False),
        sa.Column('is_default', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('user_id', 'name', name='uq_client_list_view_user_name'),
    )
    op.create_index('ix_client_list_view_user_id', 'client_list_view', ['user_id'], unique=False)
    op.create_table(
        'client_column_layout',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('columns', JSON, nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id'),
    )
    op.create_table(
        'client_favourite',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'client_id'),
    )
    op.create_index('ix_client_favourite_client_id', 'client_favourite', ['client_id'], unique=False)
    op.create_table(
        'client_bulk_job',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('operation', sa.String(length=20), nullable=False),
        sa.Column('params', JSON, nullable=False),
        sa.Column('client_ids', JSON, nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('processed_count', sa.Integer(), nullable=False),
        sa.Column('changed_count', sa.Integer(), nullable=False),
        sa.Column('out_of_scope_count', sa.Integer(), nullable=False),
        sa.Column('failed_count', sa.Integer(), nullable=False),
        sa.Column('errors', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_client_bulk_job_user_id', 'client_bulk_job', ['user_id'], unique=False)
    for name, columns in LIST_INDEXES:
        op.create_index(name, 'client', columns, unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        # Trigram indexes make ILIKE '%text%' (literal contains filters, the search box) use an index.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        for column in TRGM_COLUMNS:
            op.create_index(f'ix_client_{column}_trgm', 'client', [column], unique=False,
                            postgresql_using='gin', postgresql_ops={column: 'gin_trgm_ops'})
    else:
        # Same names elsewhere as empty partial indexes (WHERE 0), matching the model metadata.
        for column in TRGM_COLUMNS:
            op.create_index(f'ix_client_{column}_trgm', 'client', [column], unique=False, sqlite_where=sa.text('0'))


def downgrade():
    for column in TRGM_COLUMNS:
        op.drop_index(f'ix_client_{column}_trgm', table_name='client')
    for name, _ in reversed(LIST_INDEXES):
        op.drop_index(name, table_name='client')
    op.drop_index('ix_client_bulk_job_user_id', table_name='client_bulk_job')
    op.drop_table('client_bulk_job')
    op.drop_index('ix_client_favourite_client_id', table_name='client_favourite')
    op.drop_table('client_favourite')
    op.drop_table('client_column_layout')
    op.drop_index('ix_client_list_view_user_id', table_name='client_list_view')
    op.drop_table('client_list_view')
