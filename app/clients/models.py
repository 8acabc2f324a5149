"""The client record (CL-REC) and the client settings lists it refers to (CL-SET-1)."""

import datetime as dt

from flask import g, has_request_context
from flask_appbuilder.security.sqla.models import User  # noqa: F401  (mapper for relationship("User"))
from sqlalchemy import (Boolean, Column, Date, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Table,
                        Text, UniqueConstraint, func, text)
from sqlalchemy.orm import relationship

from ..core.audit import Audited
from ..core.types import JSONType
from ..extensions import db


def utcnow():
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class TranslatedLabel:
    """Mixin for configurable values that hold a label per language (CL-SET-2)."""

    def localized_label(self, locale=None):
        if locale is None and has_request_context():
            from flask_babel import get_locale
            locale = str(get_locale() or "en")
        translations = self.label_translations or {}
        return translations.get(str(locale or "")[:2]) or self.label

    def __audit_label__(self):
        return self.label

    def __str__(self):
        return self.localized_label() or ""

    __repr__ = __str__


# ----------------------------------------------------------------- settings lists

class ClientStatus(TranslatedLabel, Audited, db.Model):
    """A configurable client status (New, VIP, High-Risk), listed by `order` everywhere."""

    __tablename__ = "client_status"
    id = Column(Integer, primary_key=True)
    label = Column(String(64), nullable=False, unique=True)
    label_translations = Column(JSONType, nullable=False, default=dict)
    colour = Column(String(7), nullable=False, default="#6c757d")
    order = Column(Integer, nullable=False, default=0)
    is_default = Column(Boolean, nullable=False, default=False)
    active = Column(Boolean, nullable=False, default=True)


class FunnelStage(TranslatedLabel, Audited, db.Model):
    """An ordered sales-funnel stage for one client type."""

    __tablename__ = "funnel_stage"
    id = Column(Integer, primary_key=True)
    client_type = Column(String(10), nullable=False)
    label = Column(String(64), nullable=False)
    label_translations = Column(JSONType, nullable=False, default=dict)
    order = Column(Integer, nullable=False, default=0)
    active = Column(Boolean, nullable=False, default=True)
    __table_args__ = (UniqueConstraint("client_type", "label", name="uq_funnel_stage_type_label"),)


class FeeGroup(TranslatedLabel, Audited, db.Model):
    """A company fee group a client is billed under."""

    __tablename__ = "fee_group"
    id = Column(Integer, primary_key=True)
    label = Column(String(64), nullable=False, unique=True)
    label_translations = Column(JSONType, nullable=False, default=dict)
    active = Column(Boolean, nullable=False, default=True)


class ContactOrigin(TranslatedLabel, Audited, db.Model):
    """Where a client first came from (Website, Portal, Referral, ...); built-ins cannot be deleted."""

    __tablename__ = "contact_origin"
    id = Column(Integer, primary_key=True)
    label = Column(String(64), nullable=False, unique=True)
    label_translations = Column(JSONType, nullable=False, default=dict)
    builtin = Column(Boolean, nullable=False, default=False)
    icon_url = Column(String(500))
    icon_file = Column(String(64))  # uuid4 name of an uploaded 22×22 icon, stored outside the web root
    active = Column(Boolean, nullable=False, default=True)


CUSTOM_FIELD_TYPES = ("text", "number", "date", "boolean", "select", "multiselect")


class CustomField(TranslatedLabel, Audited, db.Model):
    """An admin-defined extra client field; values live in Client.custom_fields by key."""

    __tablename__ = "custom_field"
    id = Column(Integer, primary_key=True)
    key = Column(String(40), nullable=False, unique=True)
    label = Column(String(100), nullable=False)
    label_translations = Column(JSONType, nullable=False, default=dict)
    field_type = Column(String(12), nullable=False, default="text")
    options = Column(JSONType, nullable=False, default=list)
    required = Column(Boolean, nullable=False, default=False)
    order = Column(Integer, nullable=False, default=0)
    active = Column(Boolean, nullable=False, default=True)


class Tag(db.Model):
    """A free interest tag; clients carry any number of them."""

    __tablename__ = "tag"
    id = Column(Integer, primary_key=True)
    name = Column(String(64), nullable=False, unique=True)

    def __audit_label__(self):
        return self.name

    def __repr__(self):
        return self.name


