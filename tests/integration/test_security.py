"""Security requirements R4, R5, R7, R11–R17, R19, R20 of security.md §3 against the running app.

Tests that need other settings than TestConfig (CSRF on, rate limits on, secure cookies, non-testing
error handling) build a second app on the same database with the `make_app` fixture.
"""

import datetime as dt
import os
import re
import urllib.parse

import pytest
from sqlalchemy import select

from tests.conftest import PASSWORD, _database_url, api_token, client_data, csrf_from, login

LEAK_MARKERS = ("DETAIL", "Key (", "Traceback", "psycopg", "sqlite3", "IntegrityError")


# ----------------------------------------------------------------------------- helpers

@pytest.fixture()
def make_app(app):
    """Build another ClientDesk app on the session's database with config overrides."""
    from app import create_app
    from app.extensions import db

    built = []

    def make(**overrides):
        url = _database_url()
        other = create_app("config.TestConfig", SQLALCHEMY_DATABASE_URI=url, **overrides)
        if url.startswith("sqlite") and (url in ("sqlite://", "sqlite:///:memory:") or ":memory:" in url):
            # An in-memory SQLite database lives in its engine: share the session app's engine so the
            # second app sees the migrated schema and the staff users.
            db._app_engines[other] = db._app_engines[app]
        else:
            built.append(other)
        return other

    yield make
    for other in built:
        with other.app_context():
            db.engine.dispose()


def _client_row(app, client_id):
    from app.clients.models import Client
    from app.extensions import db
    with app.app_context():
        row = db.session.execute(select(Client.__table__).where(Client.__table__.c.id == client_id)).mappings().one()
        db.session.remove()
    return dict(row)


def _client_count(app):
    from app.clients.models import Client
    from app.extensions import db
    with app.app_context():
        n = db.session.scalar(select(db.func.count()).select_from(Client))
        db.session.remove()
    return n


def _login_with_csrf(client, username, password=PASSWORD):
    token = csrf_from(client.get("/login/").get_data(as_text=True))
    assert token, "the login form carries no CSRF token"
    r = client.post("/login/", data={"username": username, "password": password, "csrf_token": token})
    assert r.status_code == 302, r.data[:300]
    return client


def _no_leak(body):
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    return [m for m in LEAK_MARKERS if m in text]


# ----------------------------------------------------------------------------- R4 mass assignment

@pytest.mark.parametrize("extra", [{"password_hash": "x" * 60}, {"processed": True}, {"uid": "P99999"},
                                   {"created_by_id": 1}, {"id": 424242}])
def test_api_put_with_a_field_outside_the_allowlist_is_422_and_changes_nothing(app, world, make_client, extra):
    cid = make_client()
    before = _client_row(app, cid)
    c = app.test_client()
    r = c.put(f"/api/v1/client/{cid}", json={"first_name": "Changed", **extra}, headers=api_token(c, "admin"))
    assert r.status_code == 422, r.data
    assert list(extra)[0] in r.get_data(as_text=True)  # the message names the refused key
    assert _client_row(app, cid) == before


def test_api_post_with_a_field_outside_the_allowlist_is_422_and_creates_nothing(app, world):
    n = _client_count(app)
    c = app.test_client()
    r = c.post("/api/v1/client/", json={**client_data(world), "processed": True}, headers=api_token(c, "admin"))
    assert r.status_code == 422, r.data
    assert _client_count(app) == n


def _app_model_views(app):
    from flask_appbuilder import ModelView
    from flask_appbuilder.api import ModelRestApi
    return [v for v in app.appbuilder.baseviews
            if isinstance(v, (ModelView, ModelRestApi)) and type(v).__module__.startswith("app.")]


# FAB's generic bases: a value found only there is a FAB default (derived from the model), not a choice.
_GENERIC_MODULES = {"flask_appbuilder.baseviews", "flask_appbuilder.views", "flask_appbuilder.api"}


def _declared(cls, *names):
    """Whether any of `names` is set on the class or a non-generic base (not a FAB default)."""
    for klass in cls.__mro__:
        if klass.__module__ in _GENERIC_MODULES or klass is object:
            continue
        if any(name in vars(klass) and vars(klass)[name] not in (None, [], ()) for name in names):
            return True
    return False


