"""Actions: type defaults, call rules, derived client fields and the quick add form (CL-CARD-2, CL-LIST-9)."""

import datetime as dt

import pytest
from sqlalchemy import select

from app.activity import services
from app.activity.models import ActionType, ClientAction
from app.clients.models import Client
from app.core.audit import AuditLog
from app.core.errors import NotFound, ValidationFailed
from app.extensions import db
from tests.conftest import user


def types():
    return {t.label: t.id for t in db.session.scalars(select(ActionType))}


def test_shipped_types_and_completed_default(app, world, ctx, make_client):
    cid = make_client()
    t = types()
    assert {"Note", "Call", "Comment"} <= set(t)
    note = services.create_action(cid, {"type_id": t["Note"], "text": "Met at the fair"}, user(app, "mgr_p1"))
    assert note.completed is True  # Note is completed by default
    call = services.create_action(cid, {"type_id": t["Call"], "action_date": "2030-01-02 10:00"}, user(app, "mgr_p1"))
    assert call.completed is False
    explicit = services.create_action(cid, {"type_id": t["Note"], "completed": False}, user(app, "mgr_p1"))
    assert explicit.completed is False  # the user may untick the default


def test_call_needs_a_date_and_an_eligible_responsible(app, world, ctx, make_client):
    cid = make_client()
    t = types()
    with pytest.raises(ValidationFailed) as err:
        services.create_action(cid, {"type_id": t["Call"]}, user(app, "mgr_p1"))
    assert [str(m) for m in err.value.field_errors["action_date"]] == ["A call needs a date."]
    with pytest.raises(ValidationFailed) as err:
        services.create_action(cid, {"type_id": t["Call"], "action_date": "2030-01-02 10:00",
                                     "responsible_id": world.users["agent_p2"]}, user(app, "mgr_p1"))
    assert "responsible_id" in err.value.field_errors
    with pytest.raises(ValidationFailed) as err:
        services.create_action(cid, {"type_id": t["Call"], "action_date": "2030-01-02 10:00", "subtype": "Nope"},
                               user(app, "mgr_p1"))
    assert "subtype" in err.value.field_errors


def test_derived_fields_follow_every_change(app, world, ctx, make_client):
    cid = make_client()
    t = types()
    mgr = user(app, "mgr_p1")
    client = db.session.get(Client, cid)
    assert (client.actions_exist, client.last_action_at, client.future_action_at) == (False, None, None)
    done = services.create_action(cid, {"type_id": t["Call"], "action_date": "2024-05-01 09:00", "completed": True},
                                  mgr)
    overdue = services.create_action(cid, {"type_id": t["Call"], "action_date": "2024-06-01 09:00"}, mgr)
    services.create_action(cid, {"type_id": t["Call"], "action_date": "2031-01-01 09:00"}, mgr)
    db.session.refresh(client)
    assert client.actions_exist is True
    assert client.last_action_at == dt.datetime(2024, 5, 1, 9, 0)
    assert client.future_action_at == dt.datetime(2024, 6, 1, 9, 0)  # overdue follow-ups stay visible
    services.update_action(overdue.id, {"completed": True}, mgr)
    db.session.refresh(client)
    assert client.last_action_at == dt.datetime(2024, 6, 1, 9, 0)
    assert client.future_action_at == dt.datetime(2031, 1, 1, 9, 0)
    for action in db.session.scalars(select(ClientAction)).all():
        services.delete_action(action.id, mgr)
    db.session.refresh(client)
    assert (client.actions_exist, client.last_action_at, client.future_action_at) == (False, None, None)
    assert done.id is not None
    # derived fields are not audited; the actions themselves are
    fields = set(db.session.scalars(select(AuditLog.field).where(AuditLog.client_id == cid)))
    assert "last_action_at" not in fields and "completed" in fields


