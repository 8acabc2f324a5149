"""Selection and bulk actions (CL-LIST-8): permissions, same-project rule, processed rule, "Leave
existing", retag, state, all-matching selections, scope, one audit entry per changed field, and
selections larger than a page running as (idempotent) background jobs on RQ."""

import os
import re
import types
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.clients.list_models import ClientBulkJob
from app.clients.models import Client
from app.core.audit import AuditLog
from app.extensions import db
from tests.conftest import user

REDIS_URL = os.environ.get("TEST_REDIS_URL", "")


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


# --------------------------------------------------------------------------- background jobs

@pytest.fixture()
def rq_queue(app, monkeypatch):
    """Real Redis with asynchronous jobs (TestConfig runs them synchronously) on a queue of this test's own."""
    if not REDIS_URL:
        pytest.skip("needs TEST_REDIS_URL (a real Redis)")
    from app.imports.jobs import get_queue
    monkeypatch.setitem(app.config, "JOB_ASYNC", True)
    monkeypatch.setitem(app.config, "JOB_QUEUE", f"test-bulk-{uuid.uuid4().hex[:8]}")
    with app.app_context():
        queue = get_queue()
    yield queue
    for key in queue.connection.scan_iter(f"*{app.config['JOB_QUEUE']}*"):
        queue.connection.delete(key)
    for key in queue.connection.scan_iter(f"rq:job:{app.config['JOB_ID_PREFIX']}bulk-*"):
        queue.connection.delete(key)


def new_bulk_job(app, username, operation, params, ids):
    with app.app_context():
        job = ClientBulkJob(user_id=user(app, username).id, operation=operation, params=params, client_ids=ids,
                            status="queued", total=len(ids), processed_count=0, changed_count=0,
                            out_of_scope_count=0, failed_count=0)
        db.session.add(job)
        db.session.commit()
        jid = job.id
        db.session.remove()
        return jid


def job_row(app, jid):
    with app.app_context():
        job = db.session.get(ClientBulkJob, jid)
        out = {k: getattr(job, k) for k in ("status", "total", "processed_count", "changed_count",
                                            "out_of_scope_count", "failed_count")}
        db.session.remove()
        return out


def test_a_selection_larger_than_a_page_is_queued_on_redis_and_reaches_done(app, world, web, make_client, rq_queue):
    from rq import SimpleWorker
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from app.clients import list_services
    mgr = world.users["mgr_p1"]
    ids = [make_client(desk_id=world.d1b) for _ in range(list_services.LIST_PAGE_SIZE + 5)]
    foreign = [make_client(project_id=world.p2) for _ in range(2)]
    before = {cid: audit_fields(app, cid) for cid in ids + foreign}
    c = web("mgr_p1")
    r = c.post("/clients/bulk/reassign", data={"rowid": ids + foreign, "desk_id": world.d1a, "manager_id": mgr},
               follow_redirects=True)
    html = r.get_data(as_text=True)
    assert "runs in the background" in html and "cd-bulk-progress" in html
    with app.app_context():
        jid = db.session.scalars(select(ClientBulkJob.id)).one()
        db.session.remove()
    assert job_row(app, jid)["status"] == "queued"
    rq_job = Job.fetch(f"{app.config['JOB_ID_PREFIX']}bulk-{jid}", connection=rq_queue.connection,
                       serializer=JSONSerializer)
    assert rq_job.get_status() == "queued" and rq_job.args == [jid]
    assert c.get(f"/clients/bulk/jobs/{jid}").get_json()["status"] == "queued"
    assert get(app, ids[0])["desk_id"] == world.d1b  # nothing changed in the request

    with app.app_context():
        SimpleWorker([rq_queue], connection=rq_queue.connection, serializer=JSONSerializer).work(burst=True)
        db.session.remove()

    n = len(ids)
    assert job_row(app, jid) == {"status": "done", "total": n + 2, "processed_count": n + 2, "changed_count": n,
                                 "out_of_scope_count": 2, "failed_count": 0}
    summary = c.get(f"/clients/bulk/jobs/{jid}").get_json()
    assert (summary["processed"], summary["changed"], summary["out_of_scope"], summary["failed"]) == (n + 2, n, 2, 0)
    for cid in ids:
        row = get(app, cid)
        assert (row["desk_id"], row["manager_id"]) == (world.d1a, mgr)
        new = Counter(audit_fields(app, cid)) - Counter(before[cid])
        assert {"desk_id", "manager_id"} <= set(new) and set(new.values()) == {1}  # one row per changed field
    for cid in foreign:
        assert get(app, cid)["desk_id"] is None and audit_fields(app, cid) == before[cid]
    # the next list page reports the finished job once and stops polling it
    html = c.get("/clients/list/").get_data(as_text=True)
    assert f"{n} of {n + 2} selected clients were changed" in html
    assert "2 selected clients are outside your scope" in html and "cd-bulk-progress" not in html
    assert "selected clients were changed" not in c.get("/clients/list/").get_data(as_text=True)


def test_a_selection_of_one_page_runs_in_the_request_even_with_a_worker(app, world, web, make_client, rq_queue):
    ids = [make_client() for _ in range(3)]
    r = web("mgr_p1").post("/clients/bulk/state", data={"rowid": ids, "state": "suspended"}, follow_redirects=True)
    assert "3 of 3 selected clients were changed" in r.get_data(as_text=True)
    assert rq_queue.count == 0 and all(get(app, i)["state"] == "suspended" for i in ids)


