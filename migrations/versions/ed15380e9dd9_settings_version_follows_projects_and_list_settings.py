"""settings version also bumped by projects, saved list views and column layouts

Each process now also keeps, under settings_version.value, every user's saved views and column
layout and the project choices per scope: their tables bump the counter on every insert, update,
delete (and on PostgreSQL truncate), like custom_field and client_status (40ccaae87a52).

Revision ID: ed15380e9dd9
Revises: a123d50a1966
Create Date: 2026-11-23 18:00:17.966731

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'ed15380e9dd9'
down_revision = 'a123d50a1966'
branch_labels = None
depends_on = None

# Kept here, not imported: a migration must not change when the application code does.
TABLES = ("project", "client_list_view", "client_column_layout")
BUMP = "UPDATE settings_version SET value = value + 1 WHERE id = 1"


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        # cd_bump_settings_version() comes with the counter (40ccaae87a52)
        for table in TABLES:
            op.execute(f"CREATE TRIGGER cd_settings_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION cd_bump_settings_version()")
    else:
        for table in TABLES:
            for operation in ("INSERT", "UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER cd_settings_version_{table}_{operation.lower()} AFTER {operation} "
                           f"ON {table} BEGIN {BUMP}; END")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS cd_settings_version ON {table}")
    else:
        for table in TABLES:
            for operation in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS cd_settings_version_{table}_{operation}")
