"""The speed memos (app/core/speed.py, app/security.py) never serve an older answer: a permission
taken away, a language switched or a logout shows on the very next request."""

import pytest

from app.extensions import db
from tests.conftest import PASSWORD, login


# A role made in the UI (stored in the database); the shipped roles are fixed in config.
GRANTS = [("can_list", "Clients"), ("can_show", "Clients"), ("menu_access", "Clients"),
          ("menu_access", "CRM"), ("menu_access", "ImportClients"), ("can_import", "Clients")]


@pytest.fixture()
def custom_user(app, world):
    from app.organisation.models import Project
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.find_role("Desk lead") or sm.add_role("Desk lead")
        for perm, view in GRANTS:
            pv = sm.find_permission_view_menu(perm, view)
            assert pv is not None, (perm, view)
            sm.add_permission_role(role, pv)
        user = sm.find_user(username="desk_lead") or sm.add_user(
            "desk_lead", "Desk", "Lead", "desk.lead@example.org", role, PASSWORD)
        user.projects = [db.session.get(Project, world.p1)]
        db.session.commit()
        db.session.remove()
    return "desk_lead"


def _set(app, grant, permission, view):
    with app.app_context():
        sm = app.appbuilder.sm
        role, pv = sm.find_role("Desk lead"), sm.find_permission_view_menu(permission, view)
        (sm.add_permission_role if grant else sm.del_permission_role)(role, pv)
        db.session.remove()


def test_menu_follows_a_permission_change_on_the_next_request(app, custom_user, web):
    c = web(custom_user)
    assert 'href="/clients/import/"' in c.get("/clients/list/").get_data(as_text=True)
    _set(app, False, "menu_access", "ImportClients")
    try:
        html = c.get("/clients/list/").get_data(as_text=True)
        assert 'href="/clients/import/"' not in html
        assert 'href="/clients/list/"' in html  # the rest of the menu is still there
    finally:
        _set(app, True, "menu_access", "ImportClients")
    assert 'href="/clients/import/"' in c.get("/clients/list/").get_data(as_text=True)


def test_menu_is_per_user(app, world, web):
    admin_html = web("admin").get("/clients/list/").get_data(as_text=True)
    viewer_html = web("viewer_p1").get("/clients/list/").get_data(as_text=True)
    assert 'href="/roles/list/"' in admin_html
    assert 'href="/roles/list/"' not in viewer_html


def test_menu_and_page_follow_a_language_switch(app, world, web):
    c = web("mgr_p1")
    assert "Logout" in c.get("/clients/list/").get_data(as_text=True)
    c.get("/lang/es")
    html = c.get("/clients/list/").get_data(as_text=True)
    assert "Logout" not in html and "Salir" in html
    assert "Buscar" in html  # the page's own strings too
    # the filter panel's labels, presets and operators (kept per language)
    assert ">Apellidos</label>" in html and "Rango personalizado" in html and ">Last name</label>" not in html
    c.get("/lang/en")
    html = c.get("/clients/list/").get_data(as_text=True)
    assert "Logout" in html and ">Last name</label>" in html and "Custom range" in html


def test_route_access_follows_a_permission_change_within_one_app_context(app, custom_user):
    """A test (or a job) that holds one application context over several requests shares g:
    the per-request memos are cleared when each request starts."""
    c = app.test_client()
    with app.app_context():
        login(c, custom_user, PASSWORD)
        assert c.get("/clients/list/").status_code == 200
        _set(app, False, "can_list", "Clients")
        try:
            assert c.get("/clients/list/").status_code in (302, 403)
        finally:
            _set(app, True, "can_list", "Clients")
        assert c.get("/clients/list/").status_code == 200


def test_logout_still_ends_a_copied_session(app, world):
    """The session epoch now comes with the user in one statement; a copied cookie still stops working."""
    c = app.test_client()
    login(c, "mgr_p1")
    cookie = c.get_cookie("session").value
    c.get("/logout/")
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    assert thief.get("/clients/list/").status_code == 302


