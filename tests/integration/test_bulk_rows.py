"""bulk.insert_rows writes exactly the values it is given, on every dialect (COPY on PostgreSQL,
multi-row VALUES on SQLite): timestamps to the microsecond, shared and distinct, texts with the
characters COPY escapes, and more rows than one SQLite statement carries."""

import datetime as dt

from sqlalchemy import select


def test_rows_come_back_as_written(app, world):
    from app.core import bulk
    from app.core.audit import AuditLog
    from app.extensions import db

    shared = dt.datetime(2026, 12, 2, 5, 12, 14, 123456)
    rows = []
    for n in range(1_300):  # several SQLite statements, the last one shorter
        when = shared if n % 3 else dt.datetime(2001, 2, 3, 4, 5, 6, n)
        rows.append(dict(created_at=when, user_id=None if n % 5 == 0 else n, entity="BulkProbe", entity_id=n,
                         client_id=None, operation="create", field="probe",
                         old_value=None if n % 2 else "tab\there, newline\nthere \\ back",
                         new_value=f"value {n} ünïcode"))
    with app.app_context():
        assert bulk.insert_rows(db.session, AuditLog, rows) == len(rows)
        db.session.commit()
        back = db.session.execute(
            select(AuditLog.entity_id, AuditLog.created_at, AuditLog.user_id, AuditLog.old_value,
                   AuditLog.new_value).where(AuditLog.entity == "BulkProbe").order_by(AuditLog.entity_id)).all()
        db.session.remove()
    assert [tuple(r) for r in back] == [
        (r["entity_id"], r["created_at"], r["user_id"], r["old_value"], r["new_value"]) for r in rows]


def test_a_default_timestamp_is_filled_in_per_row(app, world):
    from app.core import bulk
    from app.core.audit import AuditLog
    from app.extensions import db

    before = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=5)
    rows = [dict(entity="BulkDefault", entity_id=n, operation="create", field="probe") for n in range(3)]
    with app.app_context():
        bulk.insert_rows(db.session, AuditLog, rows)
        db.session.commit()
        stamps = db.session.scalars(select(AuditLog.created_at).where(AuditLog.entity == "BulkDefault")).all()
        db.session.remove()
    assert len(stamps) == 3 and all(s is not None and s >= before for s in stamps)
