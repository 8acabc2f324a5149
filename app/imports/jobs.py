"""Background jobs of the import/export domain, and the one RQ enqueue wrapper (R31–R34).

Job functions are module-level, take ids only and are idempotent: RQ delivers at least once
(an abandoned job is retried), and the database row, not Redis, holds the progress. When
REDIS_URL is unset the job runs in the caller's process: in a background thread of it
(JOB_LOCAL_THREAD, the default: a web request returns at once and no gunicorn timeout stops a
long import), or inline in the call (the test suite).
"""

import functools
import logging
import queue
import threading
import types

from flask import current_app, has_app_context

log = logging.getLogger(__name__)

_worker_app = None


def with_app_context(fn):
    """Give a job an app context: the caller's, or one app built once per worker process."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _worker_app
        if has_app_context():
            _fresh_pool_after_fork()
            return fn(*args, **kwargs)
        if _worker_app is None:
            import os

            from .. import create_app
            _worker_app = create_app(os.environ.get("CLIENTDESK_CONFIG", "config.Config"))
        with _worker_app.app_context():
            return fn(*args, **kwargs)
    return wrapper


_pool_pid = None


def _fresh_pool_after_fork():
    """A forked work-horse must not reuse the parent's database connections (fab5-notes §7)."""
    import os
    global _pool_pid
    if _pool_pid != os.getpid():
        if _pool_pid is not None or _worker_app is not None:
            from ..extensions import db
            db.engine.dispose(close=False)
        _pool_pid = os.getpid()


def redis_connection(app=None):
    from redis import Redis
    app = app or current_app
    return Redis.from_url(app.config["REDIS_URL"])


def get_queue(app=None):
    from rq import Queue
    from rq.serializers import JSONSerializer
    app = app or current_app
    return Queue(app.config["JOB_QUEUE"], connection=redis_connection(app), serializer=JSONSerializer,
                 is_async=app.config.get("JOB_ASYNC", True))


def enqueue(func, *args, job_id, on_failure=None):
    """THE way to start background work: JSON serializer, bounded retries, timeouts, short failure TTL.

    Runs `func(*args)` inline when REDIS_URL is unset. Args must be ids and primitives (no PII in Redis).
    """
    config = current_app.config
    if not config.get("REDIS_URL"):
        if config.get("JOB_LOCAL_THREAD"):
            return _local_runner().put(func, args, on_failure)
        return func(*args)
    from rq import Callback, Retry
    from rq.exceptions import DuplicateJobError
    from rq.job import Job
    queue = get_queue()
    existing = _fetch_job(job_id, queue.connection)
    if existing is not None:
        if _on_its_way(existing):
            return existing  # the same id never runs twice at once
        existing.delete()
    intervals = list(config.get("JOB_RETRY_INTERVALS") or [0])
    try:
        return queue.enqueue(
            func, *args, job_id=job_id, unique=True,
            retry=Retry(max=3, interval=intervals),
            job_timeout=int(config["JOB_TIMEOUT"]),
            result_ttl=600, failure_ttl=int(config["JOB_FAILURE_TTL"]),
            on_failure=Callback(on_failure) if on_failure else None)
    except DuplicateJobError:
        return Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)


def _fetch_job(rq_id, connection):
    """RQ's job of that id, or None (none, or one that cannot be read)."""
    from rq.job import Job
    from rq.serializers import JSONSerializer
    try:
        return Job.fetch(rq_id, connection=connection, serializer=JSONSerializer)
    except Exception:  # NoSuchJobError and friends: nothing to reuse
        return None


def _on_its_way(rq_job):
    """Queued, running, or waiting for its retry's interval or a dependency."""
    from rq.job import JobStatus
    return rq_job.get_status() in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


# ----------------------------------------------------------------- without Redis: one thread per process

