"""Selection and bulk actions (CL-LIST-8): permissions, same-project rule, processed rule, "Leave
existing", retag, state, all-matching selections, scope, and one audit entry per changed field."""

from sqlalchemy import func, select

from app.clients.list_models import ClientBulkJob
from app.clients.models import Client
from app.core.audit import AuditLog
from app.extensions import db


def get(app, cid):
    with app.app_context():
        c = db.session.get(Client, cid)
        out = {k: getattr(c, k) for k in ("project_id", "desk_id", "manager_id", "status_id", "processed", "state",
                                          "affiliate_id", "source_id", "campaign_id", "country")}
        out["tags"] = sorted(t.name for t in c.tags)
        db.session.remove()
        return out


def audit_fields(app, cid):
    with app.app_context():
        rows = db.session.scalars(select(AuditLog).where(AuditLog.client_id == cid, AuditLog.operation == "update")
                                  ).all()
        out = sorted(r.field for r in rows)
        db.session.remove()
        return out


def test_reassign_refuses_mixed_projects(app, world, web, make_client):
    a, b = make_client(), make_client(project_id=world.p2)
    c = web("admin")
    r = c.post("/clients/bulk/reassign", data={"rowid": [a, b], "status_id": world.status_vip}, follow_redirects=True)
    assert "same project" in r.get_data(as_text=True)
    assert get(app, a)["status_id"] == world.status_new and get(app, b)["status_id"] == world.status_new


def test_reassign_sets_desk_manager_status_and_promotes_processed(app, world, web, make_client):
    a, b = make_client(), make_client(desk_id=world.d1b)
    before = audit_fields(app, a)
    c = web("mgr_p1")
    r = c.post("/clients/bulk/reassign", data={"rowid": [a, b], "desk_id": world.d1a,
                                               "manager_id": world.users["mgr_p1"]}, follow_redirects=True)
    assert "2 of 2 selected clients were changed" in r.get_data(as_text=True)
    for cid in (a, b):
        row = get(app, cid)
        assert (row["desk_id"], row["manager_id"], row["processed"]) == (world.d1a, world.users["mgr_p1"], True)
        assert row["status_id"] == world.status_new  # left empty: kept
    new = [f for f in audit_fields(app, a) if f not in before]
    assert {"desk_id", "manager_id", "processed"} <= set(new) and new.count("desk_id") == 1


def test_reassign_refuses_an_ineligible_manager(app, world, web, make_client):
    a = make_client()
    c = web("admin")
    r = c.post("/clients/bulk/reassign", data={"rowid": [a], "manager_id": world.users["agent_p2"]},
               follow_redirects=True)
    assert "cannot be assigned" in r.get_data(as_text=True)
    assert get(app, a)["manager_id"] is None


def test_bulk_edit_writes_only_enabled_fields(app, world, web, make_client):
    a = make_client(affiliate_id="OLD", source_id="SRC", country="DE")
    c = web("mgr_p1")
    c.post("/clients/bulk/edit", data={"rowid": [a], "enabled": ["affiliate_id", "country"],
                                       "affiliate_id": "NEW", "source_id": "IGNORED", "country": "fr",
                                       "campaign_id": "IGNORED"})
    row = get(app, a)
    assert (row["affiliate_id"], row["source_id"], row["campaign_id"], row["country"]) == ("NEW", "SRC", None, "FR")
    r = c.post("/clients/bulk/edit", data={"rowid": [a], "affiliate_id": "X"}, follow_redirects=True)
    assert "Leave existing" in r.get_data(as_text=True) and get(app, a)["affiliate_id"] == "NEW"


