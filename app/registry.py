"""Every view, API and menu entry of ClientDesk, registered in one place."""

from flask_babel import lazy_gettext as _l


def register(appbuilder):
    from .activity.views import ActionTypeModelView, ClientActionView
    from .clients.api import ClientApi
    from .clients.settings_views import (ClientStatusModelView, ContactOriginModelView, CustomFieldModelView,
                                         FeeGroupModelView, FunnelStageModelView)
    from .clients.views import ClientModelView
    from .core.audit_views import AuditLogModelView
    from .organisation.views import DeskModelView, ProjectModelView, StaffPreferenceView

    appbuilder.add_view(ClientModelView, "Clients", label=_l("Clients"), icon="fa-users", category="CRM",
                        category_label=_l("CRM"), category_icon="fa-address-book")
    appbuilder.add_view(StaffPreferenceView, "Preferences", label=_l("My preferences"), icon="fa-user-cog",
                        category="CRM")
    appbuilder.add_view(AuditLogModelView, "AuditLogs", label=_l("Audit log"), icon="fa-history",
                        category="CRM")
    settings = dict(category="Settings", category_label=_l("Settings"), category_icon="fa-sliders")
    appbuilder.add_view(ProjectModelView, "Projects", label=_l("Projects"), icon="fa-folder", **settings)
    appbuilder.add_view(DeskModelView, "Desks", label=_l("Desks"), icon="fa-table", **settings)
    appbuilder.add_view(ClientStatusModelView, "Statuses", label=_l("Statuses"), icon="fa-tag", **settings)
    appbuilder.add_view(CustomFieldModelView, "CustomFields", label=_l("Custom fields"), icon="fa-list",
                        **settings)
    appbuilder.add_view(FunnelStageModelView, "FunnelStages", label=_l("Funnel stages"), icon="fa-filter",
                        **settings)
    appbuilder.add_view(FeeGroupModelView, "FeeGroups", label=_l("Company fee groups"), icon="fa-percent",
                        **settings)
    appbuilder.add_view(ContactOriginModelView, "ContactOrigins", label=_l("Contact origins"), icon="fa-compass",
                        **settings)
    appbuilder.add_view(ActionTypeModelView, "ActionTypes", label=_l("Action types"), icon="fa-bolt", **settings)
    appbuilder.add_view_no_menu(ClientActionView)
    appbuilder.add_api(ClientApi)
    from .imports.api import ClientImportApi
    from .imports.views import ClientExportView, ClientImportView
    appbuilder.add_view(ClientImportView, "ImportClients", label=_l("Import clients"), icon="fa-upload",
                        category="CRM")
    appbuilder.add_view_no_menu(ClientExportView)
    appbuilder.add_api(ClientImportApi)
