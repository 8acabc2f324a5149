"""The single scope function (CL-ORG-3), manager eligibility (CL-ORG-2) and org settings rules.

Every door that reaches clients (views, APIs, jobs, exports, the assistant) calls
`client_scope_clause` or `Scope.allows`; nothing else computes visibility.
"""

from dataclasses import dataclass

from flask import current_app, g, has_app_context, has_request_context
from flask_appbuilder.security.sqla.models import User
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, false, or_, select, true

from ..core.errors import Conflict, ValidationFailed
from ..core.permissions import user_can
from ..extensions import db
from .models import Desk, Project, desk_user, project_user

UNDESKED_PERMISSION = "can_see_undesked"


@dataclass(frozen=True)
class Scope:
    """What one user may see: everything, or whole projects plus individual desks."""

    all_projects: bool
    full_projects: frozenset = frozenset()     # every client of these projects
    desks: frozenset = frozenset()             # clients on these desks
    undesked_projects: frozenset = frozenset()  # clients without a desk in these projects

    @property
    def project_ids(self):
        """Projects the user works in (may create clients in / be assigned to)."""
        if self.all_projects:
            return None
        return self.full_projects | self.undesked_projects | frozenset(
            p for p, _ in self._desk_projects)

    _desk_projects: frozenset = frozenset()  # (project_id, desk_id) pairs

    def allows(self, project_id, desk_id):
        """Whether a client with this project/desk lies inside the scope (no DB access)."""
        if self.all_projects:
            return True
        if project_id in self.full_projects:
            return True
        if desk_id is None:
            return project_id in self.undesked_projects
        return desk_id in self.desks and (project_id, desk_id) in self._desk_projects

    def clause(self, model):
        """A SQL boolean for `model` (any table with project_id and desk_id columns)."""
        if self.all_projects:
            return true()
        parts = []
        if self.full_projects:
            parts.append(model.project_id.in_(sorted(self.full_projects)))
        if self.desks:
            parts.append(model.desk_id.in_(sorted(self.desks)))
        if self.undesked_projects:
            parts.append(and_(model.desk_id.is_(None), model.project_id.in_(sorted(self.undesked_projects))))
        return or_(*parts) if parts else false()


NO_SCOPE = Scope(all_projects=False)


def is_admin(user):
    if user is None:
        return False
    admin_role = current_app.config.get("AUTH_ROLE_ADMIN", "Admin")
    return any(role.name == admin_role for role in user.roles)


def compute_scope(user):
    """Read the user's assignments from the database (never cached across requests: R8)."""
    if user is None or not getattr(user, "active", False):
        return NO_SCOPE
    if is_admin(user):
        return Scope(all_projects=True)
    session = db.session
    project_ids = set(session.scalars(select(project_user.c.project_id).where(project_user.c.user_id == user.id)))
    desk_rows = session.execute(
        select(Desk.id, Desk.project_id).join(desk_user, desk_user.c.desk_id == Desk.id)
        .where(desk_user.c.user_id == user.id)).all()
    desk_projects = {p for _, p in desk_rows}
    # A desk assignment narrows its project to those desks; desks of unassigned projects count nothing.
    full = project_ids - desk_projects
    pairs = frozenset((p, d) for d, p in desk_rows if p in project_ids)
    desks = frozenset(d for p, d in pairs)
    narrowed = {p for p, _ in pairs}
    undesked = frozenset(narrowed) if narrowed and user_can(user, UNDESKED_PERMISSION) else frozenset()
    return Scope(all_projects=False, full_projects=frozenset(full), desks=desks,
                 undesked_projects=undesked, _desk_projects=pairs)


def current_user():
    if not has_app_context() or not has_request_context():
        return None
    return current_app.appbuilder.sm.current_user


def scope_for(user):
    """The scope of `user`, memoised for the length of one request."""
    if user is None:
        return NO_SCOPE
    if has_request_context():
        cache = g.setdefault("_clientdesk_scopes", {})
        if user.id not in cache:
            cache[user.id] = compute_scope(user)
        return cache[user.id]
    return compute_scope(user)


def client_scope_clause(model, user):
    """The one query filter for everything client-owned."""
    return scope_for(user).clause(model)


# --- managers (CL-ORG-2) -------------------------------------------------------------------

def eligible_managers_query(project_id, desk_id=None):
    """Active staff assigned to the project (and the desk, when given)."""
    q = (select(User).join(project_user, project_user.c.user_id == User.id)
         .where(project_user.c.project_id == project_id, User.active.is_(True)))
    if desk_id is not None:
        # On a desk: staff of that desk, or project-wide staff (no desk assignment inside this project).
        on_desk = select(desk_user.c.user_id).where(desk_user.c.desk_id == desk_id)
        narrowed = (select(desk_user.c.user_id).join(Desk, Desk.id == desk_user.c.desk_id)
                    .where(Desk.project_id == project_id))
        q = q.where(or_(User.id.in_(on_desk), User.id.not_in(narrowed)))
    return q.order_by(User.first_name, User.last_name, User.id)


