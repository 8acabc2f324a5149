"""Client export (CL-IO-3): the scoped search/ids as CSV or XLSX, streamed in keyset batches.

Columns use the import's field keys, so an exported file re-imports unchanged (round trip).
Text cells a spreadsheet would run as a formula are neutralised with a leading apostrophe
(R23, ASVS 1.2.10); the import strips that apostrophe again.
"""

import csv
import datetime as dt
import io
import itertools
import json
import os
import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal

from flask_appbuilder.security.sqla.models import User
from sqlalchemy import and_, select

from ..clients import services as client_services
from ..clients.models import Client, ClientStatus, CustomField, Tag, client_tag
from ..core import audit
from ..extensions import db
from ..organisation import services as org
from ..organisation.models import Desk, Project

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
BATCH = 5000

# Export column -> how to read it from a joined row.
DEFAULT_COLUMNS = ["id", "email", "type", "firstName", "lastName", "companyName", "phone", "additionalPhone",
                   "state", "status", "created", "billing.country", "billing.region", "billing.city",
                   "billing.address", "billing.postcode", "project", "desk", "manager", "affiliateId", "campaignId",
                   "sourceId", "subId", "externalId", "gender", "dateOfBirth", "nationality", "description", "tags"]
_DIRECT = {"id": "id", "email": "email", "type": "client_type", "firstName": "first_name", "lastName": "last_name",
           "companyName": "company_name", "phone": "phone", "additionalPhone": "additional_phone", "state": "state",
           "created": "created_at", "billing.country": "country", "billing.region": "region",
           "billing.city": "city", "billing.address": "address", "billing.postcode": "postcode",
           "affiliateId": "affiliate_id", "campaignId": "campaign_id", "sourceId": "source_id", "subId": "sub_id",
           "externalId": "external_id", "gender": "gender", "dateOfBirth": "date_of_birth",
           "nationality": "nationality", "description": "description"}
# The rows the last export of this thread wrote: a background export thread and an inline export
# request of the same process each read their own.
_counts = threading.local()


@dataclass
class ExportRequest:
    q: str = ""
    ids: list = field(default_factory=list)
    columns: list = field(default_factory=list)
    fmt: str = "csv"
    bom: bool = False
    # the clients list's own arguments (filters, tab, search): exported rows = the list's Total
    args: dict = field(default_factory=dict)


# The list's columns (CL-LIST-6) -> the export columns that carry them (import field keys, so the
# file re-imports); list columns with no importable counterpart (UID, dates kept by the system…)
# are left out of a "visible columns" export.
LIST_TO_EXPORT = {"email": ["email"], "id": ["id"], "full_name": ["firstName", "lastName", "companyName"],
                  "phone": ["phone"], "client_type": ["type"], "country": ["billing.country"],
                  "comments": ["description"], "desk": ["desk"], "status": ["status"], "manager": ["manager"],
                  "project": ["project"], "state": ["state"], "created_at": ["created"], "tags": ["tags"]}


def columns_from_list(list_columns):
    """Export columns for the list's visible columns, in their order (custom fields included)."""
    out = []
    for key in list_columns or ():
        if key.startswith("cf_"):
            wanted = [f"custom.{key[3:]}"]
        else:
            wanted = LIST_TO_EXPORT.get(key, [])
        out += [c for c in wanted if c not in out]
    if "email" not in out:
        out.insert(0, "email")  # the identity of a row on re-import
    return out


def _needs_guard(text):
    """Starts with a trigger, or with apostrophes before one (so the guard stays reversible)."""
    stripped = text.lstrip("'")
    return bool(stripped) and stripped[0] in FORMULA_TRIGGERS


def neutralise(value):
    """A text cell never starts with a formula trigger once a spreadsheet reads it; numbers stay numbers."""
    if isinstance(value, str) and _needs_guard(value):
        return "'" + value
    return value


def unneutralise(value):
    """Undo `neutralise` on import: exactly one leading apostrophe it added goes away."""
    if value[:1] == "'" and _needs_guard(value[1:]):
        return value[1:]
    return value


