"""Client screens through FAB's test client: forms, card actions, list search and sorting, settings."""

import re

from sqlalchemy import select

from app.clients.models import Client, ClientStatus
from app.core.audit import AuditLog
from app.extensions import db
from app.organisation.models import Project


def form_data(world, **overrides):
    data = {"client_type": "personal", "email": "new@example.org", "first_name": "Nora", "last_name": "Lind",
            "phone": "+4915123111111", "project_id": str(world.p1), "desk_id": "", "manager_id": "",
            "verification_status": "init", "rating": "0", "status_id": "", "fee_group_id": "",
            "contact_origin_id": "", "funnel_stage_id": "", "gender": "", "risk_level": "",
            "verification_level": "", "country": "", "nationality": ""}
    data.update(overrides)
    return data


def test_add_form_creates_client_and_opens_edit(app, world, web):
    c = web("mgr_p1")
    r = c.post("/clients/add", data=form_data(world, desk_id=str(world.d1a), manager_id=str(world.users["mgr_p1"]),
                                              meta_key=["WhatsApp"], meta_value=["934578981723"]))
    assert r.status_code == 302
    with app.app_context():
        client = db.session.scalars(select(Client)).one()
        assert re.search(rf"/clients/edit/{client.id}$", r.headers["Location"])
        assert client.processed is True  # processed rule through the form
        assert client.meta == {"WhatsApp": "934578981723"}
        assert client.created_by_id == world.users["mgr_p1"]


def test_add_form_errors_keep_typed_values(app, world, web):
    c = web("admin")
    r = c.post("/clients/add", data=form_data(world, email="broken", first_name="Keep Me", phone="123",
                                              description="x" * 2001))
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "Enter a valid e-mail address, like name@example.com." in html
    assert "Enter the phone number in international format, like +14155550123." in html
    assert "The description can be at most 2000 characters (now 2001)." in html
    assert 'value="Keep Me"' in html
    with app.app_context():
        assert db.session.scalar(select(Client.id)) is None


def test_edit_form_shows_immutables_read_only_and_audits_with_user(app, world, web, make_client):
    cid = make_client(city="Berlin")
    c = web("mgr_p1")
    page = c.get(f"/clients/edit/{cid}").get_data(as_text=True)
    assert 'id="readonly-email"' in page and 'name="email"' not in page
    assert 'name="project_id"' not in page
    r = c.post(f"/clients/edit/{cid}", data=form_data(world, city="Hamburg", email="ignored@example.org",
                                                       project_id=str(world.p2)))
    assert r.status_code == 302
    with app.app_context():
        client = db.session.get(Client, cid)
        assert client.city == "Hamburg"
        assert client.email != "ignored@example.org" and client.project_id == world.p1
        row = db.session.scalars(select(AuditLog).where(AuditLog.client_id == cid, AuditLog.field == "city",
                                                        AuditLog.operation == "update")).one()
        assert (row.old_value, row.new_value, row.user_id) == ("Berlin", "Hamburg", world.users["mgr_p1"])
    logs = c.get(f"/clients/show/{cid}?tab=logs&log_q=hamburg").get_data(as_text=True)
    assert "Hamburg" in logs and "Berlin" in logs


def test_logs_tab_needs_permission(app, world, web, make_client):
    cid = make_client()
    assert web("viewer_p1").get(f"/clients/show/{cid}?tab=logs").status_code == 404
    assert web("compliance_p1").get(f"/clients/show/{cid}?tab=logs").status_code == 200


def test_card_header_and_actions(app, world, web, make_client):
    cid = make_client(first_name="Jane", last_name="Doe", desk_id=world.d1a)
    c = web("mgr_p1")
    page = c.get(f"/clients/show/{cid}").get_data(as_text=True)
    assert "Jane Doe • UID: C00001P" in page
    assert c.post(f"/clients/{cid}/state", data={"state": "suspended"}).status_code == 302
    assert c.post(f"/clients/{cid}/outcome", data={"outcome": "lost"}).status_code == 302
    with app.app_context():
        client = db.session.get(Client, cid)
        assert (client.state, client.outcome) == ("suspended", "lost")
    # Change project is its own permission: agents lack it
    agent = web("agent_d1a")
    assert agent.post(f"/clients/{cid}/change-project", data={"project_id": world.p2}).status_code in (302, 403)
    with app.app_context():
        assert db.session.get(Client, cid).project_id == world.p1
    admin = web("admin")
    admin.post(f"/clients/{cid}/change-project", data={"project_id": world.p2})
    with app.app_context():
        client = db.session.get(Client, cid)
        assert (client.project_id, client.desk_id) == (world.p2, None)


