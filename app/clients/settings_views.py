"""Settings screens for client lists: statuses, custom fields, funnel stages, fee groups, origins."""

from flask import abort, request, send_file
from flask_appbuilder import expose
from flask_appbuilder.security.decorators import has_access
from flask_wtf.file import FileField
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from wtforms import TextAreaField
from wtforms.validators import Length, Optional, Regexp

from ..core.errors import Conflict
from ..core.filters import ClientDeskInterface
from ..core.settings_views import SettingsModelView, TranslatedLabelMixin, boolean_fields, translation_fields
from ..extensions import db
from . import icons
from .models import Client, ClientStatus, ContactOrigin, CustomField, FeeGroup, FunnelStage

_COMMON_LABELS = {"label": _l("Label"), "order": _l("Order"), "active": _l("Active"), "colour": _l("Colour"),
                  "is_default": _l("Default"), "client_type": _l("Client type"), "builtin": _l("Built-in"),
                  "icon_url": _l("Icon URL"), "key": _l("Key"), "field_type": _l("Type"),
                  "options_text": _l("Options"), "required": _l("Required"),
                  "label_es": _l("Label (Español)"), "label_ru": _l("Label (Русский)")}


def _in_use(column, item, message):
    if db.session.scalar(select(Client.id).where(column == item.id).limit(1)) is not None:
        raise Conflict(message)


class ClientStatusModelView(TranslatedLabelMixin, SettingsModelView):
    datamodel = ClientDeskInterface(ClientStatus)
    class_permission_name = "Statuses"
    list_title = _l("Statuses")
    show_title = add_title = edit_title = _l("Status")
    list_columns = ["order", "label", "colour", "is_default", "active"]
    show_columns = ["label", "colour", "order", "is_default", "active"]
    add_columns = edit_columns = ["label", "label_es", "label_ru", "colour", "order", "is_default", "active"]
    add_form_extra_fields = edit_form_extra_fields = {
        **translation_fields(), **boolean_fields(is_default=_l("Default"), active=_l("Active"))}
    search_columns = ["label", "active"]
    order_columns = ["order", "label", "active"]
    base_order = ("order", "asc")
    label_columns = _COMMON_LABELS
    validators_columns = {"colour": [Regexp(r"^#[0-9a-fA-F]{6}$", message=_l("Use a colour like #1a2b3c."))]}

    def _single_default(self, item):
        if item.is_default:  # exactly one default status; ORM writes so the change is audited
            for other in db.session.scalars(select(ClientStatus).where(ClientStatus.is_default.is_(True))):
                if other is not item:
                    other.is_default = False

    def pre_add(self, item):
        super().pre_add(item)
        self._single_default(item)

    def pre_update(self, item):
        super().pre_update(item)
        self._single_default(item)

    def service_delete_check(self, item):
        _in_use(Client.status_id, item, _l("Clients still have this status. Deactivate it instead."))


class FunnelStageModelView(TranslatedLabelMixin, SettingsModelView):
    datamodel = ClientDeskInterface(FunnelStage)
    class_permission_name = "FunnelStages"
    list_title = _l("Funnel stages")
    show_title = add_title = edit_title = _l("Funnel stage")
    list_columns = ["client_type", "order", "label", "active"]
    show_columns = ["client_type", "label", "order", "active"]
    add_columns = edit_columns = ["client_type", "label", "label_es", "label_ru", "order", "active"]
    add_form_extra_fields = edit_form_extra_fields = {**translation_fields(), **boolean_fields(active=_l("Active"))}
    search_columns = ["client_type", "label", "active"]
    order_columns = ["client_type", "order", "label"]
    base_order = ("order", "asc")
    label_columns = _COMMON_LABELS

    def service_delete_check(self, item):
        _in_use(Client.funnel_stage_id, item, _l("Clients are still in this stage. Deactivate it instead."))


class FeeGroupModelView(TranslatedLabelMixin, SettingsModelView):
    datamodel = ClientDeskInterface(FeeGroup)
    class_permission_name = "FeeGroups"
    list_title = _l("Company fee groups")
    show_title = add_title = edit_title = _l("Company fee group")
    list_columns = ["label", "active"]
    show_columns = ["label", "active"]
    add_columns = edit_columns = ["label", "label_es", "label_ru", "active"]
    add_form_extra_fields = edit_form_extra_fields = {**translation_fields(), **boolean_fields(active=_l("Active"))}
    search_columns = ["label", "active"]
    order_columns = ["label", "active"]
    base_order = ("label", "asc")
    label_columns = _COMMON_LABELS

    def service_delete_check(self, item):
        _in_use(Client.fee_group_id, item, _l("Clients are still in this fee group. Deactivate it instead."))


