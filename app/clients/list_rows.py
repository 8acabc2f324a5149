"""The body rows of the clients table (CL-LIST-1/2/7/8): what they are built from, and their HTML.

row_select names the columns a page reads (only what the visible columns show) and page_rows turns
the plain records into row objects: no ORM instances, whose loading cost more than the rows' SQL.
render_rows builds the <tr> elements in Python: as a Jinja loop with a chain of column tests per
cell it was a sixth of the page's time at one million clients (bench/list_bench.py). Each column has
its own cell function, looked up once per page, and every value goes through escape(). The header,
the empty state and the page around it stay in list_widget.html.
"""

from types import SimpleNamespace

from flask import url_for
from flask_babel import gettext as _
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import aliased

from ..extensions import db

DATE_COLUMNS = ("created_at", "updated_at", "last_login_at", "last_action_at", "future_action_at",
                "last_duplicate_at")


def _plain(value):
    return "" if value is None else escape(value)


def _cell_functions(key, ctx):
    """A function client -> cell HTML (escaped) for the column `key`."""
    if key == "email":
        show_url = ctx["show_url"]
        return lambda c: f'<a href="{show_url}{c.id}" class="cd-email">{escape(c.email)}</a>'
    if key == "client_type":
        business, personal = escape(_("Business")), escape(_("Personal"))
        return lambda c: business if c.client_type == "business" else personal
    if key == "country":  # each country's name once per page (rows share a few countries)
        country_name, names = ctx["country_name"], {}

        def country(c):
            code = c.country
            if code not in names:
                names[code] = escape(country_name(code))
            return names[code]
        return country
    if key in ("desk", "project"):
        return lambda c: escape(getattr(c, key) or "")
    if key == "status":  # each status's label once per page
        statuses, shown = ctx["statuses"], {}

        def status(c):
            sid = c.status_id
            if sid not in shown:
                found = statuses.get(sid)
                shown[sid] = f'<span class="label" style="background:{escape(found.colour)}">{escape(found)}</span>' \
                    if found is not None else ""
            return shown[sid]
        return status
    if key == "manager":
        return lambda c: f"{escape(c.manager.first_name)} {escape(c.manager.last_name)}" if c.manager else ""
    if key == "state":
        labels = {"active": escape(_("Active")), "deactivated": escape(_("Deactivated")),
                  "suspended": escape(_("Suspended"))}
        return lambda c: labels.get(c.state) or _plain(c.state)
    if key in DATE_COLUMNS:
        fmt = ctx["fmt_datetime"]
        return lambda c: escape(fmt(getattr(c, key)))
    if key == "verification_level":
        labels = {"email": escape(_("Email")), "video": escape(_("Video")), "in_person": escape(_("In-person"))}
        return lambda c: labels.get(c.verification_level) or escape(c.verification_level or "")
    if key == "verification_status":
        labels = {"init": escape(_("Init")), "pending": escape(_("Pending")), "approved": escape(_("Approved")),
                  "rejected": escape(_("Rejected"))}
        return lambda c: labels.get(c.verification_status) or escape(c.verification_status or "")
    if key == "rating":
        return lambda c: "★" * (c.rating or 0)
    if key == "tags":
        return lambda c: "".join(f'<span class="label label-default cd-tag">{escape(t.name)}</span> ' for t in c.tags)
    if key == "processed":
        yes, no = escape(_("Yes")), escape(_("No"))
        return lambda c: yes if c.processed else no
    if key == "actions_exist":
        return lambda c: "✅" if c.actions_exist else "❌"
    if key.startswith("cf_"):
        name = key[3:]

        def custom(c):
            value = (c.custom_fields or {}).get(name)
            if isinstance(value, (list, tuple)):
                return escape(", ".join(str(v) for v in value))
            return _plain(value)
        return custom
    return lambda c: _plain(getattr(c, key))


_ROW_SELECTS = {}
_ROW_SELECTS_MAX = 256


def row_select(columns):
    """([client columns and related names to select], [(related table, ON clause) to outer-join]) for
    the visible `columns`: only what their cells show (list_services.row_attributes). The expressions
    are immutable, so each column list's are built once per process (aliases cost ~0.5 ms a page)."""
    key = tuple(columns)
    found = _ROW_SELECTS.get(key)
    if found is None:
        if len(_ROW_SELECTS) >= _ROW_SELECTS_MAX:
            _ROW_SELECTS.clear()
        found = _ROW_SELECTS[key] = _build_row_select(key)
    return found


