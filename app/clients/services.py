"""Client rules (CL-REC): validation, immutables, UID, processed flag, state, project moves, 2FA.

Services take plain data and an explicit acting user and return models. Top-level verbs
(create_client, update_client, change_project, change_state, ...) own their transaction;
the helpers below them never commit. Views, the REST API, imports and jobs all come here.
"""

import datetime as dt
import decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, insert, or_, select, update
from werkzeug.security import generate_password_hash

from ..core import validators as v
from ..core.actor import attributed
from ..core.errors import NotFound, ValidationFailed
from ..extensions import db
from ..organisation import services as org
from ..organisation.models import Desk, Project
from .models import (CLIENT_TYPES, GENDERS, NAME_COLUMNS, OUTCOMES, RISK_LEVELS, STATES, TWO_FACTOR_KINDS,
                     VERIFICATION_LEVELS, VERIFICATION_STATUSES, Client, ClientStatus, ContactOrigin, CustomField,
                     FeeGroup, FunnelStage, Tag, TwoFactorMethod, UidCounter, names_text, utcnow)

IMMUTABLE_FIELDS = ("client_type", "email", "project_id")
DESCRIPTION_MAX = 2000

# Plain text fields: key -> max length.
TEXT_FIELDS = {
    "first_name": 100, "last_name": 100, "company_name": 200, "external_id": 64, "passport_number": 64,
    "region": 100, "city": 100, "address": 255, "postcode": 20, "affiliate_id": 64, "campaign_id": 64,
    "source_id": 64, "sub_id": 64,
}
CHOICE_FIELDS = {
    "gender": GENDERS, "risk_level": RISK_LEVELS, "verification_level": VERIFICATION_LEVELS,
    "verification_status": VERIFICATION_STATUSES, "outcome": OUTCOMES,
}
REF_FIELDS = {"status_id": ClientStatus, "fee_group_id": FeeGroup, "contact_origin_id": ContactOrigin,
              "funnel_stage_id": FunnelStage}

# Every key a caller may send; anything else is refused, never silently assigned (R4).
WRITABLE_FIELDS = (set(TEXT_FIELDS) | set(CHOICE_FIELDS) | set(REF_FIELDS) | {
    "client_type", "email", "project_id", "desk_id", "manager_id", "phone", "additional_phone",
    "date_of_birth", "nationality", "aml_screening", "country", "description", "rating", "tags",
    "password", "custom_fields", "meta", "state"})


# ----------------------------------------------------------------- personal data masking (R6)

PII_FIELDS = ("passport_number", "date_of_birth")
PII_PERMISSION = "can_view_pii"
MASK = "••••"


def can_view_pii(user):
    from ..core.permissions import user_can
    return user_can(user, PII_PERMISSION)


def mask_pii(data, user):
    """Replace passport and date of birth in a dict of client values unless the user may see them."""
    if can_view_pii(user):
        return data
    for key in PII_FIELDS:
        if data.get(key) not in (None, ""):
            data[key] = MASK
    return data


# ----------------------------------------------------------------- reading in scope

def clients_query(actor):
    """All clients the actor may see, as a select() to refine."""
    return select(Client).where(org.client_scope_clause(Client, actor))


def get_client(actor, client_id):
    """The client if it exists inside the actor's scope; NotFound otherwise (no existence oracle)."""
    try:
        client_id = int(client_id)
    except (TypeError, ValueError):
        raise NotFound(_l("Client not found."))
    client = db.session.scalars(clients_query(actor).where(Client.id == client_id)).first()
    if client is None:
        raise NotFound(_l("Client not found."))
    return client


# ----------------------------------------------------------------- identifiers

def allocate_uid_numbers(count=1, counter="client"):
    """Reserve `count` consecutive numbers; returns the first. Numbers are never reused."""
    session = db.session
    last = session.execute(update(UidCounter).where(UidCounter.name == counter)
                           .values(value=UidCounter.value + count).returning(UidCounter.value)).scalar()
    if last is None:
        start = (session.scalar(select(func.count(Client.id))) or 0)
        session.execute(insert(UidCounter).values(name=counter, value=start + count))
        last = start + count
    return last - count + 1