def export_filename(fmt, now=None):
    now = now or dt.datetime.now()
    return f"clients_export_{now:%Y%m%d-%H%M%S}.{'xlsx' if fmt == 'xlsx' else 'csv'}"


def export_url(args):
    """The export route for a list page's current arguments (q, ids, columns, fmt, bom)."""
    from flask import url_for
    return url_for("ClientExportView.export", **{k: v for k, v in args.items() if v not in (None, "", [])})


def columns_for(req):
    custom = [f"custom.{k}" for k in db.session.scalars(
        select(CustomField.key).where(CustomField.active.is_(True)).order_by(CustomField.order, CustomField.id))]
    allowed = DEFAULT_COLUMNS + custom
    wanted = [c for c in (req.columns or []) if c in allowed]
    return wanted or allowed


def _where(q, actor, req):
    """Scope, then the list's filters/tab/search (the same query as its Total) or the plain search."""
    q = q.where(org.client_scope_clause(Client, actor))
    if req.args:
        from ..clients.list_services import matching_ids_query
        q = q.where(Client.id.in_(matching_ids_query(actor, req.args).order_by(None).subquery().select()))
    else:
        search = client_services.literal_search_clause(req.q)
        if search is not None:
            q = q.where(search)
    if req.ids:
        q = q.where(Client.id.in_([int(i) for i in req.ids]))
    return q


def _query(actor, req):
    q = (select(Client.id, Client.email, Client.client_type, Client.first_name, Client.last_name,
                Client.company_name, Client.phone, Client.additional_phone, Client.state, Client.created_at,
                Client.country, Client.region, Client.city, Client.address, Client.postcode, Client.affiliate_id,
                Client.campaign_id, Client.source_id, Client.sub_id, Client.external_id, Client.gender,
                Client.date_of_birth, Client.nationality, Client.description, Client.custom_fields,
                Project.key.label("project_key"), Desk.name.label("desk_name"), User.email.label("manager_email"),
                ClientStatus.label.label("status_label"))
         .select_from(Client).join(Project, Project.id == Client.project_id)
         .outerjoin(Desk, Desk.id == Client.desk_id).outerjoin(User, User.id == Client.manager_id)
         .outerjoin(ClientStatus, ClientStatus.id == Client.status_id))
    return _where(q, actor, req)


def scoped_count(actor, req):
    from sqlalchemy import func
    return db.session.scalar(_where(select(func.count(Client.id)), actor, req))


def _cell(col, row, tags):
    if col in _DIRECT:
        value = getattr(row, _DIRECT[col])
    elif col == "project":
        value = row.project_key
    elif col == "desk":
        value = row.desk_name
    elif col == "manager":
        value = row.manager_email
    elif col == "status":
        value = row.status_label
    elif col == "tags":
        value = ", ".join(tags.get(row.id, []))
    elif col.startswith("custom."):
        value = (row.custom_fields or {}).get(col[7:])
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
    else:
        value = None
    if isinstance(value, dt.datetime):
        value = value.isoformat(sep=" ", timespec="seconds")
    elif isinstance(value, dt.date):
        value = value.isoformat()
    return neutralise(value)


def iter_rows(actor, req, columns):
    """Rows of cell values, in id order, read in keyset batches (bounded memory at any size)."""
    base = _query(actor, req).order_by(Client.id)
    last = 0
    total = 0
    want_tags = "tags" in columns
    while True:
        batch = db.session.execute(base.where(Client.id > last).limit(BATCH)).all()
        if not batch:
            break
        tags = {}
        if want_tags:
            ids = [r.id for r in batch]
            for cid, name in db.session.execute(
                    select(client_tag.c.client_id, Tag.name).join(Tag, Tag.id == client_tag.c.tag_id)
                    .where(and_(client_tag.c.client_id >= ids[0], client_tag.c.client_id <= ids[-1]))
                    .order_by(Tag.name)):
                tags.setdefault(cid, []).append(name)
        for row in batch:
            yield [_cell(c, row, tags) for c in columns]
        total += len(batch)
        last = batch[-1].id
        db.session.expunge_all()
    _counts.last = total


