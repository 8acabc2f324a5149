"""Export as a background job for large sets (CL-IO-3): above EXPORT_INLINE_MAX_ROWS the export is
queued (inline without Redis), its page polls a status, and the owner downloads the stored file."""

import csv
import io
import os
import re

import pytest
from sqlalchemy import select


def _rows(data):
    return list(csv.reader(io.StringIO(data.decode("utf-8").lstrip("\ufeff"))))


@pytest.fixture()
def three(world, make_client):
    for i in range(3):
        make_client(email=f"big-{i}@example.org", first_name=f"=F{i}")
    make_client(email="other@example.org", project_id=world.p2)  # out of mgr_p1's scope


def _start(app, c, url, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_INLINE_MAX_ROWS", 1)
    r = c.get(url)
    assert r.status_code == 302
    path = urllib_path(r.location)
    assert path.startswith("/clients/export/job/")
    return int(path.rstrip("/").split("/")[-1])


def urllib_path(location):
    from urllib.parse import urlsplit
    return urlsplit(location).path


def _job(app, pk):
    from app.extensions import db
    from app.imports.models import ExportJob
    with app.app_context():
        job = db.session.get(ExportJob, pk)
        db.session.expunge(job)
        db.session.remove()
    return job


def test_large_csv_export_runs_as_a_job(app, world, web, three, monkeypatch):
    c = web("mgr_p1")
    url = "/clients/export/?bom=1&columns=id&columns=email&columns=firstName"
    pk = _start(app, c, url, monkeypatch)
    page = c.get(f"/clients/export/job/{pk}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"/clients/export/job/{pk}/download" in html and "imports.js" in html
    status = c.get(f"/clients/export/job/{pk}/status").get_json()
    assert status["status"] == "done" and status["rows"] == 3 and status["finished"]

    d = c.get(f"/clients/export/job/{pk}/download")
    assert d.status_code == 200
    assert d.headers["Cache-Control"].startswith("no-store")
    assert d.headers["Content-Disposition"].startswith("attachment; filename=clients_export_")
    assert d.headers["Content-Disposition"].endswith(".csv")
    assert d.get_data().startswith(b"\xef\xbb\xbf")
    job_rows = _rows(d.get_data())
    d.close()

    monkeypatch.undo()  # the limit restored: the same URL streams inline
    inline = c.get(url)
    assert inline.status_code == 200 and "attachment" in inline.headers["Content-Disposition"]
    assert job_rows == _rows(inline.get_data())
    assert len(job_rows) == 4 and job_rows[1][2] == "'=F0"

    job = _job(app, pk)
    assert job.user_id == world.users["mgr_p1"] and job.fmt == "csv" and job.row_count == 3
    folder = os.path.realpath(app.config["EXPORT_FOLDER"])
    stored = os.path.realpath(os.path.join(folder, job.file_name))
    assert os.path.commonpath([folder, stored]) == folder and os.path.isfile(stored)
    assert job.download_name.startswith("clients_export_") and job.file_name != job.download_name


def test_list_filters_survive_the_job(app, world, web, three, monkeypatch):
    c = web("mgr_p1")
    url = "/clients/export/?q=big-&columns=email&flt_x=unused&list_columns=email"
    pk = _start(app, c, url, monkeypatch)
    assert c.get(f"/clients/export/job/{pk}/status").get_json()["status"] in ("done", "failed")
    job = _job(app, pk)
    assert job.request["q"] == "big-" and job.request["columns"] == ["email"]
    from app.imports import exports
    with app.app_context():
        req = exports.request_from_job(job)
    assert req.q == "big-" and req.fmt == "csv"


def test_large_xlsx_export_runs_as_a_job(app, world, web, three, monkeypatch):
    import openpyxl
    c = web("mgr_p1")
    url = "/clients/export/?fmt=xlsx&columns=id&columns=email&columns=firstName"
    pk = _start(app, c, url, monkeypatch)
    status = c.get(f"/clients/export/job/{pk}/status").get_json()
    assert status["status"] == "done" and status["rows"] == 3 and status["format"] == "xlsx"
    d = c.get(f"/clients/export/job/{pk}/download")
    assert d.status_code == 200 and d.headers["Content-Disposition"].endswith(".xlsx")
    assert d.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    job_rows = list(openpyxl.load_workbook(io.BytesIO(d.get_data()), read_only=True).worksheets[0]
                    .iter_rows(values_only=True))
    d.close()
    monkeypatch.undo()
    inline = c.get(url)
    assert inline.status_code == 200
    inline_rows = list(openpyxl.load_workbook(io.BytesIO(inline.get_data()), read_only=True).worksheets[0]
                       .iter_rows(values_only=True))
    assert job_rows == inline_rows and len(job_rows) == 4


def test_a_job_is_its_owners_only(app, world, web, three, monkeypatch):
    pk = _start(app, web("mgr_p1"), "/clients/export/", monkeypatch)
    paths = (f"/clients/export/job/{pk}", f"/clients/export/job/{pk}/status", f"/clients/export/job/{pk}/download")
    admin = web("admin")  # holds can_export, yet the job is not theirs: 404, administrators included
    for path in paths:
        assert admin.get(path).status_code == 404, path
    agent = web("agent_p2")  # no can_export at all: refused before any lookup
    for path in paths:
        assert agent.get(path).status_code in (302, 403, 404), path
    assert web("mgr_p1").get("/clients/export/job/987654").status_code == 404


def test_without_can_export_no_job(app, world, web, three, monkeypatch):
    from app.extensions import db
    from app.imports.models import ExportJob
    monkeypatch.setitem(app.config, "EXPORT_INLINE_MAX_ROWS", 1)
    c = web("viewer_p1")
    assert c.get("/clients/export/").status_code in (302, 403, 404)
    with app.app_context():
        assert db.session.scalars(select(ExportJob)).all() == []
        db.session.remove()
    pk = _start(app, web("mgr_p1"), "/clients/export/", monkeypatch)
    assert c.get(f"/clients/export/job/{pk}/status").status_code in (302, 403, 404)
    assert c.get(f"/clients/export/job/{pk}/download").status_code in (302, 403, 404)


def test_a_done_job_is_not_rerun_and_an_inactive_user_fails(app, world, web, three, monkeypatch):
    from app.extensions import db
    from app.imports import exports
    from app.imports.models import ExportJob
    pk = _start(app, web("mgr_p1"), "/clients/export/", monkeypatch)
    before = _job(app, pk)
    with app.app_context():
        exports.run_export(pk)
        again = db.session.get(ExportJob, pk)
        assert again.file_name == before.file_name and again.status == "done"
        job = ExportJob(user_id=world.users["inactive"], fmt="csv", request={}, download_name="x.csv")
        db.session.add(job)
        db.session.commit()
        done = exports.run_export(job.id)
        assert done.status == "failed" and done.reason and done.file_name is None
        db.session.remove()


def _age(app, pk, hours):
    """Pretend job `pk` finished `hours` ago."""
    import datetime as dt

    from app.extensions import db
    from app.imports.models import ExportJob, utcnow
    with app.app_context():
        job = db.session.get(ExportJob, pk)
        job.finished_at = utcnow() - dt.timedelta(hours=hours)
        db.session.commit()
        db.session.remove()


def _purge(app):
    from app.imports import exports
    with app.app_context():
        return exports.purge_expired_exports()


def test_finished_export_files_are_deleted_after_the_keep_time(app, world, web, three, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_KEEP_HOURS", 24)
    c = web("mgr_p1")
    old = _start(app, c, "/clients/export/?columns=id", monkeypatch)
    recent = _start(app, c, "/clients/export/?columns=email", monkeypatch)
    folder = app.config["EXPORT_FOLDER"]
    old_file = os.path.join(folder, _job(app, old).file_name)
    recent_file = os.path.join(folder, _job(app, recent).file_name)
    _age(app, old, 25)
    _age(app, recent, 23)

    assert _purge(app) >= 1
    assert not os.path.exists(old_file) and os.path.isfile(recent_file)
    status = c.get(f"/clients/export/job/{old}/status").get_json()
    assert status["status"] == "expired" and status["finished"] and "24 hours" in status["reason"]
    assert c.get(f"/clients/export/job/{old}/download").status_code == 404
    page = c.get(f"/clients/export/job/{old}").get_data(as_text=True)
    assert "Export again from the clients list" in page
    assert c.get(f"/clients/export/job/{recent}/download").status_code == 200

    _age(app, recent, 30)  # a new export job purges on its way in
    _start(app, c, "/clients/export/?columns=uid", monkeypatch)
    assert not os.path.exists(recent_file) and _job(app, recent).status == "expired"


def test_orphan_export_files_go_but_live_ones_stay(app, world, web, three, monkeypatch):
    import time
    c = web("mgr_p1")
    live = _start(app, c, "/clients/export/?columns=id", monkeypatch)
    folder = app.config["EXPORT_FOLDER"]
    live_file = os.path.join(folder, _job(app, live).file_name)
    orphan, fresh_orphan = os.path.join(folder, "0" * 32 + ".csv"), os.path.join(folder, "1" * 32 + ".csv")
    for path in (orphan, fresh_orphan):
        with open(path, "w") as fh:
            fh.write("id\n1\n")
    two_days_ago = time.time() - 48 * 3600
    os.utime(orphan, (two_days_ago, two_days_ago))
    os.utime(live_file, (two_days_ago, two_days_ago))  # old mtime, but its job is within the keep time
    _purge(app)
    assert not os.path.exists(orphan)
    assert os.path.isfile(fresh_orphan) and os.path.isfile(live_file)
    os.remove(fresh_orphan)


def test_purge_exports_command(app, world, web, three, monkeypatch):
    c = web("mgr_p1")
    pk = _start(app, c, "/clients/export/?columns=id", monkeypatch)
    _age(app, pk, 100)
    result = app.test_cli_runner().invoke(args=["clientdesk", "purge-exports"])
    assert result.exit_code == 0 and re.search(r"deleted [1-9]\d* export file\(s\)", result.output)
    assert _job(app, pk).status == "expired"


def test_each_thread_reads_the_row_count_of_its_own_export(app, world, three):
    """A background export thread and an inline export in another thread of the same process:
    the job stores the count of its own file, not of the export that finished last."""
    import threading

    from app.imports import exports
    from tests.conftest import user
    first_done, second_done, seen = threading.Event(), threading.Event(), {}

    def background():
        with app.app_context():
            admin = user(app, "admin")
            one = exports.ExportRequest(q="big-0@example.org")
            seen["rows"] = sum(1 for _ in exports.iter_rows(admin, one, exports.columns_for(one)))
            first_done.set()
            second_done.wait(30)
            seen["count"] = exports.last_row_count()

    worker = threading.Thread(target=background)
    worker.start()
    assert first_done.wait(30)
    with app.app_context():
        every = exports.ExportRequest()
        assert sum(1 for _ in exports.iter_rows(user(app, "admin"), every, exports.columns_for(every))) == 4
        assert exports.last_row_count() == 4
    second_done.set()
    worker.join(30)
    assert seen == {"rows": 1, "count": 1}
