"""list index for project + status filters (spec 10, L3: newest first of one project and status)

Revision ID: 24b57a847e0d
Revises: 3c6945f1836e
Create Date: 2026-11-23 13:02:04.772585

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '24b57a847e0d'
down_revision = '3c6945f1836e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('client', schema=None) as batch_op:
        batch_op.create_index('ix_client_project_status_created_id', ['project_id', 'status_id', 'created_at', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('client', schema=None) as batch_op:
        batch_op.drop_index('ix_client_project_status_created_id')