def last_row_count():
    return getattr(_counts, "last", 0)


def _audit(actor, req, rows):
    audit.record_rows(db.session, [dict(entity="ClientExport", entity_id=0, client_id=None, operation="export",
                                        field="filter", old=None,
                                        new=json.dumps({"q": req.q, "ids": len(req.ids or []), "rows": rows,
                                                        "format": req.fmt, "user_id": getattr(actor, "id", None)}))])
    db.session.commit()


def stream_csv(actor, req):
    """Encoded CSV chunks; the export is audited once the last row is out.

    On PostgreSQL the rows come straight from `COPY (SELECT …) TO STDOUT` with every cell formatted
    and neutralised by the same rules in SQL (`_sql_cells`; a test holds both forms equal), which
    is what lets a million rows out in seconds; elsewhere Python formats them batch by batch.
    """
    columns = columns_for(req)
    buf = io.StringIO()
    writer = csv.writer(buf)
    if req.bom:
        buf.write("\ufeff")
    writer.writerow(columns)
    if db.session.get_bind().dialect.name == "postgresql":
        yield buf.getvalue().encode("utf-8")
        n = yield from _copy_csv(actor, req, columns)
        _counts.last = n
        _audit(actor, req, n)
        return
    n = 0
    for cells in iter_rows(actor, req, columns):
        writer.writerow(["" if c is None else c for c in cells])
        n += 1
        if n % 2000 == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")
    _audit(actor, req, n)


# ----------------------------------------------------------------- PostgreSQL: COPY TO

def _sql_guard(expr):
    """`neutralise` in SQL: a leading apostrophe when the text (after apostrophes) starts with a trigger.

    Written with ascii() of the first character rather than a regular expression: a million-row
    export evaluates it ~25 million times. NULL and a first character above every trigger and the
    apostrophe (a letter, nearly always) leave at the first test. Measured in psql, the export of
    1M imported clients (tags included, not parallel, after VACUUM): 13.8 s with `~` and to_char,
    9.3 s with this guard and the casts of _sql_cells."""
    from sqlalchemy import case, func, literal, or_
    codes = sorted(ord(t) for t in FORMULA_TRIGGERS if t != "\0")  # PostgreSQL text never holds NUL
    first = func.ascii(expr)
    return case((or_(expr.is_(None), first > max(codes + [ord("'")])), expr),
                (or_(first.in_(codes), and_(first == ord("'"), func.ascii(func.ltrim(expr, literal("'"))).in_(codes))),
                 literal("'") + expr),
                else_=expr)


def _sql_tags():
    """client_id -> its tag names A–Z joined by ", " (one grouped pass, not one subquery per row)."""
    from sqlalchemy import func, literal
    from sqlalchemy.dialects.postgresql import aggregate_order_by
    return (select(client_tag.c.client_id, func.string_agg(Tag.name, aggregate_order_by(literal(", "), Tag.name))
                   .label("names"))
            .join(Tag, Tag.id == client_tag.c.tag_id).group_by(client_tag.c.client_id).subquery("tag_names"))


def _sql_cells(columns, tags):
    """One SQL text expression per export column, equal to what `_cell` makes of the row."""
    from sqlalchemy import Text, case, cast, func, literal
    from sqlalchemy.dialects.postgresql import JSONB
    out = []
    for col in columns:
        if col == "id":
            out.append(cast(Client.id, Text))
        elif col == "created":
            # casts under DateStyle ISO (set by _copy_csv), cheaper than to_char: 'YYYY-MM-DD HH:MM:SS'
            out.append(cast(func.date_trunc("second", Client.created_at), Text))
        elif col == "dateOfBirth":
            out.append(cast(Client.date_of_birth, Text))
        elif col in _DIRECT:
            out.append(_sql_guard(getattr(Client, _DIRECT[col])))
        elif col == "project":
            out.append(_sql_guard(Project.key))
        elif col == "desk":
            out.append(_sql_guard(Desk.name))
        elif col == "manager":
            out.append(_sql_guard(User.email))
        elif col == "status":
            out.append(_sql_guard(ClientStatus.label))
        elif col == "tags":
            out.append(_sql_guard(tags.c.names))
        elif col.startswith("custom."):
            value = cast(Client.custom_fields, JSONB).op("->")(col[7:])
            text = cast(Client.custom_fields, JSONB).op("->>")(col[7:])
            elements = func.jsonb_array_elements_text(value).table_valued("value")
            joined = select(func.string_agg(elements.c.value, literal(", "))).scalar_subquery()
            out.append(case((func.jsonb_typeof(value) == "array", _sql_guard(joined)),
                            (func.jsonb_typeof(value) == "string", _sql_guard(text)), else_=text))
        else:
            out.append(cast(literal(None), Text))
    return out