def test_every_app_view_and_api_declares_its_columns_explicitly(app):
    from flask_appbuilder.api import ModelRestApi

    views = _app_model_views(app)
    names = {type(v).__name__ for v in views}
    assert {"ClientModelView", "ClientApi", "AuditLogModelView", "ProjectModelView"} <= names
    missing = []
    for view in views:
        cls = type(view)
        perms = set(view.base_permissions or ()) or None  # None: FAB grants every route
        required = [("list_columns",), ("show_columns", "show_fieldsets"), ("search_columns",)]
        if perms is None or perms & {"can_add", "can_post"}:
            required.append(("add_columns", "add_fieldsets", "add_model_schema", "add_form"))
        if perms is None or perms & {"can_edit", "can_put"}:
            required.append(("edit_columns", "edit_fieldsets", "edit_model_schema", "edit_form"))
        if isinstance(view, ModelRestApi):
            required.append(("order_columns",))
        for options in required:
            if not _declared(cls, *options):
                missing.append(f"{cls.__name__}.{options[0]}")
    assert missing == []


CLIENT_WRITE_DENYLIST = {"id", "uid", "password_hash", "processed", "processed_at", "created_by_id", "created_at",
                         "updated_at", "last_login_at", "last_action_at", "future_action_at", "actions_exist",
                         "last_duplicate_at", "full_name"}


def test_client_write_surfaces_exclude_system_fields(app):
    from marshmallow import RAISE

    from app.clients.api import ClientApi
    from app.clients.views import ClientModelView

    for cls in (ClientApi, ClientModelView):
        for attr in ("add_columns", "edit_columns"):
            assert not set(getattr(cls, attr)) & CLIENT_WRITE_DENYLIST, (cls.__name__, attr)
    for schema in (ClientApi.add_model_schema, ClientApi.edit_model_schema):
        assert schema.unknown == RAISE
        assert not set(schema.load_fields) & CLIENT_WRITE_DENYLIST
    # What the API shows never includes the password hash.
    for schema in (ClientApi.list_model_schema, ClientApi.show_model_schema):
        assert "password_hash" not in schema.fields and "password" not in schema.dump_fields


# ----------------------------------------------------------------------------- R5 filter and sort oracles

SENSITIVE_COLUMNS = {"passport_number", "date_of_birth", "password_hash", "password", "aml_screening"}


def test_no_view_searches_or_sorts_on_sensitive_columns(app):
    for view in _app_model_views(app):
        for attr in ("search_columns", "order_columns"):
            values = set(getattr(view, attr, None) or ())
            assert not values & SENSITIVE_COLUMNS, (type(view).__name__, attr, values & SENSITIVE_COLUMNS)


@pytest.mark.parametrize("q", [
    "(filters:!((col:passport_number,opr:eq,value:AB123456)))",
    "(filters:!((col:passport_number,opr:sw,value:A)))",
    "(filters:!((col:date_of_birth,opr:gt,value:'1985-01-01')))",
    "(filters:!((col:date_of_birth,opr:eq,value:'1980-01-02')))",
    "(filters:!((col:password_hash,opr:sw,value:scrypt)))",
    "(order_column:date_of_birth,order_direction:asc)",
    "(order_column:passport_number,order_direction:desc)",
    "(order_column:password_hash,order_direction:desc)",
])
def test_api_filter_or_order_on_a_sensitive_column_is_400(app, world, make_client, q):
    make_client(passport_number="AB123456", date_of_birth="1980-01-02")
    c = app.test_client()
    r = c.get("/api/v1/client/", query_string={"q": q}, headers=api_token(c, "admin"))
    assert r.status_code == 400, r.data
    assert "AB123456" not in r.get_data(as_text=True)


def test_api_filter_on_an_allowed_column_still_works(app, world, make_client):
    """Control for the 400s above: the same request shape on e-mail answers 200."""
    make_client(email="findme@example.org")
    c = app.test_client()
    r = c.get("/api/v1/client/", query_string={"q": "(filters:!((col:email,opr:eq,value:'findme@example.org')),"
                                                    "order_column:email,order_direction:asc)"},
              headers=api_token(c, "admin"))
    assert r.status_code == 200 and r.get_json()["count"] == 1


