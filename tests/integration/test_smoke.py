"""First contact: the app starts on a migrated database and the main screens render."""

from tests.conftest import api_token


def test_main_screens_render_for_admin(web, make_client):
    cid = make_client()
    c = web("admin")
    for url in ["/clients/list/", f"/clients/show/{cid}", f"/clients/show/{cid}?tab=logs", "/clients/add",
                f"/clients/edit/{cid}", "/projectmodelview/list/", "/deskmodelview/list/",
                "/clientstatusmodelview/list/", "/customfieldmodelview/list/", "/auditlogmodelview/list/"]:
        r = c.get(url)
        assert r.status_code == 200, url


def test_api_lists_clients(app, web, make_client):
    make_client()
    c = web()
    r = c.get("/api/v1/client/", headers=api_token(c, "admin"))
    assert r.status_code == 200
    assert r.get_json()["count"] == 1


def test_embedded_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    """Two web workers and a job worker share the embedded database: readers must not block on a
    write, and a writer waits for the lock instead of failing."""
    from sqlalchemy import create_engine, text

    from app.setup import _tune_sqlite
    engine = create_engine(f"sqlite:///{tmp_path / 'cd.db'}")
    _tune_sqlite(engine)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10000
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    engine.dispose()