def _build_row_select(columns):
    from flask_appbuilder.security.sqla.models import User

    from ..organisation.models import Desk, Project
    from . import list_services
    from .models import Client
    wanted = [getattr(Client, name) for name in list_services.row_attributes(columns)]
    joins = []
    if "desk" in columns:
        desk = aliased(Desk)
        wanted += [desk.name.label("desk__name"), desk.label.label("desk__label")]
        joins.append((desk, desk.id == Client.desk_id))
    if "project" in columns:
        project = aliased(Project)
        wanted.append(project.name.label("project__name"))
        joins.append((project, project.id == Client.project_id))
    if "manager" in columns:
        manager = aliased(User)
        wanted += [manager.first_name.label("manager__first_name"), manager.last_name.label("manager__last_name")]
        joins.append((manager, manager.id == Client.manager_id))
    return wanted, joins


def page_rows(records, columns):
    """Row objects for render_rows from the plain records of row_select: each selected client attribute,
    the related desk, project and manager shown as their models show them, the comments as the client
    model shortens them, the tags (one query for the page) by name."""
    from ..organisation.models import Desk, Project
    from .models import Client, Tag, client_tag
    rows = []
    for record in records:
        row = SimpleNamespace(**record._mapping)
        if "desk" in columns:
            row.desk = Desk.__repr__(SimpleNamespace(name=row.desk__name, label=row.desk__label)) \
                if row.desk_id is not None else None
        if "project" in columns:
            row.project = Project.__repr__(SimpleNamespace(name=row.project__name))
        if "manager" in columns:
            row.manager = SimpleNamespace(first_name=row.manager__first_name, last_name=row.manager__last_name) \
                if row.manager_id is not None else None
        if "comments" in columns:
            row.comments = Client.comments.fget(row)
        rows.append(row)
    if "tags" in columns and rows:
        tags = {row.id: [] for row in rows}
        for client_id, name in db.session.execute(
                select(client_tag.c.client_id, Tag.name).join(Tag, Tag.id == client_tag.c.tag_id)
                .where(client_tag.c.client_id.in_(list(tags))).order_by(Tag.name)):
            tags[client_id].append(SimpleNamespace(name=name))
        for row in rows:
            row.tags = tags[row.id]
    return rows


def render_rows(rows, columns, favourite_ids, can_edit, can_add_action, can_change_project, country_name,
                fmt_datetime, statuses=None):
    """The <tr> elements of the table body, in the order of `rows`; `statuses` ({id: status}) is
    needed when the status column is shown."""
    show_url = url_for("ClientModelView.show", pk=0)[:-1]
    ctx = {"show_url": show_url, "country_name": country_name, "fmt_datetime": fmt_datetime, "statuses": statuses}
    cells = [(escape(key), _cell_functions(key, ctx)) for key in columns]
    t_select, t_fav = escape(_("Select")), escape(_("Favourite"))
    fav_url = url_for("ClientModelView.favourite", pk=0)[:-1]
    actions = None
    if can_edit or can_add_action or can_change_project:
        edit_url = url_for("ClientModelView.edit", pk=0)[:-1]
        action_url = url_for("ClientActionView.new", pk=0)[:-1]
        t_edit, t_add, t_move = escape(_("Edit")), escape(_("Add action")), escape(_("Change project"))

        def actions(cid):
            links = []
            if can_edit:
                links.append(f'<a href="{edit_url}{cid}" class="btn btn-xs btn-default" title="{t_edit}">'
                             '<i class="fa fa-pencil"></i></a>')
            if can_add_action:
                links.append(f' <a href="{action_url}{cid}" class="btn btn-xs btn-default cd-add-action" '
                             f'title="{t_add}"><i class="fa fa-plus-circle"></i></a>')
            if can_change_project:
                links.append(f' <a href="{show_url}{cid}#cd-change-project" class="btn btn-xs btn-default '
                             f'cd-change-project" title="{t_move}"><i class="fa fa-exchange"></i></a>')
            return f'<td class="cd-row-actions">{"".join(links)}</td>'
    out = []
    for c in rows:
        cid = int(c.id)
        fav = cid in favourite_ids
        out.append(
            f'<tr data-id="{cid}">'
            f'<td class="cd-col-select"><input type="checkbox" class="cd-row-check" name="rowid" value="{cid}" '
            f'aria-label="{t_select} {escape(c.email)}"></td>'
            f'<td class="cd-col-fav"><button type="button" class="btn btn-link btn-xs cd-fav-toggle'
            f'{" cd-fav-on" if fav else ""}" data-url="{fav_url}{cid}" aria-pressed="{"true" if fav else "false"}" '
            f'title="{t_fav}"><i class="fa {"fa-bookmark" if fav else "fa-bookmark-o"}"></i></button></td>')
        if actions is not None:
            out.append(actions(cid))
        for key, cell in cells:
            out.append(f'<td data-column="{key}">{cell(c)}</td>')
        out.append("</tr>\n")
    return Markup("".join(out))  # noqa: S704 - every value above went through escape()
