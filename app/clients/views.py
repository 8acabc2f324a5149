"""Client screens: the list (CL-LIST-1..3), the card (General and Logs tabs) and the forms.

Declarative FAB adapters; every write goes through clients.services.
"""

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import expose
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.security.decorators import has_access
from flask_appbuilder.widgets import FormWidget, ListWidget
from flask_babel import get_locale, gettext, lazy_gettext as _l
from sqlalchemy import or_, select

from ..core import audit
from ..core.errors import DomainError, NotFound
from ..core.filters import ClientDeskInterface, ScopeFilter
from ..core.permissions import user_can
from ..core.validators import country_name, generate_password
from ..core.views import ScopedModelView, ServiceFormMixin
from ..extensions import db
from ..organisation import services as org
from . import forms
from . import services
from .models import Client
from .permissions import CLIENT_PERMISSIONS


class ClientSearchBoxFilter(BaseFilter):
    """The list's search box (CL-LIST-3): literal, case-insensitive, only on the list page."""

    name = _l("Search")
    arg_name = None

    def apply(self, query, value):
        if not (request and request.endpoint and request.endpoint.endswith(".list")):
            return query
        clause = services.literal_search_clause(request.args.get("q", ""))
        return query.filter(clause) if clause is not None else query


class ClientFormWidget(FormWidget):
    template = "clients/form_widget.html"


class ClientListWidget(ListWidget):
    """FAB's list with the e-mail opening the card and localized status/desk cells."""

    template = "clients/list_widget.html"


class ClientListInterface(ClientDeskInterface):
    """Hands the row objects to the list template too (localized labels need the related rows)."""

    def get_values(self, lst, list_columns):
        rows = list(super().get_values(lst, list_columns))
        for row, obj in zip(rows, lst, strict=True):
            row["_obj"] = obj
        return rows


