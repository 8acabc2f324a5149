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
