"""R2: no IDOR on any route that takes an object id (security.md §3 R2, finding 4).

Every rule in app.url_map with a <pk>, <filename> or <method_id> argument is called with every
HTTP method as agent_p2 (assigned to P2 only) against a client of P1, then again with ids that do
not exist. A route is a leak when it answers with success (2xx, or a redirect that is not a
refusal), when it changes the P1 client (row, 2FA methods, audit trail, client count), or when
the foreign id and the nonexistent id get different answers (an existence oracle).
"""

import urllib.parse

from sqlalchemy import func, select

from tests.conftest import api_token

ID_ARGS = {"pk", "filename", "method_id"}
METHODS = ("GET", "POST", "PUT", "DELETE")
MISSING_ID = 987_654
MISSING_FILE = "no_such_upload.txt"
BOGUS_ACTION = "no_such_action"
# A refusal is one of these, identical for a foreign and a nonexistent id. 403 only appears on
# routes the Agent role holds no permission for at all (a route-level, id-independent answer).
REFUSALS = {403, 404, 405}


# ----------------------------------------------------------------------------- helpers

def _snapshot(app, client_id):
    """Everything a write through a client route could touch, as plain data."""
    from app.clients.models import Client, TwoFactorMethod
    from app.core.audit import AuditLog
    from app.extensions import db

    with app.app_context():
        row = db.session.execute(select(Client.__table__).where(Client.__table__.c.id == client_id)).mappings().one()
        methods = db.session.execute(select(TwoFactorMethod.__table__)
                                     .where(TwoFactorMethod.__table__.c.client_id == client_id)
                                     .order_by(TwoFactorMethod.__table__.c.id)).mappings().all()
        audit = db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.client_id == client_id))
        tags = db.session.execute(select(Client).where(Client.id == client_id)).scalars().one().tags
        total = db.session.scalar(select(func.count()).select_from(Client))
        snap = {"row": dict(row), "methods": [dict(m) for m in methods], "audit": audit,
                "tags": [t.name for t in tags], "clients": total}
        db.session.remove()
    return snap


def _add_2fa(app, client_id, kinds=("email", "phone")):
    from app.clients.models import TwoFactorMethod
    from app.extensions import db

    with app.app_context():
        methods = [TwoFactorMethod(client_id=client_id, kind=kind, is_default=i == 0,
                                   phone="+4915100000001" if kind == "phone" else None)
                   for i, kind in enumerate(kinds)]
        db.session.add_all(methods)
        db.session.commit()
        ids = [m.id for m in methods]
        db.session.remove()
    return ids


def _views_by_name(app):
    return {type(v).__name__: v for v in app.appbuilder.baseviews}


def _is_refusal(response):
    if response.status_code in REFUSALS:
        return True
    if response.status_code in (301, 302, 303, 307, 308):
        # Only a redirect to the login page is a refusal; anything else could be "done, go back".
        location = urllib.parse.urlsplit(response.headers.get("Location", ""))
        return location.path.rstrip("/").endswith("/login")
    return False


def _form_payload(world, pk, action=None):
    """Form fields that would change a client if any route accepted them."""
    data = {"state": "suspended", "outcome": "won", "rating": "3", "project_id": str(world.p2),
            "desk_id": str(world.d2a), "op": "delete", "phone": "+4915199999999", "email": "hijack@example.org",
            "first_name": "Hijacked", "last_name": "Hijacked", "client_type": "personal", "next_tab": "",
            "rowid": [str(pk)]}
    if action:
        data["action"] = action
    return data


JSON_PAYLOAD = {"first_name": "Hijacked", "state": "suspended", "project_id": None, "rating": 3}


def _id_rules(app):
    rules = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        if rule.arguments & ID_ARGS or rule.endpoint.endswith(".action_post"):
            rules.append(rule)
    return sorted(rules, key=lambda r: (r.rule, r.endpoint))


# FAB ModelView routes of the client screen that skip base_filters (finding 4) or that ClientDesk removed.
# Each is probed by literal path as well, so removing or renaming a route can't drop it from the test.
CLIENT_FAB_ROUTES = ("/clients/show/{pk}", "/clients/edit/{pk}", "/clients/delete/{pk}",
                     "/clients/download/{filename}", "/clients/action/{name}/{pk}", "/clients/action_post")


