"""The import pipeline (CL-IO-1, CL-IO-2): value forms, reasons, updates, duplicates, encodings, scope."""

import io
import os

import pytest
from sqlalchemy import func, select

from tests.conftest import sql_statements, user
from tests.integration.import_helpers import clients_by_email, run_import

HEAD = "email,firstName,lastName,phone"


def _line(email, first="Ann", last="Lee", phone="+4915123000001"):
    return f"{email},{first},{last},{phone}"


def _count(app, model=None):
    from app.clients.models import Client
    from app.extensions import db
    with app.app_context():
        n = db.session.scalar(select(func.count()).select_from(model or Client))
        db.session.remove()
    return n


# ----------------------------------------------------------------- value forms

@pytest.mark.parametrize("country", ["Germany", "germany", "DE", "de", "DEU", "deu"])
def test_country_as_name_iso2_or_iso3_any_case(app, world, country):
    p, rep = run_import(app, f"{HEAD},billing.country\n{_line('c@example.org')},{country}\n")
    assert p["created"] == 1, rep
    assert clients_by_email(app)["c@example.org"].country == "DE"


@pytest.mark.parametrize("project", ["P2", "p2", "Project Two", "project two", "{p2}"])
def test_project_as_id_name_or_key(app, world, project):
    project = project.format(p2=world.p2)
    p, rep = run_import(app, f"{HEAD},project\n{_line('c@example.org')},{project}\n")
    assert p["created"] == 1, rep
    assert clients_by_email(app)["c@example.org"].project_id == world.p2


@pytest.mark.parametrize("desk", ["D1b", "Desk 1b", "desk 1b", "{d1b}"])
def test_desk_as_id_name_or_label_within_the_rows_project(app, world, desk):
    desk = desk.format(d1b=world.d1b)
    p, rep = run_import(app, f"{HEAD},project,desk\n{_line('c@example.org')},P1,{desk}\n")
    assert p["created"] == 1, rep
    assert clients_by_email(app)["c@example.org"].desk_id == world.d1b


def test_desk_of_another_project_is_refused(app, world):
    p, rep = run_import(app, f"{HEAD},project,desk\n{_line('c@example.org')},P1,D2a\n")
    assert p["failed"] == 1 and "desk: No desk D2a in the client's project." in rep[0][2]


@pytest.mark.parametrize("manager", ["mgr_p1", "mgr_p1@staff.test", "Mgr_P1 Tester", "{id}"])
def test_manager_as_id_name_or_email_and_processed_rule(app, world, manager):
    manager = manager.format(id=world.users["mgr_p1"])
    p, rep = run_import(app, f"{HEAD},project,desk,manager\n{_line('c@example.org')},P1,D1a,{manager}\n")
    assert p["created"] == 1, rep
    c = clients_by_email(app)["c@example.org"]
    assert c.manager_id == world.users["mgr_p1"]
    assert c.processed is True and c.processed_at is not None


def test_ineligible_manager_is_refused_with_the_form_message(app, world):
    p, rep = run_import(app, f"{HEAD},project,manager\n{_line('c@example.org')},P1,agent_p2\n")
    assert p["failed"] == 1
    assert "manager: The manager must be an active staff member assigned" in rep[0][2]


@pytest.mark.parametrize("status,expected", [("VIP", "VIP"), ("vip", "VIP"), ("Nuevo", "New"), ("Новый", "New"),
                                             ("", "New")])
def test_status_by_label_in_any_language_and_default(app, world, status, expected):
    p, rep = run_import(app, f"{HEAD},status\n{_line('c@example.org')},{status}\n")
    assert p["created"] == 1, rep
    assert clients_by_email(app)["c@example.org"].status.label == expected


@pytest.mark.parametrize("value,expected", [("Business", "business"), ("Empresa", "business"),
                                            ("personal", "personal")])
def test_type_by_key_or_label(app, world, value, expected):
    p, rep = run_import(app, f"{HEAD},companyName,type\n{_line('c@example.org')},ACME,{value}\n")
    assert p["created"] == 1, rep
    assert clients_by_email(app)["c@example.org"].client_type == expected


