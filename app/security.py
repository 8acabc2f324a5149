"""Thin SecurityManager subclass: staff users get project and desk assignments on their form."""

from flask_appbuilder.fields import QuerySelectMultipleField
from flask_appbuilder.fieldwidgets import Select2ManyWidget
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.sqla.models import PermissionView
from flask_appbuilder.security.views import RoleModelView, UserDBModelView
from flask_babel import lazy_gettext as _l

from .core.errors import DomainError


class StaffUserModelView(UserDBModelView):
    """FAB's user screen plus the projects and desks a staff member works in (CL-ORG-1)."""

    add_columns = UserDBModelView.add_columns + ["projects", "desks"]
    edit_columns = UserDBModelView.edit_columns + ["projects", "desks"]
    show_fieldsets = UserDBModelView.show_fieldsets + [
        (_l("Assignments"), {"fields": ["projects", "desks"], "expanded": True})]
    label_columns = {**UserDBModelView.label_columns, "projects": _l("Projects"), "desks": _l("Desks")}
    description_columns = {**UserDBModelView.description_columns,
                           "desks": _l("A desk narrows the user's view of its project to that desk.")}

    def _check_assignments(self, item):
        from .organisation.services import assign_user
        try:
            assign_user(item, [p.id for p in item.projects], [d.id for d in item.desks])
        except DomainError as exc:
            messages = [str(m) for ms in exc.field_errors.values() for m in ms]
            raise ValueError(" ".join(messages) or str(exc))

    def pre_add(self, item):
        super().pre_add(item)
        self._check_assignments(item)

    def pre_update(self, item):
        super().pre_update(item)
        self._check_assignments(item)


def _all_permission_views():
    from .extensions import db
    return db.session.query(PermissionView).all()


class TranslatedRoleModelView(RoleModelView):
    """FAB's role editor with permissions named in the user's language (CL-ORG-4)."""

    list_columns = ["name", "permissions"]
    show_columns = ["name", "permissions"]
    add_columns = edit_columns = ["name", "permissions"]
    search_columns = ["name"]
    order_columns = ["name"]

    def __init__(self, **kwargs):
        from .core.permission_labels import permission_label
        field = QuerySelectMultipleField(
            _l("Permissions"), query_func=_all_permission_views, get_pk_func=lambda pv: pv.id,
            get_label=permission_label, widget=Select2ManyWidget())
        self.add_form_extra_fields = {"permissions": field}
        self.edit_form_extra_fields = {"permissions": field}
        super().__init__(**kwargs)


class ClientDeskSecurityManager(SecurityManager):
    userdbmodelview = StaffUserModelView
    rolemodelview = TranslatedRoleModelView
