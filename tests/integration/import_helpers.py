"""Helpers for the import/export tests: run the import service on in-memory files."""

import io

from tests.conftest import user


def run_import(app, text_or_bytes, username="admin", filename="clients.csv", dry_run=False, encoding=None,
               delimiter=None, mapping=None, project=None):
    """Store and run an import inline; returns (status payload, [(line, kind, reason, raw)])."""
    from app.extensions import db
    from app.imports import services

    data = text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else text_or_bytes
    with app.app_context():
        actor = user(app, username)
        job = services.store_upload(io.BytesIO(data), filename, actor, encoding=encoding, delimiter=delimiter,
                                    dry_run=dry_run, options={"project": project} if project else None)
        if mapping is not None:
            services.configure(job, actor, mapping=mapping)
        job = services.start(job, actor)
        payload = services.status_payload(job)
        report = [tuple(r) for r in services.report_rows(job)]
        payload["mapping"] = dict(job.mapping)
        db.session.remove()
    return payload, report


def clients_by_email(app):
    from sqlalchemy import select

    from app.clients.models import Client
    from app.extensions import db
    with app.app_context():
        out = {c.email: c for c in db.session.scalars(select(Client))}
        for c in out.values():
            _ = (c.tags, c.project, c.desk, c.status)
            db.session.expunge(c)
        db.session.remove()
    return out
