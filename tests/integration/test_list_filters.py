"""Clients table fast filters (CL-LIST-4): every filter, literal text, date presets in the user's
time zone, chips and their removal, the async Total, the no-COUNT page and the REST list."""

import datetime as dt
import re
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app.clients import filters as flt
from app.clients.models import Client, ContactOrigin, Tag
from app.extensions import db
from app.organisation.models import StaffPreference
from tests.conftest import api_token, sql_statements


def row_ids(html):
    return {int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)}


def listed(c, **params):
    r = c.get("/clients/list/", query_string=params)
    assert r.status_code == 200, r.data[:300]
    return row_ids(r.get_data(as_text=True))


def set_fields(app, cid, **values):
    with app.app_context():
        client = db.session.get(Client, cid)
        for k, v in values.items():
            setattr(client, k, v)
        db.session.commit()
        db.session.remove()


def set_timezone(app, username, tz):
    with app.app_context():
        user = app.appbuilder.sm.find_user(username=username)
        pref = db.session.get(StaffPreference, user.id) or StaffPreference(user_id=user.id, session_epoch=0)
        pref.timezone = tz
        db.session.add(pref)
        db.session.commit()
        db.session.remove()


def test_text_filters_are_literal_and_case_insensitive(app, world, web, make_client):
    ids = {name: make_client(first_name=name) for name in ["50% Discount", "500 Club", "a_b", "axb", "Anna?",
                                                             "Annabel", "(x+y)*"]}
    c = web("admin")
    assert listed(c, first_name="50%") == {ids["50% Discount"]}
    assert listed(c, first_name="a_b") == {ids["a_b"]}
    assert listed(c, first_name="ANNA?") == {ids["Anna?"]}
    assert listed(c, first_name="anna", first_name_op="sw") == {ids["Anna?"], ids["Annabel"]}
    assert listed(c, first_name="_b", first_name_op="ew") == {ids["a_b"]}
    assert listed(c, first_name="*", first_name_op="ew") == {ids["(x+y)*"]}
    assert listed(c, first_name="(x+", first_name_op="sw") == {ids["(x+y)*"]}
    assert listed(c, first_name="%", first_name_op="sw") == set()


@pytest.mark.parametrize("key,field,value,probe", [
    ("last_name", "last_name", "O'Hara_1", "hara_"),
    ("email", "email", "mix.50%@gmail.com", "50%@GMAIL"),
    ("phone", "phone", "+4915123999999", "999999"),
    ("comments", "description", "Wants a call [urgent]", "[URGENT]"),
    ("external_id", "external_id", "EXT-7_7", "t-7_"),
])
def test_each_text_filter(app, world, web, make_client, key, field, value, probe):
    data = {field: value}
    target = make_client(**data)
    make_client()
    c = web("admin")
    assert listed(c, **{key: probe}) == {target}


def test_choice_and_boolean_filters(app, world, web, make_client):
    from app.clients import services
    a = make_client(desk_id=world.d1a, manager_id=world.users["mgr_p1"], status_id=world.status_vip, country="DE",
                    verification_level="video", verification_status="approved", rating=2, tags=["vip", "hot"])
    b = make_client(project_id=world.p2, desk_id=world.d2a, country="US")
    cbiz = make_client(client_type="business", company_name="Acme", country="DE")
    with app.app_context():
        origin = db.session.scalars(select(ContactOrigin)).first().id
        services_tag = db.session.scalars(select(Tag).where(Tag.name == "hot")).one().id
        db.session.remove()
    set_fields(app, b, contact_origin_id=origin, actions_exist=True, state="suspended")
    c = web("admin")
    assert listed(c, project=world.p2) == {b}
    assert listed(c, desk=world.d1a) == {a}
    assert listed(c, manager=world.users["mgr_p1"]) == {a}
    assert listed(c, status=world.status_vip) == {a}
    assert listed(c, state="suspended") == {b}
    assert listed(c, country="DE") == {a, cbiz}
    assert listed(c, verification_level="video") == {a}
    assert listed(c, verification_status="approved") == {a}
    assert listed(c, processed="yes") == {a}
    assert a not in listed(c, processed="no")
    assert listed(c, rating="2") == {a}
    assert listed(c, tags=str(services_tag)) == {a}
    assert listed(c, contact_origin=origin) == {b}
    assert listed(c, has_actions="yes") == {b}
    assert listed(c, type="business") == {cbiz}
    assert listed(c, type="personal", country="DE") == {a}
    assert listed(c, project="not-a-number") == set()
    assert services  # imported for the side effect of the factory


