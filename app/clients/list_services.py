"""Rules of the clients table (CL-LIST-4..8): filter choices, column layouts, saved views,
favourites and bulk operations.

Services take an explicit actor and plain data, raise domain errors, and never touch the
request. Every read goes through the scope clause; every write goes through the client
services (validation, processed rule) and the ORM (so the audit records each changed field).
"""

import datetime as dt
import json

from flask_babel import gettext, lazy_gettext as _l
from sqlalchemy import func, select

from ..core import settings_version
from ..core.errors import NotFound, ValidationFailed
from ..core.permissions import user_can
from ..extensions import db
from ..organisation import services as org
from . import filters as flt
from . import services
from .list_models import ClientBulkJob, ClientColumnLayout, ClientFavourite, ClientListView
from .models import Client, STATES

_NOT_FOUND = _l("Not found.")

# --------------------------------------------------------------------------- columns (CL-LIST-1, -6)

# key: (label, order column or None). Order columns are what FAB's _oc_ parameter accepts.
COLUMNS = {
    "email": (_l("E-mail"), "email"),
    "id": (_l("ID"), "id"),
    "uid": (_l("UID"), "uid"),
    "full_name": (_l("Full name"), "full_name"),
    "phone": (_l("Phone"), "phone"),
    "client_type": (_l("Type"), "client_type"),
    "country": (_l("Country"), "country"),
    "comments": (_l("Comments"), "description"),
    "desk": (_l("Desk"), "desk.name"),
    "status": (_l("Status"), "status.order"),
    "manager": (_l("Manager"), "manager.first_name"),
    "project": (_l("Project"), "project.name"),
    "state": (_l("State"), "state"),
    "created_at": (_l("Created"), "created_at"),
    "updated_at": (_l("Updated"), "updated_at"),
    "last_login_at": (_l("Last login date"), "last_login_at"),
    "verification_level": (_l("Verification level"), "verification_level"),
    "verification_status": (_l("Verification status"), "verification_status"),
    "rating": (_l("Rating"), "rating"),
    "tags": (_l("Tags"), "tags"),  # by the first tag name, A–Z (see order_by_special)
    "processed": (_l("Processed"), "processed"),
    "last_action_at": (_l("Last action date"), "last_action_at"),
    "future_action_at": (_l("Future action date"), "future_action_at"),
    "actions_exist": (_l("Actions exist"), "actions_exist"),
    "last_duplicate_at": (_l("Last duplicate date"), "last_duplicate_at"),
}
# Columns that show a related row (joined into the page's query only when visible). The status is
# not among them: rows carry its id, and its label and colour come from statuses_by_id().
RELATION_COLUMNS = ("desk", "manager", "project")
# The client attributes a list column shows, where they differ from the column's key.
COLUMN_ATTRIBUTES = {"comments": ("description",), "status": ("status_id",), "tags": (),
                     **{key: (f"{key}_id",) for key in RELATION_COLUMNS}}


def row_attributes(columns):
    """The client attributes the list page reads for `columns`: the id and e-mail of every row (its
    check box and link) and each visible column's own. The page loads only these (a client row
    holds 50 columns, three of them JSON, and most pages show ten)."""
    names = {"id", "email"}
    for key in columns:
        if key.startswith(CUSTOM_COLUMN_PREFIX):
            names.add("custom_fields")
        elif key in COLUMN_ATTRIBUTES:
            names.update(COLUMN_ATTRIBUTES[key])
        elif key in Client.__table__.c:
            names.add(key)
    return sorted(names)
DEFAULT_COLUMNS = ["email", "id", "uid", "full_name", "phone", "client_type", "country", "comments", "desk",
                   "status"]
LOCKED_COLUMNS = ("email", "id")
TAGS_ORDER = "tags"
# What FAB's datamodel sorts by itself; tags and custom fields are ordered by order_by_special.
ORDER_COLUMNS = [order for _, order in COLUMNS.values() if order and order != TAGS_ORDER] + ["full_name",
                                                                                             "created_at"]