class ContactOriginModelView(TranslatedLabelMixin, SettingsModelView):
    datamodel = ClientDeskInterface(ContactOrigin)
    class_permission_name = "ContactOrigins"
    list_title = _l("Contact origins")
    show_title = add_title = edit_title = _l("Contact origin")
    list_columns = ["label", "builtin", "icon_url", "active"]
    show_columns = ["label", "builtin", "icon_url", "icon_file", "active"]
    method_permission_name = {"icon": "list"}
    add_columns = edit_columns = ["label", "label_es", "label_ru", "icon_upload", "icon_url", "active"]
    add_form_extra_fields = edit_form_extra_fields = {
        **translation_fields(), **boolean_fields(active=_l("Active")),
        "icon_upload": FileField(_l("Icon"), description=_l("An image of exactly 22×22 pixels, or give an icon "
                                                            "URL below."))}
    search_columns = ["label", "builtin", "active"]
    order_columns = ["label", "builtin", "active"]
    base_order = ("label", "asc")
    label_columns = _COMMON_LABELS
    validators_columns = {"icon_url": [Optional(), Regexp(r"^(https://|/)[^\s\"'<>]*$",
                                                          message=_l("Use an https:// or site-relative URL."))]}

    def _store_icon(self, item):
        upload = request.files.get("icon_upload")
        if upload is not None and upload.filename:
            item.icon_file = icons.store_icon(upload.stream)

    def pre_add(self, item):
        super().pre_add(item)
        self._store_icon(item)

    def pre_update(self, item):
        super().pre_update(item)
        self._store_icon(item)

    @expose("/icon/<int:pk>")
    @has_access
    def icon(self, pk):
        """Serve an uploaded icon to signed-in staff, never from the web root (R36 headers)."""
        item = self.datamodel.get(pk)
        path = icons.icon_path(item.icon_file if item is not None else None)
        if path is None:
            abort(404)
        response = send_file(path, mimetype="image/png", max_age=0)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, max-age=300"
        response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
        return response

    def service_delete_check(self, item):
        if item.builtin:
            raise Conflict(_l("Built-in contact origins cannot be deleted."))
        _in_use(Client.contact_origin_id, item, _l("Clients still have this origin. Deactivate it instead."))


class CustomFieldModelView(TranslatedLabelMixin, SettingsModelView):
    datamodel = ClientDeskInterface(CustomField)
    class_permission_name = "CustomFields"
    list_title = _l("Client custom fields")
    show_title = add_title = edit_title = _l("Custom field")
    list_columns = ["order", "key", "label", "field_type", "required", "active"]
    show_columns = ["key", "label", "field_type", "options", "required", "order", "active"]
    add_columns = ["key", "label", "label_es", "label_ru", "field_type", "options_text", "required", "order",
                   "active"]
    edit_columns = ["label", "label_es", "label_ru", "field_type", "options_text", "required", "order", "active"]
    add_form_extra_fields = {**translation_fields(), **boolean_fields(required=_l("Required"), active=_l("Active")),
                             "options_text": TextAreaField(
        _l("Options"), [Optional(), Length(max=4000)], description=_l("For select fields: one option per line."))}
    edit_form_extra_fields = add_form_extra_fields
    search_columns = ["key", "label", "field_type", "active"]
    order_columns = ["order", "key", "label"]
    base_order = ("order", "asc")
    label_columns = _COMMON_LABELS
    validators_columns = {
        "key": [Regexp(r"^[a-z][a-z0-9_]{0,39}$", message=_l("Use lower-case letters, digits and _ "
                                                               "(starting with a letter)."))],
        "field_type": [Regexp(r"^(text|number|date|boolean|select|multiselect)$",
                              message=_l("Choose text, number, date, boolean, select or multiselect."))],
    }
    description_columns = {"field_type": _l("text, number, date, boolean, select or multiselect")}

    def _store_options(self, item):
        raw = request.form.get("options_text") or ""
        item.options = [line.strip() for line in raw.splitlines() if line.strip()][:200]
        if item.field_type in ("select", "multiselect") and not item.options:
            raise ValueError(str(_l("A select field needs at least one option.")))

    def pre_add(self, item):
        super().pre_add(item)
        self._store_options(item)

    def pre_update(self, item):
        super().pre_update(item)
        self._store_options(item)

    def prefill_form(self, form, pk):
        super().prefill_form(form, pk)
        item = self.datamodel.get(pk)
        if item is not None:
            form.options_text.data = "\n".join(item.options or [])