def test_clients_have_no_delete_route(app, world, web, make_client):
    cid = make_client()
    rules = [r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith("ClientModelView.")]
    assert not any("delete" in r for r in rules)
    assert web("admin").post(f"/clients/delete/{cid}").status_code == 404


def test_search_box_is_literal_and_case_insensitive(app, world, web, make_client):
    for name in ["50% Discount", "500 Club", "a_b", "axb", "Anna?", "Annabel"]:
        make_client(first_name=name)
    c = web("admin")

    def names(q):
        html = c.get("/clients/list/", query_string={"q": q}).get_data(as_text=True)
        return {n for n in ["50% Discount", "500 Club", "a_b", "axb", "Anna?", "Annabel"] if f">{n} Tester<" in html}

    assert names("50%") == {"50% Discount"}
    assert names("a_b") == {"a_b"}
    assert names("Anna?") == {"Anna?"}
    assert names("annA") == {"Anna?", "Annabel"}
    assert names("*") == set()


def test_every_value_column_sorts(app, world, web, make_client):
    make_client(first_name="Zed", country="US")
    make_client(first_name="Abe", country="DE")
    c = web("admin")
    from app.clients.views import ClientModelView
    for column in ClientModelView.order_columns:
        for direction in ("asc", "desc"):
            r = c.get(f"/clients/list/?_oc_ClientModelView={column}&_od_ClientModelView={direction}")
            assert r.status_code == 200, column
    html = c.get("/clients/list/?_oc_ClientModelView=full_name&_od_ClientModelView=asc").get_data(as_text=True)
    assert html.index("Abe Tester") < html.index("Zed Tester")


def test_settings_refuse_deleting_used_records(app, world, web, make_client):
    make_client()
    c = web("admin")
    c.post(f"/projectmodelview/delete/{world.p1}")
    c.post(f"/clientstatusmodelview/delete/{world.status_new}")
    with app.app_context():
        assert db.session.get(Project, world.p1) is not None
        assert db.session.get(ClientStatus, world.status_new) is not None
    page = c.get("/clients/list/").get_data(as_text=True)
    assert "Deactivate it instead" in page or "deactivate" in page.lower()


def test_status_translations_edited_per_language(app, world, web):
    c = web("admin")
    r = c.post("/clientstatusmodelview/add", data={"label": "Warm", "label_es": "Tibio", "label_ru": "Тёплый",
                                                  "colour": "#112233", "order": "7", "active": "y"})
    assert r.status_code == 302
    with app.app_context():
        status = db.session.scalars(select(ClientStatus).where(ClientStatus.label == "Warm")).one()
        assert status.label_translations == {"es": "Tibio", "ru": "Тёплый"}
        assert status.localized_label("ru") == "Тёплый"
        assert db.session.scalars(select(AuditLog).where(AuditLog.entity == "ClientStatus",
                                                         AuditLog.field == "label")).first() is not None


def test_generate_password_endpoint(app, world, web):
    r = web("mgr_p1").get("/clients/generate-password")
    from app.core.validators import check_password
    assert check_password(r.get_json()["password"])
    assert "no-store" in r.headers["Cache-Control"]


def test_rating_is_one_click_on_the_card(app, world, web, make_client):
    cid = make_client()
    c = web("mgr_p1")
    assert 'name="rating" value="2"' in c.get(f"/clients/show/{cid}").get_data(as_text=True)
    c.post(f"/clients/{cid}/rating", data={"rating": "2"})
    with app.app_context():
        assert db.session.get(Client, cid).rating == 2
    c.post(f"/clients/{cid}/rating", data={"rating": "9"})
    with app.app_context():
        assert db.session.get(Client, cid).rating == 2


def test_passport_and_birth_date_are_masked_without_permission(app, world, web, make_client):
    """R6: the Viewer role lacks can_view_pii: the raw values never reach its screens or API answers."""
    from tests.conftest import api_token
    cid = make_client(passport_number="PX998877", date_of_birth="1984-02-03")
    viewer = web("viewer_p1")
    card = viewer.get(f"/clients/show/{cid}").get_data(as_text=True)
    assert "PX998877" not in card and "1984-02-03" not in card and "••••" in card
    api = viewer.get(f"/api/v1/client/{cid}", headers=api_token(viewer, "viewer_p1")).get_json()["result"]
    assert api["passport_number"] == "••••" and api["date_of_birth"] == "••••"
    listed = viewer.get("/api/v1/client/", headers=api_token(viewer, "viewer_p1")).get_data(as_text=True)
    assert "PX998877" not in listed
    compliance = web("compliance_p1")
    assert "PX998877" in compliance.get(f"/clients/show/{cid}").get_data(as_text=True)
    logs = compliance.get(f"/clients/show/{cid}?tab=logs").get_data(as_text=True)
    assert "PX998877" in logs
