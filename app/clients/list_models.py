"""Per-user state of the clients table (CL-LIST-5..8): saved views, column layouts,
favourites, and the progress rows of bulk operations."""

import datetime as dt

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text

from ..core.types import JSONType
from ..extensions import db
from .models import Client, names_text


def _utcnow():
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class ClientListView(db.Model):
    """A named set of list filters plus a column layout, saved by one staff user (never the search text)."""

    __tablename__ = "client_list_view"
    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False, index=True)
    name = Column(String(80), nullable=False)
    filters = Column(JSONType, nullable=False, default=dict)
    columns = Column(JSONType, nullable=False, default=list)
    is_default = Column(Boolean, nullable=False, default=False)
    created_at = Column(DateTime, nullable=False, default=_utcnow)

    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_client_list_view_user_name"),)


class ClientColumnLayout(db.Model):
    """The visible columns of the clients table, in order, for one staff user."""

    __tablename__ = "client_column_layout"
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), primary_key=True)
    columns = Column(JSONType, nullable=False, default=list)
    updated_at = Column(DateTime, nullable=False, default=_utcnow, onupdate=_utcnow)


class ClientFavourite(db.Model):
    """A client bookmarked by a staff user (shown in the favourites panel while in scope)."""

    __tablename__ = "client_favourite"
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), primary_key=True)
    client_id = Column(Integer, ForeignKey("client.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at = Column(DateTime, nullable=False, default=_utcnow)


class ClientBulkJob(db.Model):
    """One bulk operation on many clients; progress lives here whether it ran inline or on a worker."""

    __tablename__ = "client_bulk_job"
    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False, index=True)
    operation = Column(String(20), nullable=False)
    params = Column(JSONType, nullable=False, default=dict)
    client_ids = Column(JSONType, nullable=False, default=list)
    status = Column(String(12), nullable=False, default="queued")  # queued, running, done, failed
    total = Column(Integer, nullable=False, default=0)
    processed_count = Column(Integer, nullable=False, default=0)
    changed_count = Column(Integer, nullable=False, default=0)
    out_of_scope_count = Column(Integer, nullable=False, default=0)
    failed_count = Column(Integer, nullable=False, default=0)
    errors = Column(Text)
    created_at = Column(DateTime, nullable=False, default=_utcnow)
    finished_at = Column(DateTime)


# Indexes on the client table that match the list's sorts and filters (CL-LIST-2/4 at 1M rows).
# Declared here, next to the list that needs them; the migration creates the same ones.
LIST_INDEXES = [
    Index("ix_client_type_created_id", Client.client_type, Client.created_at, Client.id),
    Index("ix_client_project_created_id", Client.project_id, Client.created_at, Client.id),
    # project + status is the most used pair of filters (spec 10, L3): newest first straight off the index
    Index("ix_client_project_status_created_id", Client.project_id, Client.status_id, Client.created_at, Client.id),
    Index("ix_client_country", Client.country),
    Index("ix_client_state", Client.state),
    Index("ix_client_updated_at", Client.updated_at),
    Index("ix_client_last_login_at", Client.last_login_at),
    Index("ix_client_last_action_at", Client.last_action_at),
    Index("ix_client_future_action_at", Client.future_action_at),
    Index("ix_client_last_duplicate_at", Client.last_duplicate_at),
    Index("ix_client_external_id", Client.external_id),
    Index("ix_client_contact_origin_id", Client.contact_origin_id),
]

# Trigram indexes serve the literal "contains" filters and the search box (ILIKE '%x%') on PostgreSQL.
# Other databases get an empty partial index of the same name (WHERE 0: no rows, no write cost), so one
# metadata matches the migrations on every dialect (Alembic ignores ddl_if when comparing).
# The three names share one index over their concatenation (Client.contains_companion).
TRGM_COLUMNS = ("email", "phone", "uid", "external_id", "description")
TRGM_INDEXES = [
    Index(f"ix_client_{name}_trgm", getattr(Client, name), postgresql_using="gin",
          postgresql_ops={name: "gin_trgm_ops"}, sqlite_where=text("0"))
    for name in TRGM_COLUMNS
] + [Index("ix_client_names_trgm", names_text().label("names"), postgresql_using="gin",
           postgresql_ops={"names": "gin_trgm_ops"}, sqlite_where=text("0"))]
