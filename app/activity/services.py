"""Action rules (CL-CARD-2, CL-LIST-9) and the derived client fields they drive (CL-REC-14).

`refresh_activity_fields` is the one function that keeps actions_exist, last_action_at and
future_action_at current; every path that creates, edits, completes or deletes an action calls it.
"""

import datetime as dt

from flask_babel import lazy_gettext as _l
from sqlalchemy import case, func, select, update

from ..clients import services as client_services
from ..clients.models import Client
from ..core import validators as v
from ..core.actor import attributed
from ..core.errors import NotFound, ValidationFailed
from ..core.permissions import user_can
from ..extensions import db
from ..organisation import services as org
from .models import ActionType, ClientAction


def active_types():
    return db.session.scalars(select(ActionType).where(ActionType.active.is_(True)).order_by(ActionType.label)).all()


def _parse_datetime(value):
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(dt.UTC).replace(tzinfo=None)
    text = str(value).strip()
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(_l("Enter a date and time as YYYY-MM-DD HH:MM."))


def validate_action_data(data, client, actor, existing=None):
    """Check an action's fields; returns clean values or raises ValidationFailed."""
    errors = {}
    out = {}
    if existing is not None:  # an update changes only what it sends
        data = {**{k: getattr(existing, k) for k in ("type_id", "subtype", "text", "action_date", "responsible_id",
                                                     "completed", "closing_comment")}, **data}
    type_id = data.get("type_id", existing.type_id if existing else None)
    action_type = db.session.get(ActionType, int(type_id)) if str(type_id or "").isdigit() else None
    if action_type is None or (not action_type.active and (existing is None or existing.type_id != action_type.id)):
        errors["type_id"] = [_l("Choose an action type.")]
    else:
        out["type_id"] = action_type.id
        if existing is not None and (existing.type_id != action_type.id or
                                     data.get("subtype", existing.subtype) != existing.subtype):
            if existing.creator_id != getattr(actor, "id", None) and not user_can(actor, "can_edit_action_type"):
                errors["type_id"] = [_l("Only the creator or a user allowed to edit action types can change the "
                                        "type or subtype.")]
    subtype = (data.get("subtype") or "").strip() or None
    if subtype and action_type is not None and subtype not in (action_type.subtypes or []):
        errors["subtype"] = [_l("Choose a subtype of the selected type.")]
    out["subtype"] = subtype
    try:
        out["text"] = v.clean_text(data.get("text"), 5000, multiline=True)
        out["closing_comment"] = v.clean_text(data.get("closing_comment"), 2000, multiline=True)
    except ValueError as exc:
        errors["text"] = [str(exc)]
    try:
        out["action_date"] = _parse_datetime(data.get("action_date"))
    except ValueError as exc:
        errors["action_date"] = [str(exc)]
    kind = action_type.kind if action_type is not None else "note"
    if kind == "call" and not out.get("action_date") and "action_date" not in errors:
        errors["action_date"] = [_l("A call needs a date.")]
    if kind != "call":
        out["action_date"] = out.get("action_date") or (existing.action_date if existing else None)
    responsible = data.get("responsible_id")
    responsible = int(responsible) if str(responsible or "").isdigit() else None
    if responsible is not None and kind in ("call", "comment"):
        if not org.is_eligible_manager(responsible, client.project_id, client.desk_id):
            errors["responsible_id"] = [_l("The responsible must be an active staff member of the client's "
                                           "project and desk.")]
    out["responsible_id"] = responsible if kind in ("call", "comment") else None
    completed = data.get("completed")
    if completed is None and existing is None and action_type is not None:
        completed = action_type.completed_by_default  # the type's default applies on every entry point
    out["completed"] = bool(completed) if completed is not None else (existing.completed if existing else False)
    if errors:
        raise ValidationFailed(errors)
    return out


def refresh_activity_fields(client_ids):
    """Recompute actions_exist, last_action_at (latest completed action's date) and future_action_at
    (earliest open action's date, even if overdue) for the given clients, in one statement each way."""
    ids = sorted({int(i) for i in client_ids if i is not None})
    if not ids:
        return
    when = func.coalesce(ClientAction.action_date, ClientAction.created_at)
    rows = db.session.execute(
        select(ClientAction.client_id, func.count(ClientAction.id),
               func.max(case((ClientAction.completed.is_(True), when))),
               func.min(case((ClientAction.completed.is_(False), when))))
        .where(ClientAction.client_id.in_(ids)).group_by(ClientAction.client_id)).all()
    found = {cid: (n, last, future) for cid, n, last, future in rows}
    for cid in ids:
        n, last, future = found.get(cid, (0, None, None))
        # Derived fields are excluded from the audit (Client.__audit_exclude__), so nothing to record.
        db.session.execute(update(Client).where(Client.id == cid)
                           .values(actions_exist=n > 0, last_action_at=last, future_action_at=future)
                           .execution_options(audit_recorded=True, synchronize_session="fetch"))


def _client_in_scope(actor, client_id):
    return client_services.get_client(actor, client_id)


@attributed
def create_action(client_id, data, actor):
    if not user_can(actor, "can_create_action"):
        raise ValidationFailed({"type_id": [_l("You are not allowed to create actions.")]})
    client = _client_in_scope(actor, client_id)
    clean = validate_action_data(data, client, actor)
    action = ClientAction(client_id=client.id, creator_id=getattr(actor, "id", None), **clean)
    db.session.add(action)
    db.session.flush()
    refresh_activity_fields([client.id])
    db.session.commit()
    return action


def get_action(actor, action_id):
    action = db.session.get(ClientAction, int(action_id)) if str(action_id).isdigit() else None
    if action is None:
        raise NotFound(_l("Action not found."))
    _client_in_scope(actor, action.client_id)
    return action


@attributed
def update_action(action_id, data, actor):
    action = get_action(actor, action_id)
    client = db.session.get(Client, action.client_id)
    clean = validate_action_data(data, client, actor, existing=action)
    for key, value in clean.items():
        setattr(action, key, value)
    db.session.flush()
    refresh_activity_fields([action.client_id])
    db.session.commit()
    return action


@attributed
def delete_action(action_id, actor):
    action = get_action(actor, action_id)
    if not user_can(actor, "can_delete_action"):
        raise ValidationFailed({"action": [_l("You are not allowed to delete actions.")]})
    client_id = action.client_id
    db.session.delete(action)
    db.session.flush()
    refresh_activity_fields([client_id])
    db.session.commit()


def client_actions_query(actor, client_id, order="action_date", direction="desc"):
    _client_in_scope(actor, client_id)
    column = {"action_date": ClientAction.action_date, "created_at": ClientAction.created_at,
              "updated_at": ClientAction.updated_at}.get(order, ClientAction.action_date)
    column = column.desc() if direction == "desc" else column.asc()
    return select(ClientAction).where(ClientAction.client_id == client_id).order_by(column, ClientAction.id.desc())

