"""Export (CL-IO-3): scoped rows = Total, formula neutralisation (property test), CSV/XLSX, round trip."""

import csv
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from tests.conftest import user
from tests.integration.import_helpers import clients_by_email, run_import


def _rows(resp):
    text = resp.get_data(as_text=True).lstrip("\ufeff")
    return list(csv.reader(io.StringIO(text)))


def test_export_is_scoped_and_matches_the_total(app, world, web, make_client):
    for i in range(3):
        make_client(email=f"p1-{i}@example.org")
    make_client(email="p2@example.org", project_id=world.p2)
    c = web("mgr_p1")
    r = c.get("/clients/export/")
    assert r.status_code == 200
    assert r.headers["Content-Disposition"].startswith('attachment; filename="clients_export_')
    rows = _rows(r)
    emails = {row[1] for row in rows[1:]}
    assert emails == {f"p1-{i}@example.org" for i in range(3)}
    from app.imports import exports
    with app.app_context():
        assert exports.scoped_count(user(app, "mgr_p1"), exports.ExportRequest()) == len(rows) - 1
    # explicit ids of another project export nothing (404-like: no existence oracle)
    p2_id = clients_by_email(app)["p2@example.org"].id
    assert len(_rows(c.get(f"/clients/export/?ids={p2_id}"))) == 1
    assert len(_rows(c.get("/clients/export/?q=p1-1"))) == 2


def test_export_is_audited(app, world, web, make_client):
    from app.core.audit import AuditLog
    from app.extensions import db
    make_client(email="a@example.org")
    web("mgr_p1").get("/clients/export/?q=a@").get_data()
    with app.app_context():
        row = db.session.scalars(select(AuditLog).where(AuditLog.operation == "export")).one()
        assert row.user_id == world.users["mgr_p1"] and '"rows": 1' in row.new_value and '"q": "a@"' in row.new_value
        db.session.remove()


def test_bom_columns_and_xlsx(app, world, web, make_client):
    import openpyxl
    make_client(email="a@example.org", first_name="=cmd|' /C calc'!A0")
    c = web("admin")
    r = c.get("/clients/export/?bom=1&columns=email&columns=firstName")
    assert r.get_data().startswith(b"\xef\xbb\xbf")
    assert _rows(r) == [["email", "firstName"], ["a@example.org", "'=cmd|' /C calc'!A0"]]
    r = c.get("/clients/export/?fmt=xlsx&columns=id&columns=firstName&columns=phone")
    assert r.status_code == 200 and ".xlsx" in r.headers["Content-Disposition"]
    ws = openpyxl.load_workbook(io.BytesIO(r.get_data()), read_only=True).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    assert rows[1][1] == "'=cmd|' /C calc'!A0" and isinstance(rows[1][0], int) and rows[1][2].startswith("'+")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from("=+-@\t\r\n\0,;\"'aZ1 "), min_size=1, max_size=12))
def test_neutralised_cells_never_start_with_a_trigger(value):
    from app.imports.exports import FORMULA_TRIGGERS, neutralise, unneutralise
    out = neutralise(value)
    buf = io.StringIO()
    csv.writer(buf).writerow([out, -5, 3.5])
    parsed = next(csv.reader(io.StringIO(buf.getvalue())))
    assert parsed[0][:1] not in FORMULA_TRIGGERS
    assert parsed[1:] == ["-5", "3.5"]  # numbers are never prefixed
    assert unneutralise(out) == value


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_round_trip_export_import_changes_nothing(app, world, web, make_client, fmt):
    make_client(email="a@example.org", first_name="Ann", last_name="-Lee", city="Bonn", country="DE",
                desk_id=world.d1a, manager_id=world.users["mgr_p1"], status_id=world.status_vip, tags="x, y",
                date_of_birth="1980-01-02", description="+ plus")
    make_client(email="b@example.org", project_id=world.p2, gender="female")
    before = {e: _snapshot(c) for e, c in clients_by_email(app).items()}
    data = web("admin").get(f"/clients/export/?bom=1&fmt={fmt}").get_data()
    p, rep = run_import(app, data, filename=f"clients.{fmt}")
    assert (p["unchanged"], p["created"], p["updated"], p["failed"]) == (2, 0, 0, 0), rep
    after = {e: _snapshot(c) for e, c in clients_by_email(app).items()}
    assert after == before


def _snapshot(c):
    return (c.first_name, c.last_name, c.city, c.country, c.desk_id, c.manager_id, c.status_id,
            sorted(t.name for t in c.tags), c.date_of_birth, c.description, c.gender, c.project_id, c.created_at,
            c.processed)


def _set_fields(app, cid, **values):
    from app.clients.models import Client
    from app.extensions import db
    with app.app_context():
        client = db.session.get(Client, cid)
        for key, value in values.items():
            setattr(client, key, value)
        db.session.commit()
        db.session.remove()


HOSTILE = ["=cmd|' /C calc'!A0", "+49 trick", "-2+3", "@SUM(A1)", "\tTab", "'=already", "''+two", "plain 'quote'",
           'say "hi", then', "multi\nline\r\nnote", "-", "'", "",
           "1st floor", "'plain", "'''", "Ünal =x", "~tilde"]