def test_retag_and_change_state(app, world, web, make_client):
    a, b = make_client(tags=["old"]), make_client()
    c = web("mgr_p1")
    c.post("/clients/bulk/retag", data={"rowid": [a, b], "mode": "add", "tags": "vip, hot"})
    assert get(app, a)["tags"] == ["hot", "old", "vip"] and get(app, b)["tags"] == ["hot", "vip"]
    c.post("/clients/bulk/retag", data={"rowid": [a], "mode": "remove", "tags": "OLD"})
    assert get(app, a)["tags"] == ["hot", "vip"]
    c.post("/clients/bulk/state", data={"rowid": [a, b], "state": "suspended"})
    assert get(app, a)["state"] == get(app, b)["state"] == "suspended"
    assert audit_fields(app, b).count("state") == 1


def test_all_matching_selection_runs_as_a_job_with_progress(app, world, web, make_client):
    ids = [make_client(country="DE") for _ in range(30)]
    other = make_client(country="US")
    c = web("mgr_p1")
    r = c.post("/clients/bulk/state", data={"all_matching": "1", "query": "country=DE&q=Anna", "state": "suspended"},
               follow_redirects=True)
    assert "30 of 30 selected clients were changed" in r.get_data(as_text=True)
    assert all(get(app, i)["state"] == "suspended" for i in ids) and get(app, other)["state"] == "active"
    with app.app_context():
        job = db.session.scalars(select(ClientBulkJob)).one()
        assert (job.status, job.total, job.processed_count, job.changed_count) == ("done", 30, 30, 30)
        jid = job.id
        db.session.remove()
    assert c.get(f"/clients/bulk/jobs/{jid}").get_json()["changed"] == 30
    assert web("admin").get(f"/clients/bulk/jobs/{jid}").status_code == 404


def test_ids_outside_scope_change_nothing_and_are_reported(app, world, web, make_client):
    own, foreign = make_client(), make_client(project_id=world.p2)
    r = web("mgr_p1").post("/clients/bulk/state", data={"rowid": [own, foreign], "state": "suspended"},
                           follow_redirects=True)
    assert "1 selected clients are outside your scope" in r.get_data(as_text=True)
    assert get(app, own)["state"] == "suspended" and get(app, foreign)["state"] == "active"
    # a P2 user posting only P1 ids changes nothing, also through "all matching"
    before = get(app, own)
    agent = web("agent_p2")
    agent.post("/clients/bulk/state", data={"rowid": [own], "state": "active"})
    agent.post("/clients/bulk/state", data={"all_matching": "1", "query": f"project={world.p1}", "state": "active"})
    assert get(app, own) == before


def test_bulk_actions_need_their_permission(app, world, web, make_client):
    a = make_client()
    with app.app_context():
        audit_before = db.session.scalar(select(func.count()).select_from(AuditLog))
        db.session.remove()
    viewer = web("viewer_p1")
    html = viewer.get("/clients/list/").get_data(as_text=True)
    for panel in ("cd-bulk-reassign", "cd-bulk-edit", "cd-bulk-retag", "cd-bulk-state"):
        assert f'id="{panel}"' not in html
    agent = web("agent_d1a")  # Agent: change state yes, reassign / bulk edit no
    html = agent.get("/clients/list/").get_data(as_text=True)
    assert 'id="cd-bulk-state"' in html and 'id="cd-bulk-reassign"' not in html
    for url, data in (("/clients/bulk/reassign", {"status_id": world.status_vip}),
                      ("/clients/bulk/edit", {"enabled": ["affiliate_id"], "affiliate_id": "X"}),
                      ("/clients/bulk/retag", {"tags": "x"}), ("/clients/bulk/state", {"state": "suspended"})):
        r = viewer.post(url, data={"rowid": [a], **data})
        assert r.status_code in (302, 403, 404)
    for url in ("/clients/bulk/reassign", "/clients/bulk/edit", "/clients/bulk/retag"):
        agent.post(url, data={"rowid": [a], "status_id": world.status_vip, "enabled": ["affiliate_id"],
                              "affiliate_id": "X", "tags": "x"})
    row = get(app, a)
    assert (row["status_id"], row["affiliate_id"], row["tags"]) == (world.status_new, None, [])
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditLog)) == audit_before