def _copy_csv(actor, req, columns):
    """Stream the CSV body from PostgreSQL's COPY; returns the row count (from COPY's own tally)."""
    tags = _sql_tags()
    stmt = (select(*_sql_cells(columns, tags)).select_from(Client).join(Project, Project.id == Client.project_id)
            .outerjoin(Desk, Desk.id == Client.desk_id).outerjoin(User, User.id == Client.manager_id)
            .outerjoin(ClientStatus, ClientStatus.id == Client.status_id))
    if "tags" in columns:
        stmt = stmt.outerjoin(tags, tags.c.client_id == Client.id)
    stmt = _where(stmt, actor, req).order_by(Client.id)
    compiled = stmt.compile(dialect=db.session.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    connection = db.session.connection().connection.driver_connection
    with connection.cursor() as cur:
        cur.execute("SET LOCAL DateStyle = 'ISO, YMD'")  # the casts of _sql_cells
        if "tags" in columns:
            # A parallel plan builds the whole tag aggregate once per process (1M imported rows:
            # 12.8 s parallel, 10.9 s not)
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        with cur.copy(f"COPY ({compiled.string}) TO STDOUT WITH (FORMAT csv)", compiled.params) as copy:
            # COPY hands over one row per block: joined into ~64 KiB pieces, a million rows are
            # ~2,000 writes to the file or socket instead of a million
            parts, size = [], 0
            for block in copy:
                parts.append(block)
                size += len(block)
                if size >= 65536:
                    yield b"".join(parts)
                    parts, size = [], 0
            if parts:
                yield b"".join(parts)
        count = cur.rowcount
    return count


def write_xlsx(actor, req, path):
    """Write the export as XLSX, streamed to disk; returns the row count.

    openpyxl writes the package (workbook, styles, content types) around an empty sheet; the
    sheet's rows are then streamed into the archive as XML by `_sheet_rows_xml`. openpyxl's own
    write-only sheet built objects per cell: 24 of the 30 s a 98k-client export took."""
    import zipfile

    import openpyxl
    columns = columns_for(req)
    wb = openpyxl.Workbook(write_only=True)
    wb.create_sheet("Clients")
    frame = io.BytesIO()
    wb.save(frame)
    with zipfile.ZipFile(frame) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        sheet = next(name for name in src.namelist() if name.startswith("xl/worksheets/") and name.endswith(".xml"))
        for info in src.infolist():
            if info.filename != sheet:
                out.writestr(info.filename, src.read(info))
                continue
            head, marker, tail = src.read(info).decode("utf-8").partition("<sheetData></sheetData>")
            if not marker:
                raise RuntimeError("openpyxl wrote a sheet without an empty <sheetData>")
            with out.open(sheet, "w", force_zip64=True) as part:
                part.write((head + "<sheetData>").encode("utf-8"))
                for piece in _sheet_rows_xml(itertools.chain([columns], iter_rows(actor, req, columns))):
                    part.write(piece)
                part.write(("</sheetData>" + tail).encode("utf-8"))
    n = last_row_count()  # iter_rows counts what it read
    _audit(actor, req, n)
    return n


# Characters XML 1.0 cannot hold (openpyxl refuses them); a client's text never has them (the
# validators strip control characters), but an export must not fail on an old row that does.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# (a carriage return as a reference: XML parsers turn a literal one into a line feed)
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def _sheet_rows_xml(rows, block=256 * 1024):
    """<row> elements of a sheet, as UTF-8 pieces of about `block` bytes: text cells as inline
    strings (as openpyxl writes them), numbers and booleans as such, None as no cell."""
    from openpyxl.utils.cell import get_column_letter
    letters = []
    parts, size, number = [], 0, 0
    for cells in rows:
        number += 1
        while len(letters) < len(cells):
            letters.append(get_column_letter(len(letters) + 1))
        row = [f'<row r="{number}">']
        for i, value in enumerate(cells):
            if value is None:
                continue
            ref = f"{letters[i]}{number}"
            if isinstance(value, bool):
                row.append(f'<c r="{ref}" t="b"><v>{int(value)}</v></c>')
            elif isinstance(value, (int, float, Decimal)):
                row.append(f'<c r="{ref}" t="n"><v>{value}</v></c>')
            else:
                text = str(value).translate(_XML_ESCAPES)
                if _XML_ILLEGAL.search(text):
                    text = _XML_ILLEGAL.sub("", text)
                space = ' xml:space="preserve"' if text != text.strip() else ""
                row.append(f'<c r="{ref}" t="inlineStr"><is><t{space}>{text}</t></is></c>')
        row.append("</row>")
        piece = "".join(row)
        parts.append(piece)
        size += len(piece)
        if size >= block:
            yield "".join(parts).encode("utf-8")
            parts, size = [], 0
    if parts:
        yield "".join(parts).encode("utf-8")


# ----------------------------------------------------------------- background export job (large sets)

def _request_json(req):
    """The ExportRequest as JSON for the job row; the list arguments as {key: [values]}."""
    args = req.args or {}
    if hasattr(args, "to_dict"):
        args = args.to_dict(flat=False)
    else:
        args = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in args.items()}
    return {"q": req.q or "", "ids": [int(i) for i in req.ids or []], "columns": list(req.columns or []),
            "bom": bool(req.bom), "args": args}