def _version(app, table="security_version", row=1):
    """A counter's value: the security version, or settings_version row 1 (settings) or 2 (favourites)."""
    from sqlalchemy import text
    with app.app_context():
        value = db.session.execute(text(f"SELECT value FROM {table} WHERE id = :row"), {"row": row}).scalar()
        db.session.remove()
    return value


def _each_bumps(app, changes, table="security_version", row=1):
    for statement in changes:
        before = _version(app, table, row)
        _sql(app, statement)
        assert _version(app, table, row) > before, statement


def _sql(app, statement, **params):
    from sqlalchemy import text
    with app.app_context():
        result = db.session.execute(text(statement), params)
        db.session.commit()
        db.session.remove()
    return result


def test_every_permission_table_bumps_the_security_version(app, custom_user):
    """The per-process pairs cache is keyed by this counter: every kind of change must move it."""
    from app.core.security_version import PERMISSION_TABLES
    assert set(PERMISSION_TABLES) == {"ab_permission_view_role", "ab_permission_view", "ab_permission",
                                      "ab_view_menu"}
    changes = [
        "INSERT INTO ab_permission (name) VALUES ('cd_probe')",
        "UPDATE ab_permission SET name = 'cd_probe2' WHERE name = 'cd_probe'",
        "INSERT INTO ab_view_menu (name) VALUES ('CdProbe')",
        "INSERT INTO ab_permission_view (permission_id, view_menu_id) SELECT p.id, v.id FROM ab_permission p, "
        "ab_view_menu v WHERE p.name = 'cd_probe2' AND v.name = 'CdProbe'",
        "INSERT INTO ab_permission_view_role (permission_view_id, role_id) SELECT pv.id, r.id FROM "
        "ab_permission_view pv JOIN ab_view_menu v ON v.id = pv.view_menu_id, ab_role r "
        "WHERE v.name = 'CdProbe' AND r.name = 'Desk lead'",
        "DELETE FROM ab_permission_view_role WHERE permission_view_id IN (SELECT pv.id FROM ab_permission_view pv "
        "JOIN ab_view_menu v ON v.id = pv.view_menu_id WHERE v.name = 'CdProbe')",
        "DELETE FROM ab_permission_view WHERE view_menu_id IN (SELECT id FROM ab_view_menu WHERE name = 'CdProbe')",
        "DELETE FROM ab_view_menu WHERE name = 'CdProbe'",
        "DELETE FROM ab_permission WHERE name = 'cd_probe2'",
    ]
    _each_bumps(app, changes)


def test_every_user_table_bumps_the_security_version(app, custom_user):
    """Signed-in users are kept per process under the same counter: users, roles, groups and their
    links must move it too."""
    from app.core.security_version import USER_TABLES
    assert set(USER_TABLES) == {"ab_user", "ab_user_role", "ab_user_group", "ab_group_role", "ab_role", "ab_group"}
    changes = [
        "UPDATE ab_user SET first_name = 'Desk2' WHERE username = 'desk_lead'",
        "INSERT INTO ab_role (name) VALUES ('Probe role')",
        "UPDATE ab_role SET name = 'Probe role 2' WHERE name = 'Probe role'",
        "INSERT INTO ab_group (name, label) VALUES ('probe', 'Probe')",
        "UPDATE ab_group SET label = 'Probe 2' WHERE name = 'probe'",
        "INSERT INTO ab_group_role (group_id, role_id) SELECT g.id, r.id FROM ab_group g, ab_role r "
        "WHERE g.name = 'probe' AND r.name = 'Probe role 2'",
        "INSERT INTO ab_user_group (user_id, group_id) SELECT u.id, g.id FROM ab_user u, ab_group g "
        "WHERE u.username = 'desk_lead' AND g.name = 'probe'",
        "INSERT INTO ab_user_role (user_id, role_id) SELECT u.id, r.id FROM ab_user u, ab_role r "
        "WHERE u.username = 'desk_lead' AND r.name = 'Probe role 2'",
        "DELETE FROM ab_user_role WHERE role_id IN (SELECT id FROM ab_role WHERE name = 'Probe role 2')",
        "DELETE FROM ab_user_group WHERE group_id IN (SELECT id FROM ab_group WHERE name = 'probe')",
        "DELETE FROM ab_group_role WHERE group_id IN (SELECT id FROM ab_group WHERE name = 'probe')",
        "DELETE FROM ab_group WHERE name = 'probe'",
        "DELETE FROM ab_role WHERE name = 'Probe role 2'",
    ]
    _each_bumps(app, changes)


