"""security version counter bumped by triggers on FAB permission tables (per-process permission cache)

The request's user loader reads security_version.value with the user; each process keeps the
(view, permission) pairs of a role set until the value moves. Every insert, update, delete (and on
PostgreSQL truncate) of a permission table bumps it, whoever writes: FAB's role screens, the
permission sync at start-up, a migration or plain SQL.

Revision ID: c445d9a36b42
Revises: e8ee57cb2464
Create Date: 2026-11-23 15:30:38.756165

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c445d9a36b42'
down_revision = 'e8ee57cb2464'
branch_labels = None
depends_on = None

# Kept here, not imported: a migration must not change when the application code does.
TABLES = ("ab_permission_view_role", "ab_permission_view", "ab_permission", "ab_view_menu")
BUMP = "UPDATE security_version SET value = value + 1 WHERE id = 1"


def upgrade():
    op.create_table(
        'security_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('value', sa.BigInteger(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_security_version')),
    )
    op.execute("INSERT INTO security_version (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION cd_bump_security_version() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
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
        op.execute("DROP FUNCTION IF EXISTS cd_bump_security_version()")
    else:
        for table in TABLES:
            for operation in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS cd_security_version_{table}_{operation}")
    op.drop_table('security_version')
