"""A counter the database bumps whenever FAB's permission tables change (triggers, see migration
c445d9a36b42), and whenever a user, a role, a group or their links change (a123d50a1966). The
request's user loader reads it in one statement with the staff preference, so each process can keep
every role set's (view, permission) pairs and every signed-in user (with roles and groups) until the
counter moves: no user or permission query per page, and a grant, a revoke, a deactivation or a
password change applies on the next request exactly as before."""

from sqlalchemy import BigInteger, Column, Integer

from ..extensions import db

# Tables whose rows decide what a role may do; a trigger on each bumps the counter (any change).
PERMISSION_TABLES = ("ab_permission_view_role", "ab_permission_view", "ab_permission", "ab_view_menu")
USER_TABLES = ("ab_user", "ab_user_role", "ab_user_group", "ab_group_role", "ab_role", "ab_group")


class SecurityVersion(db.Model):
    __tablename__ = "security_version"
    id = Column(Integer, primary_key=True)
    value = Column(BigInteger, nullable=False, default=0, server_default="0")