def test_every_export_path_writes_the_same_cells(app, world, web, make_client):
    """PostgreSQL streams the CSV from COPY with the cells formatted in SQL; the Python formatter
    (SQLite, XLSX) must give the very same cells, hostile values included."""
    from app.clients.models import CustomField
    from app.extensions import db
    from app.imports import exports
    with app.app_context():
        db.session.add_all([
            CustomField(key="note", label="Note", field_type="text", options=[], order=1),
            CustomField(key="topics", label="Topics", field_type="multiselect", options=["=x", "b"], order=2),
            CustomField(key="size", label="Size", field_type="number", options=[], order=3),
            CustomField(key="vip", label="VIP", field_type="boolean", options=[], order=4)])
        db.session.commit()
        db.session.remove()
    for n, value in enumerate(HOSTILE):
        cid = make_client(email=f"h{n}@example.org", date_of_birth="1980-01-02", tags=f"=t{n}, b{n}",
                          desk_id=world.d1a)
        _set_fields(app, cid, first_name=value or None, description=value or None, city=value or None,
                          custom_fields={"note": value, "topics": ["=x", "b"] if n % 2 else [], "size": -n,
                                         "vip": bool(n % 2)})
    with app.app_context():
        admin = user(app, "admin")
        req = exports.ExportRequest()
        columns = exports.columns_for(req)
        streamed = b"".join(exports.stream_csv(admin, req)).decode("utf-8")
        python_rows = [["" if c is None else str(c) for c in cells]
                       for cells in exports.iter_rows(admin, req, columns)]
        typed_rows = list(exports.iter_rows(admin, req, columns))
        xlsx_path = os.path.join(app.config["EXPORT_FOLDER"], "every-path.xlsx")
        os.makedirs(app.config["EXPORT_FOLDER"], exist_ok=True)
        assert exports.write_xlsx(admin, req, xlsx_path) == len(HOSTILE)
        dialect = db.session.get_bind().dialect.name
        db.session.remove()
    # The XLSX sheet (streamed by exports._sheet_rows_xml) holds the same cells, as openpyxl reads
    # them: text as text (line breaks and carriage returns kept), numbers as numbers, no cell for None.
    import openpyxl
    wb = openpyxl.load_workbook(xlsx_path)
    sheet_rows = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    wb.close()
    os.remove(xlsx_path)
    assert sheet_rows[0] == columns
    assert sheet_rows[1:] == [cells + [None] * (len(columns) - len(cells)) for cells in typed_rows]
    assert any(isinstance(c, int) and not isinstance(c, bool) for row in sheet_rows[1:] for c in row)
    assert any(isinstance(c, str) and "\r\n" in c for row in sheet_rows[1:] for c in row)
    for row in sheet_rows[1:]:
        for cell in row:
            assert not isinstance(cell, str) or cell[:1] not in exports.FORMULA_TRIGGERS, (dialect, row)
    parsed = list(csv.reader(io.StringIO(streamed)))
    assert parsed[0] == columns and "custom.topics" in columns
    assert parsed[1:] == python_rows and len(python_rows) == len(HOSTILE)
    for row in parsed[1:]:
        for cell in row:
            assert cell[:1] not in exports.FORMULA_TRIGGERS or _is_number(cell), (dialect, row)


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_export_follows_the_list_filters_and_columns(app, world, web, make_client):
    from app.imports import exports
    a = make_client(email="a@example.org", status_id=world.status_vip, desk_id=world.d1a)
    make_client(email="b@example.org")
    make_client(email="c@example.org", project_id=world.p2, status_id=world.status_vip)
    c = web("mgr_p1")
    rows = _rows(c.get(f"/clients/export/?status={world.status_vip}&list_columns=id&list_columns=full_name"
                       "&list_columns=status&list_columns=uid"))
    assert rows[0] == ["email", "id", "firstName", "lastName", "companyName", "status"]
    assert [r[1] for r in rows[1:]] == [str(a)]  # the other VIP client is outside mgr_p1's scope
    total = c.get(f"/clients/list/total?status={world.status_vip}").get_json()["total"]
    assert total == len(rows) - 1
    assert exports.columns_from_list(["cf_shoe", "uid", "email"]) == ["custom.shoe", "email"]


def test_the_list_offers_an_export_of_what_it_shows(app, world, web, make_client):
    import html as html_lib
    import re
    make_client(email="vip@example.org", status_id=world.status_vip)
    make_client(email="plain@example.org")
    c = web("mgr_p1")
    page = c.get(f"/clients/list/?status={world.status_vip}").get_data(as_text=True)
    url = html_lib.unescape(re.search(r'<a href="([^"]+)"[^>]*id="cd-export-csv"', page).group(1))
    assert url.startswith("/clients/export/?") and f"status={world.status_vip}" in url and "list_columns=email" in url
    rows = _rows(c.get(url))
    assert [r[0] for r in rows[1:]] == ["vip@example.org"]
    assert rows[0][:2] == ["email", "id"]  # the list's default columns, in order
    # without can_export there is no button (and the route is closed)
    page = web("viewer_p1").get("/clients/list/").get_data(as_text=True)
    assert "cd-export-csv" not in page
    assert web("viewer_p1").get("/clients/export/").status_code in (302, 403, 404)


def test_the_list_offers_the_all_fields_template_too(app, world, web, make_client):
    import html as html_lib
    import re
    from app.imports import exports
    make_client(email="vip@example.org", status_id=world.status_vip)
    make_client(email="plain@example.org")
    c = web("mgr_p1")
    page = c.get(f"/clients/list/?status={world.status_vip}").get_data(as_text=True)
    url = html_lib.unescape(re.search(r'<a href="([^"]+)"[^>]*id="cd-export-all"', page).group(1))
    assert "list_columns" not in url and f"status={world.status_vip}" in url
    rows = _rows(c.get(url))
    with app.app_context():
        assert rows[0] == exports.columns_for(exports.ExportRequest())
    assert [r[0] for r in rows[1:]] == [str(clients_by_email(app)["vip@example.org"].id)]
