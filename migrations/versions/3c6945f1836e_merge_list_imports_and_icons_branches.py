"""merge list, imports and icons branches

Revision ID: 3c6945f1836e
Revises: c3a1f0e5b7d2, d5564ee99630, e4b7c2d91a05
Create Date: 2026-11-23 12:14:57.562731

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3c6945f1836e'
down_revision = ('c3a1f0e5b7d2', 'd5564ee99630', 'e4b7c2d91a05')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