def format_uid(number, client_type):
    return f"C{number:05d}{'B' if client_type == 'business' else 'P'}"


# ----------------------------------------------------------------- rules

def apply_processed_rule(client, now=None):
    """CL-REC-5: processed turns true the first time desk and manager are both set; never back."""
    if not client.processed and client.desk_id is not None and client.manager_id is not None:
        client.processed = True
        client.processed_at = now or utcnow()
    return client.processed


def compose_full_name(client):
    if client.client_type == "business" and client.company_name:
        return client.company_name
    first, last = client.first_name, client.last_name
    name = f"{first} {last}" if first and last else first or last
    return name or client.company_name or ""


def find_email_holder(email, exclude_id=None):
    """The client already holding this e-mail, if any (the duplicates module will own this)."""
    q = select(Client).where(Client.email == email)
    if exclude_id is not None:
        q = q.where(Client.id != exclude_id)
    return db.session.scalars(q.limit(1)).first()


def _email_in_use_message(holder, actor, scope=None):
    if holder is not None and (scope or org.scope_for(actor)).allows(holder.project_id, holder.desk_id):
        return _l("E-mail in use by: %(name)s (%(uid)s).", name=holder.full_name, uid=holder.uid)
    return _l("This e-mail is already in use.")


def _check_custom_fields(values, errors, partial, defs=None):
    values = values or {}
    if not isinstance(values, dict):
        errors["custom_fields"] = [_l("Custom fields must be an object of key/value pairs.")]
        return {}
    if defs is None:
        defs = {f.key: f for f in db.session.scalars(select(CustomField).where(CustomField.active.is_(True)))}
    out = {}
    for key in values:
        if key not in defs:
            errors[f"cf_{key}"] = [_l("Unknown custom field: %(key)s.", key=key)]
    for key, field in defs.items():
        if key not in values:
            if field.required and not partial:
                errors[f"cf_{key}"] = [_l("%(label)s is required.", label=field.label)]
            continue
        raw = values[key]
        try:
            out[key] = _custom_value(field, raw)
        except ValueError as exc:
            errors[f"cf_{key}"] = [str(exc)]
            continue
        if field.required and out[key] in (None, "", []):
            errors[f"cf_{key}"] = [_l("%(label)s is required.", label=field.label)]
    return out


def _custom_value(field, raw):
    kind = field.field_type
    if raw in (None, "") or raw == []:
        return [] if kind == "multiselect" else None
    if kind == "text":
        return v.clean_text(raw, 500)
    if kind == "number":
        try:
            number = decimal.Decimal(str(raw).strip().replace(",", "."))
        except decimal.InvalidOperation:
            raise ValueError(_l("Enter a number."))
        if not number.is_finite():
            raise ValueError(_l("Enter a number."))
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "date":
        return v.parse_date(raw).isoformat()
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "y", "on", "si", "да"):
            return True
        if text in ("0", "false", "no", "n", "off", "нет"):
            return False
        raise ValueError(_l("Enter yes or no."))
    options = [str(o) for o in (field.options or [])]
    if kind == "select":
        if str(raw) not in options:
            raise ValueError(_l("Choose one of the offered options."))
        return str(raw)
    if kind == "multiselect":
        items = raw if isinstance(raw, (list, tuple)) else [p.strip() for p in str(raw).split(",") if p.strip()]
        bad = [str(i) for i in items if str(i) not in options]
        if bad:
            raise ValueError(_l("Not an offered option: %(values)s.", values=", ".join(bad)))
        return [str(i) for i in dict.fromkeys(items)]
    raise ValueError(_l("Unsupported field type."))


def _check_meta(meta, errors):
    if meta in (None, ""):
        return {}
    if not isinstance(meta, dict):
        errors["meta"] = [_l("Meta must be a list of key/value pairs.")]
        return {}
    if len(meta) > 50:
        errors["meta"] = [_l("At most 50 meta entries.")]
        return {}
    out = {}
    for key, value in meta.items():
        try:
            k = v.clean_text(key, 64)
            val = v.clean_text("" if value is None else value, 500)
        except ValueError as exc:
            errors["meta"] = [_l("Meta entry %(key)s: %(error)s", key=str(key)[:64], error=exc)]
            continue
        if not k:
            errors["meta"] = [_l("Every meta entry needs a key.")]
            continue
        out[k] = val or ""
    return out