CUSTOM_COLUMN_PREFIX = "cf_"
MAX_COLUMNS = 60


def custom_field_columns():
    """{column key: custom field} of the active custom fields, in their order (detached copies, kept
    per process under the settings version)."""
    from .models import CustomField

    def build():
        return {f"{CUSTOM_COLUMN_PREFIX}{f.key}": settings_version.detached_copy(f) for f in
                db.session.scalars(select(CustomField).where(CustomField.active.is_(True))
                                   .order_by(CustomField.order, CustomField.id))}
    return settings_version.cached("custom_field_columns", build)


def statuses_by_id():
    """{id: status} of every client status (detached copies, kept per process under the settings
    version): what list rows and favourites show of a client's status, without a join per query."""
    from .models import ClientStatus
    return settings_version.cached("statuses_by_id", lambda: {
        s.id: settings_version.detached_copy(s) for s in db.session.scalars(select(ClientStatus))})


def available_columns(custom=None):
    """[(key, label, order column or None)] of every column a user may show, custom fields last.

    A custom field sorts by its stored value (order key = its column key), except a multiselect,
    which holds a list and has no one value to sort by (order None: its header is not a link).
    """
    out = [(key, label, order) for key, (label, order) in COLUMNS.items()]
    out += [(key, f.localized_label(), key if f.field_type in flt.CUSTOM_SORTABLE_KINDS else None)
            for key, f in (custom if custom is not None else custom_field_columns()).items()]
    return out


def order_by_special(order_key, direction):
    """ORDER BY clauses for the columns FAB can't sort, or None for any other key.

    Tags sort by the client's alphabetically first tag (case-insensitive), custom fields by their
    stored value (numbers numerically, dates as ISO text). Clients without a value come last in
    both directions; the id breaks ties so pages never overlap.
    """
    from .models import Tag, client_tag
    if order_key == TAGS_ORDER:
        expression = (select(func.min(func.lower(Tag.name))).join(client_tag, client_tag.c.tag_id == Tag.id)
                      .where(client_tag.c.client_id == Client.id).scalar_subquery())
    elif order_key.startswith(CUSTOM_COLUMN_PREFIX):
        field = custom_field_columns().get(order_key)
        expression = flt.custom_sort_expression(field) if field is not None else None
        if expression is None:
            return None
    else:
        return None
    if direction == "desc":
        return [expression.desc().nulls_last(), Client.id.desc()]
    return [expression.asc().nulls_last(), Client.id.asc()]


def clean_columns(columns, known=None):
    """Known, unique keys in the given order, with the locked columns always present."""
    known = known if known is not None else {k for k, _, _ in available_columns()}
    out = []
    for key in columns or ():
        key = str(key)
        if key in known and key not in out:
            out.append(key)
    for key in reversed(LOCKED_COLUMNS):
        if key not in out:
            out.insert(0, key)
    return out[:MAX_COLUMNS]


def _layout_columns(stored):
    """The columns a stored layout shows: the default ones when none is stored."""
    return clean_columns(stored) if stored else list(DEFAULT_COLUMNS)


def column_layout(user):
    layout = db.session.get(ClientColumnLayout, user.id)
    return _layout_columns(layout.columns if layout is not None else None)


def list_settings(user):
    """(the user's saved views by name, their column layout): every list page needs both. Read in one
    statement and kept per process under the settings version (detached copies: read-only)."""
    from flask_appbuilder.security.sqla.models import User

    def build():
        rows = db.session.execute(
            select(ClientColumnLayout.columns, ClientListView).select_from(User)
            .outerjoin(ClientColumnLayout, ClientColumnLayout.user_id == User.id)
            .outerjoin(ClientListView, ClientListView.user_id == User.id)
            .where(User.id == user.id).order_by(ClientListView.name)).all()
        layout = rows[0][0] if rows else None
        return ([settings_version.detached_copy(view) for _, view in rows if view is not None],
                _layout_columns(layout))
    views, columns = settings_version.cached(("list_settings", user.id), build)
    return list(views), list(columns)


