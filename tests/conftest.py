"""Shared fixtures: one app per test session on a migrated database (SQLite by default,
PostgreSQL when TEST_DATABASE_URL is set), staff users per security.md's fixture list, and a
fresh organisation (projects P1/P2, desks D1a/D1b/D2a) for every test."""

import contextlib
import os
import re
import types

import pytest
from sqlalchemy import text

PASSWORD = "Passw0rd!x"

# username, role, project keys, desk names, active
STAFF = [
    ("admin", "Admin", [], [], True),
    ("mgr_p1", "Manager", ["P1"], [], True),
    ("agent_d1a", "Agent", ["P1"], ["D1a"], True),
    ("agent_p2", "Agent", ["P2"], [], True),
    ("viewer_p1", "Viewer", ["P1"], [], True),
    ("compliance_p1", "Compliance", ["P1"], [], True),
    ("inactive", "Agent", ["P1"], [], False),
    ("nobody", "Agent", [], [], True),
]

DOMAIN_TABLES = ["import_row_error", "import_job", "export_job", "import_mapping",
                 "client_favourite", "client_list_view", "client_column_layout", "client_bulk_job",
                 "client_action", "client_tag", "two_factor_method", "client", "tag", "desk_user", "project_user",
                 "desk", "project",
                 "client_status", "funnel_stage", "fee_group", "contact_origin", "custom_field", "audit_log",
                 "staff_preference"]


_FRESH_FILES = set()  # file databases this session has started afresh


