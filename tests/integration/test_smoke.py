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