def _action_names(app, endpoint):
    view = _views_by_name(app).get(endpoint.split(".")[0])
    names = sorted(getattr(view, "actions", None) or {})
    return names + [BOGUS_ACTION]


def _build(rule, values):
    _, path = rule.build(values, append_unknown=False)
    return path


def _probes(app, foreign, foreign_method):
    """(label, foreign url, missing url, action name or None, is_api) for every id route."""
    probes = []
    for rule in _id_rules(app):
        def url(pk, method_id, filename, name=None):
            values = {"pk": pk, "method_id": method_id, "filename": filename, "name": name}
            return _build(rule, {k: v for k, v in values.items() if k in rule.arguments})
        names = _action_names(app, rule.endpoint) if ("name" in rule.arguments or
                                                      rule.endpoint.endswith(".action_post")) else [None]
        for name in names:
            probes.append((rule.endpoint, url(foreign, foreign_method, "kyc_passport.png", name),
                           url(MISSING_ID, MISSING_ID, MISSING_FILE, name), name, rule.rule.startswith("/api/")))
    for template in CLIENT_FAB_ROUTES:
        for name in _action_names(app, "ClientModelView.action"):
            probes.append((f"literal {template}",
                           template.format(pk=foreign, filename="kyc_passport.png", name=name),
                           template.format(pk=MISSING_ID, filename=MISSING_FILE, name=name), name, False))
            if "{name}" not in template and template != "/clients/action_post":
                break
    return probes


def _call(http, method, url, world, pk, action, headers=None, api=False):
    kwargs = {"headers": headers or {}}
    if method in ("POST", "PUT", "DELETE"):
        if api:
            kwargs["json"] = JSON_PAYLOAD
        else:
            kwargs["data"] = _form_payload(world, pk, action)
    return http.open(url, method=method, **kwargs)


# ----------------------------------------------------------------------------- R2 enumeration

def test_every_id_route_refuses_a_foreign_client_like_a_missing_one(app, world, web, make_client):
    foreign = make_client(project_id=world.p1, desk_id=world.d1a, first_name="Foreign", tags=["vip"])
    foreign_methods = _add_2fa(app, foreign)
    own = make_client(project_id=world.p2)
    before = _snapshot(app, foreign)
    assert before["methods"], "the foreign client needs 2FA methods for the method_id routes"

    session = web("agent_p2")
    jwt = api_token(app.test_client(), "agent_p2")
    api = app.test_client()

    # Positive control: the same agent does reach its own client, so 404s below are scope, not breakage.
    assert session.get(f"/clients/show/{own}").status_code == 200
    assert session.get(f"/clients/edit/{own}").status_code == 200
    assert api.get(f"/api/v1/client/{own}", headers=jwt).status_code == 200

    probed, leaks, by_status, routes = 0, [], {}, set()
    for label, url, missing_url, action, is_api in _probes(app, foreign, foreign_methods[-1]):
        http, headers = (api, jwt) if is_api else (session, None)
        routes.add(label)
        for method in METHODS:
            r_foreign = _call(http, method, url, world, foreign, action, headers, is_api)
            after = _snapshot(app, foreign)
            r_missing = _call(http, method, missing_url, world, MISSING_ID, action, headers, is_api)
            probed += 1
            by_status[r_foreign.status_code] = by_status.get(r_foreign.status_code, 0) + 1
            problem = None
            if not _is_refusal(r_foreign):
                problem = f"answered {r_foreign.status_code} {r_foreign.headers.get('Location', '')}"
            elif after != before:
                problem = "changed the foreign client"
            elif r_missing.status_code != r_foreign.status_code:
                problem = f"existence oracle: foreign {r_foreign.status_code} vs missing {r_missing.status_code}"
            if problem:
                leaks.append(f"{method} {url} ({label}): {problem}")
                before = after  # report each change once, not on every later probe

    # A cross-object IDOR: the agent's own client with the foreign client's 2FA method id.
    own_before = _snapshot(app, own)
    for method_id in foreign_methods:
        for op in ("delete", "default", "phone"):
            r = session.post(f"/clients/{own}/two-factor/{method_id}", data={"op": op, "phone": "+4915199999999"})
            probed += 1
            if r.status_code != 404:
                leaks.append(f"POST /clients/{own}/two-factor/{method_id} op={op}: {r.status_code}")
    assert _snapshot(app, foreign) == before
    assert _snapshot(app, own) == own_before

    print(f"\nR2 route enumeration: {len(routes)} routes, {probed} probes, {len(leaks)} leaks, "
          f"statuses {sorted(by_status.items())}")
    assert len(routes) > 10 and probed > 10, "the enumeration found almost no id routes (vacuous pass)"
    assert leaks == [], "\n".join(leaks)