def test_mvc_list_ignores_filters_on_sensitive_columns(app, world, web, make_client):
    make_client(first_name="Alpha", passport_number="AB123456", date_of_birth="1980-01-02")
    make_client(first_name="Omega", passport_number="ZZ999999", date_of_birth="1990-05-06")
    c = web("admin")
    for qs in ("_flt_0_passport_number=AB123456", "_flt_3_passport_number=AB123456",
               "_flt_0_date_of_birth=1980-01-02", "_flt_1_date_of_birth=1985-01-01"):
        page = c.get("/clients/list/?" + qs)
        assert page.status_code in (200, 400), qs
        if page.status_code == 200:  # ignored, never applied: both clients are listed
            assert b"Alpha" in page.data and b"Omega" in page.data, qs


@pytest.mark.parametrize("column", ["date_of_birth", "passport_number", "password_hash", "no_such_column"])
def test_mvc_list_refuses_ordering_outside_order_columns(app, world, web, make_client, column):
    """FAB's MVC list would ORDER BY any column (a sort oracle) or 500 on an unknown one."""
    make_client(first_name="Alpha", date_of_birth="1950-01-02")
    c = web("admin")
    r = c.get(f"/clients/list/?_oc_ClientModelView={column}&_od_ClientModelView=asc")
    assert r.status_code == 400
    r = c.get(f"/auditlogmodelview/list/?_oc_AuditLogModelView={column}&_od_AuditLogModelView=asc")
    assert r.status_code == 400
    # An allowed order column still works.
    assert c.get("/clients/list/?_oc_ClientModelView=email&_od_ClientModelView=asc").status_code == 200


@pytest.mark.parametrize("qs", ["page_ClientModelView=abc", "page_ClientModelView=-1", "psize_ClientModelView=x",
                                "psize_ClientModelView=100000", "page_ClientModelView=1e3"])
def test_non_numeric_or_huge_page_args_are_400_not_500(app, world, web, make_client, qs):
    make_client()
    c = web("admin")
    assert c.get("/clients/list/?" + qs).status_code == 400
    view = qs.split("=")[0]
    other = view.replace("ClientModelView", "AuditLogModelView")
    if "100000" not in qs:  # the size cap is ClientDesk's, the integer check holds on every list
        assert c.get(f"/auditlogmodelview/list/?{other}={qs.split('=')[1]}").status_code == 400
    assert c.get("/clients/list/?page_ClientModelView=0&psize_ClientModelView=25").status_code == 200


# ----------------------------------------------------------------------------- R7 default deny

ANONYMOUS_200_ALLOWED = {"AuthDBView.login", "static", "appbuilder.static"}
DUMMY_ARGS = {"pk": "1", "filename": "x.txt", "method_id": "1", "name": "x", "locale": "en", "version": "v1",
              "group_by": "1"}


def test_anonymous_get_of_every_route_ends_at_login_or_401_404(app, world, make_client):
    make_client()
    checked, bad = 0, []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in ("static", "appbuilder.static"):
            continue
        if set(rule.arguments) - set(DUMMY_ARGS):
            bad.append(f"{rule.rule}: no dummy value for {set(rule.arguments) - set(DUMMY_ARGS)}")
            continue
        _, url = rule.build({k: DUMMY_ARGS[k] for k in rule.arguments}, append_unknown=False)
        c = app.test_client()
        first = c.get(url)
        final = c.get(url, follow_redirects=True)
        checked += 1
        if first.status_code == 200 and rule.endpoint not in ANONYMOUS_200_ALLOWED:
            bad.append(f"{url}: 200 anonymously")
        elif first.status_code in (301, 302, 303, 307, 308):
            if final.request.path != "/login/":
                bad.append(f"{url}: redirect chain ends at {final.request.path} ({final.status_code})")
        elif first.status_code not in (200, 401, 403, 404, 405):
            bad.append(f"{url}: {first.status_code}")
        if url.startswith("/api/") and first.status_code == 200:
            bad.append(f"{url}: API answered anonymously")
    assert checked > 30
    assert bad == []


def test_anonymous_gets_nothing_from_static_login_aside(app):
    c = app.test_client()
    assert c.get("/login/").status_code == 200
    assert c.get("/static/clientdesk.css").status_code == 200
    r = c.get("/clients/list/")
    assert r.status_code == 302 and urllib.parse.urlsplit(r.headers["Location"]).path == "/login/"
    assert c.get("/api/v1/client/").status_code == 401
    assert c.get("/api/v1/_openapi").status_code == 401


