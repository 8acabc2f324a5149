"""Actions logged on clients (notes, calls, comments) and their configurable types (CL-CARD-2)."""

import datetime as dt

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import relationship

from ..core.audit import Audited
from ..core.types import JSONType
from ..extensions import db

ACTION_KINDS = ("note", "call", "comment")


def _utcnow():
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class ActionType(Audited, db.Model):
    """A configurable kind of action (Note, Call, Comment, ...) with its subtypes."""

    __tablename__ = "action_type"
    id = Column(Integer, primary_key=True)
    label = Column(String(64), nullable=False, unique=True)
    label_translations = Column(JSONType, nullable=False, default=dict)
    # Which form rules apply: calls need a date; calls and comments offer a responsible.
    kind = Column(String(10), nullable=False, default="note")
    subtypes = Column(JSONType, nullable=False, default=list)
    completed_by_default = Column(Boolean, nullable=False, default=False)
    active = Column(Boolean, nullable=False, default=True)

    def localized_label(self, locale=None):
        from ..clients.models import TranslatedLabel
        return TranslatedLabel.localized_label(self, locale)

    def __audit_label__(self):
        return self.label

    def __str__(self):
        return self.localized_label() or ""


class ClientAction(Audited, db.Model):
    """One logged interaction or follow-up on a client."""

    __tablename__ = "client_action"
    id = Column(Integer, primary_key=True)
    client_id = Column(Integer, ForeignKey("client.id", ondelete="CASCADE"), nullable=False, index=True)
    type_id = Column(Integer, ForeignKey("action_type.id"), nullable=False)
    subtype = Column(String(64))
    text = Column(Text)
    action_date = Column(DateTime)
    responsible_id = Column(Integer, ForeignKey("ab_user.id"))
    completed = Column(Boolean, nullable=False, default=False)
    closing_comment = Column(Text)
    creator_id = Column(Integer, ForeignKey("ab_user.id"))
    created_at = Column(DateTime, nullable=False, default=_utcnow)
    updated_at = Column(DateTime, nullable=False, default=_utcnow, onupdate=_utcnow)

    type = relationship("ActionType", lazy="joined")
    responsible = relationship("User", foreign_keys=[responsible_id])
    creator = relationship("User", foreign_keys=[creator_id])

    __table_args__ = (Index("ix_client_action_client_date", "client_id", "completed", "action_date"),)

    def audit_client_id(self):
        return self.client_id
