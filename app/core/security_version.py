"""A counter the database bumps whenever FAB's permission tables change (triggers, see migration
c445d9a36b42). The request's user loader reads it in the same statement as the user, so each
process can keep every role set's (view, permission) pairs until the counter moves: no permission
query per page, and a grant or revoke applies on the next request exactly as before."""

from sqlalchemy import BigInteger, Column, Integer

from ..extensions import db

# Tables whose rows decide what a role may do; a trigger on each bumps the counter (any change).
PERMISSION_TABLES = ("ab_permission_view_role", "ab_permission_view", "ab_permission", "ab_view_menu")


class SecurityVersion(db.Model):
    __tablename__ = "security_version"
    id = Column(Integer, primary_key=True)
    value = Column(BigInteger, nullable=False, default=0, server_default="0")