def test_public_role_has_no_permissions(app):
    with app.app_context():
        public = app.appbuilder.sm.find_role(app.config["AUTH_ROLE_PUBLIC"])
        assert public is not None
        assert list(public.permissions) == []
        assert app.config["AUTH_USER_REGISTRATION"] is False
        assert app.config["FAB_ADD_SECURITY_API"] is False


# ----------------------------------------------------------------------------- R11 throttling

@pytest.mark.parametrize("path", ["/login/", "/api/v1/security/login"])
def test_fourth_login_attempt_in_a_minute_is_429(make_app, world, path):
    limited = make_app(RATELIMIT_ENABLED=True, AUTH_RATE_LIMITED=True, AUTH_RATE_LIMIT="3 per minute",
                       RATELIMIT_STORAGE_URI="memory://")
    c = limited.test_client()

    def attempt(password):
        if path == "/login/":
            return c.post(path, data={"username": "mgr_p1", "password": password})
        return c.post(path, json={"username": "mgr_p1", "password": password, "provider": "db"})

    statuses = [attempt("wrong-password").status_code for _ in range(3)]
    assert 429 not in statuses, statuses
    assert attempt("wrong-password").status_code == 429
    assert attempt(PASSWORD).status_code == 429  # the right password doesn't get through the throttle


def test_login_throttle_is_shared_by_processes_through_redis(make_app, world):
    """Two app instances (two gunicorn workers) on one real Redis count the same attempts (R11)."""
    import uuid

    import redis
    url = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
    redis.Redis.from_url(url).ping()  # a clear failure when the test Redis is not running
    prefix = f"cd-test-{uuid.uuid4().hex}"
    options = dict(RATELIMIT_ENABLED=True, AUTH_RATE_LIMITED=True, AUTH_RATE_LIMIT="3 per minute",
                   RATELIMIT_STORAGE_URI=url, RATELIMIT_KEY_PREFIX=prefix)
    first, second = make_app(**options).test_client(), make_app(**options).test_client()
    for c in (first, second, first):
        assert c.post("/login/", data={"username": "mgr_p1", "password": "wrong"}).status_code != 429
    assert second.post("/login/", data={"username": "mgr_p1", "password": "wrong"}).status_code == 429
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"*{prefix}*"):
        client.delete(key)


def test_form_and_api_login_limits_are_independent_of_other_routes(make_app, world):
    """The limit is on the login routes only: browsing after a login is not throttled."""
    limited = make_app(RATELIMIT_ENABLED=True, AUTH_RATE_LIMITED=True, AUTH_RATE_LIMIT="3 per minute",
                       RATELIMIT_STORAGE_URI="memory://")
    c = limited.test_client()
    assert c.post("/login/", data={"username": "mgr_p1", "password": PASSWORD}).status_code == 302
    assert all(c.get("/clients/list/").status_code == 200 for _ in range(6))


# ----------------------------------------------------------------------------- R12 enumeration

@pytest.fixture()
def hash_spy(monkeypatch):
    import flask_appbuilder.security.manager as fab_manager
    calls = []
    real = fab_manager.check_password_hash

    def spy(pwhash, password):
        calls.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(fab_manager, "check_password_hash", spy)
    return calls


def _method_of(pwhash):
    return pwhash.split("$", 1)[0]


@pytest.mark.parametrize("username", ["no_such_user", "inactive"])
def test_unknown_user_and_wrong_password_look_the_same_on_the_form(app, world, hash_spy, username):
    results = {}
    for who in (username, "mgr_p1"):
        hash_spy.clear()
        c = app.test_client()
        r = c.post("/login/?next=/clients/list/", data={"username": who, "password": "Wrong-passw0rd"})
        with c.session_transaction() as s:
            flashes = list(s.get("_flashes", []))
            logged_in = "_user_id" in s
        results[who] = (r.status_code, r.headers.get("Location"), flashes, logged_in, len(hash_spy),
                        [_method_of(h) for h in hash_spy])
    unknown, wrong = results[username], results["mgr_p1"]
    assert unknown[:4] == wrong[:4]
    assert unknown[3] is False
    assert unknown[4] == 1 and wrong[4] == 1  # exactly one hash check on both paths
    # ... with the same hash method, so both cost the same time.
    assert unknown[5] == wrong[5] == [_method_of(_stored_hash(app, "mgr_p1"))]