def test_custom_field_filter_and_no_pii_filters(app, world, web, make_client):
    from app.clients.models import CustomField
    with app.app_context():
        db.session.add(CustomField(key="shoe", label="Shoe size", field_type="text", options=[], order=1))
        db.session.commit()
        db.session.remove()
    a = make_client()
    set_fields(app, a, custom_fields={"shoe": "42_eu"})
    make_client()
    c = web("admin")
    assert listed(c, cf_shoe="2_E") == {a}
    assert listed(c, cf_shoe="2%") == set()
    # passport number and date of birth are no filters (R5): the parameters are ignored
    assert "passport_number" not in flt.filter_params() and "date_of_birth" not in flt.filter_params()


def test_date_presets_use_day_boundaries_of_the_users_time_zone(app, world, web, make_client):
    tz = ZoneInfo("Pacific/Kiritimati")  # UTC+14: the local day differs from the UTC day most of the time
    set_timezone(app, "admin", "Pacific/Kiritimati")
    now = dt.datetime.now(dt.UTC)
    local_midnight = dt.datetime.combine(now.astimezone(tz).date(), dt.time.min, tzinfo=tz)
    start_utc = local_midnight.astimezone(dt.UTC).replace(tzinfo=None)
    today = make_client(first_name="Today")
    yesterday = make_client(first_name="Yesterday")
    set_fields(app, today, created_at=start_utc + dt.timedelta(seconds=1))
    set_fields(app, yesterday, created_at=start_utc - dt.timedelta(seconds=1))
    c = web("admin")
    assert listed(c, created_preset="today") == {today}
    assert listed(c, created_preset="yesterday") == {yesterday}
    assert listed(c, created_preset="last_7_days") == {today, yesterday}
    local_today = now.astimezone(tz).date()
    assert listed(c, created_from=local_today.isoformat(), created_to=local_today.isoformat()) == {today}
    assert listed(c, created_to=(local_today - dt.timedelta(days=1)).isoformat()) == {yesterday}
    # the same instants seen by a UTC user split at UTC midnight instead
    set_timezone(app, "admin", "UTC")
    utc_today = listed(c, created_preset="today")
    expected = {cid for cid, at in ((today, start_utc + dt.timedelta(seconds=1)),
                                    (yesterday, start_utc - dt.timedelta(seconds=1))) if at.date() == now.date()}
    assert utc_today == expected


