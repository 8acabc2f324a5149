"""uploaded contact-origin icons

Revision ID: d5564ee99630
Revises: dd02b0ea8278
Create Date: 2026-11-23 11:56:35.716598

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'd5564ee99630'
down_revision = 'dd02b0ea8278'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('contact_origin', schema=None) as batch_op:
        batch_op.add_column(sa.Column('icon_file', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('contact_origin', schema=None) as batch_op:
        batch_op.drop_column('icon_file')
