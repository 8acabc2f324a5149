"""Client screens: the list (CL-LIST-1..3), the card (General and Logs tabs) and the forms.

Declarative FAB adapters; every write goes through clients.services.
"""

from urllib.parse import urlencode, urlsplit

from flask import abort, flash, g, jsonify, redirect, request, session, url_for
from flask_appbuilder import expose
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.security.decorators import has_access
from flask_appbuilder.urltools import get_order_args, get_page_args, get_page_size_args
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
from . import filters as list_filters
from . import forms
from . import filter_panel, list_rows, list_services
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
        "list_total": "list", "list_choices": "list", "save_columns": "list", "create_view": "list",
        "change_view": "list",
        "open_view": "list", "favourite": "list", "clear_favourites": "list", "bulk_job": "list",
        "bulk_reassign": "reassign", "bulk_reassign_options": "reassign", "bulk_edit": "bulk_edit",
        "bulk_retag": "bulk_edit",
        "bulk_state": "change_state",
    }
    base_filters = [["id", ScopeFilter, None], ["id", ClientSearchBoxFilter, None]]
    base_order = ("created_at", "desc")

    list_title = _l("Clients")
    show_title = _l("Client")
    add_title = _l("Add client")
    edit_title = _l("Edit client")
    list_columns = ["email", "id", "uid", "full_name", "phone", "client_type", "country", "comments",
                    "desk.name", "status.order"]
    order_columns = list(dict.fromkeys(list_services.ORDER_COLUMNS))
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
    page_size = list_services.LIST_PAGE_SIZE

    def allows_order(self, order_column):
        """Whether the list may sort by `order_column` (setup._validate_list_args refuses others):
        FAB's order columns plus tags and the sortable custom fields, which change at run time."""
        return order_column in self.order_columns or order_column in {
            order for _, _, order in list_services.available_columns() if order}

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
        response = jsonify(password=generate_password())
        response.headers["Cache-Control"] = "no-store"
        return response

    # -------------------------------------------------------------- the list (CL-LIST-1..8)

    @expose("/list/")
    @has_access
    def list(self):
        user = g.user
        args = request.args
        # once: the default view, the views menu and the columns
        saved_views, columns = list_services.list_settings(user)
        if not args:
            view = next((v for v in saved_views if v.is_default), None)
            if view is not None:
                return redirect(url_for("ClientModelView.open_view", pk=view.id))
        # ?view= names one of the user's own views (list_settings read only theirs); anything else is ignored
        saved_view = next((v for v in saved_views if str(v.id) == args.get("view")), None)
        if saved_view is not None and saved_view.columns:
            columns = list_services.clean_columns(saved_view.columns)
        custom = list_services.custom_field_columns()
        active = list_filters.parse_filters(args, custom.values())
        tab = list_filters.client_type_tab(args)
        filters = list_filters.build_filters(self.datamodel, active, tab)
        order_column, order_direction = get_order_args().get(self.__class__.__name__, ("", ""))
        if not order_column:
            order_column, order_direction = self.base_order
        page = max(get_page_args().get(self.__class__.__name__, 0), 0)
        page_size = get_page_size_args().get(self.__class__.__name__, self.page_size)
        if page_size > max(PAGE_SIZES):
            abort(400)  # no unbounded pages (fab5-notes §2)
        page_size = page_size if page_size in PAGE_SIZES else self.page_size
        rows, more = self._page_rows(filters, order_column, order_direction, page, page_size, columns)
        self.update_redirect()
        locale = str(get_locale() or "en")
        favourites = list_services.favourites(user)
        # The panel's favourites are every favourite in scope, and every row on the page is in scope.
        favourite_ids = {f.id for f in favourites}
        url_with = _url_builder(args)
        all_columns = list_services.available_columns(custom)
        column_defs = {key: (label, order) for key, label, order in all_columns}
        widget = self.list_widget(
            rows=rows, columns=[c for c in columns if c in column_defs], column_defs=column_defs,
            custom=custom, order_column=order_column, order_direction=order_direction, url_with=url_with,
            favourite_ids=favourite_ids, can_edit=user_can(user, "can_edit"),
            can_add_action=user_can(user, "can_create_action"),
            can_change_project=user_can(user, "can_change_project"), page=page, page_size=page_size,
            count=page * page_size + len(rows) + (1 if more else 0), more=more,
            modelview_name=self.__class__.__name__, formatters=_CELL_FORMATTERS, country_name=_country,
            render_rows=list_rows.render_rows,
            statuses=list_services.statuses_by_id() if "status" in columns else {},
        )
        choices = {}  # each choice list once per page (the chips and the filter bar share them)

        def choice(source):
            if source not in choices:
                choices[source] = list_services.filter_choices(user, source, locale)
            return choices[source]
        chips = [{"label": list_services.chip_label(a), "value": list_services.chip_text(a, user, locale, choice),
                  "remove_url": url_with(_remove=a.params, clear="1")} for a in active]
        # Choice filters carry just their selected options; the rest arrive from list_choices when
        # the filter bar opens (hundreds of countries, desks and managers per page otherwise).
        panel_specs = []
        for spec in list_filters.FILTERS:
            options = []
            if spec.choices and args.getlist(spec.key):
                selected = set(args.getlist(spec.key))
                options = [(v, label) for v, label in choice(spec.choices) if v in selected]
            panel_specs.append((spec, options))
        bulk = {op: user_can(user, perm) for op, perm in list_services.BULK_OPERATIONS.items()}
        can_add = user_can(user, "can_add")
        export_url = export_all_url = None
        if user_can(user, "can_export"):
            # the list's own arguments (filters, tab, search) plus its visible columns, in order
            export_args = [(k, v) for k, values in list_services.stored_filter_args(args).items() for v in values]
            if args.get("q"):
                export_args.append(("q", args.get("q")))
            # the other column template: every importable field (the import's own file layout)
            export_all_url = url_for("ClientExportView.export") + "?" + urlencode(export_args + [("fmt", "csv")])
            export_args += [("list_columns", c) for c in columns]
            export_url = url_for("ClientExportView.export") + "?" + urlencode(export_args)
        drop_url = url_with(_remove=_filter_param_names(args), clear="1")
        return self.render_template(
            self.list_template, title=self.list_title, widgets={"list": widget}, search_text=args.get("q", ""),
            chips=chips, chips_shown=CHIPS_SHOWN, can_add=can_add, tab=tab, url_with=url_with, args=args,
            drop_url=drop_url,
            filter_panel=filter_panel.render_filter_panel(
                panel_specs, custom, args, len(chips), list_filters.DATE_PRESETS,
                list_filters.TEXT_OPERATOR_LABELS, drop_url),
            page=page, page_size=page_size,
            page_sizes=PAGE_SIZES, more=more, rows_on_page=len(rows), saved_views=saved_views,
            saved_view=saved_view, columns=columns, available_columns=all_columns,
            column_labels={key: label for key, (label, _order) in column_defs.items()},
            locked_columns=list_services.LOCKED_COLUMNS, favourites=favourites,
            bulk=bulk, view_query=urlencode(list(list_services.stored_filter_args(args).items()), doseq=True),
            bulk_jobs=_tracked_bulk_jobs(user), export_url=export_url, export_all_url=export_all_url,
            states=forms.STATE_LABELS, choices_url=url_for("ClientModelView.list_choices"),
        )

    # Up to this OFFSET a page is one statement; deeper pages find their ids first (below).
    SHALLOW_OFFSET = 1000

    def _page_rows(self, filters, order_column, order_direction, page, page_size, columns=()):
        """One page of rows with LIMIT page_size+1 and no COUNT (fab5-notes §6): the exact total
        comes from list_total, which the page loads asynchronously."""
        from sqlalchemy.orm import lazyload
        joined = filters.get_joined_filters(self._base_filters)

        def filtered_and_sorted(q):
            special = list_services.order_by_special(order_column, order_direction)  # tags, custom fields
            if special is not None:
                return self.datamodel.apply_all(q, joined).order_by(*special)
            return self.datamodel.apply_all(q, joined, order_column, order_direction)

        # Plain rows of just the columns the visible columns show, with the names of the related desk,
        # project and manager joined when shown (list_rows.page_rows turns them into row objects).
        wanted, joins = list_rows.row_select(columns)

        def with_rows(q):
            q = q.with_entities(*wanted)
            for target, on in joins:
                q = q.outerjoin(target, on)
            return q
        offset = page * page_size
        if offset <= self.SHALLOW_OFFSET:
            records = with_rows(filtered_and_sorted(db.session.query(Client).options(lazyload("*")))).offset(
                offset).limit(page_size + 1).all()
            more, records = len(records) > page_size, records[:page_size]
        else:
            # Deferred join: the page's ids first (filters, sort and OFFSET walk an index, without the
            # joins and wide rows of every skipped client), then the rows of just those ids.
            ids = [cid for (cid,) in filtered_and_sorted(db.session.query(Client).options(lazyload("*")))
                   .with_entities(Client.id).offset(offset).limit(page_size + 1)]
            more, ids = len(ids) > page_size, ids[:page_size]
            position = {cid: n for n, cid in enumerate(ids)}
            records = sorted(with_rows(db.session.query(Client)).filter(Client.id.in_(ids)).all(),
                             key=lambda r: position[r.id]) if ids else []
        return list_rows.page_rows(records, columns), more

    @expose("/list/total")
    @has_access
    def list_total(self):
        """The exact Total for the list's filters and search, per tab (same scope as the page)."""
        counts = list_services.count_by_type(g.user, request.args)
        tab = list_filters.client_type_tab(request.args)
        total = counts[tab] if tab else sum(counts.values())
        return jsonify(total=total, counts={**counts, "all": sum(counts.values())})

    @expose("/list/choices")
    @has_access
    def list_choices(self):
        """The option lists of the filter bar and the bulk forms, loaded when first needed (the
        page itself carries only the selected ones): {source: [[value, label], …]}, scoped."""
        locale = str(get_locale() or "en")
        wanted = [s for s in (request.args.get("sources") or "").split(",") if s in list_filters.CHOICE_SOURCES]
        response = jsonify({source: list_services.filter_choices(g.user, source, locale) for source in wanted})
        response.headers["Cache-Control"] = "private, no-store"
        return response

    # -------------------------------------------------------------- columns and saved views

    @expose("/columns", methods=["POST"])
    @has_access
    def save_columns(self):
        if request.form.get("op") == "reset":
            list_services.reset_column_layout(g.user)
            flash(gettext("Columns reset to the defaults."), "success")
        else:
            list_services.set_column_layout(g.user, request.form.getlist("column"))
            flash(gettext("Columns saved."), "success")
        return redirect(_back_to_list())

    @expose("/views", methods=["POST"])
    @has_access
    def create_view(self):
        query = _parse_query(request.form.get("query", ""))
        columns = request.form.getlist("column") or list_services.column_layout(g.user)
        try:
            view = list_services.create_view(g.user, request.form.get("name"), query, columns,
                                             is_default=bool(request.form.get("is_default")))
        except DomainError as exc:
            db.session.rollback()
            _flash_domain_error(exc)
            return redirect(_back_to_list())
        flash(gettext("View “%(name)s” saved.", name=view.name), "success")
        return redirect(url_for("ClientModelView.open_view", pk=view.id))

    @expose("/views/<int:pk>", methods=["POST"])
    @has_access
    def change_view(self, pk):
        view_id = pk
        op = request.form.get("op")
        try:
            if op == "delete":
                list_services.delete_view(g.user, view_id)
                flash(gettext("View deleted."), "success")
                return redirect(url_for("ClientModelView.list", clear="1"))
            if op == "rename":
                list_services.update_view(g.user, view_id, name=request.form.get("name"))
            elif op == "update":
                list_services.update_view(g.user, view_id, args=_parse_query(request.form.get("query", "")),
                                          columns=request.form.getlist("column") or None)
            elif op == "default":
                list_services.update_view(g.user, view_id, is_default=True)
            elif op == "undefault":
                list_services.update_view(g.user, view_id, is_default=False)
            else:
                abort(400)
        except NotFound:
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            _flash_domain_error(exc)
            return redirect(_back_to_list())
        flash(gettext("View saved."), "success")
        return redirect(url_for("ClientModelView.open_view", pk=view_id))

    @expose("/views/<int:pk>/open")
    @has_access
    def open_view(self, pk):
        try:
            view = list_services.get_view(g.user, pk)
        except NotFound:
            abort(404)
        params = dict(list_services.stored_filter_args(_multi_dict(view.filters or {})))
        return redirect(url_for("ClientModelView.list", view=view.id, **params))

    # -------------------------------------------------------------- favourites (CL-LIST-7)

    @expose("/favourites/<int:pk>", methods=["POST"])
    @has_access
    def favourite(self, pk):
        try:
            if request.form.get("op") == "remove":
                list_services.remove_favourite(g.user, pk)
                state = False
            else:
                state = list_services.toggle_favourite(g.user, pk)
        except NotFound:
            abort(404)
        if request.accept_mimetypes.best == "application/json" or request.headers.get("X-Requested-With"):
            return jsonify(favourite=state, favourites=_favourites_json(g.user))
        return redirect(_back_to_list())

    @expose("/favourites/clear", methods=["POST"])
    @has_access
    def clear_favourites(self):
        list_services.clear_favourites(g.user)
        if request.headers.get("X-Requested-With"):
            return jsonify(favourites=[])
        flash(gettext("Favourites cleared."), "success")
        return redirect(_back_to_list())

    # -------------------------------------------------------------- bulk actions (CL-LIST-8)

    def _bulk(self, operation):
        form = request.form
        if form.get("all_matching") == "1":
            ids = [i for (i,) in list_services.matching_ids_query(g.user, _parse_query(form.get("query", "")))]
        else:
            ids = form.getlist("rowid")
        params = {k: form.get(k) for k in ("desk_id", "manager_id", "status_id", "state", "mode", "tags",
                                             *list_services.BULK_EDIT_FIELDS)}
        params["enabled"] = form.getlist("enabled")
        try:
            job = list_services.start_bulk(g.user, operation, params, ids)
        except NotFound:
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            _flash_domain_error(exc)
            return redirect(_back_to_list())
        _flash_job(job)
        if job.status not in list_services.BULK_FINAL_STATES:
            # The list shows this job's progress until it ends, then its summary (_tracked_bulk_jobs).
            session[_BULK_SESSION_KEY] = [*session.get(_BULK_SESSION_KEY, [])[-(_BULK_TRACKED - 1):], job.id]
        return redirect(_back_to_list())

    @expose("/bulk/reassign/options")
    @has_access
    def bulk_reassign_options(self):
        """Desks and eligible managers for the selection's project (the Reassign dialog's choices).

        The selection is sent as the bulk forms send it: rowid=… or all_matching=1 with query=….
        """
        args = request.args
        try:
            if args.get("all_matching") == "1":
                project_id = list_services.matching_project(g.user, _parse_query(args.get("query", "")))
            else:
                project_id = list_services.selection_project(g.user, args.getlist("rowid")[:500])
            if project_id is None:
                abort(404)
            return jsonify(list_services.reassign_options(g.user, project_id))
        except NotFound:
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            return jsonify(errors=[str(m) for ms in exc.field_errors.values() for m in ms] or [str(exc.message)]), 422

    @expose("/bulk/reassign", methods=["POST"])
    @has_access
    def bulk_reassign(self):
        return self._bulk("reassign")

    @expose("/bulk/edit", methods=["POST"])
    @has_access
    def bulk_edit(self):
        return self._bulk("bulk_edit")

    @expose("/bulk/retag", methods=["POST"])
    @has_access
    def bulk_retag(self):
        return self._bulk("retag")

    @expose("/bulk/state", methods=["POST"])
    @has_access
    def bulk_state(self):
        return self._bulk("change_state")

    @expose("/bulk/jobs/<int:pk>")
    @has_access
    def bulk_job(self, pk):
        try:
            job = list_services.get_bulk_job(g.user, pk)
        except NotFound:
            abort(404)
        return jsonify(list_services.bulk_job_summary(job))