class ClientModelView(ServiceFormMixin, ScopedModelView):
    datamodel = ClientListInterface(Client)
    class_permission_name = "Clients"
    route_base = "/clients"
    # Clients are never hard-deleted from the UI (CL-REC-10): no delete permission or route.
    base_permissions = CLIENT_PERMISSIONS
    exclude_route_methods = {"delete", "download"}
    method_permission_name = {
        "change_project": "change_project", "change_state_view": "change_state", "set_outcome_view": "edit",
        "two_factor": "manage_2fa", "generate_password_view": "add", "logs": "view_logs",
        "set_rating_view": "edit",
    }
    base_filters = [["id", ScopeFilter, None], ["id", ClientSearchBoxFilter, None]]
    base_order = ("created_at", "desc")

    list_title = _l("Clients")
    show_title = _l("Client")
    add_title = _l("Add client")
    edit_title = _l("Edit client")
    list_columns = ["email", "id", "uid", "full_name", "phone", "client_type", "country", "comments",
                    "desk.name", "status.order"]
    order_columns = ["email", "id", "uid", "full_name", "phone", "client_type", "country", "desk.name",
                     "status.order", "created_at"]
    search_columns = ["email", "uid", "first_name", "last_name", "full_name", "phone", "client_type", "state",
                      "country", "external_id", "created_at"]
    show_columns = ["id"]
    add_columns = ["email"]
    edit_columns = ["email"]
    label_columns = {**forms.FIELD_LABELS, "desk.name": _l("Desk"), "status.label": _l("Status"),
                     "status.order": _l("Status")}
    formatters_columns = {
        "client_type": lambda v: forms.CLIENT_TYPE_LABELS.get(v, v),
        "country": lambda v: country_name(v, str(get_locale() or "en")) if v else "",
    }
    list_template = "clients/list.html"
    show_template = "clients/show.html"
    add_template = "clients/form.html"
    edit_template = "clients/form.html"
    list_widget = ClientListWidget
    add_widget = ClientFormWidget
    edit_widget = ClientFormWidget
    page_size = 25

    # -------------------------------------------------------------- forms

    def get_add_form_class(self):
        return forms.build_client_form(g.user, creating=True)

    def get_edit_form_class(self, item):
        return forms.build_client_form(g.user, creating=False, item=item)

    def prefill_edit_form(self, form, item):
        form.tags.data = ", ".join(t.name for t in item.tags)
        for f in getattr(form, "custom_field_defs", []):
            field = getattr(form, f"cf_{f.key}", None)
            if field is not None:
                value = (item.custom_fields or {}).get(f.key)
                if f.field_type == "date" and value:
                    from ..core.validators import parse_date
                    value = parse_date(value)
                field.data = value

    def form_to_data(self, form, item=None):
        return forms.form_to_service_data(form, creating=item is None)

    def service_create(self, data):
        return services.create_client(data, g.user)

    def service_update(self, item, data):
        return services.update_client(item, data, g.user)

    def _get_add_widget(self, form, exclude_cols=None, widgets=None):
        return self._client_form_widgets(form, None)

    def _get_edit_widget(self, form, exclude_cols=None, widgets=None):
        item = self.datamodel.get(request.view_args.get("pk"), self._base_filters)
        return self._client_form_widgets(form, item)

    def _client_form_widgets(self, form, item):
        widgets = {}
        widgets["edit"] = self.add_widget(
            route_base=self.route_base, form=form, include_cols=[], exclude_cols=[], fieldsets=None,
            panels=forms.PANELS, item=item, managers=forms.manager_options(g.user),
            desks=forms.desk_options(g.user), meta_items=self._meta_items(item),
            meta_errors=g.get("form_extra_errors", {}).get("meta", []),
            custom_fields=getattr(form, "custom_field_defs", []), field_labels=forms.FIELD_LABELS,
            type_labels=forms.CLIENT_TYPE_LABELS,
        )
        return widgets

    @staticmethod
    def _meta_items(item):
        if request.method == "POST":
            return list(zip(request.form.getlist("meta_key"), request.form.getlist("meta_value"), strict=False))
        return list(((item.meta if item is not None else None) or {}).items())

    def post_add_redirect(self):
        item = g.get("created_item")
        if item is not None:  # after creating a client its edit view opens (CL-CARD)
            return redirect(url_for("ClientModelView.edit", pk=item.id))
        return redirect(url_for("ClientModelView.list"))

    def post_edit_redirect(self):
        pk = request.view_args.get("pk")
        return redirect(url_for("ClientModelView.show", pk=pk))

    # -------------------------------------------------------------- the card

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        client = self._client_or_404(pk)
        user = g.user
        tab = request.args.get("tab", "general")
        logs = None
        if tab == "logs":
            if not user_can(user, "can_view_logs"):
                abort(404)
            logs = self._logs_page(client)
        return self.render_template(
            self.show_template, client=client, title=client.header, tab=tab, logs=logs,
            labels=forms.FIELD_LABELS, panels=forms.PANELS, custom_fields=forms.active_custom_fields(),
            labelmaps=_LABEL_MAPS, country_name=lambda c: country_name(c, str(get_locale() or "en")),
            can_edit=user_can(user, "can_edit"), can_change_project=user_can(user, "can_change_project"),
            can_change_state=user_can(user, "can_change_state"), can_view_logs=user_can(user, "can_view_logs"),
            can_manage_2fa=user_can(user, "can_manage_2fa"), can_view_pii=services.can_view_pii(user),
            pii_fields=services.PII_FIELDS, mask=services.MASK,
            projects=db.session.scalars(org.visible_projects_query(user)).all(),
        )

    def _client_or_404(self, pk):
        try:
            return services.get_client(g.user, pk)
        except NotFound:
            abort(404)

    def _logs_page(self, client):
        q = audit.client_log_query(client.id)
        text = (request.args.get("log_q") or "").strip()
        if text:
            q = q.where(or_(audit.AuditLog.field.icontains(text, autoescape=True),
                            audit.AuditLog.old_value.icontains(text, autoescape=True),
                            audit.AuditLog.new_value.icontains(text, autoescape=True),
                            audit.AuditLog.entity.icontains(text, autoescape=True)))
        from ..core.validators import parse_date
        import datetime as dt
        for arg, op in (("log_from", "ge"), ("log_to", "le")):
            try:
                day = parse_date(request.args.get(arg))
            except ValueError:
                day = None
            if day:
                if op == "ge":
                    q = q.where(audit.AuditLog.created_at >= dt.datetime.combine(day, dt.time.min))
                else:
                    q = q.where(audit.AuditLog.created_at < dt.datetime.combine(day + dt.timedelta(days=1),
                                                                               dt.time.min))
        user_arg = request.args.get("log_user")
        if user_arg and user_arg.isdigit():
            q = q.where(audit.AuditLog.user_id == int(user_arg))
        page = max(int(request.args.get("log_page", "0")) if request.args.get("log_page", "0").isdigit() else 0, 0)
        rows = db.session.scalars(q.offset(page * 50).limit(51)).all()
        more = len(rows) > 50
        from flask_appbuilder.security.sqla.models import User
        user_ids = {r.user_id for r in rows if r.user_id}
        names = {u.id: f"{u.first_name} {u.last_name}" for u in
                 db.session.scalars(select(User).where(User.id.in_(user_ids)))} if user_ids else {}
        actors = db.session.execute(
            select(User.id, User.first_name, User.last_name).where(User.id.in_(
                select(audit.AuditLog.user_id).where(audit.AuditLog.client_id == client.id).distinct()))).all()
        rows = rows[:50]
        shown = _log_display_values(rows)
        if not services.can_view_pii(g.user):
            for r in rows:
                if r.field in services.PII_FIELDS:
                    shown[(r.field, r.old_value)] = services.MASK if r.old_value else None
                    shown[(r.field, r.new_value)] = services.MASK if r.new_value else None
        return {"rows": [(r, shown.get((r.field, r.old_value), r.old_value), shown.get((r.field, r.new_value),
                                                                                       r.new_value)) for r in rows],
                "more": len(rows) == 50 and more, "page": page, "names": names,
                "actors": [(a.id, f"{a.first_name} {a.last_name}") for a in actors]}

    # -------------------------------------------------------------- row/card actions

    def _handle(self, fn, pk, success):
        client = self._client_or_404(pk)
        try:
            fn(client)
        except NotFound:
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            messages = [str(m) for ms in exc.field_errors.values() for m in ms] or [str(exc.message)]
            for m in messages:
                flash(m, "danger")
        else:
            flash(str(success), "success")
        return redirect(request.form.get("next_tab") and url_for("ClientModelView.show", pk=client.id,
                                                                   tab=request.form["next_tab"])
                        or url_for("ClientModelView.show", pk=client.id))

    @expose("/<int:pk>/change-project", methods=["POST"])
    @has_access
    def change_project(self, pk):
        return self._handle(lambda c: services.change_project(c, request.form.get("project_id"), g.user), pk,
                            _l("The client was moved to the other project."))

    @expose("/<int:pk>/state", methods=["POST"])
    @has_access
    def change_state_view(self, pk):
        return self._handle(lambda c: services.change_state(c, request.form.get("state"), g.user), pk,
                            _l("The client's state was changed."))

    @expose("/<int:pk>/outcome", methods=["POST"])
    @has_access
    def set_outcome_view(self, pk):
        return self._handle(lambda c: services.set_outcome(c, request.form.get("outcome"), g.user), pk,
                            _l("The outcome was saved."))

    @expose("/<int:pk>/rating", methods=["POST"])
    @has_access
    def set_rating_view(self, pk):
        return self._handle(lambda c: services.update_client(c, {"rating": request.form.get("rating")}, g.user),
                            pk, _l("The rating was saved."))

    @expose("/<int:pk>/two-factor/<int:method_id>", methods=["POST"])
    @has_access
    def two_factor(self, pk, method_id):
        op = request.form.get("op")
        if op == "default":
            fn, message = (lambda c: services.make_default_2fa(c, method_id, g.user)), _l("Default method changed.")
        elif op == "delete":
            fn, message = (lambda c: services.delete_2fa(c, method_id, g.user)), _l("Method deleted.")
        elif op == "phone":
            fn, message = (lambda c: services.update_2fa_phone(c, method_id, request.form.get("phone"), g.user),
                           _l("Phone updated."))
        else:
            abort(400)
        return self._handle(fn, pk, message)

    @expose("/generate-password", methods=["GET"])
    @has_access
    def generate_password_view(self):
        from flask import jsonify
        response = jsonify(password=generate_password())
        response.headers["Cache-Control"] = "no-store"
        return response

    @expose("/list/")
    @has_access
    def list(self):
        self.update_redirect()
        widgets = self._list()
        return self.render_template(self.list_template, title=self.list_title, widgets=widgets,
                                    search_text=request.args.get("q", ""))


