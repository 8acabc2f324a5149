"""Permission checks for an explicit user (services get the actor passed in, not the request)."""

from flask import current_app

CLIENTS = "Clients"


def user_can(user, permission, view=CLIENTS):
    """True when `user` holds `permission` on `view`, through built-in (FAB_ROLES) or DB roles."""
    if user is None or not getattr(user, "is_active", False):
        return False
    return current_app.appbuilder.sm._has_view_access(user, permission, view)