@pytest.mark.parametrize("dob", ["1980-02-01", "01.02.1980", "01/02/1980"])
def test_dates_in_common_forms(app, world, dob):
    p, rep = run_import(app, f"{HEAD},dateOfBirth,created\n{_line('c@example.org')},{dob},2020-05-06T07:08:09\n")
    assert p["created"] == 1, rep
    c = clients_by_email(app)["c@example.org"]
    assert str(c.date_of_birth) == "1980-02-01" and str(c.created_at) == "2020-05-06 07:08:09"


def test_defaults_first_project_default_status_personal_active(app, world):
    p, rep = run_import(app, f"{HEAD}\n{_line('c@example.org')}\n", username="mgr_p1")
    assert p["created"] == 1, rep
    c = clients_by_email(app)["c@example.org"]
    assert (c.project_id, c.status.label, c.client_type, c.state) == (world.p1, "New", "personal", "active")
    assert c.uid.startswith("C") and c.created_at is not None


def test_custom_fields_meta_and_tags(app, world):
    from app.clients.models import CustomField
    from app.extensions import db
    with app.app_context():
        db.session.add(CustomField(key="vip", label="Is VIP", field_type="boolean"))
        db.session.commit()
        db.session.remove()
    p, rep = run_import(app, f"{HEAD},vip,meta.source,tags\n{_line('c@example.org')},yes,fair,\"forex, vip\"\n")
    assert p["created"] == 1, rep
    c = clients_by_email(app)["c@example.org"]
    assert c.custom_fields == {"vip": True} and c.meta == {"source": "fair"}
    assert sorted(t.name for t in c.tags) == ["forex", "vip"]


# ----------------------------------------------------------------- failure reasons

@pytest.mark.parametrize("cells,reason", [
    ("bad-email,Ann,Lee,+4915123000001", "email: Enter a valid e-mail address, like name@example.com."),
    (",Ann,Lee,+4915123000001", "E-mail is required."),
    ("c@example.org,,Lee,+4915123000001", "firstName: First name is required."),
    ("c@example.org,Ann,Lee,", "phone: Phone is required for personal clients."),
    ("c@example.org,Ann,Lee,12345", "phone: Enter the phone number in international format"),
])
def test_each_failure_reason_has_its_message(app, world, cells, reason):
    p, rep = run_import(app, f"{HEAD}\n{cells}\n")
    assert p["failed"] == 1 and p["created"] == 0
    line, kind, text, raw = rep[0]
    assert line == 2 and kind == "error" and reason in text
    assert raw == cells.split(",")


@pytest.mark.parametrize("extra,value,reason", [
    ("billing.country", "Atlantis", "billing.country: Unknown country"),
    ("project", "Nope", "project: Unknown project: Nope."),
    ("status", "Gold", "status: Unknown status: Gold."),
    ("manager", "ghost", "manager: Unknown staff user: ghost."),
    ("gender", "x", "gender: Choose Male, Female or Other."),
    ("dateOfBirth", "2999-01-01", "dateOfBirth: The date of birth must be in the past."),
    ("id", "abc", "id: The id must be a whole number."),
])
def test_value_form_failures(app, world, extra, value, reason):
    p, rep = run_import(app, f"{HEAD},{extra}\n{_line('c@example.org')},{value}\n")
    assert p["failed"] == 1, rep
    assert reason in rep[0][2]


def test_invalid_rows_never_block_valid_ones(app, world):
    lines = [_line(f"c{i}@example.org", phone=f"+49151230{i:05d}") for i in range(50)]
    lines[10] = _line("broken", phone="+4915123099999")
    lines[30] = _line("c30@example.org", phone="nope")
    p, rep = run_import(app, HEAD + "\n" + "\n".join(lines) + "\n")
    assert (p["created"], p["failed"]) == (48, 2)
    assert [r[0] for r in rep] == [12, 32]


# ----------------------------------------------------------------- updates