def test_enumeration_covers_the_client_routes(app):
    """The client routes must be in the probed set (a renamed route would silently drop out)."""
    rules = {r.rule for r in _id_rules(app)}
    for expected in ("/clients/action/<string:name>/<pk>", "/clients/action_post", "/clients/show/<pk>",
                     "/clients/edit/<pk>", "/api/v1/client/<int:pk>", "/api/v1/client/<pk>",
                     "/clients/<int:pk>/state", "/clients/<int:pk>/two-factor/<int:method_id>"):
        assert expected in rules, expected
    # FAB's download and delete are either closed (probed as rules) or removed (probed by literal path).
    for removed_or_closed in ("/clients/download/<string:filename>", "/clients/delete/<pk>"):
        literal = removed_or_closed.replace("<string:filename>", "{filename}").replace("<pk>", "{pk}")
        assert removed_or_closed in rules or literal in CLIENT_FAB_ROUTES
    assert len(rules) > 10


def test_client_action_post_with_a_foreign_rowid_is_refused_for_every_action(app, world, web, make_client):
    foreign = make_client(project_id=world.p1)
    own = make_client(project_id=world.p2)
    before_foreign, before_own = _snapshot(app, foreign), _snapshot(app, own)
    c = web("agent_p2")
    for name in _action_names(app, "ClientModelView.action"):
        r = c.post("/clients/action_post", data={"action": name, "rowid": [str(own), str(foreign)]})
        assert r.status_code == 404, (name, r.status_code)
        r = c.post(f"/clients/action/{name}/{foreign}")
        assert r.status_code == 404, (name, r.status_code)
    # One foreign id refuses the whole batch: the own client is untouched too.
    assert _snapshot(app, foreign) == before_foreign
    assert _snapshot(app, own) == before_own


def test_unknown_or_refused_fab_actions_are_404_not_500_or_redirect(app, world, web):
    """FAB's own views (roles, users, settings) answer unknown and forbidden actions with 404, GET with 405."""
    c = web("agent_p2")
    for url in ("/roles/action/copyrole/1", "/users/action/resetpasswords/1", "/projectmodelview/action/x/1",
                "/auditlogmodelview/action/x/1"):
        assert c.post(url).status_code == 404, url
        assert c.get(url).status_code == 405, url
    for url, action in (("/roles/action_post", "copyrole"), ("/users/action_post", "resetpasswords"),
                        ("/deskmodelview/action_post", "x"), ("/clients/action_post", "")):
        assert c.post(url, data={"action": action, "rowid": ["1"]}).status_code == 404, url
    # The admin still reaches a real action (the guard refuses only what FAB would refuse or crash on).
    admin = web("admin")
    from app.extensions import db
    from flask_appbuilder.security.sqla.models import Role
    with app.app_context():
        role_id = db.session.scalar(db.select(Role.id).where(Role.name == "Viewer"))
        db.session.remove()
    assert admin.post(f"/roles/action/copyrole/{role_id}").status_code == 404  # copyrole is multiple-only
    r = admin.post("/roles/action_post", data={"action": "copyrole", "rowid": [str(role_id)]})
    assert r.status_code == 302
    with app.app_context():
        copies = db.session.scalars(db.select(Role).where(Role.name.like("Viewer%"), Role.name != "Viewer")).all()
        for role in copies:  # leave the session-wide roles as they were
            db.session.delete(role)
        db.session.commit()
        db.session.remove()
    assert copies, "copyrole did not run for the admin"


def test_client_download_route_is_closed_even_for_admin(app, world, web, tmp_path, monkeypatch):
    """FAB's download serves any file in UPLOAD_FOLDER; ClientDesk closes it for everyone."""
    (tmp_path / "kyc_passport.txt").write_text("PASSPORT-SECRET-P1")
    monkeypatch.setitem(app.config, "UPLOAD_FOLDER", str(tmp_path) + "/")
    for username in ("admin", "mgr_p1", "agent_p2"):
        r = web(username).get("/clients/download/kyc_passport.txt")
        assert r.status_code == 404, username
        assert b"PASSPORT-SECRET-P1" not in r.data


