"""R30/R31/R33: imports on a real RQ worker and real Redis; a SIGKILLed worker loses and duplicates nothing.

The worker is a separate process, so the database is a temporary SQLite *file* (the session's
in-memory database cannot be shared with a subprocess) or, in the PostgreSQL pass, a database of
its own (there the import writes from its writer thread). The phone helper process is on, so the
kill also takes it down. Skipped when TEST_REDIS_URL is unset.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import func, select

REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(not REDIS_URL, reason="needs TEST_REDIS_URL (a real Redis)")

N = 12_000
CHUNK = 500
REPEATS = 40  # the file ends with later rows of the first clients: held across the kill (RepeatPlan)


def _worker_database(kind, tmp_path):
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'worker.db'}"
    from sqlalchemy import create_engine

    from tests.conftest import _database_url, _reset_postgres
    url = _database_url(suffix="_worker")
    engine = create_engine(url)
    _reset_postgres(engine)
    engine.dispose()
    return url


POSTGRESQL = os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRESQL, reason="PostgreSQL pass only"))])
def rq_env(request, tmp_path):
    database_url = _worker_database(request.param, tmp_path)
    env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=REDIS_URL,
               JOB_QUEUE=f"test-{uuid.uuid4().hex[:8]}", IMPORT_FOLDER=str(tmp_path / "imports"),
               IMPORT_CHUNK_SIZE=str(CHUNK), IMPORT_HELPER_MIN_ROWS="1000", JOB_RETRY_INTERVALS="0",
               JOB_ID_PREFIX=f"kill-{uuid.uuid4().hex[:6]}-", FLASK_APP="run:app", PYTHONPATH=ROOT,
               RATELIMIT_STORAGE_URI="memory://", SECRET_KEY="worker-test-secret-0123456789abcdef0123",
               WORKER_LOG=str(tmp_path / "worker.log"))
    from flask_migrate import upgrade

    from app import create_app
    app = create_app("config.TestConfig", SQLALCHEMY_DATABASE_URI=env["DATABASE_URL"], REDIS_URL=REDIS_URL,
                     JOB_ASYNC=True, JOB_ID_PREFIX=env["JOB_ID_PREFIX"],
                     JOB_QUEUE=env["JOB_QUEUE"], IMPORT_FOLDER=env["IMPORT_FOLDER"], IMPORT_CHUNK_SIZE=CHUNK)
    with app.app_context():
        from app.cli import ensure_admin, sync_security
        from app.clients.models import ClientStatus
        from app.extensions import db
        from app.organisation.models import Project
        upgrade(revision="heads")
        sync_security()
        ensure_admin("admin", "admin@staff.test", "Passw0rd!x")
        db.session.add_all([Project(name="Project One", key="P1"), ClientStatus(label="New", is_default=True)])
        db.session.commit()
        db.session.remove()
    yield app, env
    from app.imports.jobs import get_queue
    with app.app_context():
        q = get_queue()
        for key in q.connection.scan_iter(f"*{env['JOB_QUEUE']}*"):
            q.connection.delete(key)
        for key in q.connection.scan_iter(f"rq:job:{app.config['JOB_ID_PREFIX']}import-*"):
            q.connection.delete(key)


def _csv(n):
    lines = ["email,firstName,lastName,phone,description,billing.city"]
    lines += [f"w{i:06d}@example.org,Worker,Test{i},+49151{i:08d},PIIMARKER-{i}," for i in range(n)]
    lines += [f"w{i:06d}@example.org,,,,,Town{i}" for i in range(REPEATS)]
    return ("\n".join(lines) + "\n").encode()


def _worker(env):
    """A burst worker; its output goes to the env's WORKER_LOG (shown by `_log` when an assertion fails)."""
    with open(env["WORKER_LOG"], "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "flask", "clientdesk", "worker", "--burst"], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _log(env, lines=60):
    with open(env["WORKER_LOG"], "rb") as fh:
        return "worker log:\n" + "\n".join(fh.read().decode(errors="replace").splitlines()[-lines:])


def _children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _phone_helpers(queue_name):
    """Pids of live phone helper processes started by this test's workers (found by their queue)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if b"app.imports.phone_helper" not in fh.read():
                        continue
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if f"JOB_QUEUE={queue_name}".encode() not in fh.read().split(b"\0"):
                        continue
                with open(f"/proc/{entry}/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue  # exited, not yet reaped by its (dead) parent's reaper
                out.append(int(entry))
            except OSError:
                continue
    return out


def _progress(app, job_id):
    from app.extensions import db
    from app.imports.models import ImportJob
    with app.app_context():
        job = db.session.get(ImportJob, job_id)
        out = (job.status, job.committed_through)
        db.session.remove()
    return out


def test_killed_worker_loses_nothing_and_duplicates_nothing(rq_env):
    import io

    from rq.registry import StartedJobRegistry

    app, env = rq_env
    from app.clients.models import Client
    from app.core.audit import AuditLog
    from app.extensions import db
    from app.imports import jobs, services
    with app.app_context():
        admin = app.appbuilder.sm.find_user(username="admin")
        job = services.store_upload(io.BytesIO(_csv(N)), "big.csv", admin)
        job = services.start(job, admin)
        job_id = job.id
        rq_job = jobs.get_queue().fetch_job(jobs.import_rq_id(job_id))
        assert rq_job is not None and rq_job.serializer.__name__ == "JSONSerializer"
        assert rq_job.timeout == app.config["JOB_TIMEOUT"] and rq_job.retries_left == 3
        assert rq_job.failure_ttl == app.config["JOB_FAILURE_TTL"] and rq_job.args == [job_id]
        db.session.remove()

    worker = _worker(env)
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        status, through = _progress(app, job_id)
        seen.append(through)
        if through >= 2 * CHUNK:
            break
        time.sleep(0.05)
    assert seen[-1] >= 2 * CHUNK and seen[-1] < N, seen[-5:]
    helpers = _phone_helpers(env["JOB_QUEUE"])
    assert len(helpers) == 1, helpers  # the import's helper process normalises the next chunk's phones
    # RQ's work-horse runs in its own session (setsid): kill it and its parent, mid-import.
    for pid in _children(worker.pid):
        os.kill(pid, signal.SIGKILL)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = _progress(app, job_id)[1]
    assert killed_at < N
    deadline = time.time() + 10
    while _phone_helpers(env["JOB_QUEUE"]) and time.time() < deadline:
        time.sleep(0.1)
    assert not _phone_helpers(env["JOB_QUEUE"]), "the helper ends with the process that started it"

    with app.app_context():
        q = jobs.get_queue()
        # The maintenance task would find the abandoned job after its timeout; run it now.
        StartedJobRegistry(queue=q).cleanup(timestamp=time.time() + 10 * app.config["JOB_TIMEOUT"])
        assert q.fetch_job(jobs.import_rq_id(job_id)).get_status() == "queued"  # retried (retries_left > 0)

    worker = _worker(env)
    deadline = time.time() + 180
    while time.time() < deadline and worker.poll() is None:
        seen.append(_progress(app, job_id)[1])
        time.sleep(0.1)
    worker.wait(timeout=60)
    status, through = _progress(app, job_id)
    seen.append(through)
    assert status == "done" and through == N + REPEATS, (status, through, seen[-5:], _log(env))
    assert all(a <= b for a, b in zip(seen, seen[1:], strict=False)), "the checkpoint never goes back"

    with app.app_context():
        assert db.session.scalar(select(func.count(Client.id))) == N
        assert db.session.scalar(select(func.count(func.distinct(Client.email)))) == N
        assert db.session.scalar(select(func.count(func.distinct(Client.uid)))) == N
        creates = db.session.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.job_id == f"import-{job_id}", AuditLog.operation == "create"))
        assert creates == N  # one audit record per client, none doubled by the repeated chunk
        job = db.session.get(services.ImportJob, job_id)
        assert job.created_count == N and job.failed_count == 0 and job.unchanged_count == 0
        # the held first rows of the repeated clients, committed by no chunk before the kill, were read
        # again after it: each such client has its first row's values and its last row's city
        assert job.updated_count == REPEATS
        repeated = db.session.execute(select(Client.email, Client.first_name, Client.phone, Client.city)
                                      .where(Client.city.is_not(None)).order_by(Client.email)).all()
        assert [tuple(r) for r in repeated] == [(f"w{i:06d}@example.org", "Worker", f"+49151{i:08d}", f"Town{i}")
                                                for i in range(REPEATS)]
        # R33: no PII in Redis (job args are ids; row data never leaves the database)
        r = jobs.redis_connection()
        for key in r.scan_iter("*"):
            kind = r.type(key)
            blob = repr(r.hgetall(key)) if kind == b"hash" else repr(r.dump(key))
            assert "PIIMARKER" not in blob and "example.org" not in blob, key
        db.session.remove()


def test_a_worker_resumes_the_imports_rq_lost_and_fails_the_ones_rq_failed(rq_env):
    """The reconciler (security.md's import blueprint, step 5; rq#2015): a worker's maintenance
    resumes a running import with a stale heartbeat whose RQ job is gone (Redis lost it) or ended
    without finishing the file, marks failed one whose RQ job failed for good, and leaves alone one
    whose heartbeat is fresh."""
    import datetime as dt
    import io

    from rq.job import JobStatus
    from sqlalchemy import update

    app, env = rq_env
    from app.clients.models import Client
    from app.extensions import db
    from app.imports import jobs, services
    from app.imports.models import ImportJob, utcnow
    rows = 300
    ids = {}
    with app.app_context():
        admin = app.appbuilder.sm.find_user(username="admin")
        q = jobs.get_queue()
        for kind in ("lost", "ended", "failed", "fresh"):
            body = _csv(rows).decode().replace("@example.org", f"@{kind}.example.org").encode()
            job = services.start(services.store_upload(io.BytesIO(body), f"{kind}.csv", admin), admin)
            ids[kind] = job.id
            rq_job = q.fetch_job(jobs.import_rq_id(job.id))
            assert rq_job.get_status() == JobStatus.QUEUED
            if kind in ("failed", "ended"):
                q.remove(rq_job)
                # failed: its last retry's work-horse died, so no failure callback ran; ended: its
                # runner stopped early, taking the checkpoint for another runner's
                rq_job.set_status(JobStatus.FAILED if kind == "failed" else JobStatus.FINISHED)
            else:
                rq_job.delete()  # lost with Redis (or never enqueued): RQ knows nothing of it
            beat = utcnow() - (dt.timedelta(hours=2) if kind != "fresh" else dt.timedelta(seconds=0))
            db.session.execute(update(ImportJob).where(ImportJob.id == job.id).values(
                status="running", heartbeat_at=beat))
        db.session.commit()
        db.session.remove()

    worker = _worker(dict(env, JOB_STALE_SECONDS="600"))
    assert worker.wait(timeout=120) == 0, _log(env)

    with app.app_context():
        for kind in ("lost", "ended"):
            job = db.session.get(ImportJob, ids[kind])
            assert (job.status, job.created_count, job.committed_through) == ("done", rows, rows + REPEATS), _log(env)
            assert db.session.scalar(select(func.count(Client.id)).where(
                Client.email.like(f"%@{kind}.example.org"))) == rows
        failed = db.session.get(ImportJob, ids["failed"])
        assert failed.status == "failed" and "internal error" in failed.reason
        fresh = db.session.get(ImportJob, ids["fresh"])
        assert (fresh.status, fresh.committed_through or 0) == ("running", 0)
        assert db.session.scalar(select(func.count(Client.id)).where(
            Client.email.like("%@fresh.example.org") | Client.email.like("%@failed.example.org"))) == 0
        assert "reconciled stale imports" in _log(env)
        db.session.remove()


def test_an_import_that_always_raises_is_retried_then_failed_in_rq_and_marked_failed(rq_env):
    """R31: retries are bounded and visible. The import's stored file turned into something that
    cannot be read (a storage fault): each delivery raises, RQ retries it three times, keeps it in
    its failed registry, and the failure callback gives the ImportJob a sanitised reason."""
    import io

    from rq.registry import FailedJobRegistry

    app, env = rq_env
    from app.extensions import db
    from app.imports import jobs, services
    from app.imports.models import ImportJob
    with app.app_context():
        admin = app.appbuilder.sm.find_user(username="admin")
        job = services.start(services.store_upload(io.BytesIO(_csv(50)), "broken.csv", admin), admin)
        job_id, rq_id, path = job.id, jobs.import_rq_id(job.id), services.job_path(job)
        os.remove(path)
        os.mkdir(path)
        db.session.remove()

    worker = _worker(env)
    assert worker.wait(timeout=120) == 0, _log(env)
    with app.app_context():
        q = jobs.get_queue()
        rq_job = q.fetch_job(rq_id)
        assert (rq_job.get_status(), rq_job.retries_left) == ("failed", 0), _log(env)
        assert rq_id in FailedJobRegistry(queue=q).get_job_ids()
        job = db.session.get(ImportJob, job_id)
        assert job.status == "failed" and job.finished_at is not None
        assert "internal error" in job.reason and path not in job.reason and "IsADirectory" not in job.reason
        assert job.committed_through in (None, 0) and job.created_count == 0
        db.session.remove()