def test_a_user_changed_in_plain_sql_is_seen_on_the_next_request(app, custom_user):
    """The kept user (roles, active flag, name) never outlives a change, whoever makes it."""
    c = app.test_client()
    login(c, custom_user)
    assert c.get("/clients/list/").status_code == 200  # the user is kept now
    _sql(app, "UPDATE ab_user SET first_name = 'Renamed' WHERE username = :u", u=custom_user)
    assert "Renamed" in c.get("/clients/list/").get_data(as_text=True)  # the navbar names the user
    # a role taken away in SQL: the route closes on the next request
    _sql(app, "DELETE FROM ab_user_role WHERE user_id = (SELECT id FROM ab_user WHERE username = :u)",
         u=custom_user)
    assert c.get("/clients/list/").status_code in (302, 403)
    _sql(app, "INSERT INTO ab_user_role (user_id, role_id) SELECT u.id, r.id FROM ab_user u, ab_role r "
              "WHERE u.username = :u AND r.name = 'Desk lead'", u=custom_user)
    assert c.get("/clients/list/").status_code == 200
    # deactivated in SQL: signed out on the next request
    _sql(app, "UPDATE ab_user SET active = false WHERE username = :u", u=custom_user)
    assert c.get("/clients/list/").status_code == 302
    _sql(app, "UPDATE ab_user SET active = true WHERE username = :u", u=custom_user)


def test_a_kept_user_works_as_a_fresh_one_within_one_app_context(app, custom_user):
    """Each request gets its own object in its own session (merged from the kept copy): lazy
    relations (projects, roles' permissions) still load, and a user change shows at once."""
    from app.organisation.services import scope_for
    c = app.test_client()
    login(c, custom_user)
    with app.app_context():  # one app context (and session) across requests, as some tests hold
        for _ in range(3):
            assert c.get("/clients/list/").status_code == 200
    with app.test_request_context():
        u = app.appbuilder.sm.load_user(app.appbuilder.sm.find_user(username=custom_user).id)
        assert db.session.object_session(u) is db.session() and [p.key for p in u.projects] == ["P1"]
        assert [r.name for r in u.roles] == ["Desk lead"] and len(u.roles[0].permissions) == len(GRANTS)
        assert scope_for(u).project_ids == {custom_project_id(app)}
        db.session.remove()


def custom_project_id(app):
    from app.organisation.models import Project
    with app.app_context():
        pid = db.session.query(Project.id).filter_by(key="P1").scalar()
        db.session.remove()
    return pid


def test_a_grant_changed_in_plain_sql_applies_on_the_next_request(app, custom_user):
    c = app.test_client()
    login(c, custom_user)
    assert c.get("/clients/list/").status_code == 200
    assert c.get("/clients/list/").status_code == 200  # served from the process's pairs cache now
    grant = ("SELECT pv.id FROM ab_permission_view pv JOIN ab_permission p ON p.id = pv.permission_id "
             "JOIN ab_view_menu v ON v.id = pv.view_menu_id WHERE p.name = 'can_list' AND v.name = 'Clients'")
    role = "SELECT id FROM ab_role WHERE name = 'Desk lead'"
    _sql(app, f"DELETE FROM ab_permission_view_role WHERE permission_view_id = ({grant}) AND role_id = ({role})")
    try:
        assert c.get("/clients/list/").status_code in (302, 403)
    finally:
        _sql(app, f"INSERT INTO ab_permission_view_role (permission_view_id, role_id) SELECT ({grant}), ({role})")
    assert c.get("/clients/list/").status_code == 200


