"""Audit: automatic, field-level, attributed, and append-only (R38, R39)."""

import pytest
from sqlalchemy import select, text, update

from app.clients.models import Client
from app.core.actor import acting_as
from app.core.audit import AuditLog
from app.extensions import db
from app.organisation.models import Project


def test_create_logs_every_set_field_and_jobs_are_attributed(app, world, ctx, make_client):
    cid = make_client(city="Berlin")
    fields = set(db.session.scalars(select(AuditLog.field).where(AuditLog.client_id == cid,
                                                                 AuditLog.operation == "create")))
    assert {"email", "uid", "city", "project_id", "phone"} <= fields
    with acting_as(world.users["mgr_p1"], job_id="import-7"):
        client = db.session.get(Client, cid)
        client.city = "Paris"
        db.session.commit()
    row = db.session.scalars(select(AuditLog).where(AuditLog.field == "city", AuditLog.operation == "update")).one()
    assert (row.user_id, row.job_id, row.old_value, row.new_value) == (world.users["mgr_p1"], "import-7", "Berlin",
                                                                       "Paris")


def test_settings_changes_are_audited(app, world, ctx):
    project = db.session.get(Project, world.p1)
    project.description = "Brand for the EU"
    db.session.commit()
    row = db.session.scalars(select(AuditLog).where(AuditLog.entity == "Project",
                                                    AuditLog.field == "description")).one()
    assert row.new_value == "Brand for the EU" and row.client_id is None


def test_audit_log_cannot_be_edited_or_deleted_through_the_orm(app, world, ctx, make_client):
    make_client()
    row = db.session.scalars(select(AuditLog)).first()
    row.new_value = "forged"
    with pytest.raises(PermissionError):
        db.session.commit()
    db.session.rollback()
    db.session.delete(db.session.scalars(select(AuditLog)).first())
    with pytest.raises(PermissionError):
        db.session.commit()
    db.session.rollback()
    with pytest.raises(PermissionError):
        db.session.execute(update(AuditLog).values(new_value="x"))


def test_unaudited_bulk_updates_on_clients_are_refused(app, world, ctx, make_client):
    make_client()
    with pytest.raises(PermissionError):
        db.session.execute(update(Client).values(city="Nowhere"))
    db.session.rollback()
    assert db.session.scalar(select(Client.city)) is None


def test_database_refuses_audit_tampering_on_postgresql(app, world, ctx, make_client):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the append-only trigger exists on PostgreSQL only; SQLite relies on the ORM guard above")
    make_client()
    with pytest.raises(Exception) as err:
        db.session.execute(text("UPDATE audit_log SET new_value = 'forged'"))
    assert "append-only" in str(err.value)
    db.session.rollback()
    with pytest.raises(Exception):
        db.session.execute(text("DELETE FROM audit_log"))
    db.session.rollback()