def set_column_layout(user, columns):
    columns = clean_columns(columns)
    layout = db.session.get(ClientColumnLayout, user.id) or ClientColumnLayout(user_id=user.id)
    layout.columns = columns
    db.session.add(layout)
    db.session.commit()
    return columns


def reset_column_layout(user):
    layout = db.session.get(ClientColumnLayout, user.id)
    if layout is not None:
        db.session.delete(layout)
        db.session.commit()
    return list(DEFAULT_COLUMNS)


# --------------------------------------------------------------------------- filter choices

def filter_choices(user, source, locale="en"):
    """(value, label) pairs for a choice filter, limited to what the user's scope can hold."""
    from ..core.validators import country_choices
    from ..organisation.models import Desk, Project
    from . import forms
    from .models import ContactOrigin, Tag
    scope = org.scope_for(user)
    if source == "projects":  # kept per process and scope
        key = ("projects", scope.all_projects, tuple(sorted(scope.project_ids or ())))
        return settings_version.cached(key, lambda: [
            (str(p.id), p.name) for p in db.session.scalars(org.visible_projects_query(user))])
    if source == "desks":
        q = select(Desk).join(Project).order_by(Project.name, Desk.name)
        if not scope.all_projects:
            q = q.where(Desk.project_id.in_(sorted(scope.project_ids or ())))
        return [(str(d.id), str(d)) for d in db.session.scalars(q)]
    if source == "managers":
        return [(str(m["id"]), m["name"]) for m in forms.manager_options(user)]
    if source == "statuses":  # every status, in every scope: kept per process and language
        return settings_version.cached(("statuses", locale), lambda: [
            (str(s.id), s.localized_label(locale) or "")
            for s in sorted(statuses_by_id().values(), key=lambda s: (s.order, s.id))])
    if source == "states":
        return [(k, str(v)) for k, v in forms.STATE_LABELS.items()]
    if source == "countries":
        return list(country_choices(locale))
    if source == "verification_levels":
        return [(k, str(v)) for k, v in forms.VERIFICATION_LEVEL_LABELS.items()]
    if source == "verification_statuses":
        return [(k, str(v)) for k, v in forms.VERIFICATION_STATUS_LABELS.items()]
    if source == "ratings":
        return [(str(k), str(v)) for k, v in forms.RATING_LABELS.items()]
    if source == "contact_origins":
        return [(str(o.id), str(o)) for o in db.session.scalars(select(ContactOrigin).order_by(ContactOrigin.label))]
    if source == "tags":
        return [(str(t.id), t.name) for t in db.session.scalars(select(Tag).order_by(Tag.name).limit(500))]
    return []


def chip_text(active_filter, user, locale="en", choices=None):
    """The value part of a chip: "Acme USA", "gmail", "Last 7 days", "2024-01-01 – 2024-01-31".

    `choices(source)` may supply the option lists the caller already holds (the list page does)."""
    spec, raw = active_filter.spec, active_filter.raw
    kind = active_filter.kind or (spec.kind if spec is not None else "text")
    if kind in ("choice", "tags"):
        labels = dict(choices(spec.choices) if choices else filter_choices(user, spec.choices, locale))
        return ", ".join(labels.get(v, v) for v in raw)
    if kind == "values":
        return ", ".join(raw)
    if kind == "bool":
        return gettext("Yes") if raw[0] == "yes" else gettext("No")
    if kind == "date":
        if active_filter.detail == "preset":
            return str(flt.DATE_PRESETS[raw[0]])
        start, _, end = raw[0].partition("..")
        return f"{start or '…'} – {end or '…'}"
    if kind == "range":
        return f"{raw[0] or '…'} – {raw[1] or '…'}"
    return raw[0]


