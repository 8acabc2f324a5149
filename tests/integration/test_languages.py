"""Languages: the navbar switch sticks per user across sessions and devices (CL-SET-2)."""

from app.extensions import db
from app.organisation.models import StaffPreference


def test_language_choice_follows_the_user_to_a_new_session(app, world, web):
    first = web("mgr_p1")
    assert first.get("/lang/ru").status_code == 302
    with app.app_context():
        assert db.session.get(StaffPreference, world.users["mgr_p1"]).locale == "ru"
    second = web("mgr_p1")  # another browser: a fresh cookie jar
    with second.session_transaction() as session:
        assert session.get("locale") == "ru"
    other = web("agent_p2")
    with other.session_transaction() as session:
        assert session.get("locale") in (None, "en")


def test_unknown_language_is_not_stored(app, world, web):
    c = web("mgr_p1")
    c.get("/lang/xx")
    with app.app_context():
        assert db.session.get(StaffPreference, world.users["mgr_p1"]) is None


def test_time_zone_preference_changes_shown_times(app, world, web, make_client):
    from app.clients.models import Client
    cid = make_client()
    with app.app_context():
        client = db.session.get(Client, cid)
        client.created_at = __import__("datetime").datetime(2026, 1, 15, 23, 30)
        db.session.commit()
    c = web("mgr_p1")
    assert "11:30" in c.get(f"/clients/show/{cid}").get_data(as_text=True)  # UTC by default
    r = c.post("/preferences/", data={"timezone": "Asia/Tokyo", "locale": "en"})
    assert r.status_code == 302
    page = c.get(f"/clients/show/{cid}").get_data(as_text=True)
    assert "Jan 16, 2026" in page and "8:30" in page  # 23:30 UTC is 08:30 the next day in Tokyo
    bad = c.post("/preferences/", data={"timezone": "Mars/Olympus"})
    assert "Choose a time zone from the list." in bad.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(StaffPreference, world.users["mgr_p1"]).timezone == "Asia/Tokyo"
