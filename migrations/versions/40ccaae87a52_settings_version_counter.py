"""settings version counter bumped by triggers on custom fields and statuses (per-process list settings cache)

The request's user loader reads settings_version.value with the user; each process keeps the list
page's custom-field columns and status choices until the value moves. Every insert, update, delete
(and on PostgreSQL truncate) of custom_field or client_status bumps it, whoever writes.

Revision ID: 40ccaae87a52
Revises: c445d9a36b42
Create Date: 2026-11-23 17:43:47.445475

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '40ccaae87a52'
down_revision = 'c445d9a36b42'
branch_labels = None
depends_on = None

# Kept here, not imported: a migration must not change when the application code does.
TABLES = ("custom_field", "client_status")
BUMP = "UPDATE settings_version SET value = value + 1 WHERE id = 1"


def upgrade():
    op.create_table(
        'settings_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('value', sa.BigInteger(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_settings_version')),
    )
    op.execute("INSERT INTO settings_version (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION cd_bump_settings_version() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
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
        op.execute("DROP FUNCTION IF EXISTS cd_bump_settings_version()")
    else:
        for table in TABLES:
            for operation in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS cd_settings_version_{table}_{operation}")
    op.drop_table('settings_version')
