"""Saved views (CL-LIST-5), column layouts (CL-LIST-6) and favourites (CL-LIST-7): per user, scoped."""

import re

from sqlalchemy import select

from app.clients.list_models import ClientFavourite, ClientListView
from app.extensions import db


def row_ids(html):
    return {int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)}


def header_columns(html):
    head = html[html.index("<thead>"):html.index("</thead>")]
    return re.findall(r'<th data-column="([^"]+)"', head)


def test_column_layout_per_user_locked_columns_and_reset(app, world, web, make_client):
    make_client(desk_id=world.d1a, manager_id=world.users["mgr_p1"])
    c = web("mgr_p1")
    assert header_columns(c.get("/clients/list/").get_data(as_text=True))[:2] == ["email", "id"]
    r = c.post("/clients/columns", data={"column": ["manager", "full_name", "nonsense", "tags"], "op": "save"})
    assert r.status_code == 302
    html = c.get("/clients/list/").get_data(as_text=True)
    assert header_columns(html) == ["email", "id", "manager", "full_name", "tags"]
    assert "Mgr_P1 Tester" in html
    # another user keeps the defaults; the layout follows the user to a new session
    assert header_columns(web("admin").get("/clients/list/").get_data(as_text=True))[2] == "uid"
    assert header_columns(web("mgr_p1").get("/clients/list/").get_data(as_text=True))[2] == "manager"
    # filtering by a hidden column still works
    assert len(row_ids(c.get(f"/clients/list/?desk={world.d1a}").get_data(as_text=True))) == 1
    c.post("/clients/columns", data={"op": "reset"})
    assert header_columns(c.get("/clients/list/").get_data(as_text=True))[2] == "uid"


def test_saved_views_create_open_rename_update_default_delete(app, world, web, make_client):
    p1 = make_client(country="DE")
    make_client(country="US")
    c = web("mgr_p1")
    r = c.post("/clients/views", data={"name": "Germans", "query": "country=DE&q=secret&page_ClientModelView=3",
                                       "column": ["email", "id", "country"]})
    assert r.status_code == 302
    with app.app_context():
        view = db.session.scalars(select(ClientListView)).one()
        assert view.filters == {"country": ["DE"]}  # the search text and page are never stored
        assert view.columns == ["email", "id", "country"]
        vid = view.id
        db.session.remove()
    opened = c.get(f"/clients/views/{vid}/open")
    assert opened.status_code == 302 and "country=DE" in opened.headers["Location"]
    html = c.get(opened.headers["Location"]).get_data(as_text=True)
    assert row_ids(html) == {p1} and header_columns(html) == ["email", "id", "country"]
    assert c.post("/clients/views", data={"name": "Germans", "query": ""}).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(ClientListView.id).where(ClientListView.name == "Germans")) == vid
        assert len(db.session.scalars(select(ClientListView)).all()) == 1
        db.session.remove()
    c.post(f"/clients/views/{vid}", data={"op": "rename", "name": "DE clients"})
    c.post(f"/clients/views/{vid}", data={"op": "update", "query": "country=US"})
    c.post(f"/clients/views/{vid}", data={"op": "default"})
    with app.app_context():
        view = db.session.get(ClientListView, vid)
        assert (view.name, view.filters, view.is_default) == ("DE clients", {"country": ["US"]}, True)
        db.session.remove()
    # the default view opens when the list is visited without arguments
    assert c.get("/clients/list/").headers["Location"].endswith(f"/clients/views/{vid}/open")
    # another user can't see, open or change it
    other = web("admin")
    assert other.get(f"/clients/views/{vid}/open").status_code == 404
    assert other.post(f"/clients/views/{vid}", data={"op": "delete"}).status_code == 404
    assert "DE clients" not in other.get("/clients/list/").get_data(as_text=True)
    c.post(f"/clients/views/{vid}", data={"op": "delete"})
    with app.app_context():
        assert db.session.get(ClientListView, vid) is None


def test_a_saved_view_never_widens_scope(app, world, web, make_client):
    make_client(country="DE")  # P1
    own = make_client(project_id=world.p2, country="DE")
    c = web("agent_p2")
    with app.app_context():  # a crafted view pointing at P1
        user = app.appbuilder.sm.find_user(username="agent_p2")
        db.session.add(ClientListView(user_id=user.id, name="crafted", filters={"project": [str(world.p1)]},
                                      columns=[]))
        db.session.commit()
        vid = db.session.scalar(select(ClientListView.id))
        db.session.remove()
    html = c.get(c.get(f"/clients/views/{vid}/open").headers["Location"]).get_data(as_text=True)
    assert row_ids(html) == set()
    assert row_ids(c.get("/clients/list/?country=DE&clear=1").get_data(as_text=True)) == {own}


def test_favourites_toggle_persist_scope_and_clear(app, world, web, make_client):
    a, b = make_client(first_name="Fav", last_name="One"), make_client(first_name="Fav", last_name="Two")
    foreign = make_client(project_id=world.p2)
    c = web("mgr_p1")
    assert 'id="cd-fav-count">0<' in c.get("/clients/list/").get_data(as_text=True)  # "no favourites" is kept now
    r = c.post(f"/clients/favourites/{a}", headers={"X-Requested-With": "fetch"})
    # the toggling request itself answers with the new list (it read the favourites version before writing)
    assert r.get_json()["favourite"] is True and len(r.get_json()["favourites"]) == 1
    r = c.post(f"/clients/favourites/{b}", headers={"X-Requested-With": "fetch"})
    favs = r.get_json()["favourites"]
    assert [f["name"] for f in favs] == ["Fav One", "Fav Two"] and favs[0]["status"] == "New"
    html = web("mgr_p1").get("/clients/list/").get_data(as_text=True)  # a new session still has them
    assert 'id="cd-fav-count">2<' in html and not re.search(r'id="cd-fav-panel"\s+hidden', html)
    assert html.count("cd-fav-toggle cd-fav-on") == 2
    # outside scope: 404 and nothing stored; a foreign favourite is never shown
    assert c.post(f"/clients/favourites/{foreign}").status_code == 404
    assert web("agent_p2").post(f"/clients/favourites/{a}").status_code == 404
    with app.app_context():
        mgr_id = app.appbuilder.sm.find_user(username="mgr_p1").id
        db.session.add(ClientFavourite(user_id=mgr_id, client_id=foreign))
        db.session.commit()
        db.session.remove()
    html = c.get("/clients/list/").get_data(as_text=True)
    assert 'id="cd-fav-count">2<' in html
    r = c.post(f"/clients/favourites/{a}", data={"op": "remove"}, headers={"X-Requested-With": "fetch"})
    assert [f["name"] for f in r.get_json()["favourites"]] == ["Fav Two"]
    c.post("/clients/favourites/clear")
    with app.app_context():
        assert db.session.scalars(select(ClientFavourite).where(ClientFavourite.user_id == mgr_id)).all() == []


def test_new_routes_need_csrf(app, world, make_client):
    cid = make_client()
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        from tests.conftest import PASSWORD, csrf_from
        c = app.test_client()
        token = csrf_from(c.get("/login/").get_data(as_text=True))
        c.post("/login/", data={"username": "admin", "password": PASSWORD, "csrf_token": token})
        for url in (f"/clients/favourites/{cid}", "/clients/favourites/clear", "/clients/columns", "/clients/views",
                    "/clients/bulk/state"):
            assert c.post(url, data={"state": "suspended", "rowid": [cid]}).status_code == 400, url
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
