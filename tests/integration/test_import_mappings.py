"""Saved import mappings (CL-IO-1): save from the mapping screen, apply to a file whose headers come in
another order and case, unique names per user, and mappings private to their owner (404 otherwise)."""

import io
import re

from sqlalchemy import func, select

from tests.conftest import user

# Headers no automatic match knows, so only a saved mapping can map them.
FIRST = b"Mail Addr,Vorname,Telefon Nr,Notiz\nsaved1@example.org,Ann,+4915123000101,x\n"
SECOND = b"TELEFON-NR;notiz;Extra;  mail addr ;VORNAME\n+4915123000102;y;z;saved2@example.org;Bea\n"
SCREEN = {"map_0": "email", "map_1": "firstName", "map_2": "phone", "map_3": ""}


def _upload(c, data, name="c.csv"):
    r = c.post("/clients/import/upload", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")
    assert r.status_code == 302 and "/clients/import/job/" in r.location, r.data[:300]
    return int(r.location.rstrip("/").split("/")[-1])


def _save(c, job_id, name, form=SCREEN):
    return c.post(f"/clients/import/job/{job_id}/mapping/save", data={**form, "mapping_name": name},
                  follow_redirects=True)


def _screen_choices(html):
    """{column: the option selected in its mapping select ("" = ignore)} as the page renders it."""
    out = {}
    for index, body in re.findall(r'<select name="map_(\d+)".*?>(.*?)</select>', html, re.S):
        chosen = re.findall(r'<option value="([^"]*)" selected>', body)
        out[index] = chosen[0] if chosen else ""
    return out


def _mapping_ids(app, username):
    from app.extensions import db
    from app.imports import services
    with app.app_context():
        out = {m.name: m.id for m in services.list_mappings(user(app, username))}
        db.session.remove()
    return out


def _job_mapping(app, job_id):
    from app.extensions import db
    from app.imports.models import ImportJob
    with app.app_context():
        mapping = dict(db.session.get(ImportJob, job_id).mapping)
        db.session.remove()
    return mapping


def _mapping_count(app):
    from app.extensions import db
    from app.imports.models import ImportMapping
    with app.app_context():
        n = db.session.scalar(select(func.count()).select_from(ImportMapping))
        db.session.remove()
    return n


def test_save_then_apply_to_a_file_with_reordered_differently_cased_headers(app, world, web):
    c = web("mgr_p1")
    first = _upload(c, FIRST)
    assert _job_mapping(app, first) == {"0": "", "1": "", "2": "", "3": ""}  # nothing matched automatically
    html = _save(c, first, "  Partner   feed ").get_data(as_text=True)
    assert "Mapping “Partner feed” saved." in html
    assert _job_mapping(app, first) == {"0": "email", "1": "firstName", "2": "phone"}  # the screen's choices
    ids = _mapping_ids(app, "mgr_p1")
    assert list(ids) == ["Partner feed"]

    second = _upload(c, SECOND)
    page = c.get(f"/clients/import/job/{second}").get_data(as_text=True)
    assert "Apply a saved mapping" in page and f'<option value="{ids["Partner feed"]}">Partner feed</option>' in page
    r = c.post(f"/clients/import/job/{second}/mapping/apply", data={"mapping_id": ids["Partner feed"]},
               follow_redirects=True)
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "3 of 5 columns matched" in html
    assert _job_mapping(app, second) == {"0": "phone", "1": "", "2": "", "3": "email", "4": "firstName"}
    assert _screen_choices(html) == {"0": "phone", "1": "", "2": "", "3": "email", "4": "firstName"}

    c.post(f"/clients/import/job/{second}/configure",
           data={"map_0": "phone", "map_3": "email", "map_4": "firstName", "action": "start"})
    s = c.get(f"/clients/import/job/{second}/status.json").get_json()
    assert (s["status"], s["created"], s["failed"]) == ("done", 1, 0)


def test_the_forms_carry_csrf_tokens_and_names_are_escaped(app, world, web):
    c = web("mgr_p1")
    job_id = _upload(c, FIRST)
    page = c.get(f"/clients/import/job/{job_id}").get_data(as_text=True)
    assert "Save this mapping as…" in page and "/mapping/save" in page
    assert "Apply a saved mapping" not in page  # nothing saved yet
    _save(c, job_id, "<b>feed</b>")
    page = c.get(f"/clients/import/job/{job_id}").get_data(as_text=True)
    form = re.search(r'<form[^>]*mapping/apply.*?</form>', page, re.S).group(0)
    assert 'name="csrf_token"' in form and "/clients/import/mappings/delete" in form
    assert "&lt;b&gt;feed&lt;/b&gt;" in page and "<b>feed</b>" not in page
    index = c.get("/clients/import/").get_data(as_text=True)
    assert "Saved mappings" in index and "&lt;b&gt;feed&lt;/b&gt;" in index


def test_names_are_required_short_and_unique_per_user(app, world, web):
    c = web("mgr_p1")
    job_id = _upload(c, FIRST)
    assert "Enter a name for the mapping." in _save(c, job_id, "   ").get_data(as_text=True)
    assert "The name can be at most 100 characters." in _save(c, job_id, "x" * 101).get_data(as_text=True)
    assert _mapping_count(app) == 0
    assert "saved." in _save(c, job_id, "x" * 100).get_data(as_text=True)
    assert "saved." in _save(c, job_id, "Partner feed").get_data(as_text=True)
    html = _save(c, job_id, "PARTNER FEED").get_data(as_text=True)
    assert "You already have a saved mapping with this name." in html
    assert _mapping_count(app) == 2
    # Another user may use the same name: names are unique per user only.
    admin = web("admin")
    other = _upload(admin, FIRST)
    assert "saved." in _save(admin, other, "Partner feed").get_data(as_text=True)
    assert _mapping_count(app) == 3


def test_an_invalid_screen_mapping_is_not_saved(app, world, web):
    c = web("mgr_p1")
    job_id = _upload(c, FIRST)
    html = _save(c, job_id, "No e-mail", form={"map_1": "firstName"}).get_data(as_text=True)
    assert "Map a column to E-mail" in html and _mapping_count(app) == 0


def test_another_users_mapping_is_404_for_apply_and_delete(app, world, web):
    owner = web("mgr_p1")
    _save(owner, _upload(owner, FIRST), "Mine")
    mapping_id = _mapping_ids(app, "mgr_p1")["Mine"]
    admin = web("admin")  # sees every import job, but never another user's saved mappings
    job_id = _upload(admin, SECOND)
    page = admin.get(f"/clients/import/job/{job_id}").get_data(as_text=True)
    assert "Mine" not in page and "Apply a saved mapping" not in page
    assert "Mine" not in admin.get("/clients/import/").get_data(as_text=True)
    before = _job_mapping(app, job_id)
    for bad in (mapping_id, "abc", "", 2 ** 40):
        assert admin.post(f"/clients/import/job/{job_id}/mapping/apply",
                          data={"mapping_id": bad}).status_code == 404, bad
        assert admin.post("/clients/import/mappings/delete", data={"mapping_id": bad}).status_code == 404, bad
    assert _job_mapping(app, job_id) == before and _mapping_count(app) == 1
    # The owner's mapping applied to a job the owner cannot see: the job answers 404 first.
    assert owner.post(f"/clients/import/job/{job_id}/mapping/apply",
                      data={"mapping_id": mapping_id}).status_code == 404
    assert owner.post(f"/clients/import/job/{job_id}/mapping/save",
                      data={**SCREEN, "mapping_name": "Theirs"}).status_code == 404
    # The owner deletes it.
    r = owner.post("/clients/import/mappings/delete", data={"mapping_id": mapping_id}, follow_redirects=True)
    assert r.status_code == 200 and "Saved mapping deleted." in r.get_data(as_text=True)
    assert _mapping_count(app) == 0


def _rename(c, mapping_id, name):
    return c.post("/clients/import/mappings/rename", data={"mapping_id": mapping_id, "mapping_name": name},
                  follow_redirects=True)


def test_rename_keeps_the_rules_of_a_name_and_the_mapping_itself(app, world, web):
    c = web("mgr_p1")
    job_id = _upload(c, FIRST)
    _save(c, job_id, "Partner feed")
    _save(c, job_id, "Old layout")
    ids = _mapping_ids(app, "mgr_p1")
    html = _rename(c, ids["Partner feed"], "  Partner   feed 2024 ").get_data(as_text=True)
    assert "Mapping renamed to “Partner feed 2024”." in html
    assert 'value="Partner feed 2024"' in html  # the index lists it under the new name
    renamed = _mapping_ids(app, "mgr_p1")
    assert renamed["Partner feed 2024"] == ids["Partner feed"] and "Partner feed" not in renamed
    # a case change of its own name is allowed; another mapping's name, empty or too long is not
    assert "Mapping renamed" in _rename(c, ids["Old layout"], "OLD LAYOUT").get_data(as_text=True)
    html = _rename(c, ids["Old layout"], "partner FEED 2024").get_data(as_text=True)
    assert "You already have a saved mapping with this name." in html
    assert "Enter a name for the mapping." in _rename(c, ids["Old layout"], " ").get_data(as_text=True)
    assert "at most 100 characters" in _rename(c, ids["Old layout"], "y" * 101).get_data(as_text=True)
    assert set(_mapping_ids(app, "mgr_p1")) == {"Partner feed 2024", "OLD LAYOUT"}
    # the renamed mapping still maps a file with the saved headers
    job2 = _upload(c, SECOND)
    html = c.post(f"/clients/import/job/{job2}/mapping/apply", data={"mapping_id": ids["Partner feed"]},
                  follow_redirects=True).get_data(as_text=True)
    assert "3 of 5 columns matched" in html


def test_another_users_mapping_cannot_be_renamed(app, world, web):
    owner = web("mgr_p1")
    _save(owner, _upload(owner, FIRST), "Mine")
    mapping_id = _mapping_ids(app, "mgr_p1")["Mine"]
    admin = web("admin")
    for bad in (mapping_id, "abc", "", 2 ** 40):
        assert admin.post("/clients/import/mappings/rename",
                          data={"mapping_id": bad, "mapping_name": "Taken over"}).status_code == 404, bad
    viewer = web("viewer_p1")  # no can_import
    assert viewer.post("/clients/import/mappings/rename",
                       data={"mapping_id": mapping_id, "mapping_name": "V"}).status_code in (302, 403, 404)
    assert web().post("/clients/import/mappings/rename",
                      data={"mapping_id": mapping_id, "mapping_name": "A"}).status_code in (302, 401, 403)
    assert _mapping_ids(app, "mgr_p1") == {"Mine": mapping_id}


def test_without_can_import_the_mapping_routes_are_closed(app, world, web):
    owner = web("mgr_p1")
    job_id = _upload(owner, FIRST)
    _save(owner, job_id, "Mine")
    mapping_id = _mapping_ids(app, "mgr_p1")["Mine"]
    before = _job_mapping(app, job_id)
    viewer = web("viewer_p1")
    assert viewer.post(f"/clients/import/job/{job_id}/mapping/save",
                       data={**SCREEN, "mapping_name": "V"}).status_code in (302, 403, 404)
    assert viewer.post(f"/clients/import/job/{job_id}/mapping/apply",
                       data={"mapping_id": mapping_id}).status_code in (302, 403, 404)
    assert viewer.post("/clients/import/mappings/delete",
                       data={"mapping_id": mapping_id}).status_code in (302, 403, 404)
    anonymous = web()
    assert anonymous.post("/clients/import/mappings/delete",
                          data={"mapping_id": mapping_id}).status_code in (302, 401, 403)
    assert _mapping_count(app) == 1 and _job_mapping(app, job_id) == before


def test_services_normalise_headers_and_leave_unmatched_columns_unmapped(app, world, ctx):
    import pytest

    from app.core.errors import NotFound, ValidationFailed
    from app.imports import services

    mgr, admin = user(app, "mgr_p1"), user(app, "admin")
    job = services.store_upload(io.BytesIO(b"E-Mail,Full Name,Full  name,Code\na@example.org,A,B,1\n"), "a.csv", mgr)
    services.configure(job, mgr, mapping={"0": "email", "1": "firstName", "2": "lastName", "3": "meta.code"})
    saved = services.save_mapping(mgr, job, "Feed")
    # "Full Name" and "Full  name" normalise alike: the first column's field is kept.
    assert saved.columns == {"email": "email", "fullname": "firstName", "code": "meta.code"}
    saved_id = saved.id
    assert [m.name for m in services.list_mappings(mgr)] == ["Feed"] and services.list_mappings(admin) == []

    other = services.store_upload(io.BytesIO(b"code;Phone;EMAIL;FULL_NAME\n1;2;b@example.org;C\n"), "b.csv", mgr)
    matched = services.apply_mapping(mgr, other, saved_id)
    assert matched == ["code", "EMAIL", "FULL_NAME"]
    assert other.mapping == {"0": "meta.code", "1": "", "2": "email", "3": "firstName"}

    with pytest.raises(ValidationFailed) as err:
        services.save_mapping(mgr, other, "feed")
    assert [str(m) for m in err.value.field_errors["name"]] == ["You already have a saved mapping with this name."]
    with pytest.raises(NotFound):
        services.apply_mapping(admin, other, saved_id)
    with pytest.raises(NotFound):
        services.delete_mapping(admin, saved_id)

    empty = services.store_upload(io.BytesIO(b"x,y\n1,2\n"), "c.csv", mgr)
    with pytest.raises(ValidationFailed) as err:
        services.save_mapping(mgr, empty, "Nothing")
    assert "mapping" in err.value.field_errors

    other_id = services.start(other, mgr).id
    mgr = user(app, "mgr_p1")   # an inline run ends the session: reload what the test still uses
    with pytest.raises(ValidationFailed):
        services.apply_mapping(mgr, services.get_job(mgr, other_id), saved_id)
    services.delete_mapping(mgr, saved_id)
    assert services.list_mappings(mgr) == []
