"""security version also bumped by users, roles and groups (per-process user cache)

The request's user loader keeps each signed-in user, with roles and groups, per process under
security_version.value. Every insert, update, delete (and on PostgreSQL truncate) of a user, a role,
a group or their links now bumps it too: a deactivation, a password change or a role taken away
applies on the next request, whoever writes (FAB's screens, a login's counters, plain SQL).

Revision ID: a123d50a1966
Revises: 40ccaae87a52
Create Date: 2026-11-23 17:55:22.372606

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a123d50a1966'
down_revision = '40ccaae87a52'
branch_labels = None
depends_on = None

# Kept here, not imported: a migration must not change when the application code does.
TABLES = ("ab_user", "ab_user_role", "ab_user_group", "ab_group_role", "ab_role", "ab_group")
BUMP = "UPDATE security_version SET value = value + 1 WHERE id = 1"


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        # cd_bump_security_version() comes with the counter (c445d9a36b42)
        for table in TABLES:
            op.execute(f"CREATE TRIGGER cd_security_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION cd_bump_security_version()")
    else:
        for table in TABLES:
            for operation in ("INSERT", "UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER cd_security_version_{table}_{operation.lower()} AFTER {operation} "
                           f"ON {table} BEGIN {BUMP}; END")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS cd_security_version ON {table}")
    else:
        for table in TABLES:
            for operation in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS cd_security_version_{table}_{operation}")