client_tag = Table(
    "client_tag", db.metadata,
    Column("client_id", ForeignKey("client.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class UidCounter(db.Model):
    """Monotonic counters (never reused) for human-facing identifiers such as client UIDs."""

    __tablename__ = "uid_counter"
    name = Column(String(32), primary_key=True)
    value = Column(Integer, nullable=False, default=0)


# ----------------------------------------------------------------- the client

CLIENT_TYPES = ("personal", "business")
STATES = ("active", "deactivated", "suspended")
GENDERS = ("male", "female", "other")
RISK_LEVELS = ("low", "medium", "high")
VERIFICATION_LEVELS = ("email", "video", "in_person")
VERIFICATION_STATUSES = ("init", "pending", "approved", "rejected")
OUTCOMES = ("open", "won", "lost")


class Client(Audited, db.Model):
    """A person (Personal) or company (Business) served by the organisation."""

    __tablename__ = "client"
    # Derived fields are recomputed from their sources (whose own changes are audited).
    __audit_exclude__ = ("updated_at", "full_name", "last_login_at", "actions_exist", "last_action_at",
                         "future_action_at", "last_duplicate_at")
    __audit_secret__ = ("password_hash",)

    id = Column(Integer, primary_key=True)
    uid = Column(String(16), nullable=False, unique=True)
    client_type = Column(String(10), nullable=False, default="personal")
    email = Column(String(254), nullable=False, unique=True)

    # personal panel
    first_name = Column(String(100))
    last_name = Column(String(100))
    company_name = Column(String(200))
    full_name = Column(String(300), nullable=False, default="")
    phone = Column(String(20))
    additional_phone = Column(String(20))
    date_of_birth = Column(Date)
    external_id = Column(String(64))
    passport_number = Column(String(64))
    nationality = Column(String(2))
    gender = Column(String(10))
    risk_level = Column(String(10))
    aml_screening = Column(Text)

    # billing panel
    country = Column(String(2))
    region = Column(String(100))
    city = Column(String(100))
    address = Column(String(255))
    postcode = Column(String(20))

    # affiliation panel
    project_id = Column(Integer, ForeignKey("project.id"), nullable=False, index=True)
    desk_id = Column(Integer, ForeignKey("desk.id"), index=True)
    manager_id = Column(Integer, ForeignKey("ab_user.id"), index=True)
    fee_group_id = Column(Integer, ForeignKey("fee_group.id"))
    affiliate_id = Column(String(64))
    campaign_id = Column(String(64))
    source_id = Column(String(64))
    sub_id = Column(String(64))
    verification_level = Column(String(10))
    verification_status = Column(String(10), nullable=False, default="init")
    contact_origin_id = Column(Integer, ForeignKey("contact_origin.id"))

    # lifecycle
    status_id = Column(Integer, ForeignKey("client_status.id"), index=True)
    state = Column(String(12), nullable=False, default="active")
    funnel_stage_id = Column(Integer, ForeignKey("funnel_stage.id"))
    outcome = Column(String(8), nullable=False, default="open")
    processed = Column(Boolean, nullable=False, default=False)
    processed_at = Column(DateTime)
    rating = Column(SmallInteger, nullable=False, default=0)
    description = Column(Text)

    # credentials and free-form data
    password_hash = Column(String(256))
    custom_fields = Column(JSONType, nullable=False, default=dict)
    meta = Column(JSONType, nullable=False, default=dict)

    # timestamps and derived fields (kept current by the services that change their sources)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)
    last_login_at = Column(DateTime)
    last_action_at = Column(DateTime)
    future_action_at = Column(DateTime)
    actions_exist = Column(Boolean, nullable=False, default=False)
    last_duplicate_at = Column(DateTime)
    created_by_id = Column(Integer, ForeignKey("ab_user.id"))

    project = relationship("Project", lazy="joined", innerjoin=True)
    desk = relationship("Desk", lazy="joined")
    manager = relationship("User", foreign_keys=[manager_id], lazy="joined")
    created_by = relationship("User", foreign_keys=[created_by_id])
    status = relationship("ClientStatus", lazy="joined")
    fee_group = relationship("FeeGroup")
    contact_origin = relationship("ContactOrigin")
    funnel_stage = relationship("FunnelStage")
    tags = relationship("Tag", secondary=client_tag, order_by="Tag.name")
    two_factor_methods = relationship("TwoFactorMethod", back_populates="client", cascade="all, delete-orphan",
                                      order_by="TwoFactorMethod.id")

    __table_args__ = (
        Index("ix_client_created_at_id", "created_at", "id"),
        Index("ix_client_full_name", "full_name"),
        Index("ix_client_last_name", "last_name"),
        Index("ix_client_phone", "phone"),
    )

    def audit_client_id(self):
        return self.id

    def __audit_label__(self):
        return f"{self.full_name} ({self.uid})"

    @property
    def header(self):
        return f"{self.full_name} • UID: {self.uid}"

    @property
    def is_under_18(self):
        if not self.date_of_birth:
            return False
        today = dt.date.today()
        years = today.year - self.date_of_birth.year - (
            (today.month, today.day) < (self.date_of_birth.month, self.date_of_birth.day))
        return years < 18

    @property
    def comments(self):
        body = self.description or ""
        return body if len(body) <= 60 else body[:57] + "…"

    def __repr__(self):
        return self.full_name or self.email or ""

    @classmethod
    def contains_companion(cls, column_name):
        """An indexed text that contains every text of `column_name` (core.filters' literal text
        filters add `companion ILIKE '%x%'` beside the column's own test): see `names_text`."""
        return names_text() if column_name in NAME_COLUMNS else None


# The three names are searched through one trigram index on their concatenation (PostgreSQL,
# ix_client_names_trgm): a name contains a text only if the concatenation does, so a search adds
# `names_text() ILIKE '%x%'` (the indexed test) beside the name's own. pg_trgm takes trigrams per
# word, and a personal client's full name is made of the first and last names, so the one index
# holds about what the full name's alone did; the first and last names' own two indexes took 1.4
# of the ~6.6 PostgreSQL CPU seconds that inserting 98k imported clients cost in index upkeep.
NAME_COLUMNS = ("first_name", "last_name", "full_name")


def names_text():
    """first name, last name and full name in one text, written as the index's expression is."""
    blank, space = text("''"), text("' '")  # constants in the SQL (bound values would not match the index)
    return (func.coalesce(Client.first_name, blank) + space + func.coalesce(Client.last_name, blank) + space
            + Client.full_name)


TWO_FACTOR_KINDS = ("email", "totp", "phone")


class TwoFactorMethod(Audited, db.Model):
    """One of a client's second-factor login methods; exactly one is the default."""

    __tablename__ = "two_factor_method"
    id = Column(Integer, primary_key=True)
    client_id = Column(Integer, ForeignKey("client.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = Column(String(8), nullable=False)
    phone = Column(String(20))
    is_default = Column(Boolean, nullable=False, default=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)

    client = relationship("Client", back_populates="two_factor_methods")

    def audit_client_id(self):
        return self.client_id


def request_cache():
    return g.setdefault("_clientdesk_cache", {}) if has_request_context() else {}