def test_update_by_email_changes_only_present_fields(app, world, make_client):
    make_client(email="u@example.org", first_name="Old", last_name="Name", city="Paris")
    p, rep = run_import(app, "email,firstName\nU@Example.org,New\n")
    assert (p["updated"], p["created"]) == (1, 0), rep
    c = clients_by_email(app)["u@example.org"]
    assert (c.first_name, c.last_name, c.city) == ("New", "Name", "Paris")


def test_update_by_id_and_immutables_are_reported(app, world, make_client):
    cid = make_client(email="u@example.org", first_name="Old")
    p, rep = run_import(app, "id,email,type,project,firstName,companyName\n"
                        f"{cid},other@example.org,Business,P2,New,X\n")
    assert p["updated"] == 1, rep
    reasons = " ".join(r[2] for r in rep)
    assert all(r[1] == "notice" for r in rep)
    assert "email was not changed" in reasons and "type was not changed" in reasons
    assert "project was not changed" in reasons
    c = clients_by_email(app)["u@example.org"]
    assert (c.first_name, c.client_type, c.project_id) == ("New", "personal", world.p1)
    assert "other@example.org" not in clients_by_email(app)


def test_unknown_id_is_rejected(app, world):
    p, rep = run_import(app, "id,firstName\n999999,New\n")
    assert p["failed"] == 1 and "Client not found." in rep[0][2]


def test_update_is_audited_to_the_user_and_the_job(app, world, make_client):
    from app.core.audit import AuditLog
    from app.extensions import db
    cid = make_client(email="u@example.org", first_name="Old")
    p, _ = run_import(app, "email,firstName,phone\nu@example.org,New,\nn@example.org,Neu,+4915123000009\n",
                      username="mgr_p1")
    with app.app_context():
        rows = db.session.scalars(select(AuditLog).where(AuditLog.job_id == f"import-{p['id']}")).all()
        fields = {(r.entity_id, r.operation, r.field, r.old_value, r.new_value) for r in rows}
        assert (cid, "update", "first_name", "Old", "New") in fields
        assert any(r.operation == "create" and r.field == "import" for r in rows)
        assert {r.user_id for r in rows} == {world.users["mgr_p1"]}
        db.session.remove()


def test_duplicate_key_inside_one_file_later_row_updates_earlier(app, world):
    csv = (f"{HEAD},billing.city\n{_line('d@example.org', first='First')},Paris\n"
           f"{_line('x@example.org', phone='+4915123000002')},\n"
           f"d@example.org,Second,,,\n")
    p, rep = run_import(app, csv)
    assert (p["created"], p["updated"], p["failed"]) == (2, 1, 0), rep
    assert rep[0][:2] == (4, "notice") and "repeats line 2" in rep[0][2]
    c = clients_by_email(app)["d@example.org"]
    assert (c.first_name, c.city) == ("Second", "Paris")


@pytest.mark.parametrize("held", [50_000, 0])
def test_duplicate_key_across_chunks(app, world, monkeypatch, held):
    # Held (the default), a@'s first row waits for its last one and both go in one chunk; not held,
    # each goes in its own chunk. The data is the same either way.
    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    monkeypatch.setitem(app.config, "IMPORT_MAX_HELD_ROWS", held)
    csv = "\n".join([HEAD, _line("a@example.org", phone="+4915123000009") + ",Paris",
                     _line("b@example.org", phone="+4915123000002") + ",",
                     _line("c@example.org", phone="+4915123000003") + ",", "a@example.org,Later,,,"]) + "\n"
    p, rep = run_import(app, csv.replace(HEAD, HEAD + ",billing.city", 1))
    assert (p["created"], p["updated"], p["done"]) == (3, 1, 4), rep
    assert [r[:2] for r in rep] == [(5, "notice")]
    assert ("repeats line 2" if held else "repeats an earlier row") in rep[0][2]
    a = clients_by_email(app)["a@example.org"]
    assert (a.first_name, a.last_name, a.phone, a.city) == ("Later", "Lee", "+4915123000009", "Paris")


