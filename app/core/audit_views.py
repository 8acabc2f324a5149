"""The global, read-only audit log screen (append-only: no add, edit or delete routes)."""

from flask_appbuilder import ModelView
from flask_babel import lazy_gettext as _l

from .audit import AuditLog
from .filters import ClientDeskInterface, ClientScopeViaFilter


class AuditScopeFilter(ClientScopeViaFilter):
    """Admins see every entry; others only entries of clients in their scope."""

    def apply(self, query, value):
        from ..organisation.services import current_user, scope_for
        if scope_for(current_user()).all_projects:
            return query
        return super().apply(query, value)


class AuditLogModelView(ModelView):
    datamodel = ClientDeskInterface(AuditLog)
    class_permission_name = "AuditLogs"
    base_permissions = ["can_list", "can_show"]
    list_title = _l("Audit log")
    show_title = _l("Audit entry")
    list_columns = ["created_at", "user_id", "job_id", "entity", "entity_id", "client_id", "operation", "field",
                    "old_value", "new_value"]
    show_columns = list_columns
    search_columns = ["created_at", "user_id", "entity", "entity_id", "client_id", "operation", "field",
                      "old_value", "new_value"]
    order_columns = ["created_at", "entity", "field"]
    base_order = ("id", "desc")
    label_columns = {"created_at": _l("When (UTC)"), "user_id": _l("User"), "job_id": _l("Job"),
                     "entity": _l("Entity"), "entity_id": _l("Record"), "client_id": _l("Client"),
                     "operation": _l("Operation"), "field": _l("Field"), "old_value": _l("Old value"),
                     "new_value": _l("New value")}
    page_size = 50
    base_filters = [["client_id", AuditScopeFilter, None]]