def _tags(names, errors):
    if names in (None, ""):
        return []
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    cleaned = []
    for name in names:
        try:
            n = v.clean_text(name, 64)
        except ValueError as exc:
            errors["tags"] = [str(exc)]
            return []
        if n and n.lower() not in [c.lower() for c in cleaned]:
            cleaned.append(n)
    return cleaned


def tags_by_name(names):
    """Existing Tag rows for the names, creating the missing ones."""
    if not names:
        return []
    existing = {t.name.lower(): t for t in db.session.scalars(
        select(Tag).where(func.lower(Tag.name).in_([n.lower() for n in names])))}
    out = []
    for n in names:
        tag = existing.get(n.lower())
        if tag is None:
            tag = Tag(name=n)
            db.session.add(tag)
            existing[n.lower()] = tag
        out.append(tag)
    return out


class ClientLookup:
    """The reference data validate_client_data reads; this default asks the database each time.

    Bulk callers (the import) pass a PrefetchedClientLookup instead, so validating a row costs
    no query while the rules themselves stay in one place.
    """

    def __init__(self, actor):
        self.actor = actor
        self._scope = None

    @property
    def scope(self):
        if self._scope is None:
            self._scope = org.scope_for(self.actor)
        return self._scope

    def project(self, project_id):
        return db.session.get(Project, project_id)

    def desk(self, desk_id):
        return db.session.get(Desk, desk_id)

    def ref(self, model, ref_id):
        return db.session.get(model, ref_id)

    def custom_field_defs(self):
        return {f.key: f for f in db.session.scalars(select(CustomField).where(CustomField.active.is_(True)))}

    def is_eligible_manager(self, manager_id, project_id, desk_id):
        return org.is_eligible_manager(manager_id, project_id, desk_id)

    def email_holder(self, email):
        return find_email_holder(email)


def _snapshot(obj, *names):
    from types import SimpleNamespace
    return SimpleNamespace(**{n: getattr(obj, n) for n in names})


class PrefetchedClientLookup(ClientLookup):
    """All reference data loaded once (projects, desks, settings lists, custom fields, manager
    eligibility); e-mail holders are loaded per batch with `load_email_holders`."""

    def __init__(self, actor):
        super().__init__(actor)
        from flask_appbuilder.security.sqla.models import User

        from ..organisation.models import desk_user, project_user
        session = db.session
        self._scope = org.scope_for(actor)
        self.projects = {p.id: _snapshot(p, "id", "name", "key", "active")
                         for p in session.scalars(select(Project))}
        self.desks = {d.id: _snapshot(d, "id", "project_id", "name", "label", "active")
                      for d in session.scalars(select(Desk))}
        self.refs = {model: {r.id: _snapshot(r, *[c for c in ("id", "label", "label_translations", "active",
                                                                "client_type", "is_default")
                                                   if hasattr(r, c)])
                             for r in session.scalars(select(model))}
                     for model in (ClientStatus, FeeGroup, ContactOrigin, FunnelStage)}
        self.custom_fields = {f.key: _snapshot(f, "key", "label", "field_type", "options", "required")
                              for f in session.scalars(select(CustomField).where(CustomField.active.is_(True)))}
        active = set(session.scalars(select(User.id).where(User.active.is_(True))))
        self.project_staff = {}
        for pid, uid in session.execute(select(project_user.c.project_id, project_user.c.user_id)):
            if uid in active:
                self.project_staff.setdefault(pid, set()).add(uid)
        self.desk_staff = {}
        self.narrowed = {}  # project -> staff with a desk assignment inside it
        for did, uid, pid in session.execute(select(desk_user.c.desk_id, desk_user.c.user_id, Desk.project_id)
                                             .join(Desk, Desk.id == desk_user.c.desk_id)):
            self.desk_staff.setdefault(did, set()).add(uid)
            self.narrowed.setdefault(pid, set()).add(uid)
        self.holders = {}

    def project(self, project_id):
        return self.projects.get(project_id)

    def desk(self, desk_id):
        return self.desks.get(desk_id)

    def ref(self, model, ref_id):
        return self.refs.get(model, {}).get(ref_id)

    def custom_field_defs(self):
        return self.custom_fields

    def is_eligible_manager(self, manager_id, project_id, desk_id):
        # Same rule as organisation.services.eligible_managers_query, evaluated in memory.
        if manager_id not in self.project_staff.get(project_id, ()):
            return False
        if desk_id is None:
            return True
        return manager_id in self.desk_staff.get(desk_id, ()) or manager_id not in self.narrowed.get(project_id, ())

    def load_email_holders(self, emails):
        """Prefetch the clients holding any of `emails` (one query per batch)."""
        self.holders = {}
        emails = [e for e in set(emails) if e]
        for start in range(0, len(emails), 1000):
            part = emails[start:start + 1000]
            for row in db.session.execute(select(Client.id, Client.email, Client.full_name, Client.uid,
                                                 Client.project_id, Client.desk_id).where(Client.email.in_(part))):
                self.holders[row.email] = row
        return self.holders

    def email_holder(self, email):
        return self.holders.get(email)


