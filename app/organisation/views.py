"""Settings screens for projects and desks (CL-ORG-1)."""

from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _l

from ..core.filters import ClientDeskInterface, ProjectScopeFilter
from ..core.settings_views import SettingsModelView, boolean_fields
from . import services
from .models import Desk, Project


class ProjectModelView(SettingsModelView):
    datamodel = ClientDeskInterface(Project)
    class_permission_name = "Projects"
    list_title = _l("Projects")
    show_title = add_title = edit_title = _l("Project")
    list_columns = ["name", "key", "active", "created_at"]
    show_columns = ["name", "key", "description", "active", "created_at", "desks"]
    add_columns = edit_columns = ["name", "key", "description", "active"]
    add_form_extra_fields = edit_form_extra_fields = boolean_fields(active=_l("Active"))
    search_columns = ["name", "key", "active"]
    order_columns = ["name", "key", "active", "created_at"]
    base_order = ("name", "asc")
    base_filters = [["id", ProjectScopeFilter, None]]
    label_columns = {"name": _l("Name"), "key": _l("Key"), "description": _l("Description"),
                     "active": _l("Active"), "created_at": _l("Created"), "desks": _l("Desks")}
    description_columns = {"key": _l("A short unique code, e.g. ACME-EU."),
                           "active": _l("Deactivate a project instead of deleting it when it has clients.")}

    def service_delete_check(self, item):
        services.ensure_project_deletable(item)


class DeskModelView(SettingsModelView):
    datamodel = ClientDeskInterface(Desk)
    class_permission_name = "Desks"
    list_title = _l("Desks")
    show_title = add_title = edit_title = _l("Desk")
    list_columns = ["name", "label", "project.name", "active"]
    show_columns = ["name", "label", "project", "active"]
    add_columns = edit_columns = ["project", "name", "label", "active"]
    add_form_extra_fields = edit_form_extra_fields = boolean_fields(active=_l("Active"))
    search_columns = ["name", "label", "project", "active"]
    order_columns = ["name", "label", "project.name", "active"]
    base_order = ("name", "asc")
    base_filters = [["project_id", ProjectScopeFilter, None]]
    label_columns = {"name": _l("Name"), "label": _l("Label"), "project": _l("Project"),
                     "project.name": _l("Project"), "active": _l("Active")}

    def service_delete_check(self, item):
        services.ensure_desk_deletable(item)


class StaffPreferenceView(BaseView):
    """My preferences: language and time zone, stored per staff user (CL-SET-2)."""

    route_base = "/preferences"
    class_permission_name = "Preferences"
    method_permission_name = {"edit": "edit"}
    default_view = "edit"

    @expose("/", methods=["GET", "POST"])
    @has_access
    def edit(self):
        from zoneinfo import available_timezones

        from flask import current_app, flash, g, redirect, request, session, url_for
        from flask_babel import gettext

        from ..core.errors import ValidationFailed
        errors = {}
        if request.method == "POST":
            try:
                services.set_staff_timezone(g.user.id, request.form.get("timezone"))
                locale = request.form.get("locale")
                if locale:
                    services.set_staff_locale(g.user.id, locale)
                    session["locale"] = locale
            except ValidationFailed as exc:
                errors = {k: [str(m) for m in v] for k, v in exc.field_errors.items()}
            else:
                flash(gettext("Your preferences were saved."), "success")
                return redirect(url_for("StaffPreferenceView.edit"))
        pref = services.staff_preference(g.user.id)
        return self.render_template(
            "organisation/preferences.html", title=gettext("My preferences"), errors=errors,
            timezones=sorted(available_timezones()), languages=current_app.config.get("LANGUAGES", {}),
            current_tz=(pref.timezone if pref else None) or "UTC",
            current_locale=(pref.locale if pref else None) or session.get("locale") or "en")
