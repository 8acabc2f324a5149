"""Translatable names for permissions and resources, shown in the role editor (CL-ORG-4)."""

from flask_babel import lazy_gettext as _l

PERMISSION_LABELS = {
    "can_list": _l("List"), "can_show": _l("Show"), "can_add": _l("Add"), "can_edit": _l("Edit"),
    "can_delete": _l("Delete"), "menu_access": _l("Menu access"), "can_get": _l("Read (API)"),
    "can_post": _l("Create (API)"), "can_put": _l("Update (API)"), "can_info": _l("Form info (API)"),
    "can_create_action": _l("Create action"), "can_edit_action_type": _l("Edit action type/subtype"),
    "can_delete_action": _l("Delete action"), "can_send_private_message": _l("Send a private message"),
    "can_reassign": _l("Reassign"), "can_bulk_edit": _l("Bulk edit"), "can_change_project": _l("Change project"),
    "can_change_state": _l("Change state"), "can_import": _l("Import"), "can_export": _l("Export"),
    "can_view_assets": _l("View assets"), "can_edit_assets": _l("Edit assets"), "can_view_logs": _l("View logs"),
    "can_view_balance": _l("View balance"), "can_merge_duplicates": _l("Merge duplicates"),
    "can_manage_settings": _l("Manage settings"), "can_see_undesked": _l("See clients without a desk"),
    "can_manage_2fa": _l("Manage two-factor methods"), "can_view_pii": _l("View passport and date of birth"),
}

RESOURCE_LABELS = {
    "Clients": _l("Clients"), "Projects": _l("Projects"), "Desks": _l("Desks"), "Statuses": _l("Statuses"),
    "CustomFields": _l("Custom fields"), "FunnelStages": _l("Funnel stages"), "FeeGroups": _l("Company fee groups"),
    "ContactOrigins": _l("Contact origins"), "ActionTypes": _l("Action types"), "AuditLogs": _l("Audit log"),
    "Preferences": _l("My preferences"), "Settings": _l("Settings"), "CRM": _l("CRM"),
}


def permission_label(permission_view):
    """"Reassign — Clients" in the user's language; unknown names fall back to FAB's own wording."""
    perm = permission_view.permission.name
    view = permission_view.view_menu.name
    perm_text = PERMISSION_LABELS.get(perm) or perm.replace("_", " ")
    view_text = RESOURCE_LABELS.get(view) or view
    return f"{perm_text} — {view_text}"
