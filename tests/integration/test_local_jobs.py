"""Without Redis, background jobs run in a thread of the web process (JOB_LOCAL_THREAD): the request
returns at once, failures are recorded, and imports whose process died are resumed.

The test database may be one in-memory SQLite connection shared by every thread, so each test lets
the runner touch the database only while the test itself does not (gates, then `stop`).
"""

import datetime as dt
import io
import threading

import pytest
from sqlalchemy import update

from tests.conftest import user
from tests.integration.import_helpers import clients_by_email

CSV = "email,firstName,lastName,phone\nt1@example.org,Tia,Lee,+4915123000001\nt2@example.org,Tom,Lee,+4915123000002\n"


@pytest.fixture()
def local_thread(app, monkeypatch):
    from app.imports import jobs
    monkeypatch.setitem(app.config, "JOB_LOCAL_THREAD", True)
    monkeypatch.setitem(app.config, "REDIS_URL", "")
    yield jobs
    jobs.stop_local_runners()


@pytest.fixture()
def gated_run_import(monkeypatch):
    """services.run_import, held until `gate` is set; records the thread it ran in and its errors."""
    from app.imports import services
    gate, finished, threads = threading.Event(), threading.Event(), []
    real = services.run_import
    fail = {"with": None}

    def gated(job_id):
        gate.wait(timeout=30)
        threads.append(threading.current_thread().name)
        try:
            if fail["with"] is not None:
                raise fail["with"]
            return real(job_id)
        finally:
            finished.set()

    monkeypatch.setattr(services, "run_import", gated)
    return gate, finished, threads, fail


def _start(app, text=CSV):
    from app.extensions import db
    from app.imports import services
    with app.app_context():
        actor = user(app, "admin")
        job = services.store_upload(io.BytesIO(text.encode()), "local.csv", actor)
        job = services.start(job, actor)
        out = (job.id, job.status)
        db.session.remove()
    return out


def _job(app, job_id):
    from app.extensions import db
    from app.imports.models import ImportJob
    with app.app_context():
        job = db.session.get(ImportJob, job_id)
        out = (job.status, job.committed_through, job.created_count, job.reason)
        db.session.remove()
    return out


def test_start_returns_at_once_and_the_import_runs_in_the_jobs_thread(app, world, local_thread, gated_run_import):
    gate, finished, threads, _ = gated_run_import
    job_id, status = _start(app)
    assert status == "queued"           # the request did not wait for the import
    assert not finished.is_set()
    gate.set()
    local_thread.stop_local_runners()   # the queued job runs, then the thread ends
    assert threads == ["clientdesk-jobs"]
    assert _job(app, job_id)[:3] == ("done", 2, 2)
    assert {"t1@example.org", "t2@example.org"} <= set(clients_by_email(app))


def test_a_job_that_raises_in_the_thread_is_marked_failed(app, world, local_thread, gated_run_import):
    gate, _, threads, fail = gated_run_import
    fail["with"] = RuntimeError("boom: secret detail")
    job_id, _ = _start(app)
    gate.set()
    local_thread.stop_local_runners()
    status, _, _, reason = _job(app, job_id)
    assert status == "failed" and "internal error" in reason and "secret" not in reason


def test_the_idle_thread_resumes_an_import_whose_process_died(app, world, local_thread, gated_run_import,
                                                             monkeypatch):
    from app.extensions import db
    from app.imports import services
    from app.imports.models import ImportJob, utcnow
    gate, finished, threads, _ = gated_run_import
    gate.set()
    monkeypatch.setitem(app.config, "JOB_LOCAL_RESUME_SECONDS", 0.05)
    monkeypatch.setitem(app.config, "JOB_STALE_SECONDS", 900)
    with app.app_context():
        # a job its process left behind: queued an hour ago, never started
        job = services.store_upload(io.BytesIO(CSV.encode()), "lost.csv", user(app, "admin"))
        job_id = job.id
        db.session.execute(update(ImportJob).where(ImportJob.id == job_id).values(
            status="queued", heartbeat_at=utcnow() - dt.timedelta(hours=1)))
        db.session.commit()
        db.session.remove()
        local_thread._local_runner()    # a web process starts; its job thread is idle
    assert finished.wait(timeout=30), "the stale import was not resumed"
    local_thread.stop_local_runners()
    assert threads == ["clientdesk-jobs"]
    assert _job(app, job_id)[:3] == ("done", 2, 2)


def test_the_cli_door_runs_the_import_to_the_end_in_its_own_process(app, world, local_thread, tmp_path):
    """`flask clientdesk import` (import_file) ends with its process: it must not hand the file to a
    thread that dies with it."""
    from app.extensions import db
    from app.imports import services
    path = tmp_path / "cli.csv"
    path.write_text(CSV.replace("t1@", "c1@").replace("t2@", "c2@"))
    with app.app_context():
        job = services.import_file(str(path), user(app, "admin"))
        assert (job.status, job.created_count) == ("done", 2)
        db.session.remove()
    assert not local_thread._runners  # no job thread was started