@pytest.mark.parametrize("username", ["no_such_user", "inactive"])
def test_unknown_user_and_wrong_password_look_the_same_on_the_api(app, world, hash_spy, username):
    results = {}
    for who in (username, "mgr_p1"):
        hash_spy.clear()
        r = app.test_client().post("/api/v1/security/login",
                                   json={"username": who, "password": "Wrong-passw0rd", "provider": "db"})
        results[who] = (r.status_code, r.get_json(), len(hash_spy), [_method_of(h) for h in hash_spy])
    assert results[username][:2] == results["mgr_p1"][:2]
    assert results[username][0] == 401
    assert results[username][2] == results["mgr_p1"][2] == 1
    assert results[username][3] == results["mgr_p1"][3]


def _stored_hash(app, username):
    with app.app_context():
        return app.appbuilder.sm.find_user(username=username).password


def test_fake_hash_matches_the_configured_hash_method(app):
    method = app.config["FAB_PASSWORD_HASH_METHOD"]
    fake = app.config["AUTH_DB_FAKE_PASSWORD_HASH_CHECK"]
    assert isinstance(fake, str) and _method_of(fake) == method
    assert _method_of(_stored_hash(app, "mgr_p1")) == method


# ----------------------------------------------------------------------------- R13 redirects

NEXT_VALUES = ["//evil.com", "https://evil.com", "\\\\evil.com", "/\\evil.com", "javascript:alert(1)",
               "%0d%0aLocation:%20http://evil.com", "http://evil.com@localhost.evil.com/", "///evil.com",
               "https:evil.com", "\t//evil.com"]


def _assert_same_site(location):
    parts = urllib.parse.urlsplit(location)
    assert parts.scheme in ("", "http", "https"), location
    assert parts.netloc in ("", "localhost"), location
    assert not location.startswith(("//", "\\", "/\\", "\t", " ")), location
    assert "evil.com" not in parts.netloc
    assert "\r" not in location and "\n" not in location


@pytest.mark.parametrize("next_value", NEXT_VALUES)
def test_login_next_never_leaves_the_site(app, world, next_value):
    c = app.test_client()
    r = c.post("/login/?next=" + urllib.parse.quote(next_value, safe="%:/"),
               data={"username": "mgr_p1", "password": PASSWORD})
    assert r.status_code == 302
    _assert_same_site(r.headers["Location"])
    # Already logged in, GET /login/?next=... redirects through the same guard.
    r = c.get("/login/?next=" + urllib.parse.quote(next_value, safe="%:/"))
    assert r.status_code == 302
    _assert_same_site(r.headers["Location"])


def test_login_next_keeps_a_local_target(app, world):
    r = app.test_client().post("/login/?next=/clients/list/", data={"username": "mgr_p1", "password": PASSWORD})
    assert r.headers["Location"] == "/clients/list/"


def test_spoofed_host_header_cannot_steer_the_redirect(make_app, world):
    hosted = make_app(FAB_SAFE_REDIRECT_HOSTS=["crm.example.com"], TRUSTED_HOSTS=["crm.example.com"])
    c = hosted.test_client()
    r = c.post("/login/?next=http://evil.com/x", data={"username": "mgr_p1", "password": PASSWORD},
               headers={"Host": "evil.com"})
    assert r.status_code == 400  # TRUSTED_HOSTS refuses the foreign Host outright
    r = c.post("/login/?next=http://evil.com/x", data={"username": "mgr_p1", "password": PASSWORD},
               headers={"Host": "crm.example.com"})
    assert r.status_code == 302
    assert "evil.com" not in r.headers["Location"]


def test_config_ties_trusted_hosts_to_the_redirect_allowlist():
    import config
    assert config.Config.TRUSTED_HOSTS == (config.Config.FAB_SAFE_REDIRECT_HOSTS or None)


# ----------------------------------------------------------------------------- R14 cookies

def _session_cookie_header(response, name="session"):
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert headers, response.headers.getlist("Set-Cookie")
    return headers[-1]


