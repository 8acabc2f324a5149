"""The client import pipeline (CL-IO-1, CL-IO-2): one service for the UI, the CLI and the REST API.

store_upload → (preview, configure) → start → run_import. run_import reads the stored file
in chunks; per chunk it maps the cells to client fields, decides each row's identity in one
place (`duplicate_decision`), validates with the client rules of clients.services (reference
data prefetched once), writes clients with Core bulk statements, records the audit rows and
moves the checkpoint — all in one transaction, so a crash repeats at most one chunk and a
repeated chunk changes nothing (rows already written are found and reported unchanged).
On PostgreSQL the writes of a chunk run in writer threads (`ChunkWriter`) while the next chunks
are processed; the clients of chunks still in flight are read from memory (`ImportRun.remember`).
"""

import contextvars
import datetime as dt
import hashlib
import json
import logging
import operator
import os
import queue
import threading
import uuid

from flask import current_app
from flask_appbuilder.security.sqla.models import User
from flask_babel import force_locale, lazy_gettext as _l
from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from ..clients import forms
from ..clients import services as client_services
from ..clients.models import Client, ClientStatus, Tag, client_tag
from ..core import audit, bulk
from ..core import validators as v
from ..core.actor import acting_as
from ..core.errors import NotFound, ValidationFailed
from ..extensions import db
from ..organisation import services as org
from . import fields as F
from .exports import unneutralise
from . import parsing
from .models import MAPPING_NAME_MAX, ImportJob, ImportMapping, ImportRowError, utcnow

log = logging.getLogger(__name__)

CLIENT = Client.__table__
COLUMNS = [c.name for c in CLIENT.columns if c.name != "id"]
# Columns compared and written by an import update (derived and bookkeeping columns excluded).
UPDATABLE = [c for c in COLUMNS if c not in ("uid", "client_type", "email", "project_id", "created_at",
                                             "updated_at", "created_by_id", "password_hash")]


# ----------------------------------------------------------------- files and jobs

def import_folder():
    folder = current_app.config["IMPORT_FOLDER"]
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def job_path(job):
    return os.path.join(import_folder(), job.stored_name)


