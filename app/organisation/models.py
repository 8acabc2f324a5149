"""Projects, desks and the assignment of staff users to them (CL-ORG-1)."""

import datetime as dt

from flask_appbuilder.security.sqla.models import User  # noqa: F401  (mapper must exist for relationship("User"))
from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import relationship

from ..core.audit import Audited
from ..extensions import db


def _utcnow():
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


project_user = Table(
    "project_user", db.metadata,
    Column("project_id", ForeignKey("project.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("ab_user.id", ondelete="CASCADE"), primary_key=True, index=True),
)

desk_user = Table(
    "desk_user", db.metadata,
    Column("desk_id", ForeignKey("desk.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("ab_user.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Project(Audited, db.Model):
    """A top-level partition of clients (a brand or a market); every client belongs to one."""

    __tablename__ = "project"
    id = Column(Integer, primary_key=True)
    name = Column(String(100), nullable=False, unique=True)
    key = Column(String(20), nullable=False, unique=True)
    description = Column(Text)
    active = Column(Boolean, nullable=False, default=True)
    created_at = Column(DateTime, nullable=False, default=_utcnow)

    desks = relationship("Desk", back_populates="project", order_by="Desk.name")
    users = relationship("User", secondary=project_user, backref="projects")

    def __audit_label__(self):
        return self.name

    def __repr__(self):
        return self.name or ""


class Desk(Audited, db.Model):
    """A team inside one project ("Berlin Sales"); clients may optionally sit on a desk."""

    __tablename__ = "desk"
    id = Column(Integer, primary_key=True)
    project_id = Column(Integer, ForeignKey("project.id"), nullable=False, index=True)
    name = Column(String(100), nullable=False)
    label = Column(String(100))
    active = Column(Boolean, nullable=False, default=True)

    project = relationship("Project", back_populates="desks")
    users = relationship("User", secondary=desk_user, backref="desks")

    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_desk_project_name"),)

    def __audit_label__(self):
        return self.name

    def __repr__(self):
        return self.label or self.name or ""


class StaffPreference(db.Model):
    """A staff user's personal settings that follow them across devices (language, time zone)."""

    __tablename__ = "staff_preference"
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), primary_key=True)
    locale = Column(String(8))
    timezone = Column(String(64))
    # Bumped at logout: browser sessions signed with an older epoch are refused (R15).
    session_epoch = Column(Integer, nullable=False, default=0, server_default="0")