def test_session_cookie_flags_after_login(app, world):
    r = app.test_client().post("/login/", data={"username": "mgr_p1", "password": PASSWORD})
    assert r.status_code == 302
    cookie = _session_cookie_header(r)
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert "httponly" in attrs
    assert attrs.get("samesite", "").lower() == "samesite=lax"
    assert "domain" not in attrs
    assert not any(h.startswith("remember_token=") for h in r.headers.getlist("Set-Cookie"))


def test_session_cookie_is_secure_when_configured(make_app, world):
    secure = make_app(SESSION_COOKIE_SECURE=True)
    r = secure.test_client().post("/login/", data={"username": "mgr_p1", "password": PASSWORD},
                                  base_url="https://localhost")
    assert r.status_code == 302
    cookie = _session_cookie_header(r)
    flags = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags


# ----------------------------------------------------------------------------- R15 session lifetime

def test_replayed_session_cookie_after_logout_is_refused(app, world):
    c = login(app.test_client(), "mgr_p1")
    stolen = c.get_cookie("session").value
    assert c.get("/clients/list/").status_code == 200
    c.get("/logout/")
    assert c.get("/clients/list/").status_code == 302  # the browser that logged out is out
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    r = replay.get("/clients/list/")
    assert r.status_code == 302 and urllib.parse.urlsplit(r.headers["Location"]).path == "/login/"


def test_logout_ends_the_session_in_the_browser(app, world):
    c = login(app.test_client(), "mgr_p1")
    assert c.get("/clients/list/").status_code == 200
    c.get("/logout/")
    r = c.get("/clients/list/")
    assert r.status_code == 302 and urllib.parse.urlsplit(r.headers["Location"]).path == "/login/"


def _age_session(client, minutes):
    with client.session_transaction() as s:
        assert "_seen" in s and "_user_id" in s
        s["_seen"] = s["_seen"] - minutes * 60


def test_idle_session_expires_after_the_idle_limit(app, world):
    limit = app.config["SESSION_IDLE_MINUTES"]
    assert 0 < limit <= 30
    c = login(app.test_client(), "mgr_p1")
    assert c.get("/clients/list/").status_code == 200
    _age_session(c, limit - 1)
    assert c.get("/clients/list/").status_code == 200  # still inside the window (and the clock restarts)
    _age_session(c, limit + 1)
    aged = c.get_cookie("session").value
    r = c.get("/clients/list/")
    assert r.status_code == 302 and urllib.parse.urlsplit(r.headers["Location"]).path == "/login/"
    with c.session_transaction() as s:
        assert "_user_id" not in s
    # Replaying the aged cookie from another client is refused too (the clock is in the signed cookie).
    replay = app.test_client()
    replay.set_cookie("session", aged)
    assert replay.get("/clients/list/").status_code == 302


def test_absolute_session_lifetime_is_at_most_8_hours(app, world):
    lifetime = app.config["PERMANENT_SESSION_LIFETIME"]
    assert lifetime <= dt.timedelta(hours=8)
    r = app.test_client().post("/login/", data={"username": "mgr_p1", "password": PASSWORD})
    cookie = _session_cookie_header(r)
    match = re.search(r"Expires=([^;]+)", cookie)
    assert match, cookie  # the login response already sets a bounded cookie
    from email.utils import parsedate_to_datetime
    expires = parsedate_to_datetime(match.group(1))
    assert expires - dt.datetime.now(dt.UTC) <= lifetime + dt.timedelta(minutes=1)


def test_an_active_session_still_ends_at_the_absolute_lifetime(app, world):
    """Each request re-signs the cookie; activity must not stretch a session past the lifetime."""
    lifetime = int(app.config["PERMANENT_SESSION_LIFETIME"].total_seconds())
    c = login(app.test_client(), "mgr_p1")
    with c.session_transaction() as s:
        s["_started"] = s["_started"] - lifetime + 120  # logged in 2 minutes short of the limit
    assert c.get("/clients/list/").status_code == 200
    with c.session_transaction() as s:
        s["_started"] = s["_started"] - 180  # now past it, though the user was never idle
    r = c.get("/clients/list/")
    assert r.status_code == 302 and urllib.parse.urlsplit(r.headers["Location"]).path == "/login/"


