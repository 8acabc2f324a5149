"""Thin SecurityManager subclass: staff users get project and desk assignments on their form."""

from flask import has_request_context
from flask.globals import _cv_app
from flask_appbuilder.fields import QuerySelectMultipleField
from flask_appbuilder.fieldwidgets import Select2ManyWidget
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.sqla.models import PermissionView
from flask_appbuilder.security.views import RoleModelView, UserDBModelView
from flask_babel import lazy_gettext as _l
from flask_login import current_user

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


# {"version": the security version the entries belong to, (role ids…): frozenset of pairs}
_PAIRS_BY_VERSION = {}
_REQUEST_STATE = []


def _request_state_statement():
    """SELECT security version, settings and favourites versions, the user's staff preference (:pk),
    built once."""
    if not _REQUEST_STATE:
        from sqlalchemy import bindparam, select
        from sqlalchemy.orm import aliased

        from .core.security_version import SecurityVersion
        from .core.settings_version import SettingsVersion
        from .organisation.models import StaffPreference
        favourites = aliased(SettingsVersion)
        _REQUEST_STATE.append(
            select(SecurityVersion.value, SettingsVersion.value, favourites.value, StaffPreference)
            .select_from(SecurityVersion).join(SettingsVersion, SettingsVersion.id == 1)
            .join(favourites, favourites.id == 2)
            .outerjoin(StaffPreference, StaffPreference.user_id == bindparam("pk"))
            .where(SecurityVersion.id == 1))
    return _REQUEST_STATE[0]


class ClientDeskSecurityManager(SecurityManager):
    userdbmodelview = StaffUserModelView
    rolemodelview = TranslatedRoleModelView

    def load_user(self, pk):
        """The signed-in user of each request, with what every request reads next, in one statement:
        the staff preference (session epoch and language; staff_preference() then finds it without a
        query), the security version (role_permission_pairs) and the settings and favourites
        versions (core.settings_version).

        The user with roles and groups (FAB loads them lazily, one query each) is kept per process
        under the security version, which the database bumps on every change of a user, a role or a
        group as well as of permissions: a hit merges the kept copy into the request's session
        without SQL (a fresh attached object per request), a miss loads it in a session of its own."""
        from flask import g
        try:
            pk = int(pk)
        except (TypeError, ValueError):
            return None
        row = self.session.execute(_request_state_statement(), {"pk": pk}).first()
        security, settings, favourites, pref = row if row is not None else (None, None, None, None)
        kept = self._kept_user(pk, security)
        if kept is None:
            return None
        user = self.session.merge(kept, load=False)
        from .organisation.services import remember_preference
        remember_preference(user.id, pref)
        if has_request_context():
            if security is not None:
                g._cd_security_version = security
            if settings is not None:
                g._cd_settings_version = settings
            if favourites is not None:
                g._cd_favourites_version = favourites
        return user if user.is_active else None

    def _kept_user(self, pk, version):
        """A detached copy of user `pk` with roles and groups loaded, kept per process under `version`."""
        from flask import current_app
        from flask_appbuilder.security.sqla.models import Group
        from sqlalchemy import select
        from sqlalchemy.orm import Session, joinedload, selectinload
        kept = current_app.extensions.setdefault("clientdesk_users", {})
        if version is not None and kept.get("version") != version:
            kept.clear()  # every kept user is dead once the version moved
            kept["version"] = version
        user = kept.get(pk) if version is not None else None
        if user is None:
            user_model = self.user_model
            with Session(bind=self.session.get_bind(), expire_on_commit=False) as own:
                user = own.scalars(
                    select(user_model).where(user_model.id == pk)
                    .options(joinedload(user_model.roles),
                             joinedload(user_model.groups).options(selectinload(Group.roles)))).unique().first()
            if user is not None and version is not None and kept.get("version") == version:
                kept[pk] = user
        return user

    def has_access(self, permission_name, view_name):
        """FAB's answer, memoised for the request per signed-in user (a page asks 20+ times: menu
        entries, buttons, the route itself). Nothing is kept across requests; a login or logout
        within the request changes the key."""
        app_ctx = _cv_app.get(None)
        if app_ctx is None or not has_request_context():
            return super().has_access(permission_name, view_name)
        user = current_user._get_current_object()
        if not getattr(user, "is_authenticated", False) or app_ctx.g.__dict__.get("_api_key_user"):
            return super().has_access(permission_name, view_name)  # public, JWT and API-key callers
        key = (permission_name, view_name, user.id)
        memo = app_ctx.g.__dict__.setdefault("_cd_has_access", {})
        found = memo.get(key)
        if found is None:
            found = memo[key] = super().has_access(permission_name, view_name)
        return found

    def exist_permission_on_roles(self, view_name, permission_name, role_ids):
        """FAB asks the database once per check (30+ per page for menus and buttons); answer from the
        roles' (view, permission) pairs instead (role_permission_pairs: cached under the security
        version, so a role edit applies on the next request exactly as before)."""
        if not has_request_context():
            return super().exist_permission_on_roles(view_name, permission_name, role_ids)
        return (view_name, permission_name) in self.role_permission_pairs(role_ids)

    def role_permission_pairs(self, role_ids):
        """The (view, permission) pairs the roles grant. Kept per process under the security version
        the request read with its user (the database bumps it on every change of the permission
        tables), else read once per request."""
        from flask import g
        cache = g.setdefault("_cd_role_permissions", {})
        key = tuple(sorted(role_ids))
        pairs = cache.get(key)
        version = g.get("_cd_security_version")
        if pairs is None and version is not None:
            if _PAIRS_BY_VERSION.get("version") != version:
                _PAIRS_BY_VERSION.clear()  # every older entry is dead once the version moved
                _PAIRS_BY_VERSION["version"] = version
            pairs = cache[key] = _PAIRS_BY_VERSION.get(key)
        if pairs is None:
            from flask_appbuilder.security.sqla.models import (Permission, Role, ViewMenu,
                                                               assoc_permissionview_role)
            from sqlalchemy import select
            rows = self.session.execute(
                select(ViewMenu.name, Permission.name)
                .select_from(PermissionView)
                .join(assoc_permissionview_role,
                      assoc_permissionview_role.c.permission_view_id == PermissionView.id)
                .join(Role, Role.id == assoc_permissionview_role.c.role_id)
                .join(Permission, Permission.id == PermissionView.permission_id)
                .join(ViewMenu, ViewMenu.id == PermissionView.view_menu_id)
                .where(Role.id.in_(key)))
            pairs = cache[key] = frozenset(rows)
            if version is not None and _PAIRS_BY_VERSION.get("version") == version:
                _PAIRS_BY_VERSION[key] = pairs
        return pairs
