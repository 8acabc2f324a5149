"""favourites version (settings_version row 2) bumped by client_favourite

A second counter in settings_version (id 2) moves on every insert, update, delete (and on PostgreSQL
truncate) of client_favourite. Each process keeps every user's favourite client ids under it, so a
list page of a user without favourites skips the favourites panel's query.

Revision ID: e2099cad27a6
Revises: ed15380e9dd9
Create Date: 2026-11-23 18:06:19.041359

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'e2099cad27a6'
down_revision = 'ed15380e9dd9'
branch_labels = None
depends_on = None

# Kept here, not imported: a migration must not change when the application code does.
BUMP = "UPDATE settings_version SET value = value + 1 WHERE id = 2"


def upgrade():
    op.execute("INSERT INTO settings_version (id, value) VALUES (2, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION cd_bump_favourites_version() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
        op.execute("CREATE TRIGGER cd_favourites_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                   "ON client_favourite FOR EACH STATEMENT EXECUTE FUNCTION cd_bump_favourites_version()")
    else:
        for operation in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER cd_favourites_version_{operation.lower()} AFTER {operation} "
                       f"ON client_favourite BEGIN {BUMP}; END")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS cd_favourites_version ON client_favourite")
        op.execute("DROP FUNCTION IF EXISTS cd_bump_favourites_version()")
    else:
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS cd_favourites_version_{operation}")
    op.execute("DELETE FROM settings_version WHERE id = 2")