def test_a_cookie_captured_before_login_does_not_become_logged_in(app, world):
    """No session fixation: the pre-login cookie an attacker planted or copied stays anonymous."""
    c = app.test_client()
    with c.session_transaction() as s:
        s["planted"] = "by-attacker"
    before_login = c.get_cookie("session").value
    login(c, "mgr_p1")
    assert c.get_cookie("session").value != before_login
    attacker = app.test_client()
    attacker.set_cookie("session", before_login)
    assert attacker.get("/clients/list/").status_code == 302
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"] <= dt.timedelta(minutes=15)


# ----------------------------------------------------------------------------- R16 CSRF

@pytest.fixture()
def csrf_app(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


def test_csrf_is_registered_and_get_mutations_are_off(app):
    assert "csrf" in app.extensions
    assert app.config["FAB_ALLOW_GET_UNSAFE_MUTATIONS"] is False
    from app.clients.api import ClientApi
    assert ClientApi.allow_browser_login is False


def test_mvc_posts_without_a_csrf_token_are_400(csrf_app, world, make_client):
    cid = make_client()
    before, n = _client_row(csrf_app, cid), _client_count(csrf_app)
    c = _login_with_csrf(csrf_app.test_client(), "admin")
    data = client_data(world)
    assert c.post("/clients/add", data=data).status_code == 400
    assert c.post("/clients/action_post", data={"action": "x", "rowid": [str(cid)]}).status_code == 400
    assert c.post(f"/clients/{cid}/state", data={"state": "suspended"}).status_code == 400
    assert c.post(f"/clients/edit/{cid}", data={**data, "first_name": "Changed"}).status_code == 400
    assert c.post(f"/clients/{cid}/state", data={"state": "suspended", "csrf_token": "forged"}).status_code == 400
    assert _client_row(csrf_app, cid) == before and _client_count(csrf_app) == n
    # Control: with the page's token the same POST passes CSRF and reaches the view (404: no such action).
    token = csrf_from(c.get("/clients/add").get_data(as_text=True))
    assert token
    r = c.post("/clients/action_post", data={"action": "x", "rowid": [str(cid)], "csrf_token": token})
    assert r.status_code == 404


def test_get_mutations_are_refused(csrf_app, world, make_client):
    cid = make_client()
    c = _login_with_csrf(csrf_app.test_client(), "admin")
    assert c.get(f"/clients/action/x/{cid}").status_code == 405
    assert c.get(f"/clients/delete/{cid}").status_code in (403, 404, 405)


def test_api_with_bearer_needs_no_csrf_token_and_cookie_alone_is_refused(csrf_app, world):
    c = csrf_app.test_client()
    headers = api_token(c, "admin")  # the JWT login itself needs no CSRF token
    r = c.post("/api/v1/client/", json=client_data(world), headers=headers)
    assert r.status_code in (201, 422), r.data
    assert r.status_code == 201
    # A browser session alone (the CSRF-able credential) does not authenticate the API.
    browser = _login_with_csrf(csrf_app.test_client(), "admin")
    assert browser.post("/api/v1/client/", json=client_data(world)).status_code == 401
    assert browser.get("/api/v1/client/").status_code == 401


# ----------------------------------------------------------------------------- R17 caching

def test_sensitive_pages_are_no_store(app, world, web, make_client):
    cid = make_client()
    anon = app.test_client()
    c = web("admin")
    responses = {"/login/": anon.get("/login/"), "show": c.get(f"/clients/show/{cid}"),
                 "edit": c.get(f"/clients/edit/{cid}"), "list": c.get("/clients/list/"),
                 "api": anon.get(f"/api/v1/client/{cid}", headers=api_token(anon, "admin"))}
    for name, r in responses.items():
        assert r.status_code == 200, name
        assert "no-store" in r.headers.get("Cache-Control", ""), name


# ----------------------------------------------------------------------------- R19 headers

def _assert_security_headers(r, where):
    csp = r.headers.get("Content-Security-Policy", "")
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("object-src") == "object-src 'none'", where
    assert directives.get("base-uri") == "base-uri 'none'", where
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", where
    assert "default-src" in directives, where
    assert r.headers.get("X-Content-Type-Options") == "nosniff", where
    assert r.headers.get("X-Frame-Options") == "DENY", where
    assert r.headers.get("Referrer-Policy") in ("no-referrer", "strict-origin-when-cross-origin", "same-origin"), where


def test_security_headers_on_pages_api_errors_and_static(app, world, web, make_client):
    cid = make_client()
    anon = app.test_client()
    c = web("admin")
    pages = {"/login/": anon.get("/login/"), "/clients/list/": c.get("/clients/list/"),
             "show": c.get(f"/clients/show/{cid}"), "edit": c.get(f"/clients/edit/{cid}"),
             "404": c.get("/no/such/page"), "redirect": anon.get("/clients/list/"),
             "static": anon.get("/static/clientdesk.css"),
             "api": anon.get("/api/v1/client/", headers=api_token(anon, "admin")),
             "api 401": anon.get("/api/v1/client/")}
    for where, r in pages.items():
        _assert_security_headers(r, where)
        assert "Strict-Transport-Security" not in r.headers, where  # plain http: no HSTS


def test_hsts_when_served_over_https(app, world, monkeypatch):
    monkeypatch.setitem(app.config, "PREFERRED_URL_SCHEME", "https")
    r = app.test_client().get("/login/")
    hsts = r.headers.get("Strict-Transport-Security", "")
    match = re.search(r"max-age=(\d+)", hsts)
    assert match and int(match.group(1)) >= 31536000
    assert "includeSubDomains" in hsts


# ----------------------------------------------------------------------------- R20 generic errors

def test_api_duplicate_email_is_422_without_database_text(app, world, make_client):
    cid = make_client(email="taken@example.org")
    other = make_client(email="other@example.org")
    c = app.test_client()
    headers = api_token(c, "admin")
    r = c.post("/api/v1/client/", json=client_data(world, email="taken@example.org"), headers=headers)
    assert r.status_code == 422, r.data
    assert _no_leak(r.data) == []
    r = c.put(f"/api/v1/client/{other}", json={"email": "taken@example.org"}, headers=headers)
    assert r.status_code == 422, r.data
    assert _no_leak(r.data) == []
    assert _client_row(app, other)["email"] == "other@example.org"
    assert _client_row(app, cid)["email"] == "taken@example.org"


def test_api_duplicate_from_another_project_reveals_nothing_about_the_holder(app, world, make_client):
    make_client(email="hidden@example.org", first_name="Secreta", project_id=world.p1)
    c = app.test_client()
    r = c.post("/api/v1/client/", json=client_data(world, email="hidden@example.org", project_id=world.p2),
               headers=api_token(c, "agent_p2"))
    assert r.status_code in (403, 422), r.data
    body = r.get_data(as_text=True)
    assert "Secreta" not in body and _no_leak(body) == []


def test_integrity_error_from_the_database_is_a_generic_answer(app, world, make_client, monkeypatch):
    """Skip the service's own duplicate check so the UNIQUE constraint itself fires (a race in real life)."""
    from app.clients import services
    make_client(email="race@example.org")
    monkeypatch.setattr(services, "find_email_holder", lambda *a, **k: None)
    n = _client_count(app)
    c = app.test_client()
    r = c.post("/api/v1/client/", json=client_data(world, email="race@example.org"), headers=api_token(c, "admin"))
    assert r.status_code in (409, 422), r.data
    body = r.get_data(as_text=True)
    assert _no_leak(body) == [] and "race@example.org" not in body
    assert _client_count(app) == n


def test_unhandled_exception_gives_a_generic_500(make_app, world):
    quiet = make_app(TESTING=False, PROPAGATE_EXCEPTIONS=False)
    secret = 'psycopg.errors.UniqueViolation: DETAIL: Key (email)=(x@example.org) already exists'

    def boom():
        raise RuntimeError(secret)

    quiet.add_url_rule("/boom-for-test", "boom_for_test", boom)
    quiet.add_url_rule("/api/v1/boom-for-test", "api_boom_for_test", boom)
    c = quiet.test_client()
    r = c.get("/boom-for-test")
    assert r.status_code == 500
    assert _no_leak(r.data) == [] and b"x@example.org" not in r.data
    assert b"Something went wrong" in r.data
    r = c.get("/api/v1/boom-for-test")
    assert r.status_code == 500 and r.is_json
    assert set(r.get_json()) == {"message"} and _no_leak(r.data) == []
    _assert_security_headers(r, "500")


def test_api_never_shows_stack_traces(app):
    assert not app.config.get("FAB_API_SHOW_STACKTRACE")