def chip_label(active_filter):
    if active_filter.spec is not None and active_filter.spec.kind == "text":
        return f"{active_filter.label} {flt.TEXT_OPERATOR_LABELS[active_filter.detail]}"
    return str(active_filter.label)


# --------------------------------------------------------------------------- the list query

def scoped_query(user):
    return db.session.query(Client).filter(org.client_scope_clause(Client, user))


def matching_ids_query(user, args, limit=None):
    """Ids of the clients the list shows for `args` (filters, tab and search) inside the user's scope."""
    from ..core.filters import ClientDeskInterface
    datamodel = ClientDeskInterface(Client, db.session)
    active = flt.parse_filters(args, custom_field_columns().values())
    filters = flt.build_filters(datamodel, active, flt.client_type_tab(args))
    q = scoped_query(user)
    clause = services.literal_search_clause(args.get("q", "") or "")
    if clause is not None:
        q = q.filter(clause)
    q = filters.apply_all(q)
    q = q.enable_eagerloads(False).with_entities(Client.id).order_by(Client.id)
    if limit:
        q = q.limit(limit)
    return q


def count_by_type(user, args):
    """Exact totals per client type for the current filters and search (the tab counters)."""
    from ..core.filters import ClientDeskInterface
    datamodel = ClientDeskInterface(Client, db.session)
    active = flt.parse_filters(args, custom_field_columns().values())
    filters = flt.build_filters(datamodel, active)
    q = scoped_query(user)
    clause = services.literal_search_clause(args.get("q", "") or "")
    if clause is not None:
        q = q.filter(clause)
    q = filters.apply_all(q).enable_eagerloads(False)
    rows = q.with_entities(Client.client_type, func.count(Client.id)).group_by(Client.client_type).all()
    counts = {t: 0 for t in flt.CLIENT_TYPES}
    counts.update({t: n for t, n in rows})
    return counts


# --------------------------------------------------------------------------- saved views (CL-LIST-5)

VIEW_NAME_MAX = 80


def stored_filter_args(args):
    """The filter part of a query string, as {param: [values]}: no search text, page, sort or view."""
    allowed = flt.filter_params() | {flt.TYPE_PARAM}
    out = {}
    for key in (args.keys() if hasattr(args, "keys") else ()):
        if key in allowed or key.startswith(flt.CUSTOM_PREFIX):
            values = args.getlist(key) if hasattr(args, "getlist") else args.get(key)
            values = values if isinstance(values, list) else [values]
            values = [str(v)[:200] for v in values if v not in (None, "")][:flt.MAX_VALUES]
            if values:
                out[key] = values
    return out


def list_views(user):
    return db.session.scalars(select(ClientListView).where(ClientListView.user_id == user.id)
                              .order_by(ClientListView.name)).all()


def get_view(user, view_id):
    try:
        view_id = int(view_id)
    except (TypeError, ValueError):
        raise NotFound(_NOT_FOUND)
    view = db.session.get(ClientListView, view_id)
    if view is None or view.user_id != user.id:
        raise NotFound(_NOT_FOUND)
    return view


def _view_name(name, user, exclude_id=None):
    name = (name or "").strip()
    if not name:
        raise ValidationFailed({"name": [_l("Enter a name for the view.")]})
    if len(name) > VIEW_NAME_MAX:
        raise ValidationFailed({"name": [_l("The name can be at most %(n)s characters.", n=VIEW_NAME_MAX)]})
    q = select(ClientListView.id).where(ClientListView.user_id == user.id, ClientListView.name == name)
    if exclude_id is not None:
        q = q.where(ClientListView.id != exclude_id)
    if db.session.scalar(q) is not None:
        raise ValidationFailed({"name": [_l("You already have a view with this name.")]})
    return name


def _make_default(user, view):
    for other in list_views(user):
        other.is_default = other.id == view.id


