"""Automatic, append-only, field-level audit of audited models via SQLAlchemy session events.

A model opts in by inheriting `Audited`. Every flush that creates, changes or deletes such a
row writes one AuditLog row per changed field, attributed to the current actor. Nobody calls
"log this" by hand. Bulk UPDATE/DELETE statements on audited models are refused unless they
go through `audited_bulk_update`, which records old values first.
"""

import datetime as dt
import decimal
import enum

from sqlalchemy import (Column, DateTime, Integer, String, Text, event, inspect, insert, select)
from sqlalchemy.orm import Session

from ..extensions import db
from . import bulk
from .actor import current_actor

SECRET_MARK = "(changed)"


def utcnow():
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class AuditLog(db.Model):
    """One changed field of one audited record, with who changed it and when (UTC)."""

    __tablename__ = "audit_log"
    id = Column(Integer, primary_key=True)
    created_at = Column(DateTime, nullable=False, default=utcnow, index=True)
    user_id = Column(Integer, index=True)  # no FK: the log outlives users
    job_id = Column(String(64))
    entity = Column(String(64), nullable=False)
    entity_id = Column(Integer, nullable=False)
    client_id = Column(Integer, index=True)  # the client a row hangs off, for the card's Logs tab
    operation = Column(String(10), nullable=False)  # create / update / delete
    field = Column(String(64), nullable=False)
    old_value = Column(Text)
    new_value = Column(Text)

    __table_args__ = (db.Index("ix_audit_log_entity", "entity", "entity_id"),)

    def __repr__(self):
        return f"<AuditLog {self.entity}#{self.entity_id}.{self.field}>"


class Audited:
    """Mixin: changes to this model are logged field by field.

    __audit_exclude__: attribute names never logged (derived or noisy fields).
    __audit_secret__: attribute names logged as "(changed)" without values.
    audit_client_id(): the client this row belongs to, for the client's Logs tab.
    """

    __audit_exclude__ = ("updated_at",)
    __audit_secret__ = ()

    def audit_client_id(self):
        return None


def _json(value):
    """Structures as sorted, compact JSON text (orjson: the create record of every imported client)."""
    return bulk.json_text(value, sort_keys=True, default=str)


def value_text(value):
    """A value as the audit log stores it (text; structures as sorted JSON)."""
    return _to_text(value)


def _to_text(value):
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, (dict, list)):
        return _json(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "__audit_label__"):
        return value.__audit_label__()
    return str(value)


def _relation_value(values):
    items = sorted(_to_text(v) or "" for v in values)
    return ", ".join(items) if items else None


def _changes(obj, operation):
    """Yield (field, old, new) text triples for one audited object in the current flush."""
    state = inspect(obj)
    mapper = state.mapper
    exclude = set(getattr(obj, "__audit_exclude__", ()))
    secret = set(getattr(obj, "__audit_secret__", ()))
    for attr in mapper.column_attrs:
        key = attr.key
        if key in exclude or key == "id":
            continue
        hist = state.attrs[key].history
        if operation == "create":
            new = state.attrs[key].value
            if new is None or new == "" or new == {} or new == []:
                continue
            old = None
        elif operation == "delete":
            old = state.attrs[key].value
            if old is None:
                continue
            new = None
        else:
            if not hist.has_changes():
                continue
            old = hist.deleted[0] if hist.deleted else None
            new = hist.added[0] if hist.added else None
            if old == new or (_to_text(old) == _to_text(new)):
                continue
        if key in secret:
            yield key, None, SECRET_MARK
        else:
            yield key, _to_text(old), _to_text(new)
    # many-to-many collections (tags): log the whole set before/after
    for rel in mapper.relationships:
        if not rel.uselist or rel.secondary is None or rel.key in exclude:
            continue
        hist = state.attrs[rel.key].history
        if not hist.has_changes():
            continue
        current = list(hist.unchanged) + list(hist.added)
        before = list(hist.unchanged) + list(hist.deleted)
        yield rel.key, (None if operation == "create" else _relation_value(before)), _relation_value(current)


def _pending_rows(session):
    actor = current_actor()
    now = utcnow()
    rows = []
    for operation, objs in (("create", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for obj in objs:
            if not isinstance(obj, Audited):
                continue
            if operation == "update" and not session.is_modified(obj, include_collections=True):
                continue
            rows.append((operation, obj))
    return actor, now, rows


@event.listens_for(Session, "before_flush")
def _guard_audit_log(session, flush_context, instances):
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditLog):
            raise PermissionError("The audit log is append-only.")


@event.listens_for(Session, "after_flush")
def _write_audit(session, flush_context):
    actor, now, pending = _pending_rows(session)
    if not pending:
        return
    records = []
    for operation, obj in pending:
        entity = obj.__class__.__name__
        entity_id = inspect(obj).identity[0] if inspect(obj).identity else getattr(obj, "id", None)
        if entity_id is None:
            continue
        client_id = obj.audit_client_id()
        for field, old, new in _changes(obj, operation):
            records.append(dict(created_at=now, user_id=actor.user_id, job_id=actor.job_id, entity=entity,
                                entity_id=entity_id, client_id=client_id, operation=operation, field=field,
                                old_value=old, new_value=new))
    if records:
        session.connection().execute(insert(AuditLog), records)


def record_rows(session, records):
    """Write prepared audit rows (dicts with entity, entity_id, client_id, operation, field, old, new).

    Used by bulk paths (import, bulk actions) that write with Core statements for speed; the
    actor and timestamp are filled in here so attribution stays in one place.
    """
    if not records:
        return 0
    actor = current_actor()
    now, user_id, job_id = utcnow(), actor.user_id, actor.job_id
    rows = [(now, user_id, job_id, r["entity"], r["entity_id"], r.get("client_id"), r["operation"], r["field"],
             _to_text(r.get("old")), _to_text(r.get("new"))) for r in records]
    return bulk.insert_rows(session, AuditLog, rows, columns=_RECORD_COLUMNS)


_RECORD_COLUMNS = ("created_at", "user_id", "job_id", "entity", "entity_id", "client_id", "operation", "field",
                   "old_value", "new_value")


@event.listens_for(Session, "do_orm_execute")
def _refuse_unaudited_bulk(orm_execute_state):
    """ORM bulk UPDATE/DELETE bypasses unit-of-work events, so it would escape the audit (R38)."""
    if not (orm_execute_state.is_update or orm_execute_state.is_delete):
        return
    if orm_execute_state.execution_options.get("audit_recorded"):
        return
    mapper = orm_execute_state.bind_mapper
    if mapper is not None and (issubclass(mapper.class_, Audited) or mapper.class_ is AuditLog):
        raise PermissionError(
            f"Bulk {'UPDATE' if orm_execute_state.is_update else 'DELETE'} on audited model "
            f"{mapper.class_.__name__} must record its audit rows (use record_rows and "
            f"execution_options(audit_recorded=True)).")


def client_log_query(client_id):
    return select(AuditLog).where(AuditLog.client_id == client_id).order_by(AuditLog.id.desc())
