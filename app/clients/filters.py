"""Fast filters of the clients table (CL-LIST-4) as FAB filter classes.

One vocabulary for the list page (URL parameters, chips) and the REST list
(`search_filters`, rison `{col, opr, value}`). Text is literal and case-insensitive;
dates are inclusive day ranges in the user's time zone; a choice filter takes several
values (OR within the filter, AND across filters). Scope is never a filter here:
it is a base filter of the view and the API, so no filter value can widen it.
Passport number and date of birth are deliberately not filterable (R5).
"""

import datetime as dt
import decimal
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import g, has_request_context
from flask_appbuilder.models.filters import BaseFilter, Filters
from flask_appbuilder.models.sqla.filters import get_field_setup_query
from flask_babel import lazy_gettext as _l
from sqlalchemy import ARRAY, Boolean, Integer, SmallInteger, Text, bindparam, case, exists, false, func, select

from ..core.filters import FilterContainsLiteral, FilterEndsWithLiteral, FilterStartsWithLiteral
from .models import Client, client_tag

# --------------------------------------------------------------------------- values

MAX_VALUES = 50  # per filter: a URL can't build an unbounded IN list


def _values(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        out = [str(v).strip() for v in value if v is not None and str(v).strip() != ""]
    else:
        out = [p.strip() for p in str(value).split(",") if p.strip()] if isinstance(value, str) else [str(value)]
    return out[:MAX_VALUES]


def _typed(column, values):
    """Cast URL strings to the column's type; values that don't fit are dropped (they match nothing)."""
    if isinstance(column.type, (Integer, SmallInteger)):
        out = []
        for v in values:
            try:
                out.append(int(v))
            except ValueError:
                continue
        return out
    return values


# --------------------------------------------------------------------------- time zone and dates

DATE_PRESETS = {
    "today": _l("Today"), "yesterday": _l("Yesterday"), "last_7_days": _l("Last 7 days"),
    "last_30_days": _l("Last 30 days"), "this_week": _l("This week"), "last_week": _l("Last week"),
    "this_month": _l("This month"), "last_month": _l("Last month"), "this_year": _l("This year"),
}


def user_timezone(user=None):
    """The staff user's time zone (staff_preference.timezone), UTC when unset or unknown."""
    from ..organisation.services import current_user, staff_preference
    user = user or current_user()
    if user is None:
        return ZoneInfo("UTC")
    cache = g.setdefault("_clientdesk_tz", {}) if has_request_context() else {}
    if user.id not in cache:
        pref = staff_preference(user.id)
        name = (pref.timezone if pref is not None else None) or "UTC"
        try:
            cache[user.id] = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            cache[user.id] = ZoneInfo("UTC")
    return cache[user.id]


def preset_days(preset, today):
    """(first day, last day) of a preset, both inclusive, relative to the user's `today`."""
    if preset == "today":
        return today, today
    if preset == "yesterday":
        day = today - dt.timedelta(days=1)
        return day, day
    if preset == "last_7_days":
        return today - dt.timedelta(days=6), today
    if preset == "last_30_days":
        return today - dt.timedelta(days=29), today
    monday = today - dt.timedelta(days=today.weekday())
    if preset == "this_week":
        return monday, monday + dt.timedelta(days=6)
    if preset == "last_week":
        return monday - dt.timedelta(days=7), monday - dt.timedelta(days=1)
    first = today.replace(day=1)
    if preset == "this_month":
        following = (first + dt.timedelta(days=32)).replace(day=1)
        return first, following - dt.timedelta(days=1)
    if preset == "last_month":
        last = first - dt.timedelta(days=1)
        return last.replace(day=1), last
    if preset == "this_year":
        return today.replace(month=1, day=1), today.replace(month=12, day=31)
    raise ValueError(preset)


def _parse_day(text):
    try:
        return dt.date.fromisoformat(text.strip()) if text and text.strip() else None
    except ValueError:
        return None


def date_range_bounds(value, tz, now=None):
    """UTC-naive [start, end) for a filter value: a preset name or "YYYY-MM-DD..YYYY-MM-DD".

    Either side of a range may be empty. Day boundaries are midnight in `tz`. Returns None
    for a value that means nothing (the filter is then ignored).
    """
    value = (value[0] if isinstance(value, (list, tuple)) and value else value) or ""
    value = str(value).strip()
    if not value:
        return None
    if value in DATE_PRESETS:
        now = now or dt.datetime.now(dt.UTC)
        first, last = preset_days(value, now.astimezone(tz).date())
    else:
        start_text, _, end_text = value.partition("..")
        first, last = _parse_day(start_text), _parse_day(end_text)
        if first is None and last is None:
            return None

    def utc(day):
        local = dt.datetime.combine(day, dt.time.min, tzinfo=tz)
        return local.astimezone(dt.UTC).replace(tzinfo=None)

    return (utc(first) if first else None, utc(last + dt.timedelta(days=1)) if last else None)


def parse_number(text):
    """A finite number from URL text ("1.5", "1,5"), or None."""
    try:
        number = decimal.Decimal(str(text).strip().replace(",", "."))
    except (decimal.InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


# --------------------------------------------------------------------------- list values
# FAB's Filters.apply_all hands a *list* value to a filter one element at a time (so several
# values would be ANDed), unless the filter's arg_name is "in"/"not_in". Filters that take the
# whole list declare `takes_list`; their list values travel as tuples, which FAB passes whole.

def keep_lists_whole(filters):
    """Turn the list values of `takes_list` filters into tuples (for Filters built by FAB, e.g. REST)."""
    for index, (flt, value) in enumerate(zip(filters.filters, filters.values, strict=True)):
        if isinstance(value, list) and getattr(flt, "takes_list", False):
            filters.values[index] = tuple(value)
    return filters


# --------------------------------------------------------------------------- FAB filter classes
# arg_name values are unique (FAB keeps one global arg_name -> class map): prefix "cd_".

class ClientInFilter(BaseFilter):
    """Column equals any of the given values (a list, or a comma-separated string in the REST API)."""

    name = _l("Is one of")
    arg_name = "cd_in"
    takes_list = True

    def apply(self, query, value):
        query, column = get_field_setup_query(query, self.model, self.column_name)
        values = _typed(column, _values(value))
        if not _values(value):
            return query
        return query.filter(column.in_(values)) if values else query.filter(false())


class ClientBooleanFilter(BaseFilter):
    """yes/no (also true/false, 1/0)."""

    name = _l("Is")
    arg_name = "cd_bool"

    def apply(self, query, value):
        query, column = get_field_setup_query(query, self.model, self.column_name)
        values = _values(value)
        if not values:
            return query
        text = values[0].lower()
        if text in ("yes", "true", "1", "y"):
            return query.filter(column.is_(True))
        if text in ("no", "false", "0", "n"):
            return query.filter(column.is_(False))
        return query.filter(false())


class ClientDateRangeFilter(BaseFilter):
    """Inclusive day range or preset, at day boundaries of the current user's time zone."""

    name = _l("In date range")
    arg_name = "cd_date"

    def apply(self, query, value):
        query, column = get_field_setup_query(query, self.model, self.column_name)
        bounds = date_range_bounds(value, user_timezone())
        if bounds is None:
            return query
        start, end = bounds
        if start is not None:
            query = query.filter(column >= start)
        if end is not None:
            query = query.filter(column < end)
        return query


class ClientTagsFilter(BaseFilter):
    """Clients carrying any of the given tag ids (EXISTS, so rows are never multiplied)."""

    name = _l("Has any of the tags")
    arg_name = "cd_tags"
    takes_list = True

    def apply(self, query, value):
        ids = _typed(client_tag.c.tag_id, _values(value))
        if not _values(value):
            return query
        if not ids:
            return query.filter(false())
        return query.filter(exists().where(client_tag.c.client_id == Client.id, client_tag.c.tag_id.in_(ids)))


# --------------------------------------------------------------------------- custom fields
# Values live in Client.custom_fields (JSON; JSONB on PostgreSQL) as validated by
# clients.services: numbers as JSON numbers, dates as "YYYY-MM-DD", booleans as JSON
# booleans, select as a string, multiselect as a list of strings. A field's type can be
# changed later, so every expression tolerates values of another type (they just don't match).

CUSTOM_RANGE_KINDS = ("number", "date")
CUSTOM_VALUE_KINDS = ("select", "multiselect")
CUSTOM_SORTABLE_KINDS = ("text", "number", "date", "boolean", "select")  # a list has no one value to sort by
_ISO_DAY = "____-__-__"


def _postgres():
    from ..extensions import db
    return db.session.get_bind().dialect.name == "postgresql"


def _json_path(key):
    return f'$."{key}"'  # keys are [a-z][a-z0-9_]* (custom field settings)


def custom_text(key):
    """The stored value as text (strings unquoted)."""
    return Client.custom_fields[key].as_string()


def custom_number(key):
    """The stored value as a number; NULL unless it is a JSON number (so a cast can never fail)."""
    element = Client.custom_fields[key]
    if _postgres():
        is_number = func.jsonb_typeof(element) == "number"
    else:
        is_number = func.json_type(Client.custom_fields, _json_path(key)).in_(("integer", "real"))
    return case((is_number, element.as_float()), else_=None)


def custom_truth(key):
    """'true' exactly when the stored value is JSON true."""
    if _postgres():
        return func.coalesce(Client.custom_fields[key].as_string(), "")
    return func.coalesce(func.json_type(Client.custom_fields, _json_path(key)), "")


def custom_any_of(key, values):
    """The stored string, or any element of the stored list, is one of `values`."""
    if _postgres():
        return Client.custom_fields[key].op("?|", return_type=Boolean)(
            bindparam(None, list(values), type_=ARRAY(Text)))
    items = func.json_each(Client.custom_fields, _json_path(key)).table_valued("value")
    return exists(select(1).select_from(items).where(items.c.value.in_(list(values))))


def custom_sort_expression(field):
    """What a custom-field column sorts by, or None when it doesn't sort (multiselect)."""
    if field.field_type not in CUSTOM_SORTABLE_KINDS:
        return None
    if field.field_type == "number":
        return custom_number(field.key)
    return custom_text(field.key)


def _custom_field(key):
    from ..extensions import db
    from .models import CustomField
    return db.session.scalars(select(CustomField).where(CustomField.key == key)).first() if key else None


def _key_and_rest(value):
    """A custom-field filter value: "key=rest", or [key, value, value…] (takes_list filters)."""
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value if v is not None and str(v).strip() != ""]
        return (items[0], items[1:MAX_VALUES + 1]) if items else ("", [])
    key, sep, rest = str(value or "").partition("=")
    return (key.strip(), [rest.strip()]) if sep and rest.strip() else ("", [])


class ClientCustomFieldFilter(BaseFilter):
    """`key=value` on a custom field: literal, case-insensitive contains of the stored value."""

    name = _l("Custom field contains")
    arg_name = "cd_cf"

    def apply(self, query, value):
        key, rest = _key_and_rest(value)
        if not key:
            return query
        if _custom_field(key) is None:
            return query.filter(false())
        return query.filter(custom_text(key).icontains(rest[0], autoescape=True))


class ClientCustomFieldRangeFilter(BaseFilter):
    """`key=from..to` on a number or date custom field (inclusive; either side may be empty), or
    `key=<preset>` on a date field (days of the user's time zone)."""

    name = _l("Custom field in range")
    arg_name = "cd_cf_range"

    def apply(self, query, value):
        key, rest = _key_and_rest(value)
        if not key:
            return query
        field = _custom_field(key)
        if field is None or field.field_type not in CUSTOM_RANGE_KINDS:
            return query.filter(false())
        text = rest[0]
        if field.field_type == "date":
            if text in DATE_PRESETS:
                today = dt.datetime.now(dt.UTC).astimezone(user_timezone()).date()
                first, last = preset_days(text, today)
            else:
                start, _, end = text.partition("..")
                first, last = _parse_day(start), _parse_day(end)
            if first is None and last is None:
                return query.filter(false())
            stored = custom_text(key)
            query = query.filter(stored.like(_ISO_DAY))
            if first is not None:
                query = query.filter(stored >= first.isoformat())
            if last is not None:
                query = query.filter(stored <= last.isoformat())
            return query
        start, _, end = text.partition("..")
        low, high = parse_number(start) if start.strip() else None, parse_number(end) if end.strip() else None
        if (start.strip() and low is None) or (end.strip() and high is None) or (low is None and high is None):
            return query.filter(false())
        stored = custom_number(key)
        if low is not None:
            query = query.filter(stored >= float(low))
        if high is not None:
            query = query.filter(stored <= float(high))
        return query


class ClientCustomFieldBooleanFilter(BaseFilter):
    """`key=yes` / `key=no` on a yes/no custom field; "no" includes clients without a value."""

    name = _l("Custom field is")
    arg_name = "cd_cf_bool"

    def apply(self, query, value):
        key, rest = _key_and_rest(value)
        if not key:
            return query
        field = _custom_field(key)
        answer = rest[0].lower()
        if field is None or field.field_type != "boolean" or answer not in ("yes", "no"):
            return query.filter(false())
        truth = custom_truth(key)
        return query.filter(truth == "true" if answer == "yes" else truth != "true")


class ClientCustomFieldInFilter(BaseFilter):
    """[key, value, value…] on a select / multiselect custom field: the value (or any of the
    chosen values) is one of the given ones."""

    name = _l("Custom field is one of")
    arg_name = "cd_cf_in"
    takes_list = True

    def apply(self, query, value):
        key, values = _key_and_rest(value)
        if not key or not values:
            return query
        if _custom_field(key) is None:
            return query.filter(false())
        return query.filter(custom_any_of(key, values))


TEXT_OPERATORS = {"ct": FilterContainsLiteral, "sw": FilterStartsWithLiteral, "ew": FilterEndsWithLiteral}
TEXT_OPERATOR_LABELS = {"ct": _l("contains"), "sw": _l("starts with"), "ew": _l("ends with")}


# --------------------------------------------------------------------------- the vocabulary

@dataclass(frozen=True)
class FilterSpec:
    key: str                    # URL parameter (and chip id)
    column: str                 # model column the FAB filter applies to
    label: object
    kind: str                   # choice, bool, date, text, tags
    choices: str = ""           # name of the choice source (see list_services.filter_choices)
    params: tuple = field(default=())

    def url_params(self):
        if self.kind == "date":
            return (f"{self.key}_from", f"{self.key}_to", f"{self.key}_preset")
        if self.kind == "text":
            return (self.key, f"{self.key}_op")
        return (self.key,)


# Option lists a page may ask list_choices for (the choice filters' sources and the bulk forms').
CHOICE_SOURCES = ("projects", "desks", "managers", "statuses", "states", "countries", "verification_levels",
                  "verification_statuses", "ratings", "contact_origins", "tags")

FILTERS = [
    FilterSpec("project", "project_id", _l("Project"), "choice", "projects"),
    FilterSpec("desk", "desk_id", _l("Desk"), "choice", "desks"),
    FilterSpec("manager", "manager_id", _l("Manager"), "choice", "managers"),
    FilterSpec("status", "status_id", _l("Status"), "choice", "statuses"),
    FilterSpec("state", "state", _l("State"), "choice", "states"),
    FilterSpec("country", "country", _l("Country"), "choice", "countries"),
    FilterSpec("verification_level", "verification_level", _l("Verification level"), "choice",
               "verification_levels"),
    FilterSpec("verification_status", "verification_status", _l("Verification status"), "choice",
               "verification_statuses"),
    FilterSpec("processed", "processed", _l("Processed"), "bool"),
    FilterSpec("rating", "rating", _l("Rating"), "choice", "ratings"),
    FilterSpec("tags", "tags", _l("Tags"), "tags", "tags"),
    FilterSpec("contact_origin", "contact_origin_id", _l("Contact origin"), "choice", "contact_origins"),
    FilterSpec("has_actions", "actions_exist", _l("Has actions"), "bool"),
    FilterSpec("created", "created_at", _l("Created"), "date"),
    FilterSpec("last_login", "last_login_at", _l("Last login date"), "date"),
    FilterSpec("last_action", "last_action_at", _l("Last action date"), "date"),
    FilterSpec("future_action", "future_action_at", _l("Future action date"), "date"),
    FilterSpec("first_name", "first_name", _l("First name"), "text"),
    FilterSpec("last_name", "last_name", _l("Last name"), "text"),
    FilterSpec("email", "email", _l("E-mail"), "text"),
    FilterSpec("phone", "phone", _l("Phone"), "text"),
    FilterSpec("comments", "description", _l("Comments"), "text"),
    FilterSpec("external_id", "external_id", _l("External ID"), "text"),
]
FILTERS_BY_KEY = {f.key: f for f in FILTERS}
CUSTOM_PREFIX = "cf_"
TYPE_PARAM = "type"  # the Personal / Business tab
CLIENT_TYPES = ("personal", "business")

KIND_CLASSES = {"choice": [ClientInFilter], "bool": [ClientBooleanFilter], "date": [ClientDateRangeFilter],
                "tags": [ClientTagsFilter], "text": list(TEXT_OPERATORS.values())}

# The REST list (app/clients/api.py) serves the same classes: {col, opr, value} with opr = arg_name.
API_SEARCH_FILTERS = {}
for _spec in FILTERS:
    API_SEARCH_FILTERS.setdefault(_spec.column, [])
    for _cls in KIND_CLASSES[_spec.kind]:
        if _cls not in API_SEARCH_FILTERS[_spec.column]:
            API_SEARCH_FILTERS[_spec.column].append(_cls)
API_SEARCH_FILTERS["client_type"] = [ClientInFilter]
API_SEARCH_FILTERS["custom_fields"] = [ClientCustomFieldFilter, ClientCustomFieldRangeFilter,
                                       ClientCustomFieldBooleanFilter, ClientCustomFieldInFilter]
API_SEARCH_COLUMNS = list(API_SEARCH_FILTERS)


@dataclass
class ActiveFilter:
    """One filter set in the URL: what to apply and what its chip says."""

    spec: FilterSpec | None
    key: str
    column: str
    filter_class: type
    value: object
    params: tuple               # URL parameters the chip's × removes
    label: object = ""
    detail: str = ""            # operator, e.g. "contains"; "preset" or "range" for dates
    raw: list = field(default_factory=list)
    kind: str = ""              # how the chip reads: the spec's kind, or values/range/date/bool/text


def parse_filters(args, custom_fields=()):
    """The active filters of a request's args (a MultiDict or a dict of lists), in vocabulary order."""
    def getlist(name):
        if hasattr(args, "getlist"):
            return [v for v in args.getlist(name) if v is not None]
        value = args.get(name)
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]

    def first(name):
        values = [v.strip() for v in getlist(name) if v.strip()]
        return values[0] if values else ""

    active = []
    for spec in FILTERS:
        if spec.kind in ("choice", "tags"):
            values = [v.strip() for v in getlist(spec.key) if v.strip()][:MAX_VALUES]
            if values:
                active.append(ActiveFilter(spec, spec.key, spec.column, KIND_CLASSES[spec.kind][0], values,
                                           spec.url_params(), spec.label, raw=values))
        elif spec.kind == "bool":
            value = first(spec.key).lower()
            if value in ("yes", "no"):
                active.append(ActiveFilter(spec, spec.key, spec.column, ClientBooleanFilter, value,
                                           spec.url_params(), spec.label, raw=[value]))
        elif spec.kind == "text":
            value = first(spec.key)[:200]
            op = first(f"{spec.key}_op") or "ct"
            if value:
                op = op if op in TEXT_OPERATORS else "ct"
                active.append(ActiveFilter(spec, spec.key, spec.column, TEXT_OPERATORS[op], value,
                                           spec.url_params(), spec.label, detail=op, raw=[value]))
        elif spec.kind == "date":
            preset = first(f"{spec.key}_preset")
            if preset in DATE_PRESETS:
                active.append(ActiveFilter(spec, spec.key, spec.column, ClientDateRangeFilter, preset,
                                           spec.url_params(), spec.label, detail="preset", raw=[preset]))
                continue
            start, end = _parse_day(first(f"{spec.key}_from")), _parse_day(first(f"{spec.key}_to"))
            if start or end:
                value = f"{start.isoformat() if start else ''}..{end.isoformat() if end else ''}"
                active.append(ActiveFilter(spec, spec.key, spec.column, ClientDateRangeFilter, value,
                                           spec.url_params(), spec.label, detail="range", raw=[value]))
    for spec_item in active:
        spec_item.kind = spec_item.spec.kind
    for cf in custom_fields:
        item = _custom_active_filter(cf, getlist, first)
        if item is not None:
            active.append(item)
    return active