# --- the settings version (app/core/settings_version.py): custom fields and statuses ---------------

def test_every_settings_table_bumps_the_settings_version(app, world):
    """The per-process list settings are keyed by this counter: every kind of change must move it."""
    from app.core.settings_version import SETTINGS_TABLES
    assert set(SETTINGS_TABLES) == {"custom_field", "client_status", "project", "client_list_view",
                                    "client_column_layout"}
    admin_id = world.users["admin"]
    changes = [
        "INSERT INTO custom_field (key, label, label_translations, field_type, options, required, \"order\", active) "
        "VALUES ('probe', 'Probe', '{}', 'text', '[]', false, 1, true)",
        "UPDATE custom_field SET label = 'Probe 2' WHERE key = 'probe'",
        "DELETE FROM custom_field WHERE key = 'probe'",
        "INSERT INTO client_status (label, label_translations, colour, \"order\", is_default, active) "
        "VALUES ('Probe', '{}', '#000000', 99, false, true)",
        "UPDATE client_status SET label = 'Probe 2' WHERE label = 'Probe'",
        "DELETE FROM client_status WHERE label = 'Probe 2'",
        "INSERT INTO project (name, key, active, created_at) VALUES ('Probe', 'PRB', true, '2026-01-01')",
        "UPDATE project SET name = 'Probe 2' WHERE key = 'PRB'",
        "DELETE FROM project WHERE key = 'PRB'",
        f"INSERT INTO client_list_view (user_id, name, filters, columns, is_default, created_at) "
        f"VALUES ({admin_id}, 'Probe', '{{}}', '[]', false, '2026-01-01')",
        "UPDATE client_list_view SET name = 'Probe 2' WHERE name = 'Probe'",
        "DELETE FROM client_list_view WHERE name = 'Probe 2'",
        f"INSERT INTO client_column_layout (user_id, columns, updated_at) VALUES ({admin_id}, '[]', '2026-01-01')",
        "UPDATE client_column_layout SET columns = '[\"email\"]'",
        "DELETE FROM client_column_layout",
    ]
    _each_bumps(app, changes, "settings_version")


def test_a_custom_field_changed_in_plain_sql_shows_in_the_list_on_the_next_request(app, world, web):
    admin = web("admin")
    assert b"Loyalty tier" not in admin.get("/clients/list/").data  # the columns are cached now
    _sql(app, "INSERT INTO custom_field (key, label, label_translations, field_type, options, required, "
              "\"order\", active) VALUES ('tier', 'Loyalty tier', '{}', 'text', '[]', false, 1, true)")
    assert b"Loyalty tier" in admin.get("/clients/list/").data
    assert admin.get("/clients/list/?cf_tier=gold").status_code == 200  # its filter is known as well
    _sql(app, "UPDATE custom_field SET active = false WHERE key = 'tier'")
    assert b"Loyalty tier" not in admin.get("/clients/list/").data


def test_a_status_renamed_in_plain_sql_shows_in_its_chip_on_the_next_request(app, world, web):
    admin = web("admin")
    url = f"/clients/list/?status={world.status_vip}"
    assert b"VIP" in admin.get(url).data
    _sql(app, "UPDATE client_status SET label = 'Gold member' WHERE id = :id", id=world.status_vip)
    page = admin.get(url).data
    assert b"Gold member" in page and b">VIP<" not in page
    # per language: the Spanish page builds its own entry, from the new row
    _sql(app, "UPDATE client_status SET label_translations = '{\"es\": \"Socio oro\"}' WHERE id = :id",
         id=world.status_vip)
    admin.get("/lang/es")
    assert b"Socio oro" in admin.get(url).data


