"""saved import mappings (CL-IO-1: a user's named column mappings, keyed by normalised header)

Revision ID: 7648898eceaa
Revises: 24b57a847e0d
Create Date: 2026-11-23 13:15:43.702655

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = '7648898eceaa'
down_revision = '24b57a847e0d'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    op.create_table(
        'import_mapping',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('columns', JSON, nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], name=op.f('fk_import_mapping_user_id_ab_user'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_import_mapping')),
        sa.UniqueConstraint('user_id', 'name', name='uq_import_mapping_user_name'),
    )


def downgrade():
    op.drop_table('import_mapping')