def immutable_changes(existing, data):
    """Messages for the immutable fields (type, e-mail, project) that `data` would change."""
    errors = {}
    for key in IMMUTABLE_FIELDS:
        if key in data and data[key] not in (None, ""):
            current = getattr(existing, key)
            new = data[key]
            if key == "email":
                try:
                    new = v.normalize_email(new)
                except ValueError:
                    pass
            if key == "client_type":
                new = str(new).strip().lower()
            if key == "project_id":
                try:
                    new = int(new)
                except (TypeError, ValueError):
                    pass
            if new != current:
                errors[key] = [{
                    "client_type": _l("The client type cannot be changed after creation."),
                    "email": _l("The e-mail cannot be changed after creation."),
                    "project_id": _l("Use the Change project action to move a client to another project."),
                }[key]]
    return errors


_PERSONAL_REQUIRED = (("first_name", _l("First name is required.")),
                      ("phone", _l("Phone is required for personal clients.")))


_CHECKED_FIELDS = (("phone", v.normalize_phone), ("additional_phone", v.normalize_phone),
                   ("country", v.normalize_country), ("nationality", v.normalize_country),
                   ("date_of_birth", v.check_birth_date), ("password", v.check_password))


def validate_client_data(data, actor, existing=None, lookup=None):
    """Check and normalise `data`; returns the clean dict or raises ValidationFailed.

    For an update (`existing` given) only keys present in `data` are checked and returned,
    and immutable fields are refused when they differ. `lookup` supplies reference data
    (default: the database, queried as needed; bulk callers pass a PrefetchedClientLookup).
    """
    lookup = lookup or ClientLookup(actor)
    partial = existing is not None
    errors = {}
    unknown = set(data) - WRITABLE_FIELDS
    for key in sorted(unknown):
        errors[key] = [_l("This field cannot be set.")]
    out = {}

    def run(key, fn, *args):
        if key not in data:
            return
        try:
            out[key] = fn(data[key], *args)
        except ValueError as exc:
            errors[key] = [str(exc)]

    # identity
    if partial:
        errors.update(immutable_changes(existing, data))
    else:
        out["client_type"] = (str(data.get("client_type") or "personal")).strip().lower()
        if out["client_type"] not in CLIENT_TYPES:
            errors["client_type"] = [_l("Choose Personal or Business.")]
        run("email", v.normalize_email)
        if "email" not in data:
            errors["email"] = [_l("E-mail is required.")]

    for key, max_len in TEXT_FIELDS.items():
        if key in data:  # run(key, v.clean_text, max_len), inline: the bulk paths validate millions
            try:
                out[key] = v.clean_text(data[key], max_len)
            except ValueError as exc:
                errors[key] = [str(exc)]
    if "aml_screening" in data:
        run("aml_screening", v.clean_text, 2000, True)
    if "description" in data:
        desc = data["description"]
        if desc is not None and len(str(desc)) > DESCRIPTION_MAX:
            errors["description"] = [_l("The description can be at most %(max)d characters (now %(n)d).",
                                        max=DESCRIPTION_MAX, n=len(str(desc)))]
        else:
            run("description", lambda x: v.clean_text(x, DESCRIPTION_MAX, multiline=True))
    for key, choices in CHOICE_FIELDS.items():
        if key in data:
            run(key, v.check_choice, choices)
    if "state" in data:
        run("state", v.check_choice, STATES)
    for key, check in _CHECKED_FIELDS:
        if key in data:
            run(key, check)
    if "rating" in data:
        try:
            rating = int(data["rating"] or 0)
            if not 0 <= rating <= 3:
                raise ValueError
            out["rating"] = rating
        except (TypeError, ValueError):
            errors["rating"] = [_l("The rating is 0 to 3 stars.")]
    if "tags" in data:
        out["tags"] = _tags(data["tags"], errors)
    if "meta" in data:
        out["meta"] = _check_meta(data["meta"], errors)
    if "custom_fields" in data or not partial:
        out["custom_fields"] = _check_custom_fields(data.get("custom_fields"), errors, partial,
                                                    lookup.custom_field_defs())
        if partial and existing is not None:
            merged = dict(existing.custom_fields or {})
            merged.update(out["custom_fields"])
            out["custom_fields"] = merged

    for key, model in REF_FIELDS.items():
        if key in data and data[key] not in (None, ""):
            try:
                ref = lookup.ref(model, int(data[key]))
            except (TypeError, ValueError):
                ref = None
            if ref is None or not getattr(ref, "active", True):
                errors[key] = [_l("Choose a value from the list.")]
            else:
                out[key] = ref.id
        elif key in data:
            out[key] = None

    # affiliation: project, desk, manager (CL-REC-4, CL-ORG-2)
    scope = lookup.scope
    project_id = existing.project_id if partial else None
    if not partial:
        raw = data.get("project_id")
        try:
            project_id = int(raw) if raw not in (None, "") else None
        except (TypeError, ValueError):
            project_id = None
        project = lookup.project(project_id) if project_id else None
        if project is None or (not scope.all_projects and project_id not in (scope.project_ids or ())):
            errors["project_id"] = [_l("Choose one of your projects.")]
            project_id = None
        elif not project.active:
            errors["project_id"] = [_l("This project is deactivated.")]
        else:
            out["project_id"] = project_id
    desk_id = existing.desk_id if partial else None
    if "desk_id" in data:
        raw = data["desk_id"]
        try:
            desk_id = int(raw) if raw not in (None, "") else None
        except (TypeError, ValueError):
            desk_id = -1
        if desk_id is not None and project_id is not None:
            desk = lookup.desk(desk_id)
            if desk is None or desk.project_id != project_id:
                errors["desk_id"] = [_l("The desk does not belong to the selected project.")]
            elif not desk.active and (not partial or desk_id != existing.desk_id):
                errors["desk_id"] = [_l("This desk is deactivated.")]
        out["desk_id"] = desk_id
    manager_id = existing.manager_id if partial else None
    if "manager_id" in data:
        raw = data["manager_id"]
        try:
            manager_id = int(raw) if raw not in (None, "") else None
        except (TypeError, ValueError):
            manager_id = -1
        out["manager_id"] = manager_id
    if project_id is not None and manager_id is not None and "desk_id" not in errors and (
            "manager_id" in data or "desk_id" in data):
        if not lookup.is_eligible_manager(manager_id, project_id, desk_id):
            errors["manager_id"] = [_l("The manager must be an active staff member assigned to the client's "
                                       "project and desk.")]
    if project_id is not None and "desk_id" not in errors and not scope.allows(project_id, desk_id):
        errors["desk_id"] = [_l("You can only place clients on desks you are assigned to.")]

    # personal clients need a name and a phone in the staff form
    ctype = existing.client_type if partial else out.get("client_type")
    if out.get("funnel_stage_id") and ctype:
        stage = lookup.ref(FunnelStage, out["funnel_stage_id"])
        if stage.client_type != ctype:
            errors["funnel_stage_id"] = [_l("This funnel stage belongs to the other client type.")]
    if ctype == "personal":
        for key, message in _PERSONAL_REQUIRED:
            if (not partial or key in data) and not out.get(key) and key not in errors:
                errors[key] = [message]
    elif ctype == "business":
        if (not partial or "company_name" in data) and not out.get("company_name") and "company_name" not in errors:
            errors["company_name"] = [_l("Company name is required for business clients.")]

    # uniqueness of the e-mail (Block policy until the duplicates module lands)
    if not partial and out.get("email") and "email" not in errors:
        holder = lookup.email_holder(out["email"])
        if holder is not None:
            errors["email"] = [_email_in_use_message(holder, actor, scope)]

    if errors:
        raise ValidationFailed(errors)
    return out