# ----------------------------------------------------------------------------- desks

def test_desk_agent_sees_only_its_desk_and_manager_sees_the_whole_project(app, world, web, make_client):
    on_d1a = make_client(project_id=world.p1, desk_id=world.d1a)
    on_d1b = make_client(project_id=world.p1, desk_id=world.d1b)
    no_desk = make_client(project_id=world.p1)
    agent, manager = web("agent_d1a"), web("mgr_p1")
    agent_jwt, manager_jwt = api_token(app.test_client(), "agent_d1a"), api_token(app.test_client(), "mgr_p1")
    api = app.test_client()

    assert agent.get(f"/clients/show/{on_d1a}").status_code == 200
    assert api.get(f"/api/v1/client/{on_d1a}", headers=agent_jwt).status_code == 200
    for cid in (on_d1b, no_desk):
        snap = _snapshot(app, cid)
        assert agent.get(f"/clients/show/{cid}").status_code == 404
        assert agent.get(f"/clients/edit/{cid}").status_code == 404
        assert agent.post(f"/clients/{cid}/state", data={"state": "suspended"}).status_code == 404
        assert api.get(f"/api/v1/client/{cid}", headers=agent_jwt).status_code == 404
        assert api.put(f"/api/v1/client/{cid}", json={"first_name": "X"}, headers=agent_jwt).status_code == 404
        assert _snapshot(app, cid) == snap
        assert manager.get(f"/clients/show/{cid}").status_code == 200
        assert api.get(f"/api/v1/client/{cid}", headers=manager_jwt).status_code == 200

    ids = {row["id"] for row in api.get("/api/v1/client/", headers=agent_jwt).get_json()["result"]}
    assert ids == {on_d1a}
    ids = {row["id"] for row in api.get("/api/v1/client/", headers=manager_jwt).get_json()["result"]}
    assert ids == {on_d1a, on_d1b, no_desk}


# ----------------------------------------------------------------------------- lists and search

def _email(app, client_id):
    from app.clients.models import Client
    from app.extensions import db
    with app.app_context():
        email = db.session.get(Client, client_id).email
        db.session.remove()
    return email


def test_lists_and_search_hide_foreign_clients(app, world, web, make_client):
    foreign = make_client(project_id=world.p1, first_name="Forasteira")
    own = make_client(project_id=world.p2, first_name="Propria")
    foreign_email, own_email = _email(app, foreign), _email(app, own)
    c = web("agent_p2")
    jwt = api_token(app.test_client(), "agent_p2")
    api = app.test_client()

    page = c.get("/clients/list/")
    assert page.status_code == 200
    assert own_email.encode() in page.data and b"Propria" in page.data
    assert foreign_email.encode() not in page.data and b"Forasteira" not in page.data

    body = api.get("/api/v1/client/", headers=jwt).get_json()
    assert body["count"] == 1
    assert [row["id"] for row in body["result"]] == [own]

    # Search for the foreign e-mail: the MVC search box and the API filter find nothing. The list
    # echoes the search text back into its search box, so look for the row (the name), not the e-mail.
    page = c.get("/clients/list/", query_string={"q": foreign_email})
    assert page.status_code == 200
    assert b"Forasteira" not in page.data and b"Propria" not in page.data
    assert page.data.count(foreign_email.encode()) <= 1  # only the echoed search box value
    q = f"(filters:!((col:email,opr:eq,value:'{foreign_email}')))"
    body = api.get("/api/v1/client/", query_string={"q": q}, headers=jwt).get_json()
    assert body["count"] == 0 and body["result"] == []
    # ... while the same searches do find the agent's own client (the search itself works) ...
    page = c.get("/clients/list/", query_string={"q": own_email})
    assert b"Propria" in page.data
    q = f"(filters:!((col:email,opr:eq,value:'{own_email}')))"
    body = api.get("/api/v1/client/", query_string={"q": q}, headers=jwt).get_json()
    assert body["count"] == 1
    # ... and an admin's search does find the foreign client (it exists; agent_p2 may not see it).
    assert b"Forasteira" in web("admin").get("/clients/list/", query_string={"q": foreign_email}).data
