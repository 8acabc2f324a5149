"""The client add/edit forms (panels of CL-REC-2..10), built per request.

Field names equal the service keys, so service errors land on the right field. Choices
depend on the user's scope and on settings, so the form class is made for each request.
"""

from flask import request
from flask_appbuilder.forms import DynamicForm
from flask_babel import get_locale, lazy_gettext as _l
from sqlalchemy import select
from wtforms import (BooleanField, DateField, DecimalField, PasswordField, SelectField, SelectMultipleField,
                     StringField, TextAreaField)
from wtforms.validators import Length, Optional

from ..core.validators import country_choices
from ..extensions import db
from ..organisation import services as org
from ..organisation.models import Desk, Project, desk_user, project_user
from .models import ClientStatus, ContactOrigin, CustomField, FeeGroup, FunnelStage

BLANK = ("", "—")

CLIENT_TYPE_LABELS = {"personal": _l("Personal"), "business": _l("Business")}
STATE_LABELS = {"active": _l("Active"), "deactivated": _l("Deactivated"), "suspended": _l("Suspended")}
GENDER_LABELS = {"male": _l("Male"), "female": _l("Female"), "other": _l("Other")}
RISK_LABELS = {"low": _l("Low"), "medium": _l("Medium"), "high": _l("High")}
VERIFICATION_LEVEL_LABELS = {"email": _l("Email"), "video": _l("Video"), "in_person": _l("In-person")}
VERIFICATION_STATUS_LABELS = {"init": _l("Init"), "pending": _l("Pending"), "approved": _l("Approved"),
                              "rejected": _l("Rejected")}
OUTCOME_LABELS = {"open": _l("Open"), "won": _l("Won"), "lost": _l("Lost")}
RATING_LABELS = {0: _l("No stars"), 1: "★", 2: "★★", 3: "★★★"}

FIELD_LABELS = {
    "client_type": _l("Type"), "email": _l("E-mail"), "first_name": _l("First name"),
    "last_name": _l("Last name"), "company_name": _l("Company name"), "phone": _l("Phone"),
    "additional_phone": _l("Additional phone"), "date_of_birth": _l("Date of birth"),
    "external_id": _l("External ID"), "passport_number": _l("Passport number"), "nationality": _l("Nationality"),
    "gender": _l("Gender"), "risk_level": _l("Risk level"), "aml_screening": _l("AML screening"),
    "country": _l("Country"), "region": _l("Region"), "city": _l("City"), "address": _l("Address"),
    "postcode": _l("Postcode"), "project_id": _l("Project"), "desk_id": _l("Desk"), "manager_id": _l("Manager"),
    "fee_group_id": _l("Company fee group"), "affiliate_id": _l("Affiliate ID"), "campaign_id": _l("Campaign ID"),
    "source_id": _l("Source ID"), "sub_id": _l("Sub ID"), "verification_level": _l("Verification level"),
    "verification_status": _l("Verification status"), "contact_origin_id": _l("Contact origin"),
    "status_id": _l("Status"), "state": _l("State"), "funnel_stage_id": _l("Funnel stage"),
    "outcome": _l("Outcome"), "rating": _l("Rating"), "tags": _l("Tags"), "description": _l("Description"),
    "password": _l("Portal password"), "meta": _l("Meta"), "uid": _l("UID"), "full_name": _l("Full name"),
    "processed": _l("Processed"), "processed_at": _l("Processed at"), "created_at": _l("Created"),
    "updated_at": _l("Updated"), "last_login_at": _l("Last login date"), "id": _l("ID"),
    "last_action_at": _l("Last action date"), "future_action_at": _l("Future action date"),
    "actions_exist": _l("Actions exist"), "last_duplicate_at": _l("Last duplicate date"),
    "comments": _l("Comments"), "project": _l("Project"), "desk": _l("Desk"), "manager": _l("Manager"),
    "status": _l("Status"), "custom_fields": _l("Custom fields"), "created_by_id": _l("Created by"),
    "password_hash": _l("Portal password"), "two_factor": _l("Two-factor methods"), "kind": _l("Method"),
    "is_default": _l("Default"),
}

PANELS = [
    (_l("Personal details"), ["client_type", "email", "first_name", "last_name", "company_name", "phone",
                      "additional_phone", "date_of_birth", "external_id", "passport_number", "nationality",
                      "gender", "risk_level", "aml_screening"]),
    (_l("Billing"), ["country", "region", "city", "address", "postcode"]),
    (_l("Affiliation"), ["project_id", "desk_id", "manager_id", "fee_group_id", "affiliate_id", "campaign_id",
                         "source_id", "sub_id", "verification_level", "verification_status",
                         "contact_origin_id"]),
    (_l("Status and profile"), ["status_id", "funnel_stage_id", "rating", "tags", "description"]),
    (_l("Credentials"), ["password"]),
]