def is_eligible_manager(user_id, project_id, desk_id=None):
    q = eligible_managers_query(project_id, desk_id).where(User.id == user_id).limit(1)
    return db.session.scalars(q).first() is not None


# --- organisation settings (CL-ORG-1) ------------------------------------------------------

def check_desk_in_project(desk_id, project_id):
    if desk_id is None:
        return None
    desk = db.session.get(Desk, desk_id)
    if desk is None or desk.project_id != project_id:
        raise ValidationFailed({"desk": [_l("The desk does not belong to the selected project.")]})
    return desk


def ensure_project_deletable(project):
    from ..clients.models import Client
    if db.session.scalar(select(Client.id).where(Client.project_id == project.id).limit(1)) is not None:
        raise Conflict(_l("This project still has clients and cannot be deleted. Deactivate it instead."))
    if db.session.scalar(select(Desk.id).where(Desk.project_id == project.id).limit(1)) is not None:
        raise Conflict(_l("This project still has desks. Delete or move them first, or deactivate the project."))


def ensure_desk_deletable(desk):
    from ..clients.models import Client
    if db.session.scalar(select(Client.id).where(Client.desk_id == desk.id).limit(1)) is not None:
        raise Conflict(_l("This desk still has clients and cannot be deleted. Deactivate it instead."))


def assign_user(user, project_ids=(), desk_ids=()):
    """Replace a staff user's project and desk assignments; desks must lie in assigned projects."""
    projects = db.session.scalars(select(Project).where(Project.id.in_(list(project_ids)))).all()
    desks = db.session.scalars(select(Desk).where(Desk.id.in_(list(desk_ids)))).all()
    allowed = {p.id for p in projects}
    bad = [d for d in desks if d.project_id not in allowed]
    if bad:
        raise ValidationFailed({"desks": [_l("A desk can only be assigned together with its project.")]})
    user.projects = list(projects)
    user.desks = list(desks)
    return user


def visible_projects_query(user):
    scope = scope_for(user)
    q = select(Project).where(Project.active.is_(True)).order_by(Project.name)
    if not scope.all_projects:
        q = q.where(Project.id.in_(sorted(scope.project_ids or ())))
    return q


# --- staff preferences (CL-SET-2: the language choice sticks per user) -----------------------

def staff_preference(user_id):
    """The user's preference row or None. The request's user loader already read it (in the same
    statement as the user) and left it in g, so most requests find it without a query."""
    from flask import g, has_app_context

    from .models import StaffPreference
    known = g.get("_cd_preferences") if has_app_context() else None
    if known is not None and user_id in known:
        return known[user_id]
    return db.session.get(StaffPreference, user_id)


def remember_preference(user_id, pref):
    """Called by the user loader (and after every write below) with what the database holds now."""
    from flask import g, has_app_context
    if has_app_context():
        g.setdefault("_cd_preferences", {})[user_id] = pref


def set_staff_locale(user_id, locale):
    from .models import StaffPreference
    if locale not in current_app.config.get("LANGUAGES", {}):
        raise ValidationFailed({"locale": [_l("This language is not available.")]})
    pref = db.session.get(StaffPreference, user_id) or StaffPreference(user_id=user_id)
    pref.locale = locale
    db.session.add(pref)
    db.session.commit()
    remember_preference(user_id, pref)
    return pref


def session_epoch(user_id):
    pref = staff_preference(user_id)
    return pref.session_epoch if pref is not None else 0


def end_all_sessions(user_id):
    """Invalidate every browser session of the user (called at logout)."""
    from .models import StaffPreference
    pref = db.session.get(StaffPreference, user_id) or StaffPreference(user_id=user_id, session_epoch=0)
    pref.session_epoch = (pref.session_epoch or 0) + 1
    db.session.add(pref)
    db.session.commit()
    remember_preference(user_id, pref)


def set_staff_timezone(user_id, timezone):
    """Store the IANA time zone dates are shown (and date presets computed) in for this user."""
    from zoneinfo import available_timezones

    from .models import StaffPreference
    timezone = (timezone or "").strip() or "UTC"
    if timezone not in available_timezones() and timezone != "UTC":
        raise ValidationFailed({"timezone": [_l("Choose a time zone from the list.")]})
    pref = db.session.get(StaffPreference, user_id) or StaffPreference(user_id=user_id, session_epoch=0)
    pref.timezone = timezone
    db.session.add(pref)
    db.session.commit()
    remember_preference(user_id, pref)
    return pref


def staff_timezone(user_id):
    pref = staff_preference(user_id)
    return (pref.timezone if pref is not None else None) or "UTC"