def custom_url_params(cf):
    """URL parameters of one custom field's filter, by its type."""
    name = f"{CUSTOM_PREFIX}{cf.key}"
    if cf.field_type == "number":
        return (f"{name}_from", f"{name}_to")
    if cf.field_type == "date":
        return (f"{name}_from", f"{name}_to", f"{name}_preset")
    return (name,)


def _custom_active_filter(cf, getlist, first):
    """The active filter of one custom field: range (number, date), yes/no, any of the options, or contains."""
    name = f"{CUSTOM_PREFIX}{cf.key}"
    params = custom_url_params(cf)
    label = cf.localized_label()
    kind = cf.field_type
    if kind == "number":
        texts = [first(f"{name}_from"), first(f"{name}_to")]
        low, high = (parse_number(t) if t else None for t in texts)
        if low is None and high is None:
            return None
        raw = [str(n) if n is not None else "" for n in (low, high)]
        return ActiveFilter(None, name, "custom_fields", ClientCustomFieldRangeFilter, f"{cf.key}={raw[0]}..{raw[1]}",
                            params, label, detail="range", raw=raw, kind="range")
    if kind == "date":
        preset = first(f"{name}_preset")
        if preset in DATE_PRESETS:
            return ActiveFilter(None, name, "custom_fields", ClientCustomFieldRangeFilter, f"{cf.key}={preset}",
                                params, label, detail="preset", raw=[preset], kind="date")
        start, end = _parse_day(first(f"{name}_from")), _parse_day(first(f"{name}_to"))
        if not (start or end):
            return None
        value = f"{start.isoformat() if start else ''}..{end.isoformat() if end else ''}"
        return ActiveFilter(None, name, "custom_fields", ClientCustomFieldRangeFilter, f"{cf.key}={value}", params,
                            label, detail="range", raw=[value], kind="date")
    if kind == "boolean":
        answer = first(name).lower()
        if answer not in ("yes", "no"):
            return None
        return ActiveFilter(None, name, "custom_fields", ClientCustomFieldBooleanFilter, f"{cf.key}={answer}",
                            params, label, raw=[answer], kind="bool")
    if kind in CUSTOM_VALUE_KINDS:
        values = list(dict.fromkeys(v.strip()[:200] for v in getlist(name) if v.strip()))[:MAX_VALUES]
        if not values:
            return None
        return ActiveFilter(None, name, "custom_fields", ClientCustomFieldInFilter, (cf.key, *values), params,
                            label, raw=values, kind="values")
    value = first(name)[:200]
    if not value:
        return None
    return ActiveFilter(None, name, "custom_fields", ClientCustomFieldFilter, f"{cf.key}={value}", params, label,
                        raw=[value], kind="text")


def client_type_tab(args):
    value = (args.get(TYPE_PARAM) or "").strip()
    return value if value in CLIENT_TYPES else ""


def build_filters(datamodel, active, client_type=""):
    """A fresh FAB Filters object for one request (never the view's shared one: fab5-notes §9.1)."""
    filters = Filters(datamodel.filter_converter_class, datamodel)
    for item in active:
        filters.add_filter(item.column, item.filter_class, item.value)
    if client_type:
        filters.add_filter("client_type", ClientInFilter, [client_type])
    return keep_lists_whole(filters)


def filter_params():
    """Every URL parameter the filters may use (fixed part; custom fields use the cf_ prefix)."""
    out = set()
    for spec in FILTERS:
        out.update(spec.url_params())
    return out
