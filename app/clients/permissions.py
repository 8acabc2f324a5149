"""The permission names on the "Clients" resource, shared by the view and the API.

FAB's permission sync removes permissions that a view does not declare; the view and the
API share one resource name, so both declare the whole set.
"""

FAB_PERMISSIONS = ["can_list", "can_show", "can_add", "can_edit", "can_get", "can_info", "can_post", "can_put"]

# Permissions screens check that are not FAB routes (CL-ORG-4); registered even before their feature.
GRANULAR_PERMISSIONS = [
    "can_create_action", "can_edit_action_type", "can_delete_action", "can_send_private_message", "can_reassign",
    "can_bulk_edit", "can_change_project", "can_change_state", "can_import", "can_export", "can_view_assets",
    "can_edit_assets", "can_view_logs", "can_view_balance", "can_merge_duplicates", "can_manage_settings",
    "can_see_undesked", "can_manage_2fa", "can_view_pii",
]

CLIENT_PERMISSIONS = FAB_PERMISSIONS + GRANULAR_PERMISSIONS