def create_view(user, name, args, columns, is_default=False):
    view = ClientListView(user_id=user.id, name=_view_name(name, user), filters=stored_filter_args(args),
                          columns=clean_columns(columns), is_default=False)
    db.session.add(view)
    db.session.flush()
    if is_default:
        _make_default(user, view)
    db.session.commit()
    return view


def update_view(user, view_id, name=None, args=None, columns=None, is_default=None):
    view = get_view(user, view_id)
    if name is not None:
        view.name = _view_name(name, user, exclude_id=view.id)
    if args is not None:
        view.filters = stored_filter_args(args)
    if columns is not None:
        view.columns = clean_columns(columns)
    if is_default is True:
        _make_default(user, view)
    elif is_default is False:
        view.is_default = False
    db.session.commit()
    return view


def delete_view(user, view_id):
    view = get_view(user, view_id)
    db.session.delete(view)
    db.session.commit()


# --------------------------------------------------------------------------- favourites (CL-LIST-7)

def _visible_client(user, client_id):
    try:
        return services.get_client(user, client_id)
    except NotFound:
        raise
    except (TypeError, ValueError):
        raise NotFound(_NOT_FOUND)


def toggle_favourite(user, client_id):
    """Bookmark or un-bookmark a client in the user's scope; returns True when it is now a favourite."""
    client = _visible_client(user, client_id)
    row = db.session.get(ClientFavourite, (user.id, client.id))
    if row is not None:
        db.session.delete(row)
        db.session.commit()
        return False
    db.session.add(ClientFavourite(user_id=user.id, client_id=client.id))
    db.session.commit()
    return True


def remove_favourite(user, client_id):
    try:
        client_id = int(client_id)
    except (TypeError, ValueError):
        raise NotFound(_NOT_FOUND)
    row = db.session.get(ClientFavourite, (user.id, client_id))
    if row is None:
        raise NotFound(_NOT_FOUND)
    db.session.delete(row)
    db.session.commit()


def clear_favourites(user):
    rows = db.session.scalars(select(ClientFavourite).where(ClientFavourite.user_id == user.id)).all()
    for row in rows:
        db.session.delete(row)
    db.session.commit()
    return len(rows)


def favourites(user):
    """The user's favourite clients that lie inside their current scope (others are kept but not shown),
    as what the panel shows of each: id, full_name, email and status (every list page renders it)."""
    from types import SimpleNamespace
    # Whether the user has any favourite at all is kept per process under the favourites version: a
    # user without favourites (most pages) costs no query.
    if not settings_version.cached(("has_favourites", user.id), lambda: db.session.scalar(
            select(ClientFavourite.client_id).where(ClientFavourite.user_id == user.id).limit(1)) is not None,
            counter=settings_version.FAVOURITES):
        return []
    q = (select(Client.id, Client.full_name, Client.email, Client.status_id)
         .join(ClientFavourite, ClientFavourite.client_id == Client.id)
         .where(ClientFavourite.user_id == user.id, org.client_scope_clause(Client, user))
         .order_by(ClientFavourite.created_at, Client.id))
    rows = db.session.execute(q).all()
    statuses = statuses_by_id() if rows else {}
    return [SimpleNamespace(id=r.id, full_name=r.full_name, email=r.email, status=statuses.get(r.status_id))
            for r in rows]


# --------------------------------------------------------------------------- bulk operations (CL-LIST-8)

BULK_OPERATIONS = {"reassign": "can_reassign", "bulk_edit": "can_bulk_edit", "retag": "can_bulk_edit",
                   "change_state": "can_change_state"}
BULK_EDIT_FIELDS = ("affiliate_id", "source_id", "campaign_id", "country")
RETAG_MODES = ("add", "remove", "replace")
MAX_BULK_IDS = 1_000_000
# Rows per list page by default (ClientModelView.page_size): a selection up to this size is changed
# inline, in the request; a larger one ("select all N matching") runs as a background job.
LIST_PAGE_SIZE = 25
INLINE_BULK_MAX = LIST_PAGE_SIZE


