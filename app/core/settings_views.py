"""Plumbing for Settings screens: translated labels edited per language, audited deletes."""

from flask_appbuilder import ModelView
from flask_babel import lazy_gettext as _l
from wtforms import StringField
from wtforms.validators import Length, Optional

from .errors import DomainError


# Shipped languages besides English (CL-SET-2); a configured value may hold a label in each.
TRANSLATED_LANGUAGES = {"es": "Español", "ru": "Русский"}


def translation_fields():
    """One optional label field per shipped language other than the default."""
    return {f"label_{code}": StringField(_l("Label (%(language)s)", language=name), [Optional(), Length(max=100)])
            for code, name in TRANSLATED_LANGUAGES.items()}


def boolean_fields(**labels):
    """Optional checkboxes: FAB makes NOT NULL booleans "required", so unticking could never save."""
    from wtforms import BooleanField
    return {name: BooleanField(label) for name, label in labels.items()}


class SettingsModelView(ModelView):
    """A Settings list with explicit columns; domain errors on delete become a flash message."""

    page_size = 50
    base_permissions = ["can_list", "can_show", "can_add", "can_edit", "can_delete"]

    def service_delete_check(self, item):
        """Raise a DomainError to refuse a delete."""

    def pre_delete(self, item):
        try:
            self.service_delete_check(item)
        except DomainError as exc:
            raise ValueError(str(exc.message))


class TranslatedLabelMixin:
    """Adds label_<lang> fields to the form and stores them in `label_translations`."""

    def _lang_codes(self):
        return list(TRANSLATED_LANGUAGES)

    def _store_translations(self, item):
        from flask import request
        translations = dict(item.label_translations or {})
        for code in self._lang_codes():
            value = (request.form.get(f"label_{code}") or "").strip()
            if value:
                translations[code] = value[:100]
            else:
                translations.pop(code, None)
        item.label_translations = translations

    def pre_add(self, item):
        self._store_translations(item)
        super().pre_add(item)

    def pre_update(self, item):
        self._store_translations(item)
        super().pre_update(item)

    def prefill_form(self, form, pk):
        item = self.datamodel.get(pk)
        for code in self._lang_codes():
            field = getattr(form, f"label_{code}", None)
            if field is not None and item is not None:
                field.data = (item.label_translations or {}).get(code, "")
