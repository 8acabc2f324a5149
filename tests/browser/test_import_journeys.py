"""The import screen in a browser (CL-IO-1, CL-IO-2): what only a browser shows — the upload form, the
preview with its automatic column mapping, a mapping changed in the page, and the job's progress
updated in place by imports.js while the job runs elsewhere.

The live server is single-threaded and shares the test's database; the test writes to the database
only while the browser's status request is held (page.route), so it never writes during a request.
"""

import csv
import io
import re

from playwright.sync_api import expect
from sqlalchemy import update

from tests.browser.conftest import login
from tests.conftest import user
from tests.integration.import_helpers import clients_by_email

CSV = ("email,firstName,lastName,phone,project,notes\n"
       "ui1@example.org,Uma,Ivers,+4915123400001,P1,first\n"
       "ui2@example.org,Udo,Ivers,+4915123400002,P1,second\n"
       "not-an-email,Una,Ivers,+4915123400003,P1,third\n")


def _job_id(page):
    return int(re.search(r"/clients/import/job/(\d+)", page.url).group(1))


def test_upload_preview_remap_start_and_report(page, live_server, world, app):
    login(page, live_server, "admin")
    page.goto(f"{live_server}/clients/import/")
    page.set_input_files("#cd-import-file", files=[{"name": "people.csv", "mimeType": "text/csv",
                                                     "buffer": CSV.encode()}])
    page.get_by_role("button", name="Upload and preview").click()
    page.wait_for_url(re.compile(r"/clients/import/job/\d+$"))
    job_id = _job_id(page)

    # the preview shows the file's first rows, and the headers are mapped to their fields
    preview = page.locator("table.cd-import-preview tbody tr")
    expect(preview).to_have_count(3)
    expect(preview.first).to_contain_text("ui1@example.org")
    expect(page.locator("select[name=map_0]")).to_have_value("email")
    expect(page.locator("select[name=map_2]")).to_have_value("lastName")
    expect(page.locator("select[name=map_5]")).to_have_value("")  # "notes" is no field: ignored

    # the person decides not to import the surnames
    page.select_option("select[name=map_2]", value="")
    page.get_by_role("button", name="Start import").click()
    page.wait_for_url(re.compile(rf"/clients/import/job/{job_id}$"))

    box = page.locator("#cd-import-status")
    expect(box.locator("[data-field=status]")).to_have_text("done")
    expect(box.locator("[data-field=created]")).to_have_text("2")
    expect(box.locator("[data-field=failed]")).to_have_text("1")
    expect(box.locator("[data-field=bar]")).to_have_attribute("style", re.compile(r"width: ?100%"))

    # the error report: the rejected row as it was, its line number and the reason
    href = page.get_by_role("link", name="Download the error report (CSV)").get_attribute("href")
    report = page.request.get(f"{live_server}{href}")
    assert report.ok
    rows = list(csv.reader(io.StringIO(report.text())))
    assert rows[0][:3] == ["Line", "Kind", "Reason"] and rows[0][3:] == CSV.splitlines()[0].split(",")
    assert len(rows) == 2
    line, kind, reason, *cells = rows[1]
    # the row as read, its phone neutralised like every exported cell that starts with a formula trigger
    assert (line, kind, cells) == ("4", "error", ["not-an-email", "Una", "Ivers", "'+4915123400003", "P1", "third"])
    assert reason.startswith("email:")

    clients = clients_by_email(app)
    assert {"ui1@example.org", "ui2@example.org"} <= set(clients)
    assert "not-an-email" not in clients
    from app.clients.models import Client
    from app.extensions import db
    with app.app_context():
        last_names = {c.email: c.last_name for c in db.session.query(Client).filter(Client.email.like("ui%"))}
        db.session.remove()
    assert last_names == {"ui1@example.org": None, "ui2@example.org": None}  # the column left unmapped


def test_progress_is_shown_live_while_the_job_runs(page, live_server, world, app):
    """A job running in a worker: the page updates status, counts and bar without a reload."""
    from app.extensions import db
    from app.imports import services
    from app.imports.models import ImportJob

    with app.app_context():
        job = services.store_upload(io.BytesIO(CSV.encode()), "live.csv", user(app, "admin"))
        job_id = job.id
        db.session.execute(update(ImportJob).where(ImportJob.id == job_id).values(
            status="running", total_rows=3, committed_through=1, created_count=1))
        db.session.commit()
        db.session.remove()

    # what a worker commits between two of the page's status requests, one step when the test says so
    steps = [dict(committed_through=2, created_count=2)]
    seen = []

    def advance(route):
        seen.append(route.request.url)
        if steps:
            with app.app_context():
                db.session.execute(update(ImportJob).where(ImportJob.id == job_id).values(**steps.pop(0)))
                db.session.commit()
                db.session.remove()
        route.continue_()

    login(page, live_server, "admin")
    page.route(re.compile(rf"/clients/import/job/{job_id}/status\.json$"), advance)
    page.goto(f"{live_server}/clients/import/job/{job_id}")
    box = page.locator("#cd-import-status")
    # the server-rendered page showed the job running; the first poll brought the next checkpoint
    expect(box.locator("[data-field=done]")).to_have_text("2")
    expect(box.locator("[data-field=status]")).to_have_text("running")
    expect(box.locator("[data-field=bar]")).to_have_attribute("style", re.compile(r"width: ?66%"))
    # the worker finishes: the next poll, a second later, shows it
    steps.append(dict(status="done", committed_through=3, created_count=2, failed_count=1))
    expect(box.locator("[data-field=status]")).to_have_text("done")
    expect(box.locator("[data-field=done]")).to_have_text("3")
    expect(box.locator("[data-field=failed]")).to_have_text("1")
    expect(box.locator("[data-field=bar]")).to_have_attribute("style", re.compile(r"width: ?100%"))
    n = len(seen)
    page.wait_for_timeout(2500)
    assert len(seen) == n  # a finished job is not polled again