def test_type_change_needs_creator_or_permission_and_delete_needs_permission(app, world, ctx, make_client):
    cid = make_client(desk_id=world.d1a)
    t = types()
    action = services.create_action(cid, {"type_id": t["Note"]}, user(app, "mgr_p1"))
    with pytest.raises(ValidationFailed):
        services.update_action(action.id, {"type_id": t["Comment"]}, user(app, "agent_d1a"))
    db.session.rollback()
    services.update_action(action.id, {"type_id": t["Comment"]}, user(app, "mgr_p1"))  # creator
    with pytest.raises(ValidationFailed):
        services.delete_action(action.id, user(app, "agent_d1a"))


def test_actions_are_scoped(app, world, ctx, make_client):
    cid = make_client()
    t = types()
    with pytest.raises(NotFound):
        services.create_action(cid, {"type_id": t["Note"]}, user(app, "agent_p2"))
    action = services.create_action(cid, {"type_id": t["Note"]}, user(app, "mgr_p1"))
    with pytest.raises(NotFound):
        services.update_action(action.id, {"text": "x"}, user(app, "agent_p2"))


def test_quick_add_form_save_and_save_new(app, world, web, make_client):
    cid = make_client(desk_id=world.d1a)
    with app.app_context():
        t = types()
    c = web("mgr_p1")
    page = c.get(f"/client-actions/new/{cid}").get_data(as_text=True)
    assert "Anna Tester • C00001P" in page and 'id="type_id"' in page
    r = c.post(f"/client-actions/new/{cid}", data={"type_id": t["Comment"], "text": "First",
                                                    "responsible_id": world.users["mgr_p1"], "next_step": "new"})
    assert r.status_code == 302
    assert f"/client-actions/new/{cid}?responsible_id={world.users['mgr_p1']}" in r.headers["Location"]
    r = c.post(f"/client-actions/new/{cid}", data={"type_id": t["Note"], "text": "Second", "next_step": "close"})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/clients/show/{cid}")
    r = c.post(f"/client-actions/new/{cid}", data={"type_id": t["Call"], "text": "No date", "next_step": "close"})
    assert r.status_code == 200 and "A call needs a date." in r.get_data(as_text=True)
    assert 'No date</textarea>' in r.get_data(as_text=True)  # what was typed stays
    with app.app_context():
        assert [a.text for a in db.session.scalars(select(ClientAction).order_by(ClientAction.id))] == ["First",
                                                                                                       "Second"]
        assert db.session.get(Client, cid).actions_exist is True


def test_quick_add_is_scoped_and_permissioned(app, world, web, make_client):
    cid = make_client()
    assert web("agent_p2").get(f"/client-actions/new/{cid}").status_code == 404
    assert web("agent_p2").post(f"/client-actions/new/{cid}", data={"type_id": "1"}).status_code == 404
    viewer = web("viewer_p1").get(f"/client-actions/new/{cid}")
    assert viewer.status_code in (302, 403)
    with app.app_context():
        assert db.session.scalar(select(ClientAction.id)) is None


def test_list_rows_offer_add_action_only_with_permission(app, world, web, make_client):
    cid = make_client()
    assert f"/client-actions/new/{cid}" in web("mgr_p1").get("/clients/list/").get_data(as_text=True)
    assert f"/client-actions/new/{cid}" not in web("viewer_p1").get("/clients/list/").get_data(as_text=True)


def test_list_rows_offer_change_project_only_with_permission(app, world, web, make_client):
    """CL-LIST-1 row actions: Change project opens the card's form, for users who may move clients."""
    cid = make_client()
    html = web("mgr_p1").get("/clients/list/").get_data(as_text=True)
    assert f'/clients/show/{cid}#cd-change-project"' in html
    assert 'id="cd-change-project"' in web("mgr_p1").get(f"/clients/show/{cid}").get_data(as_text=True)
    assert "#cd-change-project" not in web("agent_d1a").get("/clients/list/").get_data(as_text=True)