def request_from_job(job):
    """Rebuild the ExportRequest a job was started with (list arguments back into a MultiDict)."""
    from werkzeug.datastructures import MultiDict
    data = job.request or {}
    args = data.get("args") or {}
    multi = MultiDict([(k, v) for k, values in args.items() for v in values]) if args else {}
    return ExportRequest(q=data.get("q") or "", ids=[int(i) for i in data.get("ids") or []],
                         columns=list(data.get("columns") or []), fmt=job.fmt, bom=bool(data.get("bom")),
                         args=multi)


def export_path(job):
    """The stored file of a job, inside EXPORT_FOLDER (the name is ours, a uuid4 hex)."""
    from flask import current_app
    if not job.file_name:
        return None
    return os.path.join(current_app.config["EXPORT_FOLDER"], os.path.basename(job.file_name))


def purge_expired_exports(now=None):
    """Delete export files older than EXPORT_KEEP_HOURS: their jobs become "expired" (the job page
    says so and the download answers 404), and files no live job refers to (a crash between
    writing and recording) go too. Returns the number of files deleted."""
    from flask import current_app
    from flask_babel import gettext
    from sqlalchemy import select

    from .models import ExportJob, utcnow
    now = now or utcnow()
    hours = int(current_app.config.get("EXPORT_KEEP_HOURS") or 24)
    cutoff = now - dt.timedelta(hours=hours)
    deleted = 0
    for job in db.session.scalars(select(ExportJob).where(ExportJob.status == "done",
                                                          ExportJob.finished_at < cutoff)):
        path = export_path(job)
        if path and os.path.isfile(path):
            os.remove(path)
            deleted += 1
        job.status = "expired"
        job.reason = gettext("This export was deleted %(hours)d hours after it was made, as client data is "
                             "not kept in files longer. Export again from the clients list.", hours=hours)
    db.session.commit()
    folder = current_app.config["EXPORT_FOLDER"]
    if os.path.isdir(folder):
        live = set(db.session.scalars(select(ExportJob.file_name).where(
            ExportJob.status.in_(("queued", "running", "done")), ExportJob.file_name.is_not(None))))
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if name in live or not os.path.isfile(path):
                continue
            if dt.datetime.fromtimestamp(os.path.getmtime(path), dt.UTC).replace(tzinfo=None) < cutoff:
                os.remove(path)
                deleted += 1
    return deleted