class LocalRunner:
    """Background work of this process when there is no Redis: one daemon thread takes the jobs in
    turn, each in an app context of its own, as an RQ worker would (no retry: a job that raises
    gets its failure callback at once). While idle, every JOB_LOCAL_RESUME_SECONDS it resumes
    imports whose heartbeat stopped (their process died: a restart, a killed gunicorn worker).
    Two processes may both resume one import: its checkpoint lease lets only one of them write."""

    def __init__(self, app):
        self.app = app
        self.jobs = queue.Queue()
        self.every = max(float(app.config.get("JOB_LOCAL_RESUME_SECONDS") or 60), 0.05)
        self.thread = threading.Thread(target=self._loop, name="clientdesk-jobs", daemon=True)
        self.thread.start()

    def put(self, func, args, on_failure=None):
        self.jobs.put((func, args, on_failure))
        return None

    def stop(self, timeout=60):
        """Let the jobs handed over so far run, then end the thread."""
        self.jobs.put(None)
        self.thread.join(timeout)

    def _loop(self):
        while True:
            try:
                item = self.jobs.get(timeout=self.every)
            except queue.Empty:
                self._resume()
                continue
            if item is None:
                self.jobs.task_done()
                return
            func, args, on_failure = item
            try:
                with self.app.app_context():
                    func(*args)
            except Exception as exc:
                log.exception("background job %s%r stopped", getattr(func, "__name__", func), args)
                if on_failure is not None:
                    try:
                        with self.app.app_context():
                            on_failure(types.SimpleNamespace(args=list(args), retries_left=0), None, type(exc),
                                       exc, exc.__traceback__)
                    except Exception:
                        log.exception("failure callback of %r", args)
            finally:
                self.jobs.task_done()

    def _resume(self):
        try:
            with self.app.app_context():
                resume_stale_imports(int(self.app.config.get("JOB_STALE_SECONDS") or 900))
        except Exception:
            log.exception("resuming stale imports")


_runners = {}
_runners_lock = threading.Lock()


def _local_runner(app=None):
    """This process's LocalRunner for the app, started on first use (after gunicorn forked)."""
    import os
    app = app or current_app._get_current_object()
    key = (os.getpid(), id(app))
    with _runners_lock:
        runner = _runners.get(key)
        if runner is None:
            runner = _runners[key] = LocalRunner(app)
    return runner


def stop_local_runners():
    """End this process's LocalRunners once their jobs have run (tests; a runner starts again on use)."""
    with _runners_lock:
        runners = list(_runners.values())
        _runners.clear()
    for runner in runners:
        runner.stop()


# ----------------------------------------------------------------- import

@with_app_context
def run_import_job(import_job_id):
    """Run or resume ImportJob `import_job_id` to the end (safe to deliver twice)."""
    from ..extensions import db
    from . import services
    try:
        services.run_import(int(import_job_id))
    except Exception:
        db.session.rollback()
        log.exception("import %s stopped", import_job_id)
        if not current_app.config.get("REDIS_URL"):
            _mark_failed(import_job_id)  # inline: there is no retry, tell the user now
        raise
    finally:
        db.session.remove()


def _mark_failed(import_job_id):
    from flask_babel import gettext
    from sqlalchemy import update

    from ..extensions import db
    from .models import ImportJob, utcnow
    db.session.execute(update(ImportJob).where(ImportJob.id == int(import_job_id),
                                               ImportJob.status.in_(("queued", "running")))
                       .values(status="failed", finished_at=utcnow(),
                               reason=gettext("The import stopped because of an internal error. Rows committed "
                                              "so far are kept; start the file again to resume.")))
    db.session.commit()


@with_app_context
def import_failed(job, connection, type, value, traceback):  # noqa: A002  (RQ's callback signature)
    """RQ failure callback: mark the ImportJob failed once no retry is left (sanitised reason, no PII)."""
    if job.retries_left:
        return
    import_job_id = (job.args or [None])[0]
    if import_job_id is not None:
        _mark_failed(import_job_id)


def import_rq_id(import_job_id):
    return f"{current_app.config.get('JOB_ID_PREFIX', '')}import-{int(import_job_id)}"


def enqueue_import(import_job_id, wait=False):
    """Queue the import (deterministic RQ id import-<id>); without Redis, hand it to this process's
    job thread, or run it here when `wait` (or JOB_LOCAL_THREAD is off)."""
    if not current_app.config.get("REDIS_URL") and (wait or not current_app.config.get("JOB_LOCAL_THREAD")):
        try:
            return run_import_job(import_job_id)
        except Exception:
            return None
    return enqueue(run_import_job, int(import_job_id), job_id=import_rq_id(import_job_id),
                   on_failure=import_failed)