def _assign(client, clean):
    for key, value in clean.items():
        if key == "tags":
            client.tags = tags_by_name(value)
        elif key == "password":
            if value:
                client.password_hash = generate_password_hash(value)
        else:
            setattr(client, key, value)
    client.full_name = compose_full_name(client)


def default_status_id():
    return db.session.scalar(select(ClientStatus.id).where(ClientStatus.is_default.is_(True),
                                                           ClientStatus.active.is_(True)).limit(1))


def build_client(clean, actor):
    """A new, unsaved client from validated data (UID, defaults and the processed rule applied)."""
    client = Client(client_type=clean["client_type"], email=clean["email"], project_id=clean["project_id"],
                    state="active", custom_fields={}, meta={})
    _assign(client, {k: val for k, val in clean.items() if k not in ("client_type", "email", "project_id")})
    if client.status_id is None:
        client.status_id = default_status_id()
    client.verification_status = client.verification_status or "init"
    client.created_by_id = getattr(actor, "id", None)
    client.uid = format_uid(allocate_uid_numbers(1), client.client_type)
    apply_processed_rule(client)
    return client


@attributed
def create_client(data, actor):
    clean = validate_client_data(data, actor)
    client = build_client(clean, actor)
    db.session.add(client)
    db.session.commit()
    return client


