"""Client export (CL-IO-3): the scoped search/ids as CSV or XLSX, streamed in keyset batches.

Columns use the import's field keys, so an exported file re-imports unchanged (round trip).
Text cells a spreadsheet would run as a formula are neutralised with a leading apostrophe
(R23, ASVS 1.2.10); the import strips that apostrophe again.
"""

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field

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
_last_count = [0]


@dataclass
class ExportRequest:
    q: str = ""
    ids: list = field(default_factory=list)
    columns: list = field(default_factory=list)
    fmt: str = "csv"
    bom: bool = False


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
         .outerjoin(ClientStatus, ClientStatus.id == Client.status_id)
         .where(org.client_scope_clause(Client, actor)))
    search = client_services.literal_search_clause(req.q)
    if search is not None:
        q = q.where(search)
    if req.ids:
        q = q.where(Client.id.in_([int(i) for i in req.ids]))
    return q


def scoped_count(actor, req):
    from sqlalchemy import func
    q = select(func.count(Client.id)).where(org.client_scope_clause(Client, actor))
    search = client_services.literal_search_clause(req.q)
    if search is not None:
        q = q.where(search)
    if req.ids:
        q = q.where(Client.id.in_([int(i) for i in req.ids]))
    return db.session.scalar(q)


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
    _last_count[0] = total


def last_row_count():
    return _last_count[0]


def _audit(actor, req, rows):
    audit.record_rows(db.session, [dict(entity="ClientExport", entity_id=0, client_id=None, operation="export",
                                        field="filter", old=None,
                                        new=json.dumps({"q": req.q, "ids": len(req.ids or []), "rows": rows,
                                                        "format": req.fmt, "user_id": getattr(actor, "id", None)}))])
    db.session.commit()


def stream_csv(actor, req):
    """Encoded CSV chunks; the export is audited once the last row is out."""
    columns = columns_for(req)
    buf = io.StringIO()
    writer = csv.writer(buf)
    if req.bom:
        buf.write("\ufeff")
    writer.writerow(columns)
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


def write_xlsx(actor, req, path):
    """Write the export as XLSX (openpyxl write-only, streamed to disk); returns the row count."""
    import openpyxl
    columns = columns_for(req)
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Clients")
    ws.append(columns)
    n = 0
    for cells in iter_rows(actor, req, columns):
        ws.append(cells)
        n += 1
    wb.save(path)
    _audit(actor, req, n)
    return n