PAGE_SIZES = (25, 50, 100)
_BULK_SESSION_KEY = "cd_bulk_jobs"  # ids of the user's background bulk jobs the list still reports on
_BULK_TRACKED = 5
CHIPS_SHOWN = 4  # more active filters than this fold into "Other filters (N)"
_KEEP_ON_NAVIGATION = ("q", "type", "view", "clear")


def _multi(args):
    """A MultiDict as keyword arguments for url_for (lists keep repeated parameters)."""
    return {k: args.getlist(k) for k in args.keys()}


def _multi_dict(mapping):
    from werkzeug.datastructures import MultiDict
    return MultiDict([(k, v) for k, values in mapping.items() for v in (values if isinstance(values, list)
                                                                         else [values])])


def _parse_query(text):
    from urllib.parse import parse_qsl
    from werkzeug.datastructures import MultiDict
    return MultiDict(parse_qsl(text or "", keep_blank_values=False)[:500])


def _filter_param_names(args):
    names = set(list_filters.filter_params())
    names.update(k for k in args.keys() if k.startswith(list_filters.CUSTOM_PREFIX))
    return names


def _url_builder(args):
    """url_with(**changes): this list URL with parameters changed (None removes) and page reset."""
    base = url_for("ClientModelView.list")  # once: a page builds a few dozen of these links

    # Percent-encode everything: the search text never appears raw in the page's links. Each of the
    # page's own parameters is encoded once; a link encodes only what it changes.
    def encode(key, values):
        return urlencode([(key, v) for v in (values if isinstance(values, list) else [values])])
    encoded = [(k, encode(k, args.getlist(k))) for k in args.keys() if not k.startswith("page_")]
    own = {k for k, _ in encoded}

    def url_with(_remove=(), **changes):
        parts = []
        for key, query in encoded:
            if key in _remove:
                continue
            if key in changes:  # changed in place
                value = changes[key]
                if value is not None:
                    parts.append(encode(key, value))
            else:
                parts.append(query)
        for key, value in changes.items():  # new (or removed and set again): at the end
            if value is not None and (key not in own or key in _remove):
                parts.append(encode(key, value))
        query = "&".join(p for p in parts if p)
        return base + ("?" + query if query else "")
    return url_with