@attributed
def update_client(client, data, actor):
    """Apply the fields present in `data`; absent fields stay unchanged."""
    get_client(actor, client.id)  # scope re-check: the caller may hold a stale object
    clean = validate_client_data(data, actor, existing=client)
    for key in IMMUTABLE_FIELDS:
        clean.pop(key, None)
    if "state" in clean:
        _check_state_change(client, clean["state"], actor)
    _assign(client, clean)
    apply_processed_rule(client)
    db.session.commit()
    return client


def _check_state_change(client, state, actor):
    from ..core.permissions import user_can
    if state != client.state and not user_can(actor, "can_change_state"):
        raise ValidationFailed({"state": [_l("You are not allowed to change the client's state.")]})


@attributed
def change_state(client, state, actor):
    """Activate, deactivate or suspend (CL-REC-10); clients are never hard-deleted."""
    get_client(actor, client.id)
    try:
        state = v.check_choice(state, STATES)
    except ValueError as exc:
        raise ValidationFailed({"state": [str(exc)]})
    _check_state_change(client, state, actor)
    client.state = state
    db.session.commit()
    return client


@attributed
def set_outcome(client, outcome, actor):
    get_client(actor, client.id)
    try:
        client.outcome = v.check_choice(outcome, OUTCOMES)
    except ValueError as exc:
        raise ValidationFailed({"outcome": [str(exc)]})
    db.session.commit()
    return client


@attributed
def change_project(client, project_id, actor):
    """Move a client to another project; desk and manager that do not fit are cleared (CL-REC-1)."""
    get_client(actor, client.id)
    scope = org.scope_for(actor)
    try:
        project_id = int(project_id)
    except (TypeError, ValueError):
        raise ValidationFailed({"project_id": [_l("Choose one of your projects.")]})
    project = db.session.get(Project, project_id)
    if project is None or not project.active or (not scope.all_projects and project_id not in scope.project_ids):
        raise ValidationFailed({"project_id": [_l("Choose one of your projects.")]})
    if project_id == client.project_id:
        return client
    client.project_id = project_id
    client.project = project
    if client.desk_id is not None:
        desk = db.session.get(Desk, client.desk_id)
        if desk is None or desk.project_id != project_id:
            client.desk_id = None
            client.desk = None
    if client.manager_id is not None and not org.is_eligible_manager(client.manager_id, project_id, client.desk_id):
        client.manager_id = None
        client.manager = None
    db.session.commit()
    return client