def _int_or_none(value):
    if value in (None, "", "None"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationFailed({"value": [_l("Choose a valid value.")]})


def check_bulk_params(operation, params):
    """Validate what is to be written (before touching any client); returns clean params."""
    if operation == "reassign":
        clean = {}
        for key in ("desk_id", "manager_id", "status_id"):
            if params.get(key) not in (None, ""):
                clean[key] = _int_or_none(params.get(key))
        if not clean:
            raise ValidationFailed({"reassign": [_l("Choose a desk, a manager or a status to assign.")]})
        return clean
    if operation == "bulk_edit":
        clean = {k: (params.get(k) or "").strip() for k in BULK_EDIT_FIELDS if k in (params.get("enabled") or ())}
        if not clean:
            raise ValidationFailed({"bulk_edit": [_l("Untick “Leave existing” for at least one field.")]})
        return clean
    if operation == "retag":
        mode = params.get("mode") or "add"
        if mode not in RETAG_MODES:
            raise ValidationFailed({"mode": [_l("Choose a valid value.")]})
        names = [n.strip() for n in (params.get("tags") or "").split(",") if n.strip()]
        if not names and mode != "replace":
            raise ValidationFailed({"tags": [_l("Enter at least one tag.")]})
        return {"mode": mode, "tags": names}
    if operation == "change_state":
        if params.get("state") not in STATES:
            raise ValidationFailed({"state": [_l("Choose a valid value.")]})
        return {"state": params["state"]}
    raise NotFound(_NOT_FOUND)


_MIXED_PROJECTS = _l("Reassigning needs all selected clients to be in the same project. Narrow the selection to "
                     "one project and try again.")


def _one_project(projects):
    if len(projects) > 1:
        raise ValidationFailed({"reassign": [_MIXED_PROJECTS]})
    return projects[0] if projects else None


def check_same_project(user, client_ids):
    """CL-LIST-8: reassigning is refused unless every selected (visible) client is in one project."""
    return _one_project(db.session.scalars(
        select(Client.project_id).where(Client.id.in_(list(client_ids)), org.client_scope_clause(Client, user))
        .distinct().limit(2)).all())


def matching_project(user, args):
    """The one project of the clients an "all matching" selection covers (None when it is empty)."""
    q = matching_ids_query(user, args).order_by(None).with_entities(Client.project_id).distinct().limit(2)
    return _one_project([project_id for (project_id,) in q])


def _planned_change(client, operation, params):
    """What applying the operation would write to this client, or None when nothing would change."""
    if operation == "change_state":
        return None if client.state == params["state"] else params["state"]
    if operation == "retag":
        current = [t.name for t in client.tags]
        lowered = {n.lower() for n in params["tags"]}
        if params["mode"] == "add":
            wanted = current + [n for n in params["tags"] if n.lower() not in {c.lower() for c in current}]
        elif params["mode"] == "remove":
            wanted = [n for n in current if n.lower() not in lowered]
        else:
            wanted = list(params["tags"])
        if [n.lower() for n in wanted] == [n.lower() for n in current]:
            return None
        return {"tags": wanted}
    data = {}
    for key, value in params.items():
        current = getattr(client, key)
        if key == "country":
            value = value.upper() or None
        if (value or None) != (current or None):
            data[key] = value
    if operation == "reassign" and "desk_id" in data and "manager_id" not in params and client.manager_id:
        # A manager who can't work on the new desk would be refused: keep them only when eligible.
        if not org.is_eligible_manager(client.manager_id, client.project_id, data["desk_id"]):
            data["manager_id"] = None
    return data or None


def _apply_change(client, operation, change, actor):
    """Write a planned change through the client services (validation, processed rule, commit)."""
    if operation == "change_state":
        services.change_state(client, change, actor)
    else:
        services.update_client(client, change, actor)


class _Progress:
    """The job's counters kept in Python, so a rollback of one client never loses the others' counts."""

    FIELDS = ("processed_count", "changed_count", "out_of_scope_count", "failed_count")

    def __init__(self, job):
        self.counts = {name: getattr(job, name) or 0 for name in self.FIELDS}
        self.errors = json.loads(job.errors) if job.errors else []

    def add(self, **deltas):
        for name, delta in deltas.items():
            self.counts[name] += delta

    def store(self, job):
        for name, value in self.counts.items():
            setattr(job, name, value)
        job.errors = json.dumps(self.errors) if self.errors else None


BULK_BATCH = 200
MAX_REPORTED_ERRORS = 20
BULK_FINAL_STATES = ("done", "failed")


def run_bulk(job, actor):
    """Apply a bulk job to its clients, one client per transaction, recording progress on the job row.

    Safe to run again on the same job (RQ delivers at least once): the counters are written in the
    same commit as each client's change, so `processed_count` always says how many selected clients
    are finished, and a second delivery resumes after them instead of applying anything twice.
    """
    if job.status in BULK_FINAL_STATES:
        return job
    params = job.params or {}
    ids = list(job.client_ids or [])
    job.status = "running"
    job.total = len(ids)
    db.session.commit()
    progress = _Progress(job)
    for start in range(progress.counts["processed_count"], len(ids), BULK_BATCH):
        chunk = ids[start:start + BULK_BATCH]
        visible = {c.id: c for c in db.session.scalars(
            select(Client).where(Client.id.in_(chunk), org.client_scope_clause(Client, actor)))}
        for cid in chunk:
            client = visible.get(cid)
            if client is None:
                progress.add(processed_count=1, out_of_scope_count=1)
                continue
            change = _planned_change(client, job.operation, params)
            if change is None:
                progress.add(processed_count=1)
                continue
            progress.add(processed_count=1, changed_count=1)
            progress.store(job)  # committed together with the client's change
            try:
                _apply_change(client, job.operation, change, actor)
            except (ValidationFailed, NotFound) as exc:
                db.session.rollback()
                progress.add(changed_count=-1, failed_count=1)
                message = "; ".join(str(m) for ms in getattr(exc, "field_errors", {}).values() for m in ms)
                if len(progress.errors) < MAX_REPORTED_ERRORS:
                    progress.errors.append(f"{client.uid}: {message or exc.message}")
                progress.store(job)
                db.session.commit()
        progress.store(job)
        db.session.commit()
    job.status = "done"
    job.finished_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    db.session.commit()
    return job


def start_bulk(actor, operation, params, client_ids):
    """Check permission and parameters, record a job row, and run it: inline for up to one list
    page of clients, as a background job (RQ when REDIS_URL is set) for more."""
    permission = BULK_OPERATIONS.get(operation)
    if permission is None:
        raise NotFound(_NOT_FOUND)
    if not user_can(actor, permission):
        raise NotFound(_NOT_FOUND)
    clean = check_bulk_params(operation, params)
    ids = []
    seen = set()
    for raw in client_ids:
        try:
            cid = int(raw)
        except (TypeError, ValueError):
            continue
        if cid not in seen:
            seen.add(cid)
            ids.append(cid)
    if not ids:
        raise ValidationFailed({"selection": [_l("Select at least one client.")]})
    ids = ids[:MAX_BULK_IDS]
    if operation == "reassign":
        project_id = check_same_project(actor, ids)
        _check_reassign_targets(actor, project_id, clean)
    job = ClientBulkJob(user_id=actor.id, operation=operation, params=clean, client_ids=ids, status="queued",
                        total=len(ids), processed_count=0, changed_count=0, out_of_scope_count=0, failed_count=0)
    db.session.add(job)
    db.session.commit()
    job_id = job.id
    from . import jobs  # the job module imports this one
    jobs.start_bulk_job(job_id, len(ids))
    return db.session.get(ClientBulkJob, job_id, populate_existing=True)


def reassign_options(actor, project_id):
    """Desks and eligible managers the Reassign dialog may offer for clients of `project_id`.

    The same rules `_check_reassign_targets` enforces (desk in the project and the scope,
    organisation.services manager eligibility), so the dialog never offers what would be refused.
    """
    from ..organisation.models import Desk, Project
    scope = org.scope_for(actor)
    project = db.session.get(Project, project_id) if project_id is not None else None
    if project is None or not (scope.all_projects or project.id in (scope.project_ids or ())):
        raise NotFound(_NOT_FOUND)

    def people(desk_id=None):
        return [{"id": u.id, "name": f"{u.first_name} {u.last_name}".strip()}
                for u in db.session.scalars(org.eligible_managers_query(project.id, desk_id))]

    desks = [d for d in db.session.scalars(select(Desk).where(Desk.project_id == project.id, Desk.active.is_(True))
                                           .order_by(Desk.name))
             if scope.allows(project.id, d.id)]
    return {"project": {"id": project.id, "name": project.name},
            "desks": [{"id": d.id, "name": str(d)} for d in desks],
            "managers": people(),
            "desk_managers": {str(d.id): [p["id"] for p in people(d.id)] for d in desks}}


def selection_project(actor, client_ids):
    """The one project of the visible selected clients (None when none is visible)."""
    ids = []
    for raw in client_ids:
        try:
            ids.append(int(raw))
        except (TypeError, ValueError):
            continue
    return check_same_project(actor, ids) if ids else None


def _check_reassign_targets(actor, project_id, clean):
    """Desk in the clients' project, manager eligible there, status existing: refuse before any change."""
    from ..organisation.models import Desk
    from .models import ClientStatus
    if project_id is None:
        return
    errors = {}
    desk_id = clean.get("desk_id")
    if desk_id is not None:
        desk = db.session.get(Desk, desk_id)
        if desk is None or desk.project_id != project_id or not org.scope_for(actor).allows(project_id, desk_id):
            errors["desk_id"] = [_l("The desk does not belong to the selected project.")]
    manager_id = clean.get("manager_id")
    if manager_id is not None and not org.is_eligible_manager(manager_id, project_id, desk_id):
        errors["manager_id"] = [_l("This manager cannot be assigned to clients of this project and desk.")]
    status_id = clean.get("status_id")
    if status_id is not None and db.session.get(ClientStatus, status_id) is None:
        errors["status_id"] = [_l("Choose a valid value.")]
    if errors:
        raise ValidationFailed(errors)


def run_bulk_by_id(job_id):
    """Load a bulk job and its initiating user and run it with that user's scope and audit attribution."""
    from flask import current_app

    from ..core import actor as actor_ctx
    job = db.session.get(ClientBulkJob, job_id)
    if job is None or job.status in BULK_FINAL_STATES:
        return job
    actor = current_app.appbuilder.sm.get_user_by_id(job.user_id)
    if actor is None:
        job.status = "failed"
        job.finished_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        db.session.commit()
        return job
    with actor_ctx.acting_as(actor.id, job_id=f"bulk-{job.id}"):
        return run_bulk(job, actor)


def fail_bulk_job(job_id):
    """Mark an unfinished bulk job failed (no retry is left); clients changed so far keep their change."""
    from sqlalchemy import update
    db.session.execute(update(ClientBulkJob).where(ClientBulkJob.id == int(job_id),
                                                   ClientBulkJob.status.in_(("queued", "running")))
                       .values(status="failed", finished_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
    db.session.commit()


def get_bulk_job(user, job_id):
    job = db.session.get(ClientBulkJob, job_id)
    if job is None or job.user_id != user.id:
        raise NotFound(_NOT_FOUND)
    return job


def bulk_job_summary(job):
    return {"id": job.id, "operation": job.operation, "status": job.status, "total": job.total,
            "processed": job.processed_count, "changed": job.changed_count,
            "out_of_scope": job.out_of_scope_count, "failed": job.failed_count,
            "errors": json.loads(job.errors) if job.errors else []}