def _back_to_list():
    target = request.form.get("next") or request.referrer or ""
    parts = urlsplit(target)
    if parts.netloc and parts.netloc != request.host:
        return url_for("ClientModelView.list")
    if parts.path.startswith("/clients/list") and not parts.path.startswith("/clients/list/total"):
        return parts.path + ("?" + parts.query if parts.query else "")
    return url_for("ClientModelView.list")


def _flash_domain_error(exc):
    messages = [str(m) for ms in exc.field_errors.values() for m in ms] or [str(exc.message)]
    for m in messages:
        flash(m, "danger")


def _flash_job(job):
    summary = list_services.bulk_job_summary(job)
    if job.status not in list_services.BULK_FINAL_STATES:
        flash(gettext("The change of %(total)s clients runs in the background (job %(id)s).",
                      total=summary["total"], id=summary["id"]), "info")
        return
    if job.status == "failed":
        flash(gettext("The change of %(total)s clients stopped after %(processed)s because of an internal error. "
                      "Clients changed so far keep their changes.", total=summary["total"],
                      processed=summary["processed"]), "danger")
    flash(gettext("%(changed)s of %(total)s selected clients were changed.", changed=summary["changed"],
                  total=summary["total"]), "success")
    if summary["out_of_scope"]:
        flash(gettext("%(n)s selected clients are outside your scope and were not changed.",
                      n=summary["out_of_scope"]), "warning")
    if summary["failed"]:
        flash(gettext("%(n)s clients could not be changed: %(errors)s", n=summary["failed"],
                      errors="; ".join(summary["errors"][:5])), "danger")


def _tracked_bulk_jobs(user):
    """The user's background bulk jobs still running (the list polls them); finished ones are
    reported once, as flash messages, and forgotten."""
    tracked = session.get(_BULK_SESSION_KEY)
    if not tracked:
        return []
    running, keep = [], []
    for job_id in tracked:
        try:
            job = list_services.get_bulk_job(user, job_id)
        except NotFound:
            continue
        if job.status in list_services.BULK_FINAL_STATES:
            _flash_job(job)
        else:
            running.append(job)
            keep.append(job.id)
    session[_BULK_SESSION_KEY] = keep
    return running


def _favourites_json(user):
    return [{"id": c.id, "name": c.full_name, "email": c.email, "status": str(c.status or ""),
             "colour": c.status.colour if c.status else "", "url": url_for("ClientModelView.show", pk=c.id),
             "remove_url": url_for("ClientModelView.favourite", pk=c.id)}
            for c in list_services.favourites(user)]


def _country(code):
    return country_name(code, str(get_locale() or "en")) if code else ""


def _fmt_datetime(value):
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


_CELL_FORMATTERS = {"datetime": _fmt_datetime}


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