def _log_display_values(rows):
    """Readable old/new values for the Logs tab: names for references, labels for codes."""
    from flask_appbuilder.security.sqla.models import User

    from ..organisation.models import Desk, Project
    from .models import ClientStatus, ContactOrigin, FeeGroup, FunnelStage
    refs = {"project_id": (Project, lambda o: o.name), "desk_id": (Desk, lambda o: o.label or o.name),
            "manager_id": (User, lambda o: f"{o.first_name} {o.last_name}"),
            "created_by_id": (User, lambda o: f"{o.first_name} {o.last_name}"),
            "status_id": (ClientStatus, str), "fee_group_id": (FeeGroup, str),
            "contact_origin_id": (ContactOrigin, str), "funnel_stage_id": (FunnelStage, str)}
    wanted = {}
    for r in rows:
        if r.field in refs:
            for value in (r.old_value, r.new_value):
                if value and value.isdigit():
                    wanted.setdefault(r.field, set()).add(int(value))
    shown = {}
    for field, ids in wanted.items():
        model, label = refs[field]
        for obj in db.session.scalars(select(model).where(model.id.in_(ids))):
            shown[(field, str(obj.id))] = label(obj)
    yes_no = {"true": gettext("Yes"), "false": gettext("No")}
    for r in rows:
        for value in (r.old_value, r.new_value):
            if r.field in _LABEL_MAPS and value in _LABEL_MAPS[r.field]:
                shown[(r.field, value)] = str(_LABEL_MAPS[r.field][value])
            elif value in yes_no:
                shown[(r.field, value)] = yes_no[value]
    return shown


_LABEL_MAPS = {
    "client_type": forms.CLIENT_TYPE_LABELS, "gender": forms.GENDER_LABELS, "risk_level": forms.RISK_LABELS,
    "verification_level": forms.VERIFICATION_LEVEL_LABELS,
    "verification_status": forms.VERIFICATION_STATUS_LABELS, "state": forms.STATE_LABELS,
    "outcome": forms.OUTCOME_LABELS,
}