def start_export_job(actor, req):
    """Record an ExportJob and queue it (inline without Redis); returns the job."""
    from flask import current_app

    from . import jobs
    from .models import ExportJob
    purge_expired_exports()  # the moment a new file is written, old ones go
    job = ExportJob(user_id=actor.id, status="queued", fmt="xlsx" if req.fmt == "xlsx" else "csv",
                    request=_request_json(req), download_name=export_filename(req.fmt))
    db.session.add(job)
    db.session.commit()
    job_id = job.id
    prefix = current_app.config.get("JOB_ID_PREFIX", "")
    try:
        jobs.enqueue(jobs.run_export_job, job_id, job_id=f"{prefix}export-{job_id}", on_failure=jobs.export_failed)
    except Exception:
        if current_app.config.get("REDIS_URL"):
            raise
        # inline: run_export_job has marked the job failed; the job page tells the user
    return db.session.get(ExportJob, job_id)


def run_export(job_id):
    """Write ExportJob `job_id`'s file (safe to deliver twice: a finished job is left alone)."""
    import uuid

    from flask import current_app

    from .models import ExportJob, utcnow
    job = db.session.get(ExportJob, int(job_id))
    if job is None or job.status in ("done", "failed"):
        return job
    actor = db.session.get(User, job.user_id)
    if actor is None or not actor.active:
        job.status, job.finished_at = "failed", utcnow()
        job.reason = _failure_reason("user")
        db.session.commit()
        return job
    old_path = export_path(job)  # a retried job: drop the partial file of the earlier attempt
    job.status = "running"
    job.file_name = uuid.uuid4().hex + (".xlsx" if job.fmt == "xlsx" else ".csv")
    db.session.commit()
    if old_path and os.path.exists(old_path):
        os.remove(old_path)
    folder = current_app.config["EXPORT_FOLDER"]
    os.makedirs(folder, exist_ok=True)
    path = export_path(job)
    req = request_from_job(job)
    try:
        if job.fmt == "xlsx":
            rows = write_xlsx(actor, req, path)
        else:
            with open(path, "wb") as out:
                for chunk in stream_csv(actor, req):
                    out.write(chunk)
            rows = last_row_count()
    except Exception:
        db.session.rollback()
        if os.path.exists(path):
            os.remove(path)
        raise
    job = db.session.get(ExportJob, int(job_id))  # stream_csv/iter_rows expunge the session
    job.row_count, job.status, job.finished_at = rows, "done", utcnow()
    db.session.commit()
    return job


def _failure_reason(kind):
    from flask_babel import gettext
    if kind == "user":
        return gettext("The export stopped: its user account is no longer active.")
    return gettext("The export stopped because of an internal error. Start it again from the clients list.")


def mark_export_failed(job_id):
    from sqlalchemy import update

    from .models import ExportJob, utcnow
    db.session.execute(update(ExportJob).where(ExportJob.id == int(job_id),
                                               ExportJob.status.in_(("queued", "running")))
                       .values(status="failed", finished_at=utcnow(), reason=_failure_reason("error")))
    db.session.commit()


def get_export_job(actor, pk):
    """The ExportJob `pk` of `actor` (owner only), or None."""
    from .models import ExportJob
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        return None
    job = db.session.get(ExportJob, pk)
    if job is None or job.user_id != getattr(actor, "id", None):
        return None
    return job


def export_status_label(status):
    from flask_babel import gettext
    return {"queued": gettext("Queued"), "running": gettext("Running"), "done": gettext("Done"),
            "failed": gettext("Export failed"), "expired": gettext("Deleted")}.get(status, status)


def export_status_payload(job):
    return {"id": job.id, "status": job.status, "label": export_status_label(job.status), "rows": job.row_count,
            "finished": job.finished, "reason": job.reason, "format": job.fmt}