def test_rerun_of_the_same_file_reports_everything_unchanged(app, world):
    csv = (f"{HEAD},billing.country,project,desk,manager,status,tags\n"
           f"{_line('a@example.org')},DEU,P1,D1a,mgr_p1,VIP,\"x, y\"\n"
           f"{_line('b@example.org', phone='+4915123000002')},es,P2,,,New,\n")
    p1, _ = run_import(app, csv)
    n_audit = _audit_count(app)
    p2, rep = run_import(app, csv)
    assert p1["created"] == 2
    assert (p2["created"], p2["updated"], p2["unchanged"], p2["failed"]) == (0, 0, 2, 0), rep
    assert _audit_count(app) == n_audit


def test_rerun_of_a_file_that_repeats_an_email_is_unchanged_too(app, world):
    # the later row updates the earlier one; run again, the client flips and flips back: no net change
    csv = (f"{HEAD}\n{_line('a@example.org', first='First')}\n{_line('b@example.org')}\n"
           f"{_line('a@example.org', first='Second')}\n")
    p1, _ = run_import(app, csv)
    assert (p1["created"], p1["updated"]) == (2, 1)
    n_audit = _audit_count(app)
    p2, rep = run_import(app, csv)
    assert (p2["created"], p2["updated"], p2["unchanged"], p2["failed"]) == (0, 0, 3, 0), rep
    assert _audit_count(app) == n_audit
    assert clients_by_email(app)["a@example.org"].first_name == "Second"


def _audit_count(app):
    from app.core.audit import AuditLog
    return _count(app, AuditLog)


def test_dry_run_changes_nothing_and_reports(app, world, make_client):
    make_client(email="u@example.org", first_name="Old")
    before = (_count(app), _audit_count(app))
    p, rep = run_import(app, f"{HEAD}\n{_line('n@example.org')}\nu@example.org,New,,\nbad,x,y,z\n", dry_run=True)
    assert p["dry_run"] and p["status"] == "done"
    assert (p["created"], p["updated"], p["failed"]) == (1, 1, 1)
    assert (_count(app), _audit_count(app)) == before
    assert clients_by_email(app)["u@example.org"].first_name == "Old"


# ----------------------------------------------------------------- scope

def test_rows_for_projects_the_user_cannot_see_are_rejected(app, world):
    p, rep = run_import(app, f"{HEAD},project\n{_line('a@example.org')},P2\n"
                        f"{_line('b@example.org', phone='+4915123000002')},P1\n", username="mgr_p1")
    assert (p["created"], p["failed"]) == (1, 1)
    assert rep[0][0] == 2 and "project: Choose one of your projects." in rep[0][2]


def test_updates_of_clients_outside_scope_are_rejected(app, world, make_client):
    cid = make_client(email="p2@example.org", project_id=world.p2, first_name="Keep")
    p, rep = run_import(app, "email,firstName\np2@example.org,Hacked\n", username="mgr_p1")
    p2, rep2 = run_import(app, f"id,firstName\n{cid},Hacked\n", username="mgr_p1")
    assert p["failed"] == 1 and "This e-mail is already in use." in rep[0][2]
    assert p2["failed"] == 1 and "Client not found." in rep2[0][2]
    assert clients_by_email(app)["p2@example.org"].first_name == "Keep"


def test_desk_outside_a_desk_users_scope_is_rejected(app, world):
    p, rep = run_import(app, f"{HEAD},desk\n{_line('a@example.org')},D1b\n", username="agent_d1a")
    assert p["failed"] == 1 and "desk: You can only place clients on desks you are assigned to." in rep[0][2]


# ----------------------------------------------------------------- files

def test_utf8_bom_semicolon(app, world):
    data = "\ufeffemail;firstName;lastName;phone\nb@example.org;Zoë;Ñúñez;+4915123000001\n".encode("utf-8")
    p, rep = run_import(app, data)
    assert p["created"] == 1, rep and p["mapping"]["0"] == "email"
    assert clients_by_email(app)["b@example.org"].last_name == "Ñúñez"


def test_cp1252_is_detected(app, world):
    data = "email\tfirstName\tlastName\tphone\nw@example.org\tRené\tMüller\t+4915123000001\n".encode("cp1252")
    p, rep = run_import(app, data)
    assert p["created"] == 1, rep
    assert clients_by_email(app)["w@example.org"].first_name == "René"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_detected(app, world, delimiter):
    csv = delimiter.join(["email", "firstName", "lastName", "phone", "billing.city"]) + "\n" + delimiter.join(
        ["d@example.org", "Ann", "Lee", "+4915123000001", "Bad Homburg, Hesse"
         if delimiter != "," else "Bonn"]) + "\n"
    p, rep = run_import(app, csv)
    assert p["created"] == 1, rep