def test_preset_ranges_are_inclusive_days():
    tz = ZoneInfo("America/New_York")
    now = dt.datetime(2024, 3, 13, 3, 30, tzinfo=dt.UTC)  # 2024-03-12 23:30 in New York (EDT, UTC-4)
    start, end = flt.date_range_bounds("today", tz, now=now)
    assert (start, end) == (dt.datetime(2024, 3, 12, 4, 0), dt.datetime(2024, 3, 13, 4, 0))
    start, end = flt.date_range_bounds("yesterday", tz, now=now)
    assert (start, end) == (dt.datetime(2024, 3, 11, 4, 0), dt.datetime(2024, 3, 12, 4, 0))
    today = dt.date(2024, 3, 12)  # a Tuesday
    assert flt.preset_days("this_week", today) == (dt.date(2024, 3, 11), dt.date(2024, 3, 17))
    assert flt.preset_days("last_week", today) == (dt.date(2024, 3, 4), dt.date(2024, 3, 10))
    assert flt.preset_days("this_month", today) == (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    assert flt.preset_days("last_month", today) == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert flt.preset_days("this_year", today) == (dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert flt.preset_days("last_30_days", today) == (dt.date(2024, 2, 12), today)
    assert flt.date_range_bounds("garbage..", tz) is None


def test_other_date_filters(app, world, web, make_client):
    a, b = make_client(), make_client()
    day = dt.datetime(2030, 5, 5, 12, 0)
    set_fields(app, a, last_login_at=day, last_action_at=day, future_action_at=day)
    c = web("admin")
    for key in ("last_login", "last_action", "future_action"):
        assert listed(c, **{f"{key}_from": "2030-05-05", f"{key}_to": "2030-05-05"}) == {a}, key
        assert listed(c, **{f"{key}_from": "2030-05-06"}) == set(), key
    assert b


def chips(html):
    return {m.group(1): m.group(2).replace("&amp;", "&")
            for m in re.finditer(r'data-chip="([^"]+)">.*?href="([^"]+)" class="cd-chip-remove"', html, re.S)}


def test_chips_remove_one_filter_and_keep_the_rest(app, world, web, make_client):
    target = make_client(email="keep.me@gmail.com")
    make_client(email="other@gmail.com", project_id=world.p2)
    make_client(email="third@yahoo.com")
    c = web("admin")
    html = c.get("/clients/list/", query_string={"project": world.p1, "email": "gmail", "q": "e",
                                                 "_oc_ClientModelView": "email", "_od_ClientModelView": "asc"}
                 ).get_data(as_text=True)
    assert row_ids(html) == {target}
    found = chips(html)
    assert set(found) == {"Project", "E-mail contains"}
    assert "Project | Project One" in html and "E-mail contains | gmail" in html
    query = parse_qs(urlsplit(found["Project"]).query)
    assert "project" not in query and query["email"] == ["gmail"] and query["q"] == ["e"]
    assert query["_oc_ClientModelView"] == ["email"]
    after = c.get(found["Project"]).get_data(as_text=True)
    assert len(row_ids(after)) == 2 and set(chips(after)) == {"E-mail contains"}


def test_many_filters_fold_into_other_filters(app, world, web, make_client):
    make_client()
    c = web("admin")
    html = c.get("/clients/list/", query_string={"project": world.p1, "country": "DE", "state": "active",
                                                 "email": "x", "phone": "1", "processed": "no"}
                 ).get_data(as_text=True)
    assert "Other filters (2)" in html
    assert len(chips(html)) == 6


def test_total_is_exact_and_scoped_and_the_page_runs_no_count(app, world, web, make_client, monkeypatch):
    from app.clients.views import ClientModelView
    for _ in range(30):
        make_client()
    make_client(client_type="business", company_name="Biz")
    make_client(project_id=world.p2)
    c = web("mgr_p1")
    with sql_statements(app) as statements:
        html = c.get("/clients/list/").get_data(as_text=True)
    assert len(row_ids(html)) == 25 and 'id="cd-next"' in html
    assert not any("count(" in s.lower() and "client" in s.lower() for s in statements)
    def client_selects():
        return [s for s in statements if re.search(r"FROM client(\s|$)", s) and "client_favourite" not in s]
    # a shallow page is one query whatever the page size: the rows with their desk joined; no per-row lookups
    assert len(client_selects()) == 1
    assert "LIMIT" in client_selects()[0] and "JOIN desk" in client_selects()[0]
    # a deep page finds its ids first (index only, no join), then those rows
    monkeypatch.setattr(ClientModelView, "SHALLOW_OFFSET", 0)
    with sql_statements(app) as statements:
        html = c.get("/clients/list/?page_ClientModelView=1").get_data(as_text=True)
    assert len(row_ids(html)) == 6 and 'id="cd-prev"' in html and 'id="cd-next"' not in html
    assert len(client_selects()) == 2
    assert "LIMIT" in client_selects()[0] and "JOIN" not in client_selects()[0]
    assert "LIMIT" not in client_selects()[1] and "JOIN desk" in client_selects()[1]
    assert c.get("/clients/list/total").get_json() == {"total": 31, "counts": {"personal": 30, "business": 1,
                                                                                "all": 31}}
    assert c.get("/clients/list/total?type=business").get_json()["total"] == 1
    assert web("agent_p2").get("/clients/list/total").get_json()["total"] == 1
    assert web("agent_p2").get(f"/clients/list/total?project={world.p1}").get_json()["total"] == 0


def test_pagination_keeps_sort_search_filters_and_page_size(app, world, web, make_client):
    for i in range(60):
        make_client(first_name=f"N{i:02d}")
    c = web("admin")
    html = c.get("/clients/list/", query_string={"q": "N", "country": "", "psize_ClientModelView": "50",
                                                 "_oc_ClientModelView": "full_name", "_od_ClientModelView": "asc",
                                                 "email": "example"}).get_data(as_text=True)
    assert len(row_ids(html)) == 50
    nxt = re.search(r'href="([^"]+)" id="cd-next"', html).group(1).replace("&amp;", "&")
    q = parse_qs(urlsplit(nxt).query)
    assert q["q"] == ["N"] and q["email"] == ["example"] and q["psize_ClientModelView"] == ["50"]
    assert q["_oc_ClientModelView"] == ["full_name"] and q["page_ClientModelView"] == ["1"]
    assert len(row_ids(c.get(nxt).get_data(as_text=True))) == 10
    assert c.get("/clients/list/?psize_ClientModelView=1000").status_code in (200, 400)


def test_every_value_column_sorts_with_optional_columns(app, world, web, make_client):
    from app.clients import list_services
    make_client(first_name="Zed", country="US", desk_id=world.d1a, manager_id=world.users["mgr_p1"])
    make_client(first_name="Abe", country="DE")
    c = web("admin")
    c.post("/clients/columns", data={"column": [k for k in list_services.COLUMNS], "op": "save"})
    for _, (_, order) in list_services.COLUMNS.items():
        if order:
            for direction in ("asc", "desc"):
                r = c.get(f"/clients/list/?_oc_ClientModelView={order}&_od_ClientModelView={direction}")
                assert r.status_code == 200, order


def test_every_column_shows_its_value_with_no_query_per_row(app, world, web, make_client, custom_fields):
    """The rows are plain records of just the visible columns: each cell still shows what the client
    card shows (related names, shortened comments, tags A-Z, custom values), for any number of rows."""
    from app.clients import list_services
    long_text = "A note about this client that runs well past sixty characters, to be cut."
    target = make_client(first_name="Zed", last_name="Zulu", country="US", desk_id=world.d1a,
                         manager_id=world.users["mgr_p1"], status_id=world.status_vip, tags=["hot", "alpha"],
                         description=long_text, custom_fields={"size": 7, "topics": ["forex", "crypto"]})
    for _ in range(5):
        make_client(desk_id=world.d1b, tags=["x"])
    c = web("admin")
    keys = list(list_services.COLUMNS) + ["cf_size", "cf_topics"]
    c.post("/clients/columns", data={"column": keys, "op": "save"})
    with sql_statements(app) as statements:
        html = c.get("/clients/list/").get_data(as_text=True)
    row = re.search(rf'<tr data-id="{target}">(.*?)</tr>', html, re.S).group(1)
    cell = dict(re.findall(r'<td data-column="([^"]+)">(.*?)</td>', row, re.S))
    assert set(keys) <= set(cell)
    assert cell["full_name"] == "Zed Zulu" and cell["desk"] == "Desk 1a" and cell["project"] == "Project One"
    assert cell["manager"] == "Mgr_P1 Tester" and cell["country"] == "United States"
    assert "VIP" in cell["status"] and "#654321" in cell["status"]
    assert cell["comments"] == long_text[:57] + "…"
    assert re.findall(r'cd-tag">([^<]+)<', cell["tags"]) == ["alpha", "hot"]
    assert cell["cf_size"] == "7" and cell["cf_topics"] == "forex, crypto"
    client_selects = [s for s in statements if re.search(r"FROM client(\s|$)|FROM client_tag", s)
                      and "client_favourite" not in s]
    assert len(client_selects) == 2  # the rows, then the page's tags: 6 rows, no query per row


def test_rest_list_uses_the_same_filters(app, world, web, make_client):
    target = make_client(email="rest.50%@gmail.com", country="DE")
    make_client(email="rest.500@gmail.com", country="DE")
    make_client(project_id=world.p2, email="p2.50%@gmail.com")
    c = web()
    headers = api_token(c, "mgr_p1")
    r = c.get("/api/v1/client/?q=(filters:!((col:email,opr:ctl,value:'50%'),(col:country,opr:cd_in,value:DE)))",
              headers=headers)
    assert r.status_code == 200, r.data
    assert [row["id"] for row in r.get_json()["result"]] == [target]
    r = c.get("/api/v1/client/?q=(filters:!((col:created_at,opr:cd_date,value:today)))", headers=headers)
    assert r.get_json()["count"] == 2  # scope holds: the P2 client is not counted
    r = c.get("/api/v1/client/?q=(filters:!((col:date_of_birth,opr:cd_date,value:today)))", headers=headers)
    assert r.status_code == 400


# --------------------------------------------------------------------------- several values per filter

def row_order(html):
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


def test_choice_filters_take_several_values(app, world, web, make_client):
    a = make_client(status_id=world.status_vip, country="DE", tags=["hot"])
    b = make_client(country="FR", tags=["cold"])
    p2 = make_client(project_id=world.p2, country="DE", status_id=world.status_vip)
    us = make_client(country="US", tags=["warm"])
    with app.app_context():
        tag = {t.name: t.id for t in db.session.scalars(select(Tag))}
        db.session.remove()
    c = web("admin")
    assert listed(c, status=[world.status_new, world.status_vip]) == {a, b, p2, us}  # OR within a filter
    assert listed(c, country=["DE", "FR"]) == {a, b, p2}
    assert listed(c, country=["DE", "FR"], project=world.p1) == {a, b}  # AND across filters
    assert listed(c, country=["DE", "FR"], status=world.status_vip) == {a, p2}
    assert listed(c, tags=[tag["hot"], tag["warm"]]) == {a, us}
    assert listed(c, project=[world.p1, "junk"]) == {a, b, us}  # a value that can't match adds nothing
    assert c.get("/clients/list/total", query_string={"country": ["DE", "FR"]}).get_json()["total"] == 3
    html = c.get("/clients/list/", query_string={"status": [world.status_new, world.status_vip], "country": "DE"}
                 ).get_data(as_text=True)
    assert "Status | New, VIP" in html  # one chip per filter, naming every value
    for value in (world.status_new, world.status_vip):
        assert re.search(rf'<option value="{value}" selected', html)
    assert re.search(r'<select name="status" id="f-status" class="[^"]*" multiple', html)
    remove = chips(html)["Status"]
    assert "status=" not in remove and "country=DE" in remove
    assert row_ids(c.get(remove).get_data(as_text=True)) == {a, p2}
    # "all matching" bulk selections read the same filters
    r = c.post("/clients/bulk/state", data={"all_matching": "1", "query": f"country=DE&country=FR&project={world.p1}",
                                            "state": "suspended"}, follow_redirects=True)
    assert "2 of 2 selected clients were changed" in r.get_data(as_text=True)


def test_rest_list_takes_a_list_value_as_any_of(app, world, web, make_client):
    a = make_client(country="DE", status_id=world.status_vip)
    b = make_client(country="FR")
    make_client(country="US")
    make_client(project_id=world.p2, country="DE")
    c = web()
    headers = api_token(c, "mgr_p1")

    def ids(filters):
        r = c.get(f"/api/v1/client/?q=(filters:!({filters}))", headers=headers)
        assert r.status_code == 200, r.data
        return {row["id"] for row in r.get_json()["result"]}

    assert ids("(col:country,opr:cd_in,value:!(DE,FR))") == {a, b}  # scope holds: not the P2 client
    assert ids(f"(col:status_id,opr:cd_in,value:!({world.status_new},{world.status_vip}))") == {a, b} | ids(
        "(col:country,opr:cd_in,value:US)")
    assert ids(f"(col:country,opr:cd_in,value:!(DE,FR)),(col:status_id,opr:cd_in,value:!({world.status_vip}))") == {a}
    assert ids("(col:country,opr:cd_in,value:'DE,FR')") == {a, b}  # the comma-separated form still works


# --------------------------------------------------------------------------- typed custom-field filters

@pytest.fixture()
def custom_fields(app, world):
    from app.clients.models import CustomField
    with app.app_context():
        db.session.add_all([
            CustomField(key="size", label="Size", field_type="number", options=[], order=1),
            CustomField(key="since", label="Since", field_type="date", options=[], order=2),
            CustomField(key="vip", label="VIP client", field_type="boolean", options=[], order=3),
            CustomField(key="lang", label="Language", field_type="select", options=["English", "Español", "Русский"],
                        order=4),
            CustomField(key="topics", label="Topics", field_type="multiselect", options=["forex", "crypto", "stocks"],
                        order=5),
            CustomField(key="note", label="Note", field_type="text", options=[], order=6),
        ])
        db.session.commit()
        db.session.remove()


def test_custom_field_filters_follow_the_field_type(app, world, web, make_client, custom_fields):
    today = dt.datetime.now(dt.UTC).date()
    a = make_client(custom_fields={"size": "42", "since": "2024-03-10", "vip": True, "lang": "English",
                                   "topics": ["forex", "crypto"], "note": "Likes 50% deals"})
    b = make_client(custom_fields={"size": "9,5", "since": "2023-12-31", "vip": False, "lang": "Español",
                                   "topics": ["stocks"], "note": "a_b"})
    d = make_client(custom_fields={"size": "100", "since": today.isoformat(), "lang": "Русский"})
    empty = make_client()
    odd = make_client()
    # a value of another type (the field's type was changed later) neither matches nor breaks a query
    set_fields(app, odd, custom_fields={"size": "abc", "since": "soon", "vip": "yes", "topics": "crypto-ish"})
    c = web("admin")
    assert listed(c, cf_size_from="10") == {a, d}  # numbers compare as numbers: 9.5 < 10 < 42 < 100
    assert listed(c, cf_size_to="42") == {a, b}
    assert listed(c, cf_size_from="9.5", cf_size_to="42") == {a, b}
    assert listed(c, cf_size_from="9,5", cf_size_to="9,5") == {b}
    assert listed(c, cf_since_from="2024-01-01", cf_since_to="2024-12-31") == {a}
    assert listed(c, cf_since_to="2023-12-31") == {b}
    assert listed(c, cf_since_preset="today") == {d}
    assert listed(c, cf_vip="yes") == {a}
    assert listed(c, cf_vip="no") == {b, d, empty, odd}  # "no" includes clients without a value
    assert listed(c, cf_lang=["English", "Español"]) == {a, b}
    assert listed(c, cf_lang="Русский") == {d}
    assert listed(c, cf_topics="crypto") == {a}  # an option, not a substring ("crypto-ish" is no option)
    assert listed(c, cf_topics=["stocks", "crypto"]) == {a, b}
    assert listed(c, cf_note="50%") == {a} and listed(c, cf_note="_") == {b}  # text: literal contains
    assert listed(c, cf_size_from="10", cf_vip="yes") == {a}
    assert listed(c, cf_size_from="junk") == {a, b, d, empty, odd}  # not a number: no filter
    html = c.get("/clients/list/", query_string={"cf_size_from": "10", "cf_since_from": "2024-01-01",
                                                 "cf_vip": "yes", "cf_lang": ["English", "Español"]}
                 ).get_data(as_text=True)
    for chip in ("Size | 10 – …", "Since | 2024-01-01 – …", "VIP client | Yes", "Language | English, Español"):
        assert chip in html, chip
    assert 'name="cf_size_from"' in html and 'type="number"' in html
    assert re.search(r'<select name="cf_lang" id="f-cf_lang" class="[^"]*" multiple', html)
    size_chip = chips(html)["Size"]
    assert "cf_size_from" not in size_chip and "cf_vip=yes" in size_chip
    # the Total counts with the same typed filters
    assert c.get("/clients/list/total", query_string={"cf_size_from": "10", "cf_size_to": "50"}).get_json()[
        "total"] == 1


# --------------------------------------------------------------------------- sorting tags and custom fields

def test_tags_and_custom_field_columns_sort(app, world, web, make_client, custom_fields):
    x = make_client(tags=["zeta", "Alpha"], custom_fields={"size": "100", "since": "2024-01-02", "lang": "Español"})
    y = make_client(tags=["beta"], custom_fields={"size": "9.5", "since": "2023-05-01", "lang": "English"})
    z = make_client(custom_fields={"size": "42"})
    odd = make_client(tags=["gamma"])
    set_fields(app, odd, custom_fields={"size": "abc"})
    c = web("admin")
    c.post("/clients/columns", data={"column": ["email", "id", "tags", "cf_size", "cf_since", "cf_lang", "cf_topics"],
                                     "op": "save"})

    def order(key, direction):
        r = c.get("/clients/list/", query_string={"_oc_ClientModelView": key, "_od_ClientModelView": direction})
        assert r.status_code == 200, (key, r.data[:300])
        return row_order(r.get_data(as_text=True))

    assert order("tags", "asc") == [x, y, odd, z]  # first tag A–Z (alpha, beta, gamma), no tags last
    assert order("tags", "desc") == [odd, y, x, z]
    assert order("cf_size", "asc") == [y, z, x, odd]  # numerically (9.5 < 42 < 100); no number last
    assert order("cf_size", "desc") == [x, z, y, odd]
    assert order("cf_since", "asc")[:2] == [y, x]
    assert order("cf_lang", "asc")[:2] == [y, x]
    html = c.get("/clients/list/").get_data(as_text=True)
    assert re.search(r'class="cd-sort" data-column="cf_size"', html)
    assert re.search(r'class="cd-unsortable" data-column="cf_topics"', html)  # a list: no sort, and it says so
    for key in ("cf_topics", "cf_nope", "passport_number"):
        assert c.get("/clients/list/", query_string={"_oc_ClientModelView": key,
                                                     "_od_ClientModelView": "asc"}).status_code == 400


def test_last_duplicate_date_is_set_forward_only_and_sorts(app, world, web, make_client):
    from app.clients import services
    a, b, c = make_client(), make_client(), make_client()
    with app.app_context():
        assert services.record_duplicate_seen([a, b], dt.datetime(2024, 5, 1, 9, 0)) == 2
        assert services.record_duplicate_seen([a], dt.datetime(2024, 1, 1)) == 0  # never moves back
        assert services.record_duplicate_seen([b], dt.datetime(2024, 6, 1)) == 1
        assert services.record_duplicate_seen([], None) == 0
        db.session.commit()
        assert db.session.get(Client, a).last_duplicate_at == dt.datetime(2024, 5, 1, 9, 0)
        assert db.session.get(Client, c).last_duplicate_at is None
        db.session.remove()
    html = web("admin").get("/clients/list/?_oc_ClientModelView=last_duplicate_at&_od_ClientModelView=desc"
                            "&columns=last_duplicate_at").get_data(as_text=True)
    order = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]
    assert order.index(b) < order.index(a)


def test_option_tags_escape_values_and_labels(app):
    from app.clients.filter_panel import option_tags
    html = str(option_tags([("1", "<script>x</script>"), ('2"><b', "B & C")], selected=["1"]))
    assert html == ('<option value="1" selected>&lt;script&gt;x&lt;/script&gt;</option>'
                    '<option value="2&#34;&gt;&lt;b">B &amp; C</option>')


def test_option_lists_load_separately_and_stay_in_scope(app, world, web, make_client):
    make_client(status_id=world.status_vip)
    c = web("agent_p2")
    page = c.get("/clients/list/").get_data(as_text=True)
    assert 'data-source="desks"' in page and "<option value=\"%d\"" % world.d2a not in page
    data = c.get("/clients/list/choices?sources=projects,desks,managers,statuses,countries,nonsense").get_json()
    assert set(data) == {"projects", "desks", "managers", "statuses", "countries"}
    assert {int(v) for v, _ in data["projects"]} == {world.p2}
    assert {int(v) for v, _ in data["desks"]} == {world.d2a}
    assert ["DE", "Germany"] in data["countries"]
    # a filtered page carries the selected option (with its label) for the chip and the form
    page = web("admin").get(f"/clients/list/?status={world.status_vip}").get_data(as_text=True)
    assert f'<option value="{world.status_vip}" selected>' in page
    assert web().get("/clients/list/choices?sources=projects").status_code in (302, 401, 403)


def test_a_filtered_page_reads_each_option_list_once(app, world, web, make_client):
    make_client(status_id=world.status_vip)
    c = web("admin")
    with sql_statements(app) as statements:
        html = c.get(f"/clients/list/?status={world.status_vip}&project={world.p1}").get_data(as_text=True)
    assert "VIP" in html  # the chip names the status
    assert len([s for s in statements if re.search(r"FROM client_status\b", s)]) == 1
    assert len([s for s in statements if re.search(r"FROM project\b", s)]) == 1