def _database_url(suffix=""):
    """SQLite in memory, or a PostgreSQL database of its own per xdist worker (created if missing;
    `suffix` names another one, e.g. for a subprocess's database)."""
    url = os.environ.get("TEST_DATABASE_URL", "sqlite://")
    worker = os.environ.get("PYTEST_XDIST_WORKER") or "main"
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        # a file database (where writer threads get connections of their own): one per worker,
        # started afresh by each session (suffixed ones belong to a subprocess, which starts them)
        stem, ext = os.path.splitext(url[len("sqlite:///"):])
        path = f"{stem}_{worker}{suffix}{ext or '.db'}"
        if not suffix and path not in _FRESH_FILES:
            _FRESH_FILES.add(path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            for leftover in (path, path + "-wal", path + "-shm"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        return "sqlite:///" + path
    if url.startswith("postgresql"):
        import hashlib

        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        base = make_url(url)
        # One database per checkout and worker: concurrent runs from two clones never wipe each other.
        checkout = hashlib.sha1(os.path.dirname(os.path.abspath(__file__)).encode()).hexdigest()[:8]
        name = f"{base.database}_{checkout}_{worker}{suffix}"
        engine = create_engine(base, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        url = base.set(database=name).render_as_string(hide_password=False)
    return url


@pytest.fixture(scope="session")
def app():
    from flask_migrate import upgrade

    from app import create_app
    from app.cli import sync_security

    url = _database_url()
    app = create_app("config.TestConfig", SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        from app.extensions import db
        if url.startswith("postgresql"):
            _reset_postgres(db.engine)
        upgrade(revision="heads")
        sync_security()
        sm = app.appbuilder.sm
        for username, role, _, _, active in STAFF:
            user = sm.find_user(username=username)
            if user is None:
                user = sm.add_user(username, username.title(), "Tester", f"{username}@staff.test",
                                   sm.find_role(role), PASSWORD)
            user.active = active
        db.session.commit()
        db.session.remove()
    yield app


def _reset_postgres(engine):
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))


def _truncate_domain(db):
    from sqlalchemy import inspect
    existing = set(inspect(db.engine).get_table_names())
    tables = [t for t in DOMAIN_TABLES if t in existing]  # tables of features not migrated yet are skipped
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("SET session_replication_role = replica"))
            conn.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
            conn.execute(text("SET session_replication_role = DEFAULT"))
    else:
        with db.engine.begin() as conn:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE uid_counter SET value = 0 WHERE name = 'client'"))
        # The truncate above ran with triggers off (replica role): move the settings counters by hand,
        # so no process keeps settings cached from the previous test's rows.
        if "settings_version" in existing:
            conn.execute(text("UPDATE settings_version SET value = value + 1"))


@pytest.fixture()
def world(app):
    """A fresh organisation: P1 (desks D1a, D1b), P2 (desk D2a), staff assigned, default statuses."""
    from app.clients.models import ClientStatus, ContactOrigin, FeeGroup
    from app.extensions import db
    from app.organisation.models import Desk, Project

    with app.app_context():
        _truncate_domain(db)
        p1 = Project(name="Project One", key="P1", active=True)
        p2 = Project(name="Project Two", key="P2", active=True)
        db.session.add_all([p1, p2])
        db.session.flush()
        desks = {"D1a": Desk(project=p1, name="D1a", label="Desk 1a"),
                 "D1b": Desk(project=p1, name="D1b", label="Desk 1b"),
                 "D2a": Desk(project=p2, name="D2a", label="Desk 2a")}
        db.session.add_all(desks.values())
        new = ClientStatus(label="New", colour="#123456", order=10, is_default=True,
                           label_translations={"es": "Nuevo", "ru": "Новый"})
        vip = ClientStatus(label="VIP", colour="#654321", order=5)
        db.session.add_all([new, vip, ContactOrigin(label="Website", builtin=True), FeeGroup(label="Standard")])
        sm = app.appbuilder.sm
        projects = {"P1": p1, "P2": p2}
        users = {}
        for username, role, pkeys, dnames, active in STAFF:
            user = sm.find_user(username=username)
            user.roles, user.active = [sm.find_role(role)], active  # a test may have changed them
            user.projects = [projects[k] for k in pkeys]
            user.desks = [desks[d] for d in dnames]
            users[username] = user.id
        db.session.commit()
        w = types.SimpleNamespace(
            p1=p1.id, p2=p2.id, d1a=desks["D1a"].id, d1b=desks["D1b"].id, d2a=desks["D2a"].id,
            status_new=new.id, status_vip=vip.id, users=users)
        db.session.remove()
    return w


@pytest.fixture()
def ctx(app):
    """An app context for service-level tests (closed after the test, never shared with requests)."""
    from app.extensions import db
    with app.app_context():
        yield
        db.session.rollback()
        db.session.remove()


def user(app, username):
    return app.appbuilder.sm.find_user(username=username)


_PHONES = iter(f"+4915123{n:06d}" for n in range(1, 10**6))


def client_data(world, **overrides):
    n = next(_PHONES)
    data = {"client_type": "personal", "email": f"c{n[-6:]}@example.org", "first_name": "Anna",
            "last_name": "Tester", "phone": n, "project_id": world.p1}
    data.update(overrides)
    return data


@pytest.fixture()
def make_client(app, world):
    """Create a client through the service as admin (or `as_user`); returns its id."""
    from app.clients import services
    from app.extensions import db

    def make(as_user="admin", **overrides):
        with app.app_context():
            actor = user(app, as_user)
            c = services.create_client(client_data(world, **overrides), actor)
            cid = c.id
            db.session.remove()
            return cid
    return make


def login(client, username, password=PASSWORD):
    response = client.post("/login/", data={"username": username, "password": password})
    assert response.status_code == 302, response.data[:500]
    return client


@pytest.fixture()
def web(app):
    """A test client factory: web('agent_p2') returns a client logged in as that user."""
    def make(username=None):
        c = app.test_client()
        if username:
            login(c, username)
        return c
    return make


def api_token(client, username, password=PASSWORD):
    r = client.post("/api/v1/security/login", json={"username": username, "password": password, "provider": "db"})
    assert r.status_code == 200, r.data
    return {"Authorization": f"Bearer {r.get_json()['access_token']}"}


def csrf_from(html):
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    return match.group(1) if match else None


@contextlib.contextmanager
def sql_statements(app):
    """Record every SQL statement the app's engine sends while the block runs (a list of strings)."""
    from sqlalchemy import event

    from app.extensions import db
    with app.app_context():
        engine = db.engine
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