def stale_imports(stale_seconds=900):
    """Ids of the imports queued or running whose heartbeat is older than `stale_seconds`."""
    import datetime as dt

    from sqlalchemy import and_, or_, select

    from ..extensions import db
    from .models import ImportJob, utcnow
    cutoff = utcnow() - dt.timedelta(seconds=stale_seconds)
    ids = list(db.session.scalars(select(ImportJob.id).where(
        ImportJob.status.in_(("queued", "running")),
        or_(ImportJob.heartbeat_at < cutoff, and_(ImportJob.heartbeat_at.is_(None), ImportJob.created_at < cutoff)))
        .order_by(ImportJob.id)))
    db.session.commit()  # end the read: the resumed jobs may run in this very thread
    return ids


def resume_stale_imports(stale_seconds=900):
    """Re-enqueue running imports whose heartbeat stopped (their process died); returns their ids.
    Without Redis, the web processes' job threads call it while idle; RQ workers call
    `reconcile_imports`."""
    ids = stale_imports(stale_seconds)
    for import_job_id in ids:
        enqueue_import(import_job_id)
    return ids


def reconcile_imports():
    """The RQ workers' reconciler (security.md's import blueprint, step 5; rq#2015), run with each
    worker's periodic maintenance in its main process. An import whose heartbeat went stale while
    RQ holds no live job for it is resumed from its checkpoint: Redis lost the job (a restart; a
    Redis without persistence keeps nothing), it was abandoned where no worker cleaned the
    registries, or its run ended without finishing the file (a runner that stopped on the checkpoint
    lease). One whose RQ job failed for good is marked failed, as its failure callback would have
    (a work-horse killed on its last retry never runs it), instead of being started again and again.
    Several workers may run it at once: `enqueue` leaves a queued or started job as it is, and the
    lease lets one runner write. Returns {import id: "resumed" | "failed"} for the stale imports
    it acted on."""
    from rq.job import JobStatus

    from ..extensions import db
    acted = {}
    try:
        connection = get_queue().connection
        for import_job_id in stale_imports(int(current_app.config.get("JOB_STALE_SECONDS") or 900)):
            rq_job = _fetch_job(import_rq_id(import_job_id), connection)
            if rq_job is not None and _on_its_way(rq_job):
                continue  # a long queue, a retry waiting for its interval
            if rq_job is not None and rq_job.get_status() == JobStatus.FAILED:
                _mark_failed(import_job_id)
                acted[import_job_id] = "failed"
            else:
                enqueue_import(import_job_id)
                acted[import_job_id] = "resumed"
        if acted:
            log.warning("reconciled stale imports: %s", acted)
    except Exception:
        log.exception("reconciling stale imports")
    finally:
        db.session.remove()  # the work-horses fork from this process (they drop its pool, see above)
    return acted


# ----------------------------------------------------------------- export

@with_app_context
def run_export_job(export_job_id):
    """Write ExportJob `export_job_id`'s file (safe to deliver twice: a done job is not rerun)."""
    from ..extensions import db
    from . import exports
    try:
        exports.run_export(int(export_job_id))
    except Exception:
        db.session.rollback()
        log.exception("export %s stopped", export_job_id)
        if not current_app.config.get("REDIS_URL"):
            exports.mark_export_failed(export_job_id)  # inline: there is no retry, tell the user now
        raise
    finally:
        db.session.remove()


@with_app_context
def export_failed(job, connection, type, value, traceback):  # noqa: A002  (RQ's callback signature)
    """RQ failure callback: mark the ExportJob failed once no retry is left (sanitised reason)."""
    if job.retries_left:
        return
    export_job_id = (job.args or [None])[0]
    if export_job_id is not None:
        from . import exports
        exports.mark_export_failed(export_job_id)


# ----------------------------------------------------------------- worker

def run_worker(burst=False, with_scheduler=True):
    """An RQ worker on the ClientDesk queue with the JSON serializer (`flask clientdesk worker`).
    Its maintenance (at start, then every JOB_RECONCILE_SECONDS between jobs) also reconciles
    stale imports (`reconcile_imports`)."""
    from rq import Worker
    from rq.serializers import JSONSerializer
    global _worker_app
    _worker_app = current_app._get_current_object()

    class ReconcilingWorker(Worker):
        def run_maintenance_tasks(self):
            super().run_maintenance_tasks()
            reconcile_imports()

    queue = get_queue()
    worker = ReconcilingWorker([queue], connection=queue.connection, serializer=JSONSerializer,
                               maintenance_interval=int(current_app.config.get("JOB_RECONCILE_SECONDS") or 300))
    worker.work(burst=burst, with_scheduler=with_scheduler)