def test_cpython_119123_semicolon_sample_is_not_mis_split(app, world):
    csv = 'email;firstName;lastName;phone;description\ns@example.org;Ann;Lee;+4915123000001;"a, b, c"\n'
    p, rep = run_import(app, csv)
    assert p["created"] == 1, rep
    assert clients_by_email(app)["s@example.org"].description == "a, b, c"


def test_explicit_encoding_and_delimiter_override(app, world):
    data = "email|firstName|lastName|phone\nz@example.org|Zoë|Lee|+4915123000001\n".encode("latin-1")
    p, rep = run_import(app, data, encoding="latin-1", delimiter="|")
    assert p["created"] == 1, rep
    assert clients_by_email(app)["z@example.org"].first_name == "Zoë"


def test_invalid_bytes_under_a_declared_encoding_give_a_row_error(app, world):
    data = b"email,firstName,lastName,phone\nq@example.org,R\xe9n\xe9,Lee,+4915123000001\n"
    p, rep = run_import(app, data, encoding="utf-8")
    assert p["failed"] == 1 and "not valid utf-8" in rep[0][2]


def test_oversize_field_is_a_row_error_not_a_crash(app, world):
    big = "x" * 150_000
    csv = (f"{HEAD},description\n{_line('a@example.org')},\"{big}\"\n"
           f"{_line('b@example.org', phone='+4915123000002')},ok\n")
    p, rep = run_import(app, csv)
    assert p["failed"] == 1 and p["created"] == 1
    assert "longer than" in rep[0][2]


def test_xlsx_import(app, world):
    import datetime as dt

    import openpyxl
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["E-mail", "First name", "Last name", "Phone", "Date of birth", "Project"])
    ws.append(["x@example.org", "Xavi", "Lee", "+4915123000001", dt.datetime(1980, 2, 1), world.p2])
    buf = io.BytesIO()
    wb.save(buf)
    p, rep = run_import(app, buf.getvalue(), filename="clients.xlsx")
    assert p["created"] == 1, rep
    c = clients_by_email(app)["x@example.org"]
    assert (str(c.date_of_birth), c.project_id) == ("1980-02-01", world.p2)


def test_xlsx_zip_bomb_is_refused_before_parsing(app, world):
    import zipfile

    from app.core.errors import ValidationFailed
    from app.imports import services
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
        zf.writestr("xl/worksheets/sheet1.xml", "0" * (50 * 1024 * 1024))
    with app.app_context():
        with pytest.raises(ValidationFailed) as exc:
            services.store_upload(io.BytesIO(buf.getvalue()), "bomb.xlsx", user(app, "admin"))
        assert "compressed suspiciously well" in str(exc.value.field_errors["file"][0])


def test_headers_map_by_label_in_spanish_and_russian(app, world):
    from app.imports import fields
    with app.app_context():
        m = fields.auto_mapping(["Correo electrónico", "Nombre", "Фамилия", "Телефон", "meta.source", "whatever"])
    assert m["0"] == "email" and m["3"] == "phone" and m["4"] == "meta.source" and m["5"] == ""


def test_cli_import(app, world, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(f"{HEAD}\n{_line('cli@example.org')}\n")
    result = app.test_cli_runner().invoke(args=["clientdesk", "import", str(path), "--user", "mgr_p1",
                                                "--project", "P1"])
    assert result.exit_code == 0, result.output
    assert "created=1" in result.output
    result = app.test_cli_runner().invoke(args=["clientdesk", "import", str(path), "--user", "viewer_p1"])
    assert result.exit_code != 0 and "can_import" in result.output


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
                    reason="PostgreSQL only (its planner statistics); runs in the PostgreSQL pass")