def _choices(labels):
    return [BLANK] + [(k, v) for k, v in labels.items()]


def _ref_choices(model, order_by):
    rows = db.session.scalars(select(model).where(model.active.is_(True)).order_by(*order_by)).all()
    return [BLANK] + [(str(r.id), r.localized_label()) for r in rows]


def _int_or_none(value):
    try:
        return int(value) if value not in (None, "", "None") else None
    except (TypeError, ValueError):
        return value


def manager_options(user):
    """(id, name, project_ids, desk_ids) of every active staff user in the viewer's projects."""
    from flask_appbuilder.security.sqla.models import User
    scope = org.scope_for(user)
    q = (select(User.id, User.first_name, User.last_name, project_user.c.project_id)
         .join(project_user, project_user.c.user_id == User.id).where(User.active.is_(True)))
    if not scope.all_projects:
        q = q.where(project_user.c.project_id.in_(sorted(scope.project_ids or ())))
    people = {}
    for uid, first, last, pid in db.session.execute(q):
        entry = people.setdefault(uid, {"id": uid, "name": f"{first} {last}".strip(), "projects": set(),
                                        "desks": set(), "wide": set()})
        entry["projects"].add(pid)
    if people:
        narrowed = {}
        for uid, did, pid in db.session.execute(
                select(desk_user.c.user_id, desk_user.c.desk_id, Desk.project_id)
                .join(Desk, Desk.id == desk_user.c.desk_id).where(desk_user.c.user_id.in_(list(people)))):
            people[uid]["desks"].add(did)
            narrowed.setdefault(uid, set()).add(pid)
        for uid, entry in people.items():
            # project-wide staff may manage clients on any desk of that project (services.eligible_managers_query)
            entry["wide"] = entry["projects"] - narrowed.get(uid, set())
    return sorted(people.values(), key=lambda p: p["name"].lower())


def desk_options(user):
    scope = org.scope_for(user)
    q = select(Desk).join(Project).where(Desk.active.is_(True), Project.active.is_(True)).order_by(Desk.name)
    if not scope.all_projects:
        q = q.where(Desk.project_id.in_(sorted(scope.project_ids or ())))
    return db.session.scalars(q).all()


