"""Import screens and REST API: upload → mapping → start → status → report; permissions and cross-scope 404s."""

import io

from tests.conftest import api_token

CSV = b"email,firstName,lastName,phone\nr@example.org,Ann,Lee,+4915123000001\nbad,=HYPERLINK(1),x,y\n"


def _upload(c, data=CSV, name="c.csv"):
    return c.post("/clients/import/upload", data={"file": (io.BytesIO(data), name)},
                  content_type="multipart/form-data")


def test_upload_preview_start_status_report(app, world, web):
    c = web("mgr_p1")
    r = _upload(c)
    assert r.status_code == 302 and "/clients/import/job/" in r.location
    page = c.get(r.location)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "r@example.org" in html and 'value="email" selected' in html
    job_id = int(r.location.rstrip("/").split("/")[-1])
    form = {"map_0": "email", "map_1": "firstName", "map_2": "lastName", "map_3": "phone", "action": "start"}
    assert c.post(f"/clients/import/job/{job_id}/configure", data=form).status_code == 302
    s = c.get(f"/clients/import/job/{job_id}/status.json").get_json()
    assert (s["status"], s["created"], s["failed"], s["percent"]) == ("done", 1, 1, 100)
    assert "cd-import-status" in c.get(f"/clients/import/job/{job_id}").get_data(as_text=True)
    rep = c.get(f"/clients/import/job/{job_id}/report.csv")
    text = rep.get_data(as_text=True)
    assert rep.status_code == 200 and "attachment" in rep.headers["Content-Disposition"]
    assert "3,error," in text and "'=HYPERLINK(1)" in text and ",=HYPERLINK" not in text


def test_dry_run_from_the_screen(app, world, web):
    c = web("mgr_p1")
    r = _upload(c)
    job_id = int(r.location.rstrip("/").split("/")[-1])
    c.post(f"/clients/import/job/{job_id}/configure", data={"map_0": "email", "map_1": "firstName",
                                                            "map_2": "lastName", "map_3": "phone",
                                                            "dry_run": "1", "action": "start"})
    s = c.get(f"/clients/import/job/{job_id}/status.json").get_json()
    assert s["dry_run"] and s["created"] == 1
    assert c.get("/clients/export/?q=r@example.org").get_data(as_text=True).count("r@example.org") == 0


def test_mapping_without_email_is_refused(app, world, web):
    c = web("mgr_p1")
    r = _upload(c)
    job_id = int(r.location.rstrip("/").split("/")[-1])
    r = c.post(f"/clients/import/job/{job_id}/configure", data={"map_1": "firstName", "action": "start"},
               follow_redirects=True)
    assert "Map a column to E-mail" in r.get_data(as_text=True)
    assert c.get(f"/clients/import/job/{job_id}/status.json").get_json()["status"] == "uploaded"


def test_without_can_import_the_screens_are_closed(app, world, web):
    c = web("viewer_p1")
    assert c.get("/clients/import/").status_code in (302, 403, 404)
    assert _upload(c).status_code in (302, 403, 404)
    assert c.get("/clients/export/").status_code in (302, 403, 404)


def test_another_users_job_is_404_everywhere(app, world, web):
    owner = web("mgr_p1")
    job_id = int(_upload(owner).location.rstrip("/").split("/")[-1])
    other = web("admin")  # admins see every job
    assert other.get(f"/clients/import/job/{job_id}").status_code == 200
    from app.extensions import db
    with app.app_context():
        sm = app.appbuilder.sm
        u = sm.find_user(username="agent_p2")
        u.roles = [sm.find_role("Manager")]
        db.session.commit()
        db.session.remove()
    stranger = web("agent_p2")
    for url in (f"/clients/import/job/{job_id}", f"/clients/import/job/{job_id}/status.json",
                f"/clients/import/job/{job_id}/report.csv"):
        assert stranger.get(url).status_code == 404, url
    for url in (f"/clients/import/job/{job_id}/configure", f"/clients/import/job/{job_id}/cancel"):
        assert stranger.post(url, data={"map_0": "email", "action": "start"}).status_code == 404, url
    h = api_token(stranger, "agent_p2")
    assert stranger.get(f"/api/v1/clientimport/{job_id}", headers=h).status_code == 404


def test_rest_import_and_status(app, world, web):
    c = web()
    h = api_token(c, "mgr_p1")
    r = c.post("/api/v1/clientimport/", data={"file": (io.BytesIO(CSV), "c.csv")}, headers=h,
               content_type="multipart/form-data")
    assert r.status_code == 201, r.data
    job_id = r.get_json()["id"]
    s = c.get(f"/api/v1/clientimport/{job_id}", headers=h).get_json()["result"]
    assert (s["created"], s["failed"]) == (1, 1)
    r = c.post("/api/v1/clientimport/", data={"file": (io.BytesIO(b""), "c.csv")}, headers=h,
               content_type="multipart/form-data")
    assert r.status_code == 422
    hv = api_token(c, "viewer_p1")
    r = c.post("/api/v1/clientimport/", data={"file": (io.BytesIO(CSV), "c.csv")}, headers=hv,
               content_type="multipart/form-data")
    assert r.status_code in (401, 403)
    assert c.get(f"/api/v1/clientimport/{job_id}").status_code == 401