# ----------------------------------------------------------------- two-factor methods (CL-REC-8)

def _method(client, method_id):
    method = db.session.get(TwoFactorMethod, method_id)
    if method is None or method.client_id != client.id:
        raise NotFound(_l("Two-factor method not found."))
    return method


@attributed
def make_default_2fa(client, method_id, actor):
    get_client(actor, client.id)
    method = _method(client, method_id)
    for m in client.two_factor_methods:
        m.is_default = m.id == method.id
    db.session.commit()
    return method


@attributed
def delete_2fa(client, method_id, actor):
    get_client(actor, client.id)
    method = _method(client, method_id)
    if method.is_default:
        raise ValidationFailed({"two_factor": [_l("The default method cannot be deleted. Make another method "
                                                  "the default first.")]})
    db.session.delete(method)
    db.session.commit()


@attributed
def update_2fa_phone(client, method_id, phone, actor):
    get_client(actor, client.id)
    method = _method(client, method_id)
    if method.kind != "phone":
        raise ValidationFailed({"phone": [_l("Only a phone method has a phone number.")]})
    try:
        method.phone = v.normalize_phone(phone)
    except ValueError as exc:
        raise ValidationFailed({"phone": [str(exc)]})
    if not method.phone:
        raise ValidationFailed({"phone": [_l("Phone is required for a phone method.")]})
    db.session.commit()
    return method


def enrol_2fa(client, kind, phone=None, make_default=False):
    """Client self-enrolment (portal API, a later issue); staff screens never call this."""
    if kind not in TWO_FACTOR_KINDS:
        raise ValidationFailed({"kind": [_l("Unknown two-factor method.")]})
    with db.session.no_autoflush:
        first = not client.two_factor_methods
        method = TwoFactorMethod(kind=kind, phone=v.normalize_phone(phone) if phone else None)
        client.two_factor_methods.append(method)
    if first or make_default:
        for m in client.two_factor_methods:
            m.is_default = m is method
    return method


# ----------------------------------------------------------------- search (CL-LIST-3)

def literal_search_clause(text):
    """Literal, case-insensitive partial match over id, UID, names, e-mail and phone."""
    text = (text or "").strip()
    if not text:
        return None
    names = [getattr(Client, c).icontains(text, autoescape=True) for c in NAME_COLUMNS]
    # the names through their shared index (Client.contains_companion), then each name's own test
    parts = [Client.uid.icontains(text, autoescape=True),
             and_(names_text().icontains(text, autoescape=True), or_(*names)),
             Client.email.icontains(text, autoescape=True), Client.phone.icontains(text, autoescape=True)]
    if text.isdigit() and len(text) < 10:
        parts.append(Client.id == int(text))
    return or_(*parts)


def record_duplicate_seen(primary_ids, when=None):
    """The one setter of Client.last_duplicate_at (CL-DUP-1 "flag"): a duplicate of each primary
    client was registered at `when` (default now). The date only moves forward, so a late or
    repeated call never hides a newer duplicate. Derived field: not audited (__audit_exclude__)."""
    from sqlalchemy import update
    ids = sorted({int(i) for i in primary_ids if i is not None})
    if not ids:
        return 0
    when = when or now()
    changed = 0
    for start in range(0, len(ids), 1000):
        changed += db.session.execute(
            update(Client).where(Client.id.in_(ids[start:start + 1000]),
                                 or_(Client.last_duplicate_at.is_(None), Client.last_duplicate_at < when))
            .values(last_duplicate_at=when)
            .execution_options(audit_recorded=True, synchronize_session="fetch")).rowcount
    return changed


def deactivated_states():
    return ("deactivated",)


def now():
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
