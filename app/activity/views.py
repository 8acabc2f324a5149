"""Quick add action (CL-LIST-9): the action form with the client prefilled and locked."""

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext, lazy_gettext as _l
from wtforms import SelectField, TextAreaField
from wtforms.validators import Length, Optional

from ..clients import services as client_services
from ..clients.permissions import CLIENT_PERMISSIONS
from ..core.errors import NotFound, ValidationFailed
from ..core.filters import ClientDeskInterface
from ..core.settings_views import SettingsModelView, TranslatedLabelMixin, boolean_fields, translation_fields
from ..extensions import db
from ..organisation import services as org
from . import services
from .models import ActionType


class ClientActionView(BaseView):
    route_base = "/client-actions"
    class_permission_name = "Clients"
    # The view shares the "Clients" resource: declare the whole set so permission sync keeps it.
    base_permissions = CLIENT_PERMISSIONS
    method_permission_name = {"new": "create_action"}
    default_view = "new"

    @expose("/new/<int:pk>", methods=["GET", "POST"])
    @has_access
    def new(self, pk):
        """`pk` is the client's id (so the route-enumeration scope test probes it like every client route)."""
        try:
            client = client_services.get_client(g.user, pk)
        except NotFound:
            abort(404)
        types = services.active_types()
        responsibles = db.session.scalars(org.eligible_managers_query(client.project_id, client.desk_id)).all()
        errors = {}
        values = {"responsible_id": str(g.user.id) if any(u.id == g.user.id for u in responsibles) else ""}
        if request.method == "POST":
            values = request.form.to_dict()
            data = {"type_id": values.get("type_id"), "subtype": values.get("subtype"), "text": values.get("text"),
                    "action_date": values.get("action_date"), "responsible_id": values.get("responsible_id"),
                    "completed": values.get("completed") == "y", "closing_comment": values.get("closing_comment")}
            try:
                services.create_action(client.id, data, g.user)
            except ValidationFailed as exc:
                db.session.rollback()
                errors = {k: [str(m) for m in v] for k, v in exc.field_errors.items()}
                flash(str(exc.message), "danger")
            else:
                flash(gettext("The action was saved."), "success")
                if values.get("next_step") == "new":
                    # Save and create new: client and responsible stay, type, subtype and text are cleared.
                    return redirect(url_for("ClientActionView.new", pk=client.id,
                                            responsible_id=values.get("responsible_id", "")))
                return redirect(request.args.get("back") if _safe_back(request.args.get("back"))
                                else url_for("ClientModelView.show", pk=client.id))
        elif request.args.get("responsible_id"):
            values["responsible_id"] = request.args["responsible_id"]
        return self.render_template("activity/action_form.html", client=client,
                               types=types, responsibles=responsibles, errors=errors, values=values,
                               title=gettext("Add action"))


def _safe_back(url):
    return bool(url) and url.startswith("/") and not url.startswith("//") and "\\" not in url


class ActionTypeModelView(TranslatedLabelMixin, SettingsModelView):
    """Settings → Action types: name, kind, subtypes, completed by default, active (CL-SET-1)."""

    datamodel = ClientDeskInterface(ActionType)
    class_permission_name = "ActionTypes"
    list_title = _l("Action types")
    show_title = add_title = edit_title = _l("Action type")
    list_columns = ["label", "kind", "completed_by_default", "active"]
    show_columns = ["label", "kind", "subtypes", "completed_by_default", "active"]
    add_columns = edit_columns = ["label", "label_es", "label_ru", "kind", "subtypes_text", "completed_by_default",
                                  "active"]
    add_form_extra_fields = edit_form_extra_fields = {
        **translation_fields(),
        **boolean_fields(completed_by_default=_l("Completed by default"), active=_l("Active")),
        "kind": SelectField(_l("Kind"), choices=[("note", _l("Note")), ("call", _l("Call")),
                                                 ("comment", _l("Comment"))]),
        "subtypes_text": TextAreaField(_l("Subtypes"), [Optional(), Length(max=4000)],
                                       description=_l("One subtype per line.")),
    }
    search_columns = ["label", "kind", "active"]
    order_columns = ["label", "kind", "active"]
    base_order = ("label", "asc")
    label_columns = {"label": _l("Name"), "kind": _l("Kind"), "subtypes": _l("Subtypes"),
                     "completed_by_default": _l("Completed by default"), "active": _l("Active")}

    def _store_subtypes(self, item):
        raw = request.form.get("subtypes_text") or ""
        item.subtypes = list(dict.fromkeys(line.strip()[:64] for line in raw.splitlines() if line.strip()))[:100]

    def pre_add(self, item):
        super().pre_add(item)
        self._store_subtypes(item)

    def pre_update(self, item):
        super().pre_update(item)
        self._store_subtypes(item)

    def prefill_form(self, form, pk):
        super().prefill_form(form, pk)
        item = self.datamodel.get(pk)
        if item is not None:
            form.subtypes_text.data = "\n".join(item.subtypes or [])

    def service_delete_check(self, item):
        from sqlalchemy import select

        from ..core.errors import Conflict
        from .models import ClientAction
        if db.session.scalar(select(ClientAction.id).where(ClientAction.type_id == item.id).limit(1)):
            raise Conflict(_l("Actions of this type exist. Deactivate it instead."))
