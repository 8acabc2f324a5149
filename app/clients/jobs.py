"""Background jobs of the clients domain: bulk operations on more than a page of clients (CL-LIST-8).

Job functions take ids only and are idempotent (RQ delivers at least once); the ClientBulkJob row
holds the progress, so the list shows the same thing whether a job ran on a worker or inline.
"""

import logging

from flask import current_app

from ..imports.jobs import enqueue, with_app_context

log = logging.getLogger(__name__)


def bulk_rq_id(bulk_job_id):
    return f"{current_app.config.get('JOB_ID_PREFIX', '')}bulk-{int(bulk_job_id)}"


@with_app_context
def run_bulk_job(bulk_job_id):
    """Run or resume ClientBulkJob `bulk_job_id` to the end (safe to deliver twice)."""
    from ..extensions import db
    from . import list_services
    try:
        list_services.run_bulk_by_id(int(bulk_job_id))
    except Exception:
        db.session.rollback()
        log.exception("bulk job %s stopped", bulk_job_id)
        raise


@with_app_context
def bulk_job_failed(job, connection, type, value, traceback):  # noqa: A002  (RQ's callback signature)
    """RQ failure callback: mark the bulk job failed once no retry is left.

    A synchronous queue (JOB_ASYNC off) never retries, whatever `retries_left` says.
    """
    if job.retries_left and current_app.config.get("JOB_ASYNC", True):
        return
    bulk_job_id = (job.args or [None])[0]
    if bulk_job_id is not None:
        from . import list_services
        list_services.fail_bulk_job(bulk_job_id)


def start_bulk_job(bulk_job_id, size):
    """Run a bulk job inline when it covers at most one list page, else queue it (deterministic id
    bulk-<id>; the enqueue wrapper runs it inline itself when REDIS_URL is unset)."""
    from . import list_services
    try:
        if size <= list_services.INLINE_BULK_MAX:
            return run_bulk_job(bulk_job_id)
        return enqueue(run_bulk_job, int(bulk_job_id), job_id=bulk_rq_id(bulk_job_id), on_failure=bulk_job_failed)
    except Exception:
        # It ran (or failed to be queued) here, so no retry will come: the row must say so now.
        from ..extensions import db
        db.session.rollback()
        list_services.fail_bulk_job(bulk_job_id)
        raise