def test_views_columns_and_projects_changed_in_plain_sql_show_on_the_next_request(app, world, web):
    admin = web("admin")
    page = admin.get(f"/clients/list/?project={world.p1}").get_data(as_text=True)  # all three cached now
    assert "Project One" in page and "Gold clients" not in page and 'value="phone" checked' in page
    _sql(app, "INSERT INTO client_list_view (user_id, name, filters, columns, is_default, created_at) "
              "VALUES (:u, 'Gold clients', '{}', '[]', false, '2026-01-01')", u=world.users["admin"])
    _sql(app, "INSERT INTO client_column_layout (user_id, columns, updated_at) "
              "VALUES (:u, '[\"email\", \"id\", \"uid\"]', '2026-01-01')", u=world.users["admin"])
    _sql(app, "UPDATE project SET name = 'Project Uno' WHERE id = :p", p=world.p1)
    page = admin.get(f"/clients/list/?project={world.p1}").get_data(as_text=True)
    assert "Gold clients" in page  # the views menu
    assert "Project Uno" in page and "Project One" not in page  # the project chip
    assert 'value="uid" checked' in page and 'value="phone" checked' not in page  # the column layout
    # another user's cached settings are their own
    other = web("mgr_p1").get("/clients/list/").get_data(as_text=True)
    assert "Gold clients" not in other and 'value="phone" checked' in other


def test_a_favourite_added_in_plain_sql_shows_in_the_panel_on_the_next_request(app, world, web, make_client):
    """A user without favourites costs no favourites query; the favourites version ends that at once."""
    client_id = make_client(project_id=world.p1, email="fav.probe@example.org")
    admin = web("admin")
    assert "fav.probe@example.org" not in admin.get("/clients/list/?q=nomatch").get_data(as_text=True)
    before = _version(app, "settings_version", 2)
    _sql(app, "INSERT INTO client_favourite (user_id, client_id, created_at) VALUES (:u, :c, '2026-01-01')",
         u=world.users["admin"], c=client_id)
    assert _version(app, "settings_version", 2) > before
    page = admin.get("/clients/list/?q=nomatch").get_data(as_text=True)
    assert 'id="cd-fav-count">1<' in page and "fav.probe@example.org" in page  # the panel, not a row
    _sql(app, "DELETE FROM client_favourite")
    assert 'id="cd-fav-count">0<' in admin.get("/clients/list/?q=nomatch").get_data(as_text=True)


def test_the_kept_bulk_forms_carry_each_requests_csrf_token_permissions_and_language(app, world, web):
    """The bulk forms are rendered once per (permissions, language); the token is the request's own."""
    import re
    first, second, viewer = web("admin"), web("mgr_p1"), web("viewer_p1")  # signed in before CSRF is on
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        def forms(c):
            html = c.get("/clients/list/").get_data(as_text=True)
            meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)
            start = html.index('id="cd-bulk-reassign"') if 'id="cd-bulk-reassign"' in html else html.index(
                'id="cd-bulk-state"')
            tokens = set(re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                                    r'name="csrf_token" value="([^"]+)"', html[start:start + 20000]))
            return html, meta, {t for pair in tokens for t in pair if t}

        html, meta, tokens = forms(first)
        assert 'id="cd-bulk-reassign"' in html and tokens == {meta}
        # another session: its own token
        html2, meta2, tokens2 = forms(second)
        assert tokens2 == {meta2} and meta2 != meta and "cd-csrf-token-placeholder" not in html2
        # other permissions: other forms
        assert 'id="cd-bulk-reassign"' not in viewer.get("/clients/list/").get_data(as_text=True)
        first.get("/lang/es")
        html_es, _, _ = forms(first)
        assert "Reasignar" in html_es and "Edición masiva" in html_es
        first.get("/lang/en")
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
