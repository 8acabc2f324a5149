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


def test_rows_given_as_tuples_in_a_column_order_are_the_same_rows(app, world):
    from app.core import bulk
    from app.core.audit import AuditLog
    from app.extensions import db

    when = dt.datetime(2026, 12, 2, 8, 0, 0, 654321)
    columns = ("entity", "entity_id", "operation", "field", "created_at", "new_value")
    rows = [("BulkTuple", n, "update", "probe", when, None if n % 2 else f"v{n}\t\\") for n in range(600)]
    with app.app_context():
        assert bulk.insert_rows(db.session, AuditLog, rows, columns=columns) == len(rows)
        db.session.commit()
        back = db.session.execute(
            select(AuditLog.entity, AuditLog.entity_id, AuditLog.operation, AuditLog.field, AuditLog.created_at,
                   AuditLog.new_value).where(AuditLog.entity == "BulkTuple").order_by(AuditLog.entity_id)).all()
        db.session.remove()
    assert [tuple(r) for r in back] == rows


def test_a_lookup_among_many_keys_matches_exactly_the_keys_given(app, world):
    """bulk.among on PostgreSQL sends the keys as the text of an array literal: quotes, backslashes,
    commas, braces, spaces and NULL-looking words are keys like any other, and a key with NUL
    (which no stored text can hold) matches nothing instead of failing the statement."""
    from app.clients.models import Tag
    from app.core import bulk
    from app.extensions import db

    hostile = ['quo"te', "back\\slash", "com,ma", "{brace}", " spaced ", "NULL", "ünï", "'apos", '\\"both']
    with app.app_context():
        dialect = db.session.get_bind().dialect.name
        db.session.add_all([Tag(name=n) for n in hostile + ["other", "nul"]])
        db.session.commit()
        names = set(db.session.scalars(select(Tag.name).where(
            bulk.among(Tag.name, hostile + ["missing", "n\x00ul"], dialect))))
        ids = {t.id for t in db.session.scalars(select(Tag).where(Tag.name.in_(hostile[:3])))}
        by_id = set(db.session.scalars(select(Tag.id).where(bulk.among(Tag.id, sorted(ids) + [10 ** 9], dialect))))
        db.session.remove()
    assert names == set(hostile)
    assert by_id == ids and len(ids) == 3


def test_json_columns_read_back_exactly(app, world):
    """The engine reads JSON with orjson (bulk.json_value), which would turn an integer beyond 64
    bits into a float: such texts go to the json module, so every value comes back as written."""
    from sqlalchemy import update

    from app.extensions import db
    from app.imports.models import ImportJob
    from tests.conftest import user

    written = {"big": 10**25, "negative": -(2**63) - 1, "limit": 2**63 - 1, "float": 0.1, "text": "ünï \"q\"",
               "digits": "1234567890123456789012", "nested": [{"a": None, "b": True}]}
    with app.app_context():
        job = ImportJob(user_id=user(app, "admin").id, original_name="j.csv", stored_name="x", file_sha256="0" * 64,
                        file_size=1, file_format="csv", headers=["email"], mapping={"0": "email"},
                        options={"small": 1}, status="uploaded")
        db.session.add(job)
        db.session.commit()
        job_id = job.id
        db.session.remove()
        small = db.session.get(ImportJob, job_id).options
        db.session.execute(update(ImportJob).where(ImportJob.id == job_id).values(options=written))
        db.session.commit()
        db.session.remove()
        back = db.session.get(ImportJob, job_id).options
        db.session.remove()
    assert small == {"small": 1}
    assert back == written
    assert type(back["big"]) is int and type(back["negative"]) is int and type(back["float"]) is float


def test_json_value_refuses_what_the_json_module_refuses():
    import json

    import pytest

    from app.core.bulk import json_value
    for bad in (b"{", "not json", b'{"a": 1,}'):
        with pytest.raises(json.JSONDecodeError):
            json_value(bad)