def store_upload(stream, filename, user, encoding=None, delimiter=None, dry_run=False, options=None):
    """Save an uploaded file privately (uuid4 name, sha256) and create its ImportJob with an automatic mapping."""
    if not (encoding or "").strip():
        encoding = None
    if not (delimiter or "").strip("\r\n"):
        delimiter = None
    if delimiter in ("\\t", "tab"):
        delimiter = "\t"
    limit = current_app.config["IMPORT_MAX_BYTES"]
    stored = uuid.uuid4().hex
    path = os.path.join(import_folder(), stored)
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with open(path, "wb") as out:
            while True:
                block = stream.read(1024 * 1024)
                if not block:
                    break
                if len(head) < 8192:
                    head += block[:8192]
                size += len(block)
                if size > limit:
                    raise ValidationFailed({"file": [_l("The file is larger than %(mb)d MB.", mb=limit // 2 ** 20)]})
                digest.update(block)
                out.write(block)
        if size == 0:
            raise ValidationFailed({"file": [_l("The file is empty.")]})
        fmt = parsing.file_format(filename, head)
        if fmt == "csv":
            encoding, delimiter = parsing.sniff_csv(path, encoding, delimiter)
        else:
            encoding = delimiter = None
        headers, _ = parsing.read_head(path, fmt, encoding, delimiter, rows=1)
    except parsing.FileRejected as exc:
        _remove(path)
        raise ValidationFailed({"file": [str(exc)]})
    except ValidationFailed:
        _remove(path)
        raise
    opts = dict(options or {})
    job = ImportJob(user_id=user.id, original_name=os.path.basename(filename or "upload")[:255], stored_name=stored,
                    file_sha256=digest.hexdigest(), file_size=size, file_format=fmt, encoding=encoding,
                    delimiter=delimiter, headers=headers, mapping=F.auto_mapping(headers), options=opts,
                    dry_run=bool(dry_run), status="uploaded")
    db.session.add(job)
    db.session.commit()
    return job


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def jobs_query(user):
    """The import jobs a user may see: their own (administrators: all)."""
    q = select(ImportJob).order_by(ImportJob.id.desc())
    if not org.is_admin(user):
        q = q.where(ImportJob.user_id == getattr(user, "id", None))
    return q


def get_job(user, job_id):
    try:
        job_id = int(job_id)
    except (TypeError, ValueError):
        raise NotFound(_l("Import not found."))
    job = db.session.scalars(jobs_query(user).where(ImportJob.id == job_id)).first()
    if job is None:
        raise NotFound(_l("Import not found."))
    return job


def preview(job, rows=10):
    """(headers, first rows) read with the job's current encoding and delimiter."""
    try:
        return parsing.read_head(job_path(job), job.file_format, job.encoding, job.delimiter, rows=rows)
    except parsing.FileRejected as exc:
        raise ValidationFailed({"file": [str(exc)]})


def configure(job, user, mapping=None, encoding=None, delimiter=None, dry_run=None, options=None):
    """Change mapping / encoding / delimiter / options before the job starts."""
    if job.status not in ("uploaded",):
        raise ValidationFailed({"job": [_l("This import has already started.")]})
    if delimiter in ("\\t", "tab"):
        delimiter = "\t"
    if job.file_format == "csv" and (encoding or delimiter):
        try:
            enc, delim = parsing.sniff_csv(job_path(job), encoding or job.encoding, delimiter or job.delimiter)
            headers, _ = parsing.read_head(job_path(job), "csv", enc, delim, rows=1)
        except parsing.FileRejected as exc:
            raise ValidationFailed({"file": [str(exc)]})
        if (enc, delim) != (job.encoding, job.delimiter):
            job.encoding, job.delimiter, job.headers = enc, delim, headers
            if mapping is None:
                job.mapping = F.auto_mapping(headers)
    if mapping is not None:
        job.mapping = check_mapping(mapping, len(job.headers or []))
    if dry_run is not None:
        job.dry_run = bool(dry_run)
    if options:
        opts = dict(job.options or {})
        opts.update(options)
        job.options = opts
    db.session.commit()
    return job


def check_mapping(mapping, width):
    from ..clients.models import CustomField
    custom = set(db.session.scalars(select(CustomField.key).where(CustomField.active.is_(True))))
    clean, used, errors = {}, set(), []
    for index, key in (mapping or {}).items():
        try:
            i = int(index)
        except (TypeError, ValueError):
            continue
        key = (key or "").strip()
        if i < 0 or i >= width or not key:
            continue
        if not F.valid_target(key, custom):
            errors.append(_l("Unknown field: %(key)s.", key=key))
            continue
        if key in used:
            errors.append(_l("The field %(key)s is mapped twice.", key=key))
            continue
        used.add(key)
        clean[str(i)] = key
    if not used & {"email", "id"}:
        errors.append(_l("Map a column to E-mail (or ID) so rows can be matched."))
    if errors:
        raise ValidationFailed({"mapping": errors})
    return clean


# ----------------------------------------------------------------- saved mappings (CL-IO-1)
# A saved mapping is keyed by the header text normalised as automatic matching does
# (fields._norm: case, accents' composition, spaces and punctuation ignored), so it fits any
# file with the same headers in any order. Mappings are private: another user's id is a 404.

_MAPPING_NOT_FOUND = _l("Saved mapping not found.")
_MAPPING_NAME_TAKEN = _l("You already have a saved mapping with this name.")


def list_mappings(user):
    """The user's own saved mappings, by name."""
    return db.session.scalars(select(ImportMapping).where(ImportMapping.user_id == user.id)
                              .order_by(ImportMapping.name, ImportMapping.id)).all()


def get_mapping(user, mapping_id):
    try:
        mapping_id = int(mapping_id)
    except (TypeError, ValueError):
        raise NotFound(_MAPPING_NOT_FOUND)
    mapping = db.session.get(ImportMapping, mapping_id) if 0 < mapping_id < 2 ** 31 else None
    if mapping is None or mapping.user_id != user.id:
        raise NotFound(_MAPPING_NOT_FOUND)
    return mapping


def _mapping_name(user, name, exclude_id=None):
    name = " ".join((name or "").split())
    if not name:
        raise ValidationFailed({"name": [_l("Enter a name for the mapping.")]})
    if len(name) > MAPPING_NAME_MAX:
        raise ValidationFailed({"name": [_l("The name can be at most %(n)s characters.", n=MAPPING_NAME_MAX)]})
    others = select(ImportMapping.name).where(ImportMapping.user_id == user.id)
    if exclude_id is not None:  # a mapping may keep its own name (or change its case)
        others = others.where(ImportMapping.id != exclude_id)
    taken = {n.casefold() for n in db.session.scalars(others)}
    if name.casefold() in taken:
        raise ValidationFailed({"name": [_MAPPING_NAME_TAKEN]})
    return name


def _commit_named(mapping):
    """Commit a saved or renamed mapping; the same name taken concurrently is the usual name error."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ValidationFailed({"name": [_MAPPING_NAME_TAKEN]})
    return mapping


def save_mapping(user, job, name):
    """Save the job's current mapping under a name, as {normalised header: field key}; returns the ImportMapping."""
    name = _mapping_name(user, name)
    headers = list(job.headers or [])
    columns = {}
    for index, key in sorted((job.mapping or {}).items(), key=lambda item: int(item[0])):
        i = int(index)
        header = F._norm(headers[i]) if 0 <= i < len(headers) else ""
        if key and header and header not in columns:   # a repeated header keeps its first column's field
            columns[header] = key
    if not columns:
        raise ValidationFailed({"mapping": [_l("Map at least one column before saving the mapping.")]})
    mapping = ImportMapping(user_id=user.id, name=name, columns=columns)
    db.session.add(mapping)
    return _commit_named(mapping)


def rename_mapping(user, mapping_id, name):
    """Give one of the user's saved mappings another name (same rules as saving); returns it."""
    mapping = get_mapping(user, mapping_id)
    mapping.name = _mapping_name(user, name, exclude_id=mapping.id)
    return _commit_named(mapping)


def delete_mapping(user, mapping_id):
    db.session.delete(get_mapping(user, mapping_id))
    db.session.commit()


def apply_mapping(user, job, mapping_id):
    """Map the job's columns from a saved mapping by header; columns it does not name are left unmapped.

    Returns the headers that matched. Fields no longer importable (a deactivated custom field)
    are skipped; the usual check (an E-mail or ID column) runs when the import starts.
    """
    saved = get_mapping(user, mapping_id)
    if job.status != "uploaded":
        raise ValidationFailed({"job": [_l("This import has already started.")]})
    from ..clients.models import CustomField
    custom = set(db.session.scalars(select(CustomField.key).where(CustomField.active.is_(True))))
    mapping, used, matched = {}, set(), []
    for i, header in enumerate(job.headers or []):
        key = (saved.columns or {}).get(F._norm(header), "")
        if key and key not in used and F.valid_target(key, custom):
            used.add(key)
            mapping[str(i)] = key
            matched.append(header)
        else:
            mapping[str(i)] = ""
    job.mapping = mapping
    db.session.commit()
    return matched


def start(job, user, wait=False):
    """Queue the import (RQ when REDIS_URL is set; else the web process's job thread, or inline when
    `wait`, as the CLI does); returns the job."""
    from . import jobs
    if job.status != "uploaded":
        return job
    job.mapping = check_mapping(job.mapping, len(job.headers or []))
    job.status = "queued"
    job.heartbeat_at = utcnow()  # queued now: a job lost before it starts is resumed from here
    db.session.commit()
    jobs.enqueue_import(job.id, wait=wait)
    db.session.expire_all()
    return db.session.get(ImportJob, job.id)


def request_cancel(job):
    if not job.finished:
        job.cancel_requested = True
        db.session.commit()
    return job


# ----------------------------------------------------------------- value forms (CL-IO-1)

def _n(text):
    return " ".join(str(text).split()).casefold()


def _labels_index(labels):
    """key -> key, plus every language's label -> key, for a dict of lazily translated labels."""
    out = {}
    for key, lazy in labels.items():
        out[_n(key)] = key
        for variant in F._label_variants(lazy):
            out.setdefault(_n(variant), key)
    return out


_MAX_KEYS = 50_000


class ValueForms:
    """Resolves the accepted value forms of one file's cells to client service values."""

    def __init__(self, lookup, default_project_id):
        self.lookup = lookup
        self.default_project_id = default_project_id
        self.projects = {}
        for p in lookup.projects.values():
            for form in (str(p.id), p.name, p.key):
                self.projects.setdefault(_n(form), p.id)
        self.desks = {}
        for d in lookup.desks.values():
            bucket = self.desks.setdefault(d.project_id, {})
            for form in (str(d.id), d.name, d.label):
                if form:
                    bucket.setdefault(_n(form), d.id)
        self.statuses = {}
        for s in lookup.refs[ClientStatus].values():
            for form in [str(s.id), s.label, *(s.label_translations or {}).values()]:
                if form:
                    self.statuses.setdefault(_n(form), s.id)
        self.staff = {}
        for u in db.session.execute(select(User.id, User.username, User.email, User.first_name, User.last_name)):
            for form in {str(u.id), u.username, u.email, f"{u.first_name} {u.last_name}"}:
                if form:
                    self.staff.setdefault(_n(form), set()).add(u.id)
        self.types = _labels_index(forms.CLIENT_TYPE_LABELS)
        self.states = _labels_index(forms.STATE_LABELS)
        self.genders = _labels_index(forms.GENDER_LABELS)
        self.countries = {}
        self._keys = {}  # raw cell -> _n(raw): a file repeats its few hundred projects, desks, staff…

    def _key(self, raw):
        key = self._keys.get(raw)
        if key is None:
            key = _n(raw)
            if len(self._keys) < _MAX_KEYS:
                self._keys[raw] = key
        return key

    def choice(self, index, raw, message):
        key = index.get(self._key(raw))
        if key is None:
            raise ValueError(message)
        return key

    def project(self, raw):
        pid = self.projects.get(self._key(raw))
        if pid is None:
            raise ValueError(_l("Unknown project: %(value)s.", value=raw[:100]))
        return pid

    def desk(self, raw, project_id):
        did = self.desks.get(project_id, {}).get(self._key(raw))
        if did is None:
            raise ValueError(_l("No desk %(value)s in the client's project.", value=raw[:100]))
        return did

    def manager(self, raw):
        ids = self.staff.get(self._key(raw), set())
        if not ids:
            raise ValueError(_l("Unknown staff user: %(value)s.", value=raw[:100]))
        if len(ids) > 1:
            raise ValueError(_l("Several staff users match %(value)s; use the e-mail or id.", value=raw[:100]))
        return next(iter(ids))

    def status(self, raw):
        sid = self.statuses.get(self._key(raw))
        if sid is None:
            raise ValueError(_l("Unknown status: %(value)s.", value=raw[:100]))
        return sid

    def country(self, raw):
        key = raw.strip().casefold()
        if key not in self.countries:
            try:
                self.countries[key] = (v.normalize_country(raw), None)
            except ValueError as exc:
                self.countries[key] = (None, exc)
        code, exc = self.countries[key]
        if exc is not None:
            raise exc
        return code


def parse_created(raw):
    text = raw.strip()
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    except ValueError:
        pass
    day = v.parse_date(text)
    return dt.datetime(day.year, day.month, day.day)


class Row:
    """One data row of the file, mapped: service data plus what the import itself handles."""

    __slots__ = ("line", "cells", "data", "errors", "ident", "email_key", "created_at", "problem", "desk", "target",
                 "followed")

    def __init__(self, line, cells, problem=None):
        self.line, self.cells, self.problem = line, cells, problem
        self.data, self.errors, self.ident, self.email_key, self.created_at = {}, {}, None, None, None
        self.desk = self.target = None
        self.followed = False  # a later row of this chunk has the same e-mail


def _merged(earlier, later):
    """Row values of one client, a later row's over an earlier one's (custom fields and meta key by key)."""
    out = {**earlier, **later}
    for bucket in ("custom_fields", "meta"):
        if isinstance(earlier.get(bucket), dict) and isinstance(later.get(bucket), dict):
            out[bucket] = {**earlier[bucket], **later[bucket]}
    return out


class _Carried:
    """Rows of one e-mail that could not create its client for want of values a later row of the
    chunk may bring (see ImportRun._create): [(row, reason)] and their values merged."""

    __slots__ = ("rows", "data", "created_at")

    def __init__(self, rows, data, created_at):
        self.rows, self.data, self.created_at = rows, data, created_at


_CHOOSE_TYPE = _l("Choose Personal or Business.")
_CHOOSE_STATE = _l("Choose Active, Deactivated or Suspended.")
_CHOOSE_GENDER = _l("Choose Male, Female or Other.")


def mapped_cells(cells, mapping):
    """(entry, text) of a row's non-empty mapped cells, stripped, an export's formula guard taken off;
    `mapping`: entries (column index, key, …), in order. The one way an import reads a cell."""
    width = len(cells)
    for entry in mapping:
        index = entry[0]
        if index >= width:
            continue
        value = cells[index].strip()
        if not value:
            continue
        if value[0] == "'":
            value = unneutralise(value)  # an exported cell: the apostrophe only guarded a formula trigger
        yield entry, value


def read_cells(cells, mapping):
    """{key: text} of a row's non-empty mapped cells (see mapped_cells)."""
    return {entry[1]: value for entry, value in mapped_cells(cells, mapping)}


def _map_id(row, value, forms_):
    if not value.isdigit():
        raise ValueError(_l("The id must be a whole number."))
    row.ident = int(value)


def _map_email(row, value, forms_):
    row.data["email"] = value
    row.email_key = value.casefold()


def _map_desk(row, value, forms_):
    row.desk = value  # resolved once the row's project is known (resolve_desk)


def _map_created(row, value, forms_):
    row.created_at = parse_created(value)


def _map_into(service_key, resolve):
    def mapper(row, value, forms_):
        row.data[service_key] = resolve(forms_, value)
    return mapper


def _map_entry(bucket, name):
    def mapper(row, value, forms_):
        row.data.setdefault(bucket, {})[name] = value
    return mapper


# The file keys whose cells are more than the service value's text (value forms, identity)
_MAPPERS = {
    "id": _map_id,
    "email": _map_email,
    "type": _map_into("client_type", lambda f, value: f.choice(f.types, value, _CHOOSE_TYPE)),
    "state": _map_into("state", lambda f, value: f.choice(f.states, value, _CHOOSE_STATE)),
    "gender": _map_into("gender", lambda f, value: f.choice(f.genders, value, _CHOOSE_GENDER)),
    "status": _map_into("status_id", ValueForms.status),
    "project": _map_into("project_id", ValueForms.project),
    "desk": _map_desk,
    "manager": _map_into("manager_id", ValueForms.manager),
    "billing.country": _map_into("country", ValueForms.country),
    "nationality": _map_into("nationality", ValueForms.country),
    "created": _map_created,
}


def compile_mapping(mapping):
    """A mapping's [(column, key, service key, mapper)] for map_row: a plain text field has its
    service key and no mapper; custom fields, meta entries and value forms have a mapper."""
    plan = []
    for index, key in mapping:
        mapper = _MAPPERS.get(key)
        if mapper is None and key.startswith(F.CUSTOM_PREFIX):
            mapper = _map_entry("custom_fields", key[len(F.CUSTOM_PREFIX):])
        elif mapper is None and key.startswith(F.META_PREFIX):
            mapper = _map_entry("meta", key[len(F.META_PREFIX):])
        plan.append((index, key, None if mapper is not None else F.FIELDS[key], mapper))
    return plan


def map_row(row, plan, forms_):
    """Fill row.data (client service keys) from the cells (mapped_cells); value-form errors go to
    row.errors. `plan`: compile_mapping of the job's mapping."""
    data = row.data
    for (_index, key, service_key, mapper), value in mapped_cells(row.cells, plan):
        if mapper is None:
            data[service_key] = value
            continue
        try:
            mapper(row, value, forms_)
        except ValueError as exc:
            row.errors[key] = str(exc)
    return row


def resolve_desk(row, forms_, project_id):
    if row.desk is not None:
        try:
            row.data["desk_id"] = forms_.desk(row.desk, project_id)
        except ValueError as exc:
            row.errors["desk"] = str(exc)


# ----------------------------------------------------------------- identity: the one place

def repeats_line(line):
    """The notice of a row whose e-mail an earlier row of the file (`line`) has."""
    return _l("The e-mail repeats line %(line)d of this file; the later row updates the earlier one.", line=line)


def duplicate_decision(row, by_id, by_email, pending, repeat):
    """Decide what a row does: ("create" | "update" | "reject", target, notice).

    This is the single place where an import row's identity and duplicate policy are
    decided; the duplicates module (CL-DUP) will replace this policy. Until then an
    existing id or e-mail means update, and a key repeated inside the file makes the
    later row update the earlier one (reported as a notice). A "create" whose row lacks
    only values a new client needs waits for the e-mail's next row in the chunk, which
    then creates the client with the values of both (ImportRun._create): the earlier row
    is still the one the later updates, and a re-run of the file changes nothing.

    `pending`: e-mail -> (client, line) of the first row of this chunk that created or updated
    that client; `repeat`: the row repeats the e-mail of a row of an earlier chunk (not held
    with it, see RepeatPlan), which has written its client (or, in a dry run, would have).
    """
    if row.ident is not None:
        target = by_id.get(row.ident)
        if target is None:
            return "reject", None, _l("Client not found.")
        return "update", target, None
    if not row.email_key:
        return "reject", None, _l("E-mail is required.")
    earlier = pending.get(row.email_key)
    if earlier is not None:
        return "update", earlier[0], repeats_line(earlier[1])
    target = by_email.get(row.email_key)
    if repeat:
        return "update", target, _l("The e-mail repeats an earlier row of this file; the later row updates the "
                                    "earlier one.")
    if target is not None:
        return "update", target, None
    return "create", None, None


def identity_key(raw):
    """What a row's duplicate decision goes by, read off its cells as `map_row` reads them (mapped_cells): its id when
    it has a valid one, else its e-mail (casefolded); None when it has neither."""
    ident = raw.get("id")
    if ident is not None:
        return int(ident) if ident.isdigit() else None
    email = raw.get("email")
    return email.casefold() if email else None


class RepeatPlan:
    """The rows of the file that share a key with another row, read in one pass before the run.

    A re-run of a file must leave every client as it is (CL-IO-2). Rows of one key that fall in
    different chunks would each be committed in turn, so a re-run would flip the client to the
    earlier row's values and back. So the rows of a repeated key are held back and processed
    together, in file order, in the chunk of the last of them, where the net-effect rule of
    `ImportRun.process` sees them all. Decisions go by ordinal (the n-th data row), so a resumed
    run holds exactly the rows the first run held (those before the checkpoint whose group ends
    after it are read again). Held rows stay in memory: when the file repeats more keys than
    IMPORT_MAX_HELD_ROWS rows can hold, the groups that end first are held and the others go
    chunk by chunk (their data is the same; only a re-run counts them as updated).
    """

    def __init__(self, mapping, max_held):
        self.key_mapping = [(i, k) for i, k in mapping if k in ("id", "email")]
        self.max_held = max_held
        self.rows = 0  # data rows in the file
        self.hold = {}  # ordinal of a held row -> ordinal of the last row of its key
        self.due = {}  # ordinal of such a last row -> ordinals of the held rows of its key
        self.repeats = set()  # lines of rows not held that repeat the key of an earlier row

    @classmethod
    def read(cls, items, mapping, max_held):
        """Build the plan from the file's (line, cells, problem) items, header first."""
        plan = cls(mapping, max_held)
        first = {}  # hash of a key -> ordinal of its first row (ints only: 1M keys take ~100 MB here)
        groups = {}  # hash of a repeated key -> [(ordinal, line), ...] of its rows (no line for the first)
        header = True
        n = 0
        key_mapping = plan.key_mapping
        for line, cells, problem in items:
            if header:
                header = False
                continue
            n += 1
            if problem is not None or not key_mapping:
                continue
            key = identity_key(read_cells(cells, key_mapping))
            if key is None:
                continue
            h = hash(key)
            earlier = first.get(h)
            if earlier is None:
                first[h] = n
            elif (group := groups.get(h)) is None:
                groups[h] = [(earlier, None), (n, line)]
            else:
                group.append((n, line))
        plan.rows = n
        del first
        room = max_held
        for group in sorted(groups.values(), key=lambda g: g[-1][0]):
            last = group[-1][0]
            if len(group) - 1 <= room:
                room -= len(group) - 1
                plan.due[last] = [ordinal for ordinal, _line in group[:-1]]
                for ordinal, _line in group[:-1]:
                    plan.hold[ordinal] = last
            else:
                plan.repeats.update(line for _ordinal, line in group[1:])
        return plan

    def chunks(self, items, size, skip):
        """Chunks `(through, [(line, cells, problem), ...])` of the data rows after the first `skip`
        (already committed) ones; a held row joins the chunk of the last row of its key, just before it."""
        hold, due = self.hold, self.due
        held = {}
        chunk, index = [], 0
        header = True
        for item in items:
            if header:
                header = False
                continue
            index += 1
            if hold and (last := hold.get(index)) is not None:
                if last > skip:
                    held[index] = item
                continue
            if index <= skip:
                continue
            if index in due:
                chunk.extend(held.pop(o) for o in due[index] if o in held)
            chunk.append(item)
            if len(chunk) >= size:
                yield index, chunk
                chunk = []
        if held:  # the file ended before a group did (it cannot, read twice the same): lose nothing
            chunk.extend(held[o] for o in sorted(held))
        if chunk:
            yield index, chunk


# ----------------------------------------------------------------- the run

class _Record:
    """A client row in the run's memory: its columns as attributes, and the run's own (`_line`, `_new`,
    `_tags`, and `_orig`/`_orig_tags`, the values as read)."""


def _record(values, line=None, new=False, tags=None):
    """A record over `values`, a dict of columns the caller hands over (it becomes the record's own)."""
    orig = None if new else dict(values)
    if new:
        values["id"] = None
    values.update(_line=line, _new=new, _tags=list(tags or []), _orig=orig, _orig_tags=list(tags or []))
    rec = object.__new__(_Record)
    rec.__dict__ = values
    return rec


# Records keep their columns in their own __dict__: read off it by key (an attribute lookup per
# column, through the class first, costs three times as much: 53 columns, every new client)
_column_items = operator.itemgetter(*COLUMNS)
_updatable_items = operator.itemgetter(*UPDATABLE)


def _column_values(rec):
    return _column_items(rec.__dict__)

_INSERT_COLUMNS = ["id", *COLUMNS]
_FETCH_KEYS = ("id", *COLUMNS)
_FETCH = select(*(CLIENT.c[c] for c in _FETCH_KEYS))  # an existing client's row, id first
_TAG_COLUMNS = ("client_id", "tag_id")
_insert_items = operator.itemgetter(*_INSERT_COLUMNS)  # a new client's row, id first


def _values(rec):
    return dict(zip(COLUMNS, _column_values(rec), strict=True))


_EMPTY_KINDS = (str, dict, list)
_NOT_IN_CREATE_AUDIT = set(Client.__audit_exclude__) | set(Client.__audit_secret__) | {"id"}


_AUDIT_CREATE_COLUMNS = [c for c in COLUMNS if c not in _NOT_IN_CREATE_AUDIT]
_audit_create_items = operator.itemgetter(*_AUDIT_CREATE_COLUMNS)


def _create_audit_text(rec):
    """The "create" audit value of a new client: its non-empty values (None, "", {} and [] left out)
    and tags, as the audit log's text."""
    values = {k: val for k, val in zip(_AUDIT_CREATE_COLUMNS, _audit_create_items(rec.__dict__), strict=True)
              if val or (val is not None and val.__class__ not in _EMPTY_KINDS)}
    if rec._tags:
        values["tags"] = ", ".join(rec._tags)
    return audit.value_text(values)


def _reason(errors):
    parts = []
    for key, messages in errors.items():
        if isinstance(messages, (list, tuple)):
            messages = "; ".join(str(m) for m in messages)
        name = key
        if key.startswith("cf_"):
            name = F.CUSTOM_PREFIX + key[3:]
        else:
            name = F.SERVICE_TO_FIELD.get(key, key)
        parts.append(f"{name}: {messages}")
    return " | ".join(parts)


class ImportRun:
    """The state of one run of one job (lives inside the worker for the duration of run_import)."""

    def __init__(self, job, user):
        self.job_id = job.id
        self.user = user
        self.dry_run = job.dry_run
        self.chunk_size = int(current_app.config["IMPORT_CHUNK_SIZE"])
        self.max_reported = int(current_app.config["IMPORT_MAX_REPORTED_ROWS"])
        self.reported = db.session.scalar(select(func.count(ImportRowError.id))
                                          .where(ImportRowError.job_id == job.id)) or 0
        self.lookup = client_services.PrefetchedClientLookup(user)
        self.mapping = sorted(((int(i), k) for i, k in (job.mapping or {}).items() if k), key=lambda x: x[0])
        self.mapped = {k for _, k in self.mapping}
        self.map_plan = compile_mapping(self.mapping)
        self.default_project_id = self._default_project(job.options or {})
        self.forms = ValueForms(self.lookup, self.default_project_id)
        self.default_status = client_services.default_status_id()
        # a new client's columns before its row's values
        self.new_values = dict.fromkeys(COLUMNS)
        self.new_values.update(state="active", full_name="", verification_status="init", outcome="open",
                               processed=False, rating=0, actions_exist=False, created_by_id=user.id,
                               status_id=self.default_status)
        self.plan = None  # the file's RepeatPlan, read by _run
        self.spool = None  # the rows of an XLSX file as the plan's pass read them (parsing.Spool)
        self.inflight = []  # (through, {id: (n, record)}, {e-mail: (n, record)}) of chunks not yet committed
        self.carried, self.resolved = {}, []  # of the chunk being processed (see _create)
        self.dialect = db.session.get_bind().dialect.name
        self.postgresql = self.dialect == "postgresql"
        self.analyze_min_rows = int(current_app.config.get("IMPORT_ANALYZE_MIN_ROWS") or 20_000)
        self.created_total = 0
        self.created_seen = 0  # the writer's `created` as of the last note_created
        # SQLite, pipelined: new clients get their ids here, ahead of the writer thread (see
        # assign_identities); the last id handed out, as the writer may not have written it yet
        self.ids_ahead = False
        self.last_id = 0

    def _default_project(self, options):
        wanted = options.get("project")
        if wanted not in (None, ""):
            for p in self.lookup.projects.values():
                if str(wanted).casefold() in (str(p.id), p.name.casefold(), p.key.casefold()):
                    return p.id
        scope = self.lookup.scope
        ids = sorted(p.id for p in self.lookup.projects.values()
                     if p.active and (scope.all_projects or p.id in (scope.project_ids or ())))
        return ids[0] if ids else None

    def note_created(self, created):
        """Count the clients the run's committed chunks created (for `analyze_all`)."""
        self.created_total += created

    def analyze_all(self):
        """After a run that added IMPORT_ANALYZE_MIN_ROWS clients: statistics of every column, so the
        list's filters (project, status, dates …) are planned from the table as it now is, and a
        VACUUM of the client and tag tables, whose new pages are not yet marked all-visible: until
        autovacuum gets there, every index-only scan (the list's counts, the export's tag join)
        visits the heap for each new row. Measured on the 1M-row import: the export of all clients
        took 18.2 s before the VACUUM and 13.9 s after it; on 100k new rows the VACUUM took 0.8 s.
        It takes no lock that blocks reading or writing clients."""
        if self.postgresql and not self.dry_run and self.created_total >= self.analyze_min_rows:
            db.session.commit()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f"VACUUM (ANALYZE) {CLIENT.name}, {client_tag.name}"))

    # --- one chunk -------------------------------------------------------------------

    def process(self, chunk, committed=None):
        """Validate and decide every row of the chunk; returns the writes and the report.

        `committed`: the checkpoint the writer has committed through; chunks handed to it after
        that are still in flight, and their clients are read from memory (see `remember`).
        """
        now = utcnow()
        rows = []
        ids, emails = set(), set()
        last_of_key = {}  # e-mail -> its latest row so far (marked `followed` when another comes)
        for line, cells, problem in chunk:
            row = Row(line, cells, problem)
            rows.append(row)
            if problem is not None:
                continue
            map_row(row, self.map_plan, self.forms)
            if row.ident is not None:
                ids.add(row.ident)
            if row.email_key:
                emails.add(row.email_key)
                previous = last_of_key.get(row.email_key)
                if previous is not None:
                    previous.followed = True
                last_of_key[row.email_key] = row
        if committed is not None:
            self.inflight = [entry for entry in self.inflight if entry[0] > committed]
        by_id, by_email, tags_of = self._fetch_existing(ids, emails)
        self._overlay_inflight(ids, emails, by_id, by_email)
        self.lookup.holders = {rec.email: rec for rec in list(by_id.values()) + list(by_email.values())}
        pending = {}
        creates, report = [], []
        counts = dict(created=0, updated=0, unchanged=0, failed=0, notices=0)
        updated_rows = []
        self.carried, self.resolved = {}, []
        for row in rows:
            outcome = self._process_row(row, by_id, by_email, pending, tags_of, creates, report, now)
            if outcome == "updated" and getattr(row, "target", None) is not None and not row.target._new:
                updated_rows.append(row)
            if outcome != "carried":
                counts[outcome] += 1
            for resolved in self.resolved:
                counts[resolved] += 1
            self.resolved = []
        for carried in self.carried.values():  # their e-mail's later rows failed before they could create it
            for held, reason in carried.rows:
                self._fail(held, report, reason)
                counts["failed"] += 1
        self.carried = {}
        # Net effect per client: rows of one e-mail that change a client and then change it back
        # (a re-run of a file that repeats an e-mail) leave it as it was, so they count as unchanged.
        for row in updated_rows:
            target = row.target
            if _column_values(target) == _column_items(target._orig) and target._tags == target._orig_tags:
                counts["updated"] -= 1
                counts["unchanged"] += 1
        counts["notices"] = sum(1 for r in report if r["kind"] == "notice")
        touched = {id(rec): rec for rec in list(by_id.values()) + list(by_email.values())}
        return creates, list(touched.values()), report, counts

    def _fetch_existing(self, ids, emails):
        by_id, by_email = {}, {}
        conds = []
        if ids:
            conds.append(bulk.among(CLIENT.c.id, sorted(ids), self.dialect))
        if emails:
            conds.append(bulk.among(CLIENT.c.email, sorted(emails), self.dialect))
        tags_of = {}
        if conds:
            # Index scans whatever the statistics say: as an import grows the table, they lag behind
            # (an ANALYZE every 20k rows kept the lookup off sequential scans), and PostgreSQL also
            # plans `email = ANY(…)` on the e-mail's trigram index, which reads the index's whole
            # pending list per key (measured: 5,000 keys took 4 min with a 32 MB pending list).
            # One statement per key column: an OR of the two can only be a bitmap or sequential scan.
            bulk.index_scans(db.session)
            # Plain rows off the session's connection (its transaction), zipped into each record's
            # dict: a Session.execute goes through the ORM's result machinery even for a table, and
            # reading 53 columns by name off a row mapping took twice as long as the zip.
            connection = db.session.connection()
            for cond in conds:
                for r in connection.execute(_FETCH.where(cond)):
                    if r[0] in by_id:
                        continue
                    rec = _record(dict(zip(_FETCH_KEYS, r, strict=True)))
                    by_id[rec.id] = rec
                    by_email[rec.email] = rec
            if by_id and "tags" in self.mapped:
                for cid, name in connection.execute(
                        select(client_tag.c.client_id, Tag.name).join(Tag, Tag.id == client_tag.c.tag_id)
                        .where(bulk.among(client_tag.c.client_id, sorted(by_id), self.dialect))):
                    tags_of.setdefault(cid, []).append(name)
                for cid, rec in by_id.items():
                    rec._tags = sorted(tags_of.get(cid, []), key=str.lower)
                    rec._orig_tags = list(rec._tags)
            bulk.index_scans(db.session, False)
        return by_id, by_email, tags_of

    # --- chunks in flight (pipelined runs) --------------------------------------------------

    def remember(self, through, creates, touched):
        """Keep the clients this chunk leaves behind until the writer has committed it.

        The next chunks are processed while this one is written: a row updating a client this
        chunk creates or changes must start from that state, not from the database's. The records
        themselves are kept, indexed by id and e-mail: nothing changes a chunk's records once it is
        processed (a later chunk works on copies, see `_overlay_inflight`; the writer only reads).
        """
        if self.dry_run:
            return
        kept_by_id, kept_by_email = {}, {}
        for n, rec in enumerate(creates + touched):
            kept_by_id[rec.id] = kept_by_email[rec.email] = (n, rec)
        self.inflight.append((through, kept_by_id, kept_by_email))

    def forget_inflight(self):
        """The writer stopped: chunks it did not commit will be read and processed again."""
        self.inflight = []

    def _overlay_inflight(self, ids, emails, by_id, by_email):
        """Replace the database's state of this chunk's clients by the state chunks still in flight
        leave them in (later chunks win; copies, so that this chunk never changes theirs)."""
        for _through, kept_by_id, kept_by_email in self.inflight:
            matched = {}
            for key, kept in ((ids, kept_by_id), (emails, kept_by_email)):
                if len(key) > len(kept):
                    found = (entry for k, entry in kept.items() if k in key)
                else:
                    found = (kept[k] for k in key if k in kept)
                for n, rec in found:
                    matched[n] = rec
            for n in sorted(matched):
                kept = matched[n]
                rec = _record(dict(_values(kept), id=kept.id), tags=kept._tags)
                stale = by_id.pop(rec.id, None)
                if stale is not None:
                    by_email.pop(stale.email, None)
                by_id[rec.id] = by_email[rec.email] = rec

    def _fail(self, row, report, reason, kind="error"):
        report.append(dict(line=row.line, kind=kind, reason=str(reason), raw=row.cells or []))

    def _process_row(self, row, by_id, by_email, pending, tags_of, creates, report, now):
        if row.problem is not None:
            self._fail(row, report, row.problem)
            return "failed"
        repeat = (row.line in self.plan.repeats and row.email_key is not None and row.email_key not in pending
                  and (self.dry_run or by_email.get(row.email_key) is not None))
        action, target, notice = duplicate_decision(row, by_id, by_email, pending, repeat)
        if action == "reject":
            self._fail(row, report, notice)
            return "failed"
        if action == "update" and target is None:
            # dry run: the earlier row of this file was never written; count what would happen
            if notice is not None:
                self._fail(row, report, notice, "notice")
            return "updated"
        if action == "update" and not target._new and not self.lookup.scope.allows(target.project_id,
                                                                                   target.desk_id):
            self._fail(row, report, _l("Client not found.") if row.ident is not None
                       else _l("This e-mail is already in use."))
            return "failed"
        project_id = target.project_id if target is not None else (row.data.get("project_id")
                                                                   or self.default_project_id)
        if action == "create" and "project_id" not in row.data and "project" not in row.errors:
            row.data["project_id"] = project_id
        resolve_desk(row, self.forms, project_id)
        if row.errors:
            self._fail(row, report, _reason(row.errors))
            return "failed"
        if action == "create":
            return self._create(row, pending, creates, report, now)
        outcome = self._update(row, target, report, notice, now)
        if outcome != "failed" and row.ident is None and row.email_key not in pending:
            pending[row.email_key] = (target, row.line)  # a later row of this e-mail repeats this one
        return outcome

    def _create(self, row, pending, creates, report, now):
        carried = self.carried.pop(row.email_key, None) if row.email_key else None
        own = row.data
        data = own if carried is None else _merged(carried.data, own)
        created_at = row.created_at or (carried.created_at if carried is not None else None)
        try:
            clean = client_services.validate_client_data(
                data if "client_type" in data else dict(data, client_type="personal"), self.user, lookup=self.lookup)
        except ValidationFailed as exc:
            reason = _reason(exc.field_errors)
            if row.followed:
                if all(key not in data for key in exc.field_errors):
                    # Only values are missing, and a later row of this e-mail follows in the chunk: the
                    # rows are decided together, with that row's values over these. Refused now, this
                    # row would update the client that later row creates when the file is run again
                    # (CL-IO-2: a re-run changes nothing).
                    rows = (carried.rows if carried is not None else []) + [(row, reason)]
                    self.carried[row.email_key] = _Carried(rows, data, created_at)
                    return "carried"
                if carried is not None:  # this row's own values are wrong: the rows before it wait on
                    self.carried[row.email_key] = carried
                self._fail(row, report, reason)
                return "failed"
            for held, held_reason in (carried.rows if carried is not None else []):
                self._fail(held, report, held_reason)
                self.resolved.append("failed")
            self._fail(row, report, reason)
            return "failed"
        first_line = carried.rows[0][0].line if carried is not None else row.line
        values = self.new_values.copy()
        values.update(client_type=clean["client_type"], email=clean["email"], project_id=clean["project_id"],
                      custom_fields={}, meta={}, created_at=created_at or now, updated_at=now)
        rec = _record(values, line=first_line, new=True)
        self._apply(rec, clean, now)
        if rec.status_id is None:
            rec.status_id = self.default_status
        rec.verification_status = rec.verification_status or "init"
        pending[row.email_key] = (rec, first_line)
        creates.append(rec)
        if carried is None:
            return "created"
        # counted as if the first row had created the client and each later one updated it
        self.resolved += ["created"] + ["updated"] * (len(carried.rows) - 1)
        self._fail(row, report, repeats_line(first_line), "notice")
        return "updated"

    def _apply(self, rec, clean, now):
        if rec._new:  # the same as the loop below, at dict speed (every value applies to a new client)
            own = rec.__dict__
            own.update(clean)
            tags = own.pop("tags", None)
            if tags is not None:
                rec._tags = sorted(tags, key=str.lower)
            own.pop("password", None)
        else:
            for key, value in clean.items():
                if key in client_services.IMMUTABLE_FIELDS:
                    continue
                if key == "tags":
                    rec._tags = sorted(value, key=str.lower)
                elif key == "password":
                    continue
                else:
                    setattr(rec, key, value)
        rec.full_name = client_services.compose_full_name(rec)
        client_services.apply_processed_rule(rec, now)

    def _update(self, row, target, report, notice, now):
        data = row.data
        notices = [notice] if notice is not None else []
        immutable = client_services.immutable_changes(target, data)
        for key, messages in immutable.items():
            notices.append(_l("%(field)s was not changed: %(reason)s", field=F.SERVICE_TO_FIELD.get(key, key),
                              reason=messages[0]))
        for key in client_services.IMMUTABLE_FIELDS:
            data.pop(key, None)
        if "meta" in data:
            merged = dict(target.meta or {})
            merged.update(data["meta"])
            data["meta"] = merged
        try:
            if "state" in data and data["state"] != target.state:
                client_services._check_state_change(target, v.check_choice(data["state"], client_services.STATES),
                                                    self.user)
            clean = client_services.validate_client_data(data, self.user, existing=target, lookup=self.lookup)
        except (ValidationFailed, ValueError) as exc:
            errors = exc.field_errors if isinstance(exc, ValidationFailed) else {"state": [str(exc)]}
            self._fail(row, report, _reason(errors))
            return "failed"
        before = (_column_values(target), list(target._tags))
        row.target = target
        self._apply(target, clean, now)
        for message in notices:
            self._fail(row, report, message, "notice")
        return "unchanged" if (_column_values(target), list(target._tags)) == before else "updated"

    # --- writing ---------------------------------------------------------------------

    def tag_names(self, creates, touched):
        return {t for rec in creates + touched for t in rec._tags} if "tags" in self.mapped else set()

    def write(self, creates, touched, now, tag_ids=None, before_changes=None):
        """Bulk INSERT the new clients, bulk UPDATE the changed ones, tags and audit rows.

        `tag_ids`: the chunk's tags, resolved ahead (pipelined runs), else resolved here.
        `before_changes`: called after the new clients are written and before existing clients are
        changed (a pipelined writer waits there for the chunk before this one: the changes may be
        to clients it creates).
        """
        session = db.session
        audit_rows = []
        if tag_ids is None:
            tag_ids = self._tag_ids(self.tag_names(creates, touched))
        if creates:
            if creates[0].uid is None:  # not assigned ahead by a pipelined run
                self.assign_identities(creates)
            # Plain executemany (batched on both dialects; RETURNING with a guaranteed order would
            # fall back to one statement per row on SQLite), then the ids by the UIDs we assigned.
            if creates[0].id is not None:  # ids assigned ahead (PostgreSQL's sequence, SQLite pipelined)
                rows = [_insert_items(rec.__dict__) for rec in creates]
                bulk.insert_rows(session, CLIENT, rows, columns=_INSERT_COLUMNS)
            else:
                bulk.insert_rows(session, CLIENT, [_column_values(rec) for rec in creates], columns=COLUMNS)
                ids = {}
                uids = [rec.uid for rec in creates]
                for start in range(0, len(uids), 1000):
                    ids.update(session.execute(select(CLIENT.c.uid, CLIENT.c.id)
                                               .where(CLIENT.c.uid.in_(uids[start:start + 1000]))).all())
                for rec in creates:
                    rec.id = ids[rec.uid]
            for rec in creates:
                audit_rows.append(dict(entity="Client", entity_id=rec.id, client_id=rec.id, operation="create",
                                       field="import", old=None, new=_create_audit_text(rec)))
            pairs = [(rec.id, tag_ids[t.lower()]) for rec in creates for t in rec._tags]
            bulk.insert_rows(session, client_tag, pairs, columns=_TAG_COLUMNS,
                             own={"client_id": {rec.id for rec in creates}})
            audit.record_rows(session, audit_rows)
            audit_rows = []
        if before_changes is not None:
            before_changes()
        changed_groups = {}
        retag = []
        for rec in touched:
            own, orig = rec.__dict__, rec._orig
            # most records of an update-heavy file are as they were: one tuple comparison tells
            changes = ({c: own[c] for c in UPDATABLE if own[c] != orig[c]}
                       if _updatable_items(own) != _updatable_items(orig) else {})
            tags_changed = [t.lower() for t in rec._tags] != [t.lower() for t in rec._orig_tags]
            if not changes and not tags_changed:
                continue
            for c, new in changes.items():
                if c in Client.__audit_exclude__:
                    continue
                audit_rows.append(dict(entity="Client", entity_id=rec.id, client_id=rec.id, operation="update",
                                       field=c, old=rec._orig[c], new=new))
            if tags_changed:
                retag.append(rec)
                audit_rows.append(dict(entity="Client", entity_id=rec.id, client_id=rec.id, operation="update",
                                       field="tags", old=", ".join(rec._orig_tags) or None,
                                       new=", ".join(rec._tags) or None))
            changes["updated_at"] = now
            changed_groups.setdefault(tuple(sorted(changes)), []).append(dict(changes, _id=rec.id))
        for cols, params in changed_groups.items():
            stmt = (update(CLIENT).where(CLIENT.c.id == bindparam("_id"))
                    .values({c: bindparam(c) for c in cols}).execution_options(audit_recorded=True))
            session.execute(stmt, params)
        if retag:
            session.execute(delete(client_tag).where(client_tag.c.client_id.in_([r.id for r in retag])))
            pairs = [(r.id, tag_ids[t.lower()]) for r in retag for t in r._tags]
            bulk.insert_rows(session, client_tag, pairs, columns=_TAG_COLUMNS)
        audit.record_rows(session, audit_rows)

    def assign_identities(self, creates):
        """Give new clients their UIDs and, on PostgreSQL, their ids from the table's own sequence.

        Both counters only move forward: numbers of a chunk that is never committed are skipped,
        not reused. (SQLite has no sequence; its ids are read back by UID after the insert.)
        """
        first = client_services.allocate_uid_numbers(len(creates))
        for n, rec in enumerate(creates):
            rec.uid = client_services.format_uid(first + n, rec.client_type)
        if self.postgresql:
            seq = db.session.execute(text("SELECT nextval(pg_get_serial_sequence('client', 'id')) "
                                          "FROM generate_series(1, :n)"), {"n": len(creates)}).scalars().all()
            for rec, new_id in zip(creates, seq, strict=True):
                rec.id = new_id
        elif self.ids_ahead:
            # SQLite has no sequence: the ids after the highest one written and the last one handed
            # out (this runs under the write lock the UID counter's update took). A web request
            # inserting a client before the writer does may take one of them: the writer's insert
            # then fails and the run goes on chunk by chunk (_run), where ids come from the insert.
            top = db.session.scalar(select(func.max(CLIENT.c.id))) or 0
            first_id = max(top, self.last_id) + 1
            for n, rec in enumerate(creates):
                rec.id = first_id + n
            self.last_id = first_id + len(creates) - 1

    def _tag_ids(self, names):
        if not names:
            return {}
        lowered = {n.lower(): n for n in names}
        found = {}
        keys = sorted(lowered)
        for start in range(0, len(keys), 1000):
            for tid, name in db.session.execute(select(Tag.id, Tag.name).where(
                    func.lower(Tag.name).in_(keys[start:start + 1000]))):
                found[name.lower()] = tid
        missing = [lowered[k] for k in keys if k not in found]
        if missing:
            for tid, name in db.session.execute(insert(Tag).returning(Tag.id, Tag.name),
                                                [dict(name=n) for n in missing]):
                found[name.lower()] = tid
        return found

    def kept_report(self, report):
        """The report rows to store (IMPORT_MAX_REPORTED_ROWS per job; the counts stay exact)."""
        room = max(self.max_reported - self.reported, 0)
        rows = [dict(job_id=self.job_id, line=r["line"], kind=r["kind"], reason=r["reason"][:2000], raw=r["raw"])
                for r in report[:room]]
        self.reported += len(rows)
        return rows

    def save_report(self, rows):
        if rows:
            bulk.insert_rows(db.session, ImportRowError, rows)


def _set_job(job_id, **values):
    db.session.execute(update(ImportJob).where(ImportJob.id == job_id).values(**values))


def run_import(job_id):
    """Run (or resume) an import job to the end; safe to call again at any time (idempotent)."""
    job = db.session.get(ImportJob, job_id)
    if job is None or job.finished:
        return None
    user = db.session.get(User, job.user_id)
    from ..organisation.services import staff_preference
    pref = staff_preference(job.user_id)
    locale = (pref.locale if pref is not None else None) or current_app.config.get("BABEL_DEFAULT_LOCALE", "en")
    with acting_as(job.user_id, job.job_key), force_locale(locale), bulk.batch_gc():
        try:
            _run(job, user)
        except parsing.FileRejected as exc:
            db.session.rollback()
            _set_job(job_id, status="failed", reason=str(exc), finished_at=utcnow())
            db.session.commit()
        except ConcurrentRun:
            log.warning("import %s: another runner holds the checkpoint; this one stops", job_id)
    db.session.expire_all()
    return db.session.get(ImportJob, job_id)


def _run(job, user):
    job_id = job.id
    if user is None or not user.active:
        _set_job(job_id, status="failed", reason=str(_l("The importing user no longer exists or is inactive.")),
                 finished_at=utcnow())
        db.session.commit()
        return
    _set_job(job_id, status="running", started_at=job.started_at or utcnow(), heartbeat_at=utcnow())
    db.session.commit()
    run = ImportRun(job, user)
    run.done = job.committed_through or 0
    path = job_path(job)
    # A file that looks large gets its phone helper now: the process starts up (~0.3 s) during the
    # pass below instead of holding up the first chunk.
    size = os.path.getsize(path) if os.path.exists(path) else 0  # a lost file is reported by the pass below
    helper = PhoneHelper.start(run, job.total_rows or size // PhoneHelper.MIN_ROW_BYTES)
    spool_bytes = int(current_app.config.get("IMPORT_SPOOL_MAX_BYTES") or 0)
    if job.file_format == "xlsx" and spool_bytes > 0:
        run.spool = parsing.Spool(import_folder(), spool_bytes)
    try:
        # One pass before the run: the rows of repeated keys, and the row count for the progress bar.
        items = parsing.iter_file(path, job.file_format, job.encoding, job.delimiter)
        run.plan = RepeatPlan.read(run.spool.tee(items) if run.spool is not None else items,
                                   run.mapping, int(current_app.config.get("IMPORT_MAX_HELD_ROWS") or 0))
    except BaseException:
        if helper is not None:
            helper.close()
        if run.spool is not None:
            run.spool.close()
        raise
    try:
        _run_planned(job, run, path, helper)
    finally:
        if run.spool is not None:
            run.spool.close()


def _run_planned(job, run, path, helper):
    """The run of a job whose file `run.plan` has read: its chunks, then the job's end."""
    job_id = job.id
    total = job.total_rows
    if total is None:
        total = run.plan.rows
        _set_job(job_id, total_rows=total)
        db.session.commit()
    if helper is not None and not PhoneHelper.wanted(run, total):
        helper.close()
        helper = None
    writers = _pipeline_writers(run)
    run.ids_ahead = bool(writers) and not run.postgresql
    try:
        finished = _run_chunks(run, job_id, path, job, writers, total, helper)
    except IntegrityError:
        if not writers:
            raise
        # Another writer took an e-mail between our read and our write: the rest of the file
        # goes chunk by chunk from the last checkpoint, where a write race is retried in place.
        db.session.rollback()
        log.warning("import %s: write race in a pipelined chunk, resuming chunk by chunk", job_id)
        run.forget_inflight()
        run.ids_ahead = False
        finished = _run_chunks(run, job_id, path, job, 0, total)
    if finished:
        run.analyze_all()
        _set_job(job_id, status="done", finished_at=utcnow(), heartbeat_at=utcnow(),
                 total_rows=func.coalesce(ImportJob.committed_through, 0))
        db.session.commit()


def _pipeline_writers(run):
    """Writer threads for this run (0: chunk by chunk in this thread).

    Chunk writers run in threads of their own, so a chunk's validation overlaps the previous
    chunks' writes: on PostgreSQL, Python here and the server's index work on the other core
    (IMPORT_WRITERS threads); on SQLite one writer thread (the file has one write lock), whose
    inserts run in SQLite's C code with the GIL released. An in-memory SQLite database is one
    connection shared by every thread, so it stays chunk by chunk.
    """
    if not current_app.config.get("IMPORT_PIPELINE", True):
        return 0
    if run.postgresql:
        return max(int(current_app.config.get("IMPORT_WRITERS") or 1), 1)
    if run.dialect == "sqlite" and db.engine.url.database not in (None, "", ":memory:"):
        return 1
    return 0


class ConcurrentRun(RuntimeError):
    """Another runner moved this job's checkpoint: this one stops, the other finishes the file."""


def _run_chunks(run, job_id, path, job, writers, total, helper=None):
    """Process the file's chunks after the checkpoint and hand them to a ChunkWriter; False if cancelled.
    `helper`: a phone helper started for this run (closed here), else one is started if wanted."""
    if run.spool is not None and run.spool.ready:
        rows = run.spool.items()
    else:
        rows = parsing.iter_file(path, job.file_format, job.encoding, job.delimiter)
    try:
        writer = ChunkWriter(run, job_id, writers)
    except BaseException:
        if helper is not None:
            helper.close()
        raise
    if helper is None:
        helper = PhoneHelper.start(run, total)
    try:
        for through, chunk, phones in _phones_ahead(run.plan.chunks(rows, run.chunk_size, run.done), helper):
            writer.check()
            if db.session.scalar(select(ImportJob.cancel_requested).where(ImportJob.id == job_id)):
                writer.close()
                _set_job(job_id, status="cancelled", finished_at=utcnow())
                db.session.commit()
                return False
            for attempt in (1, 2):
                try:
                    with v.phones_ahead(phones):
                        _submit_chunk(run, writer, through, chunk, writers)
                    break
                except IntegrityError:
                    # Another writer took an e-mail (inline) or a new tag (pipelined: a writer
                    # thread's own errors surface from `writer.check`) between our read and our
                    # write; redo the chunk, which now sees that row.
                    db.session.rollback()
                    if attempt == 2:
                        raise
                    log.warning("import %s: write race in a chunk, retrying it", job_id)
            # the clients created by the chunks committed so far (analyze_all at the end goes by them)
            created, run.created_seen = writer.created - run.created_seen, writer.created
            run.note_created(created)
    finally:
        if helper is not None:
            helper.close()
        writer.close()
    return True


class PhoneHelper:
    """A helper process that normalises the phone numbers of the next chunk (validators'
    normalize_phones, the very rule; see imports.phone_helper) while this chunk is processed.

    phonenumbers is the largest single cost of a row (~23 µs), and the run's Python work holds one
    core: the helper uses the other (SQLite's inline writes leave it idle). The answers only seed
    normalize_phone's memo, so a slow, missing or broken helper costs speed, never correctness.
    """

    def __init__(self, columns):
        import subprocess
        import sys
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        self.columns = columns
        self.broken = False
        self.process = subprocess.Popen([sys.executable, "-m", "app.imports.phone_helper"], cwd=root, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    # The fewest bytes a CSV row of a mapped phone column takes (the number and a separator, and
    # more): a file of IMPORT_HELPER_MIN_ROWS times this many bytes may have that many rows.
    MIN_ROW_BYTES = 16

    @staticmethod
    def _columns(run):
        return [i for i, key in run.mapping if key in ("phone", "additionalPhone")]

    @classmethod
    def wanted(cls, run, total):
        """A file of at least IMPORT_HELPER_MIN_ROWS rows with a phone column has a helper."""
        minimum = int(current_app.config.get("IMPORT_HELPER_MIN_ROWS") or 0)
        return bool(cls._columns(run)) and minimum > 0 and (total or 0) >= minimum

    @classmethod
    def start(cls, run, total):
        """A helper if `wanted` for `total` rows, else None."""
        if not cls.wanted(run, total):
            return None
        try:
            return cls(cls._columns(run))
        except OSError:
            log.warning("import: the phone helper process could not start", exc_info=True)
            return None

    def submit(self, chunk):
        """Send a chunk's phone cells; True when the helper will answer for them."""
        if self.broken:
            return False
        values = {cells[i].strip() for _line, cells, problem in chunk if problem is None
                  for i in self.columns if i < len(cells)}
        try:
            self.process.stdin.write(json.dumps(sorted(values)) + "\n")
            self.process.stdin.flush()
            return True
        except OSError:
            return self._broke()

    def result(self, sent):
        """The answer for the oldest chunk sent: {raw: E.164} ({} if the helper failed)."""
        if not sent or self.broken:
            return {}
        try:
            line = self.process.stdout.readline()
            if line:
                return json.loads(line)
        except (OSError, ValueError):
            pass
        self._broke()
        return {}

    def _broke(self):
        log.warning("import: the phone helper process stopped; numbers are parsed in the run")
        self.broken = True
        return False

    def close(self):
        """End the helper: it finishes any answer still unread (read and dropped here), then exits
        at the end of its input; one that does not end within 10 s is killed."""
        stop = threading.Timer(10, self.process.kill)
        stop.start()
        try:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            for _line in self.process.stdout:
                pass
            self.process.wait()
        finally:
            stop.cancel()
            self.process.stdout.close()


def _phones_ahead(chunks, helper):
    """(through, chunk, {raw phone: E.164}) per chunk; with a helper, chunk N+1's numbers are being
    normalised while chunk N is yielded (one chunk of the file is read ahead)."""
    if helper is None:
        for through, chunk in chunks:
            yield through, chunk, {}
        return
    pending = None
    for through, chunk in chunks:
        sent = helper.submit(chunk)
        if pending is not None:
            yield pending[0], pending[1], helper.result(pending[2])
        pending = (through, chunk, sent)
    if pending is not None:
        yield pending[0], pending[1], helper.result(pending[2])


def _submit_chunk(run, writer, through, chunk, writers):
    now = utcnow()
    if writers:
        # No transaction left open from before the checkpoint is read: the chunks committed by
        # then leave the in-flight overlay, so this chunk's reads must see them (a transaction
        # holding an older snapshot would not; PostgreSQL's statements see every commit anyway,
        # and SQLite's driver runs plain reads outside a transaction).
        db.session.commit()
    committed = writer.committed
    creates, touched, report, counts = run.process(chunk, committed=committed)
    report = run.kept_report(report)
    tag_ids = None
    if writers:
        # The UID counter's update begins a transaction of its own, after the chunk's reads (a
        # SQLite transaction that read before the writer thread committed may not write).
        db.session.commit()
        if not run.dry_run:
            if creates:
                run.assign_identities(creates)
            # Tags are created here, committed at once, so that writers working side by side
            # never both create the same new tag.
            tag_ids = run._tag_ids(run.tag_names(creates, touched))
        db.session.commit()  # the UID counter and new tags; the end of this read transaction
        run.remember(through, creates, touched)
    writer.put(through, creates, touched, report, counts, now, tag_ids)


class _Turn:
    """One handed-over chunk's outcome: set once it is committed (ok) or abandoned."""

    def __init__(self):
        self.event = threading.Event()
        self.ok = False

    def finish(self, ok):
        self.ok = ok
        self.event.set()


class _Abandoned(RuntimeError):
    """The chunk before this one failed: this one is not committed either."""


class ChunkWriter:
    """Writes processed chunks, each with its checkpoint in one transaction, committed in file order.

    Threaded (PostgreSQL; SQLite in a file with one thread), `threads` writer threads with their own
    app contexts and sessions take the chunks in turn while the caller processes the next ones:
    PostgreSQL's work for two chunks (index maintenance, mostly) runs in two backends at once. A
    chunk writes its new clients at once, then waits for the chunk before it to commit before it
    changes existing clients (they may be that chunk's) and moves the checkpoint; so commits stay in
    file order and a crash still repeats at most the uncommitted chunks. A write error stops every
    writer (later chunks are dropped uncommitted) and is raised to the caller by `check` or `close`.
    Inline (threads=0), `put` writes at once in the caller's session.
    """

    def __init__(self, run, job_id, threads):
        self.run, self.job_id = run, job_id
        self.committed = run.done  # `through` of the last committed chunk
        self.created = run.created_seen  # clients created by the chunks it committed (only grows)
        self.error = None
        self._lock = threading.Lock()
        self._queues, self._threads = [], []
        self._turn = 0
        self._previous = None
        self._room = threading.BoundedSemaphore(threads + 1) if threads else None  # chunks handed over
        app = current_app._get_current_object() if threads else None
        for n in range(threads):
            q = queue.Queue()
            thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop, app, q),
                                      name=f"import-{job_id}-writer-{n}", daemon=True)
            self._queues.append(q)
            self._threads.append(thread)
            thread.start()

    def put(self, *item):
        if not self._queues:
            self._write(item, None)
            return
        self._room.acquire()  # at most one chunk waits per writer
        done = _Turn()
        self._queues[self._turn].put((item, self._previous, done))
        self._previous = done
        self._turn = (self._turn + 1) % len(self._queues)

    def check(self):
        if self.error is not None:
            raise self.error

    def close(self):
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()
        self._queues, self._threads = [], []
        self.check()

    def _loop(self, app, q):
        with app.app_context():
            try:
                while (entry := q.get()) is not None:
                    item, previous, done = entry
                    ok = False
                    try:
                        if self.error is None:
                            self._write(item, previous)
                            ok = True
                    except BaseException as exc:  # handed to the caller, which re-raises it
                        db.session.rollback()
                        with self._lock:
                            if self.error is None and not isinstance(exc, _Abandoned):
                                self.error = exc
                    finally:
                        done.finish(ok)
                        self._room.release()
            finally:
                db.session.remove()

    def _write(self, item, previous):
        through, creates, touched, report, counts, now, tag_ids = item
        run = self.run

        def after_previous():
            if previous is not None:
                previous.event.wait()
                if not previous.ok:
                    raise _Abandoned()

        if not run.dry_run:
            run.write(creates, touched, now, tag_ids=tag_ids, before_changes=after_previous)
        run.save_report(report)
        after_previous()
        # Optimistic lease: only the runner that read the current checkpoint may move it, so a
        # second delivery of the same job (a worker thought dead) can never double-write.
        moved = db.session.execute(update(ImportJob).where(
            ImportJob.id == self.job_id, ImportJob.committed_through == run.done).values(
            committed_through=through, heartbeat_at=now,
            created_count=ImportJob.created_count + counts["created"],
            updated_count=ImportJob.updated_count + counts["updated"],
            unchanged_count=ImportJob.unchanged_count + counts["unchanged"],
            failed_count=ImportJob.failed_count + counts["failed"],
            notice_count=ImportJob.notice_count + counts["notices"])).rowcount
        if moved != 1:
            db.session.rollback()
            raise ConcurrentRun(self.job_id)
        db.session.commit()
        with self._lock:
            run.done = self.committed = through
            self.created += counts["created"]


# ----------------------------------------------------------------- reports

def report_rows(job):
    """(line, kind, reason, raw) of every reported row, in file order (streamed)."""
    q = (select(ImportRowError.line, ImportRowError.kind, ImportRowError.reason, ImportRowError.raw)
         .where(ImportRowError.job_id == job.id).order_by(ImportRowError.line, ImportRowError.id)
         .execution_options(yield_per=2000))
    yield from db.session.execute(q)


def status_payload(job):
    total = job.total_rows
    done = job.committed_through or 0
    return dict(id=job.id, status=job.status, dry_run=job.dry_run, total=total, done=done,
                percent=(100 if job.status == "done" else int(done * 100 / total) if total else 0),
                created=job.created_count, updated=job.updated_count, unchanged=job.unchanged_count,
                failed=job.failed_count, notices=job.notice_count, reason=job.reason,
                finished=job.finished, file=job.original_name)


def import_file(path, user, project=None, dry_run=False, encoding=None, delimiter=None, mapping=None):
    """The CLI door: store the file, map it automatically (or as given) and run it now (no Redis: in
    this process, to the end) or on RQ."""
    with open(path, "rb") as fh:
        job = store_upload(fh, os.path.basename(path), user, encoding=encoding, delimiter=delimiter,
                           dry_run=dry_run, options={"project": project} if project else None)
    if mapping:
        configure(job, user, mapping=mapping)
    return start(job, user, wait=True)


def mapping_json(job):
    return json.dumps(job.mapping or {}, sort_keys=True)