def test_a_large_import_ends_with_fresh_statistics_and_a_vacuum(app, world, monkeypatch):
    """The per-chunk lookup does not depend on the table's statistics (index scans, see the next
    test), so the run analyses nothing while it grows the table; a run that added at least
    IMPORT_ANALYZE_MIN_ROWS clients ends with VACUUM (ANALYZE): every column's statistics, and the
    new pages marked all-visible."""
    from sqlalchemy import text

    from app.extensions import db
    monkeypatch.setitem(app.config, "IMPORT_ANALYZE_MIN_ROWS", 10)
    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 10)
    with app.app_context():
        assert db.session.scalar(text("SELECT count(*) FROM client")) == 0
    rows = "\n".join(f"an{i}@example.org,Ana,Lyze{i},+4915123{i:06d}" for i in range(40))
    few = "\n".join(f"few{i}@example.org,Few,Rows{i},+4915124{i:06d}" for i in range(9))
    with sql_statements(app) as statements:
        payload, _ = run_import(app, "email,first_name,last_name,phone\n" + rows)
        dry, _ = run_import(app, "email,first_name,last_name,phone\n" + rows.replace("an", "dry"), dry_run=True)
        small, _ = run_import(app, "email,first_name,last_name,phone\n" + few)
    seen = [s.strip() for s in statements if s.strip().upper().startswith(("ANALYZE", "VACUUM"))]
    assert (payload["created"], dry["created"], small["created"]) == (40, 40, 9)
    # once, at the end of the run that added 40 (≥ 10); a dry run writes and analyses nothing, and
    # a run that added 9 (< 10) leaves the table to autovacuum
    assert seen == ["VACUUM (ANALYZE) client, client_tag"]
    with app.app_context():
        pages, visible = db.session.execute(
            text("SELECT relpages, relallvisible FROM pg_class WHERE relname = 'client'")).one()
        db.session.remove()
    assert pages > 0 and visible == pages


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
                    reason="PostgreSQL only (its planner); runs in the PostgreSQL pass")
def test_the_bulk_lookup_by_email_is_an_index_scan_whatever_the_statistics(app, world):
    """The import looks a chunk's e-mails up with `email = ANY(…)` under bulk.index_scans: the
    unique B-tree index, even where the statistics (an empty table, as last analysed) make a
    sequential scan look cheaper and the e-mail's trigram index offers a bitmap scan (which
    reads the trigram index's whole pending list for each key). Off again, the planner chooses."""
    from sqlalchemy import text

    from app.core import bulk
    from app.extensions import db
    rows = "\n".join(f"plan{i}@example.org,Plan,Scan{i},+4915125{i:06d}" for i in range(300))
    run_import(app, "email,first_name,last_name,phone\n" + rows)
    with app.app_context():
        db.session.execute(text("ANALYZE client"))
        db.session.commit()

        def plan():
            emails = [f"plan{i}@example.org" for i in range(0, 300, 3)]
            lines = db.session.connection().exec_driver_sql(
                "EXPLAIN SELECT id FROM client WHERE email = ANY(%(emails)s)", {"emails": emails}).scalars().all()
            return "\n".join(lines)

        usual = plan()
        bulk.index_scans(db.session)
        pinned = plan()
        bulk.index_scans(db.session, False)
        again = plan()
        db.session.rollback()
    assert "Index Scan using uq_client_email" in pinned and "Seq Scan" not in pinned and "trgm" not in pinned
    assert "uq_client_email" not in usual and again == usual  # a small table: the planner reads it whole


def test_a_stored_file_that_is_gone_fails_the_job_with_its_reason(app, world):
    """The upload's stored file was removed (a storage clean-up, a lost volume) before the run: the
    job fails at once saying so, instead of raising an internal error on every retry."""
    from app.extensions import db
    from app.imports import services
    with app.app_context():
        actor = user(app, "admin")
        job = services.store_upload(io.BytesIO(f"{HEAD}\n{_line('gone@example.org')}\n".encode()), "gone.csv", actor)
        os.remove(services.job_path(job))
        job = services.start(job, actor)
        assert (job.status, job.reason, job.created_count) == ("failed", "The uploaded file is no longer available.", 0)
        db.session.remove()
