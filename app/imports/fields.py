"""The importable client fields (CL-IO-1) and automatic matching of file headers to them.

A header matches a field by its key (`billing.country`), the client service key
(`country`) or the field's label in any shipped language; custom fields match by key or
label, and `meta.<key>` columns fill the client's meta entries.
"""

import os
import re
import unicodedata
from functools import lru_cache

from flask import current_app
from sqlalchemy import select

from ..clients import forms
from ..clients.models import CustomField
from ..extensions import db

# File key -> the client service key it fills ("" = handled by the import itself).
FIELDS = {
    "id": "id",
    "type": "client_type",
    "email": "email",
    "firstName": "first_name",
    "lastName": "last_name",
    "companyName": "company_name",
    "phone": "phone",
    "additionalPhone": "additional_phone",
    "state": "state",
    "status": "status_id",
    "created": "created_at",
    "billing.country": "country",
    "billing.region": "region",
    "billing.city": "city",
    "billing.address": "address",
    "billing.postcode": "postcode",
    "project": "project_id",
    "desk": "desk_id",
    "manager": "manager_id",
    "affiliateId": "affiliate_id",
    "campaignId": "campaign_id",
    "sourceId": "source_id",
    "subId": "sub_id",
    "externalId": "external_id",
    "gender": "gender",
    "dateOfBirth": "date_of_birth",
    "nationality": "nationality",
    "description": "description",
    "tags": "tags",
}
SERVICE_TO_FIELD = {service: key for key, service in FIELDS.items()}
CUSTOM_PREFIX = "custom."
META_PREFIX = "meta."


def _norm(text):
    text = unicodedata.normalize("NFKC", str(text or "")).casefold().strip().lstrip("\ufeff")
    return re.sub(r"[\W_]+", "", text)


def field_label(key):
    """The label a field key shows under (in the current language)."""
    return forms.FIELD_LABELS.get(FIELDS.get(key, ""), key)


@lru_cache(maxsize=8)
def _translations(directory, locales):
    from babel.support import Translations
    return [Translations.load(dirname=directory, locales=[loc], domain="messages") for loc in locales]


def _label_variants(lazy):
    """The English msgid of a lazy label and its translation in every shipped language."""
    msgid = lazy._args[0] if getattr(lazy, "_args", None) else str(lazy)
    variants = {msgid}
    # FAB prepends its own catalogs: the setting is a ";"-separated list of directories.
    directories = (current_app.config.get("BABEL_TRANSLATION_DIRECTORIES") or "").split(";")
    languages = tuple(sorted(current_app.config.get("LANGUAGES") or {}))
    for directory in directories:
        if directory and os.path.isdir(directory):
            for tr in _translations(directory, languages):
                variants.add(tr.gettext(msgid))
    return variants


def header_index():
    """Normalised header text -> field key, built from keys, service keys and every label."""
    index = {}

    def add(text, key):
        n = _norm(text)
        if n and n not in index:
            index[n] = key

    for key, service in FIELDS.items():
        add(key, key)
        add(service, key)
    for key, service in FIELDS.items():
        lazy = forms.FIELD_LABELS.get(service)
        if lazy is not None:
            for variant in _label_variants(lazy):
                add(variant, key)
    add("billing country", "billing.country")
    add("country", "billing.country")
    add("uid", "")  # exported, never imported (the UID is assigned)
    for f in db.session.scalars(select(CustomField).where(CustomField.active.is_(True))):
        add(f.key, CUSTOM_PREFIX + f.key)
        add(CUSTOM_PREFIX + f.key, CUSTOM_PREFIX + f.key)
        add(f.label, CUSTOM_PREFIX + f.key)
        for text in (f.label_translations or {}).values():
            add(text, CUSTOM_PREFIX + f.key)
    return index


def auto_mapping(headers):
    """{column index as text: field key or ""} for the given headers; a field is used once."""
    index = header_index()
    mapping, used = {}, set()
    for i, header in enumerate(headers):
        raw = str(header or "").strip().lstrip("\ufeff")
        key = ""
        if raw.lower().startswith(META_PREFIX) and len(raw) > len(META_PREFIX):
            key = META_PREFIX + raw[len(META_PREFIX):].strip()
        else:
            key = index.get(_norm(raw), "")
        if key and key in used:
            key = ""
        if key:
            used.add(key)
        mapping[str(i)] = key
    return mapping


def mapping_choices():
    """(key, label) pairs for the mapping screen's selects."""
    out = [(key, f"{field_label(key)} ({key})") for key in FIELDS]
    for f in db.session.scalars(select(CustomField).where(CustomField.active.is_(True)).order_by(CustomField.order)):
        out.append((CUSTOM_PREFIX + f.key, f"{f.localized_label()} ({f.key})"))
    return out


def valid_target(key, custom_keys):
    if key in FIELDS:
        return True
    if key.startswith(CUSTOM_PREFIX):
        return key[len(CUSTOM_PREFIX):] in custom_keys
    if key.startswith(META_PREFIX):
        return 0 < len(key) - len(META_PREFIX) <= 64
    return False