def build_client_form(user, creating, item=None):
    """A form class with the panels' fields and the active custom fields."""
    locale = str(get_locale() or "en")
    countries = [BLANK] + list(country_choices(locale))
    projects = db.session.scalars(org.visible_projects_query(user)).all()
    L = FIELD_LABELS

    attrs = {
        "first_name": StringField(L["first_name"], [Optional(), Length(max=100)]),
        "last_name": StringField(L["last_name"], [Optional(), Length(max=100)]),
        "company_name": StringField(L["company_name"], [Optional(), Length(max=200)]),
        "phone": StringField(L["phone"], [Optional(), Length(max=40)],
                             description=_l("International format, e.g. +14155550123")),
        "additional_phone": StringField(L["additional_phone"], [Optional(), Length(max=40)]),
        "date_of_birth": DateField(L["date_of_birth"], [Optional()], render_kw={"type": "date"}),
        "external_id": StringField(L["external_id"], [Optional(), Length(max=64)]),
        "passport_number": StringField(L["passport_number"], [Optional(), Length(max=64)]),
        "nationality": SelectField(L["nationality"], choices=countries, validate_choice=False),
        "gender": SelectField(L["gender"], choices=_choices(GENDER_LABELS)),
        "risk_level": SelectField(L["risk_level"], choices=_choices(RISK_LABELS)),
        "aml_screening": TextAreaField(L["aml_screening"], [Optional(), Length(max=2000)]),
        "country": SelectField(L["country"], choices=countries, validate_choice=False),
        "region": StringField(L["region"], [Optional(), Length(max=100)]),
        "city": StringField(L["city"], [Optional(), Length(max=100)]),
        "address": StringField(L["address"], [Optional(), Length(max=255)]),
        "postcode": StringField(L["postcode"], [Optional(), Length(max=20)]),
        "desk_id": SelectField(L["desk_id"], choices=[BLANK], validate_choice=False, coerce=_int_or_none),
        "manager_id": SelectField(L["manager_id"], choices=[BLANK], validate_choice=False, coerce=_int_or_none),
        "fee_group_id": SelectField(L["fee_group_id"], choices=_ref_choices(FeeGroup, [FeeGroup.label]),
                                    coerce=_int_or_none, validate_choice=False),
        "affiliate_id": StringField(L["affiliate_id"], [Optional(), Length(max=64)]),
        "campaign_id": StringField(L["campaign_id"], [Optional(), Length(max=64)]),
        "source_id": StringField(L["source_id"], [Optional(), Length(max=64)]),
        "sub_id": StringField(L["sub_id"], [Optional(), Length(max=64)]),
        "verification_level": SelectField(L["verification_level"], choices=_choices(VERIFICATION_LEVEL_LABELS)),
        "verification_status": SelectField(L["verification_status"],
                                           choices=list(VERIFICATION_STATUS_LABELS.items())),
        "contact_origin_id": SelectField(L["contact_origin_id"],
                                         choices=_ref_choices(ContactOrigin, [ContactOrigin.label]),
                                         coerce=_int_or_none, validate_choice=False),
        "status_id": SelectField(L["status_id"], choices=_ref_choices(ClientStatus, [ClientStatus.order,
                                                                                     ClientStatus.id]),
                                 coerce=_int_or_none, validate_choice=False),
        "funnel_stage_id": SelectField(L["funnel_stage_id"],
                                       choices=_ref_choices(FunnelStage, [FunnelStage.client_type,
                                                                          FunnelStage.order]),
                                       coerce=_int_or_none, validate_choice=False),
        "rating": SelectField(L["rating"], choices=[(k, v) for k, v in RATING_LABELS.items()], coerce=int,
                              default=0),
        "tags": StringField(L["tags"], [Optional(), Length(max=1000)],
                            description=_l("Separate tags with commas.")),
        "description": TextAreaField(L["description"], [Optional()],
                                     render_kw={"maxlength": 2000, "rows": 4},
                                     description=_l("Up to 2,000 characters.")),
        "password": PasswordField(L["password"], [Optional()], render_kw={"autocomplete": "new-password"},
                                  description=_l("At least 8 characters with upper case, lower case, a digit and "
                                                 "a special character. Leave empty to keep the current one.")),
    }
    if creating:
        attrs["client_type"] = SelectField(L["client_type"], choices=list(CLIENT_TYPE_LABELS.items()),
                                           default="personal")
        attrs["email"] = StringField(L["email"], [Length(max=254)])
        attrs["project_id"] = SelectField(L["project_id"], choices=[BLANK] + [(str(p.id), p.name) for p in projects],
                                          coerce=_int_or_none, validate_choice=False)
    from .services import PII_FIELDS, can_view_pii
    if not can_view_pii(user):  # without the permission these fields are neither shown nor editable (R6)
        for key in PII_FIELDS:
            attrs.pop(key, None)
    for field in active_custom_fields():
        attrs[f"cf_{field.key}"] = _custom_form_field(field)
    form_class = type("ClientForm", (DynamicForm,), attrs)
    form_class.custom_field_defs = active_custom_fields()
    form_class.creating = creating
    return form_class


def active_custom_fields():
    return db.session.scalars(select(CustomField).where(CustomField.active.is_(True))
                              .order_by(CustomField.order, CustomField.id)).all()


def _custom_form_field(field):
    label = field.localized_label()
    options = [(str(o), str(o)) for o in (field.options or [])]
    kind = field.field_type
    if kind == "number":
        return DecimalField(label, [Optional()])
    if kind == "date":
        return DateField(label, [Optional()], render_kw={"type": "date"})
    if kind == "boolean":
        return BooleanField(label)
    if kind == "select":
        return SelectField(label, choices=[BLANK] + options, validate_choice=False)
    if kind == "multiselect":
        return SelectMultipleField(label, choices=options, validate_choice=False,
                                   render_kw={"class": "cd-multiselect"})
    return StringField(label, [Optional(), Length(max=500)])


def form_to_service_data(form, creating):
    """Collect the form into the plain dict the client services take."""
    data = {}
    custom = {}
    for name, field in form._fields.items():
        if name == "csrf_token":
            continue
        value = field.data
        if name.startswith("cf_"):
            if isinstance(value, DecimalField) or hasattr(value, "as_tuple"):
                value = str(value)
            elif hasattr(value, "isoformat"):
                value = value.isoformat()
            custom[name[3:]] = value
            continue
        if name == "password" and not value:
            continue
        data[name] = value
    data["custom_fields"] = custom
    keys = request.form.getlist("meta_key")
    values = request.form.getlist("meta_value")
    data["meta"] = {k: val for k, val in zip(keys, values, strict=False) if k.strip() or val.strip()}
    if any(not k.strip() and val.strip() for k, val in zip(keys, values, strict=False)):
        data["meta"][""] = "x"  # let the service explain that every entry needs a key
    return data