def test_a_redelivered_bulk_job_resumes_and_applies_nothing_twice(app, world, make_client, monkeypatch):
    from app.clients import jobs, list_services
    ids = [make_client() for _ in range(30)]
    jid = new_bulk_job(app, "mgr_p1", "change_state", {"state": "suspended"}, ids)
    real = list_services._apply_change
    applied = []

    def worker_lost_after_ten(client, *args):
        if len(applied) == 10:
            raise RuntimeError("worker lost")
        applied.append(client.id)
        return real(client, *args)

    monkeypatch.setattr(list_services, "_apply_change", worker_lost_after_ten)
    with app.app_context():
        with pytest.raises(RuntimeError):
            jobs.run_bulk_job(jid)
        db.session.remove()
    row = job_row(app, jid)
    assert (row["status"], row["processed_count"], row["changed_count"]) == ("running", 10, 10)
    monkeypatch.setattr(list_services, "_apply_change", real)
    with app.app_context():
        jobs.run_bulk_job(jid)  # RQ delivers it again
        jobs.run_bulk_job(jid)  # and once more after it finished: nothing left to do
        db.session.remove()
    assert job_row(app, jid) == {"status": "done", "total": 30, "processed_count": 30, "changed_count": 30,
                                 "out_of_scope_count": 0, "failed_count": 0}
    for cid in ids:
        assert get(app, cid)["state"] == "suspended" and audit_fields(app, cid).count("state") == 1


def test_a_bulk_job_without_retries_left_is_marked_failed(app, world, web, make_client, monkeypatch):
    from app.clients import jobs
    jid = new_bulk_job(app, "mgr_p1", "change_state", {"state": "suspended"}, [make_client()])
    monkeypatch.setitem(app.config, "JOB_ASYNC", True)
    rq_job = types.SimpleNamespace(retries_left=2, args=[jid])
    with app.app_context():
        jobs.bulk_job_failed(rq_job, None, RuntimeError, RuntimeError("boom"), None)
        assert db.session.get(ClientBulkJob, jid).status == "queued"  # RQ will try again
        rq_job.retries_left = 0
        jobs.bulk_job_failed(rq_job, None, RuntimeError, RuntimeError("boom"), None)
        db.session.remove()
    assert job_row(app, jid)["status"] == "failed"
    assert web("mgr_p1").get(f"/clients/bulk/jobs/{jid}").get_json()["status"] == "failed"


# --------------------------------------------------------------------------- Reassign choices

def reassign_options(c, **params):
    return c.get("/clients/bulk/reassign/options", query_string=params)


def test_reassign_offers_the_desks_and_eligible_managers_of_the_selections_project(app, world, web, make_client):
    from app.organisation import services as org
    a, b = make_client(), make_client(desk_id=world.d1b)
    r = reassign_options(web("mgr_p1"), rowid=[a, b])
    assert r.status_code == 200, r.data
    data = r.get_json()
    assert data["project"] == {"id": world.p1, "name": "Project One"}
    assert [d["id"] for d in data["desks"]] == [world.d1a, world.d1b]
    managers = {m["id"] for m in data["managers"]}
    with app.app_context():
        assert managers == {u.id for u in db.session.scalars(org.eligible_managers_query(world.p1))}
        on_d1b = {u.id for u in db.session.scalars(org.eligible_managers_query(world.p1, world.d1b))}
        db.session.remove()
    assert world.users["mgr_p1"] in managers and world.users["agent_d1a"] in managers
    assert world.users["agent_p2"] not in managers and world.users["inactive"] not in managers
    assert set(data["desk_managers"][str(world.d1b)]) == on_d1b
    assert world.users["agent_d1a"] not in on_d1b and world.users["mgr_p1"] in on_d1b  # desk-narrowed vs wide
    # the same choices for "all matching" selections
    assert reassign_options(web("mgr_p1"), all_matching="1", query="q=Anna").get_json() == data
    # mixed projects: the dialog says why instead of offering anything
    r = reassign_options(web("admin"), rowid=[a, make_client(project_id=world.p2)])
    assert r.status_code == 422 and "same project" in r.get_json()["errors"][0]
    r = reassign_options(web("admin"), all_matching="1", query="")
    assert r.status_code == 422 and "same project" in r.get_json()["errors"][0]
    # the list no longer embeds every desk and manager of the scope in the dialog
    html = web("mgr_p1").get("/clients/list/").get_data(as_text=True)
    for name in ("desk_id", "manager_id"):
        select_html = re.search(rf'<select name="{name}" id="bulk-[a-z]+"[^>]*>(.*?)</select>', html, re.S).group(1)
        assert select_html.count("<option") == 1  # "Keep" only, until the dialog loads the choices


def test_reassign_choices_never_leave_the_users_scope(app, world, web, make_client):
    own, foreign = make_client(project_id=world.p2, desk_id=world.d2a), make_client()
    c = web("admin")
    p2 = reassign_options(c, rowid=[own]).get_json()
    assert [d["id"] for d in p2["desks"]] == [world.d2a]
    assert {m["id"] for m in p2["managers"]} == {world.users["agent_p2"]}
    mgr = web("mgr_p1")
    assert reassign_options(mgr, rowid=[own]).status_code == 404  # a P2 client is invisible to a P1 manager
    assert reassign_options(mgr, all_matching="1", query=f"project={world.p2}").status_code == 404
    # a P1 manager posting ids of both projects only ever sees P1's choices
    data = reassign_options(mgr, rowid=[own, foreign]).get_json()
    assert data["project"]["id"] == world.p1
    assert world.d2a not in {d["id"] for d in data["desks"]}
    assert world.users["agent_p2"] not in {m["id"] for m in data["managers"]}
    assert all(world.users["agent_p2"] not in ids for ids in data["desk_managers"].values())
    # no reassign permission, no choices
    assert reassign_options(web("viewer_p1"), rowid=[foreign]).status_code in (302, 403, 404)
    assert reassign_options(web("agent_d1a"), rowid=[foreign]).status_code in (302, 403, 404)
