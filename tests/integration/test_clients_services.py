"""Client services: validation messages, immutables, UID, processed rule, state, project moves, 2FA."""

import re

import pytest
from sqlalchemy import select

from app.clients import services
from app.clients.models import Client, CustomField, TwoFactorMethod
from app.core.audit import AuditLog
from app.core.errors import NotFound, ValidationFailed
from app.extensions import db
from tests.conftest import client_data, user


def errors_of(fn):
    with pytest.raises(ValidationFailed) as err:
        fn()
    return {k: [str(m) for m in v] for k, v in err.value.field_errors.items()}


def test_create_normalises_and_assigns_uid(app, world, ctx):
    admin = user(app, "admin")
    c = services.create_client(client_data(world, email="  Anna@Example.ORG ", phone="+49 1512 3000001",
                                           country="deu"), admin)
    assert c.email == "anna@example.org"
    assert c.phone == "+4915123000001"
    assert c.country == "DE"
    assert re.fullmatch(r"C\d{5}P", c.uid) and c.uid == "C00001P"
    assert c.full_name == "Anna Tester"
    assert c.status_id == world.status_new  # default status
    assert c.header == "Anna Tester • UID: C00001P"
    b = services.create_client(client_data(world, client_type="business", company_name="Acme GmbH"), admin)
    assert b.uid == "C00002B" and b.full_name == "Acme GmbH"


def test_uids_are_unique_and_never_reused(app, world, ctx):
    admin = user(app, "admin")
    uids = [services.create_client(client_data(world), admin).uid for _ in range(5)]
    assert len(set(uids)) == 5
    last = db.session.scalars(select(Client).where(Client.uid == uids[-1])).one()
    db.session.delete(last)  # hard delete only possible below the UI; the number stays used
    db.session.commit()
    assert services.create_client(client_data(world), admin).uid == "C00006P"


@pytest.mark.parametrize("field,value,message", [
    ("email", "nope", "Enter a valid e-mail address, like name@example.com."),
    ("phone", "12345", "Enter the phone number in international format, like +14155550123."),
    ("phone", "", "Phone is required for personal clients."),
    ("first_name", "", "First name is required."),
    ("country", "Atlantis", "Unknown country: choose one from the list (ISO 3166)."),
    ("nationality", "XX", "Unknown country: choose one from the list (ISO 3166)."),
    ("date_of_birth", "2999-01-01", "The date of birth must be in the past."),
    ("password", "weak", "The password needs at least 8 characters, an upper-case letter, a digit, "
                         "a special character."),
    ("description", "x" * 2001, "The description can be at most 2000 characters (now 2001)."),
    ("rating", 4, "The rating is 0 to 3 stars."),
    ("gender", "robot", "Choose one of: male, female, other."),
    ("project_id", 999999, "Choose one of your projects."),
    ("client_type", "alien", "Choose Personal or Business."),
    ("status_id", 999999, "Choose a value from the list."),
])
def test_each_validation_rule_has_a_clear_message(app, world, ctx, field, value, message):
    errors = errors_of(lambda: services.create_client(client_data(world, **{field: value}), user(app, "admin")))
    assert errors[field] == [message]
    assert db.session.scalar(select(Client.id)) is None  # nothing saved


def test_business_needs_company_name(app, world, ctx):
    errors = errors_of(lambda: services.create_client(client_data(world, client_type="business"),
                                                      user(app, "admin")))
    assert errors["company_name"] == ["Company name is required for business clients."]


def test_desk_must_belong_to_project(app, world, ctx):
    errors = errors_of(lambda: services.create_client(client_data(world, desk_id=world.d2a), user(app, "admin")))
    assert errors["desk_id"] == ["The desk does not belong to the selected project."]


def test_manager_eligibility(app, world, ctx):
    admin = user(app, "admin")
    msg = ["The manager must be an active staff member assigned to the client's project and desk."]
    # agent_p2 is not assigned to P1
    assert errors_of(lambda: services.create_client(
        client_data(world, manager_id=world.users["agent_p2"]), admin))["manager_id"] == msg
    # inactive staff never qualify
    assert errors_of(lambda: services.create_client(
        client_data(world, manager_id=world.users["inactive"]), admin))["manager_id"] == msg
    # on desk D1b only staff of that desk qualify: agent_d1a is on D1a
    assert errors_of(lambda: services.create_client(
        client_data(world, desk_id=world.d1b, manager_id=world.users["agent_d1a"]), admin))["manager_id"] == msg
    ok = services.create_client(client_data(world, desk_id=world.d1a, manager_id=world.users["agent_d1a"]), admin)
    assert ok.manager_id == world.users["agent_d1a"]


def test_email_unique_with_holder_named_only_in_scope(app, world, ctx):
    admin = user(app, "admin")
    services.create_client(client_data(world, email="taken@example.org", first_name="Jane", last_name="Doe"), admin)
    errors = errors_of(lambda: services.create_client(client_data(world, email="TAKEN@example.org"), admin))
    assert errors["email"] == ["E-mail in use by: Jane Doe (C00001P)."]
    # agent_p2 cannot see the holder (P1): neutral message, no name leaked
    errors = errors_of(lambda: services.create_client(
        client_data(world, email="taken@example.org", project_id=world.p2), user(app, "agent_p2")))
    assert errors["email"] == ["This e-mail is already in use."]


def test_immutables_are_refused_on_update(app, world, ctx, make_client):
    admin = user(app, "admin")
    c = db.session.get(Client, make_client(email="keep@example.org"))
    errors = errors_of(lambda: services.update_client(c, {"email": "other@example.org", "client_type": "business",
                                                          "project_id": world.p2}, admin))
    assert errors == {
        "email": ["The e-mail cannot be changed after creation."],
        "client_type": ["The client type cannot be changed after creation."],
        "project_id": ["Use the Change project action to move a client to another project."],
    }
    db.session.rollback()
    c = db.session.get(Client, c.id)
    assert (c.email, c.client_type, c.project_id) == ("keep@example.org", "personal", world.p1)
    # sending the same values is fine
    services.update_client(c, {"email": "KEEP@example.org", "city": "Lyon"}, admin)
    assert c.city == "Lyon"


def test_unknown_fields_are_refused(app, world, ctx, make_client):
    c = db.session.get(Client, make_client())
    errors = errors_of(lambda: services.update_client(c, {"processed": True, "uid": "C99999P"}, user(app, "admin")))
    assert errors == {"processed": ["This field cannot be set."], "uid": ["This field cannot be set."]}


def test_processed_rule_through_create_and_update(app, world, ctx):
    admin = user(app, "admin")
    mgr = world.users["mgr_p1"]
    c = services.create_client(client_data(world, desk_id=world.d1a), admin)
    assert c.processed is False and c.processed_at is None
    services.update_client(c, {"manager_id": mgr}, admin)
    assert c.processed is True and c.processed_at is not None
    stamp = c.processed_at
    services.update_client(c, {"desk_id": None, "manager_id": None}, admin)
    assert c.processed is True and c.processed_at == stamp  # never goes back
    both = services.create_client(client_data(world, desk_id=world.d1a, manager_id=mgr), admin)
    assert both.processed is True


def test_update_keeps_absent_fields(app, world, ctx, make_client):
    admin = user(app, "admin")
    c = db.session.get(Client, make_client(city="Berlin", region="BE"))
    services.update_client(c, {"city": "Hamburg"}, admin)
    assert (c.city, c.region) == ("Hamburg", "BE")


def test_password_is_hashed_and_audited_as_changed(app, world, ctx):
    c = services.create_client(client_data(world, password="Str0ng!pass"), user(app, "admin"))
    assert c.password_hash and "Str0ng!pass" not in c.password_hash
    row = db.session.scalars(select(AuditLog).where(AuditLog.field == "password_hash")).one()
    assert row.new_value == "(changed)" and row.old_value is None


def test_state_changes_need_permission_and_are_audited(app, world, ctx, make_client):
    c = db.session.get(Client, make_client())
    with pytest.raises(ValidationFailed):
        services.change_state(c, "deactivated", user(app, "viewer_p1"))
    db.session.rollback()
    services.change_state(c, "deactivated", user(app, "mgr_p1"))
    assert c.state == "deactivated"
    row = db.session.scalars(select(AuditLog).where(AuditLog.field == "state", AuditLog.operation == "update")).one()
    assert (row.old_value, row.new_value, row.user_id) == ("active", "deactivated", world.users["mgr_p1"])
    with pytest.raises(ValidationFailed):
        services.change_state(c, "gone", user(app, "admin"))


def test_change_project_clears_desk_and_manager_that_do_not_fit(app, world, ctx):
    admin = user(app, "admin")
    c = services.create_client(client_data(world, desk_id=world.d1a, manager_id=world.users["mgr_p1"]), admin)
    services.change_project(c, world.p2, admin)
    assert (c.project_id, c.desk_id, c.manager_id) == (world.p2, None, None)
    fields = set(db.session.scalars(select(AuditLog.field).where(AuditLog.client_id == c.id,
                                                                  AuditLog.operation == "update")))
    assert {"project_id", "desk_id", "manager_id"} <= fields
    # a user cannot move a client into a project outside their scope
    c2 = services.create_client(client_data(world), admin)
    with pytest.raises(ValidationFailed):
        services.change_project(c2, world.p2, user(app, "mgr_p1"))


def test_scope_get_client_is_not_found_outside(app, world, ctx, make_client):
    p1_client = make_client()
    with pytest.raises(NotFound):
        services.get_client(user(app, "agent_p2"), p1_client)
    assert services.get_client(user(app, "mgr_p1"), p1_client).id == p1_client


def test_desk_restricted_user_cannot_create_off_desk(app, world, ctx):
    errors = errors_of(lambda: services.create_client(client_data(world), user(app, "agent_d1a")))
    assert errors["desk_id"] == ["You can only place clients on desks you are assigned to."]
    ok = services.create_client(client_data(world, desk_id=world.d1a), user(app, "agent_d1a"))
    assert ok.desk_id == world.d1a


def test_custom_fields_validated_by_type(app, world, ctx):
    db.session.add_all([
        CustomField(key="score", label="Score", field_type="number", required=True),
        CustomField(key="plan", label="Plan", field_type="select", options=["Gold", "Silver"]),
        CustomField(key="langs", label="Languages", field_type="multiselect", options=["en", "es", "ru"]),
        CustomField(key="vip", label="VIP", field_type="boolean"),
        CustomField(key="since", label="Since", field_type="date"),
    ])
    db.session.commit()
    admin = user(app, "admin")
    errors = errors_of(lambda: services.create_client(client_data(world, custom_fields={
        "plan": "Bronze", "langs": ["en", "xx"], "vip": "maybe", "since": "yesterday", "nope": 1}), admin))
    assert errors == {
        "cf_score": ["Score is required."],
        "cf_plan": ["Choose one of the offered options."],
        "cf_langs": ["Not an offered option: xx."],
        "cf_vip": ["Enter yes or no."],
        "cf_since": ["Enter a date as YYYY-MM-DD."],
        "cf_nope": ["Unknown custom field: nope."],
    }
    c = services.create_client(client_data(world, custom_fields={
        "score": "7.5", "plan": "Gold", "langs": "en, ru", "vip": "yes", "since": "2024-02-03"}), admin)
    assert c.custom_fields == {"score": 7.5, "plan": "Gold", "langs": ["en", "ru"], "vip": True,
                               "since": "2024-02-03"}


def test_meta_and_tags(app, world, ctx):
    admin = user(app, "admin")
    c = services.create_client(client_data(world, meta={"WhatsApp": "934578981723"}, tags="forex, Crypto, forex"),
                               admin)
    assert c.meta == {"WhatsApp": "934578981723"}
    assert [t.name for t in c.tags] == ["Crypto", "forex"]
    errors = errors_of(lambda: services.update_client(c, {"meta": {"": "x"}}, admin))
    assert errors["meta"] == ["Every meta entry needs a key."]


def test_two_factor_management(app, world, ctx, make_client):
    admin = user(app, "admin")
    c = db.session.get(Client, make_client())
    email = services.enrol_2fa(c, "email")
    phone = services.enrol_2fa(c, "phone", phone="+4915123999999")
    db.session.commit()
    assert email.is_default and not phone.is_default
    with pytest.raises(ValidationFailed) as err:
        services.delete_2fa(c, email.id, admin)
    assert "default method cannot be deleted" in str(err.value.field_errors["two_factor"][0])
    services.update_2fa_phone(c, phone.id, "+49 1512 3888888", admin)
    assert phone.phone == "+4915123888888"
    services.make_default_2fa(c, phone.id, admin)
    assert phone.is_default and not email.is_default
    services.delete_2fa(c, email.id, admin)
    assert db.session.scalars(select(TwoFactorMethod)).all() == [phone]
    with pytest.raises(NotFound):
        services.make_default_2fa(c, phone.id, user(app, "agent_p2"))


def test_literal_search_clause(app, world, ctx, make_client):
    ids = {name: make_client(first_name=name) for name in ["50% Discount", "500 Club", "a_b", "axb", "Anna?",
                                                           "Annabel"]}
    admin = user(app, "admin")

    def search(text):
        q = services.clients_query(admin).where(services.literal_search_clause(text))
        return {c.first_name for c in db.session.scalars(q)}

    assert search("50%") == {"50% Discount"}
    assert search("a_b") == {"a_b"}
    assert search("Anna?") == {"Anna?"}
    assert search("ANNA") == {"Anna?", "Annabel"}
    assert search(str(ids["axb"])) >= {"axb"}


def test_search_and_name_filters_test_each_name_not_their_concatenation(app, world, ctx, make_client):
    """The names are searched through one index over their concatenation (Client.contains_companion),
    but a text matches only when one name holds it: the full name (a business client's company), the
    first name or the last name."""
    from app.clients.models import Client
    from app.core.filters import ClientDeskInterface, FilterContainsLiteral, FilterEndsWithLiteral

    acme = make_client(client_type="business", company_name="Acme Trading", first_name="Ivo", last_name="Kern")
    anna = make_client(first_name="Anna", last_name="Tester")
    admin = user(app, "admin")

    def search(text):
        return set(db.session.scalars(select(Client.id).where(
            Client.id.in_(services.clients_query(admin).with_only_columns(Client.id)),
            services.literal_search_clause(text))))

    def filtered(flt, column, value):
        return {r.id for r in flt(column, ClientDeskInterface(Client)).apply(db.session.query(Client.id), value)}

    assert search("Acme Trad") == {acme}    # the full name (the company)
    assert search("ivo") == {acme}          # the first name, not in the full name
    assert search("kern") == {acme}
    assert search("Anna Test") == {anna}    # a personal client's full name spans both names
    assert search("Kern Acme") == set()     # only in the concatenation
    assert search("Ivo Kern") == set()      # a business client's full name is its company
    assert filtered(FilterContainsLiteral, "first_name", "IV") == {acme}
    assert filtered(FilterContainsLiteral, "last_name", "n Ac") == set()
    assert filtered(FilterEndsWithLiteral, "full_name", "ading") == {acme}


@pytest.mark.skipif(not __import__("os").environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
                    reason="trigram indexes are PostgreSQL's; runs in the PostgreSQL pass")
def test_name_searches_can_use_the_shared_trigram_index(app, world, ctx, make_client):
    """The search box's and the name filters' SQL carries the very expression the migration indexed
    (a drift between the two would leave every name search a sequential scan at 1M clients)."""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    from app.clients.models import Client
    from app.core.filters import ClientDeskInterface, FilterContainsLiteral, FilterStartsWithLiteral

    make_client(first_name="Anna", last_name="Tester")

    def plan(statement):
        sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
        return "\n".join(db.session.execute(text("EXPLAIN " + sql)).scalars())

    assert "ix_client_names_trgm" in plan(select(Client.id).where(services.literal_search_clause("tes")))
    for flt, column in ((FilterContainsLiteral, "first_name"), (FilterStartsWithLiteral, "last_name")):
        query = flt(column, ClientDeskInterface(Client)).apply(db.session.query(Client.id), "tes")
        assert "ix_client_names_trgm" in plan(query.statement)


def test_funnel_stage_must_match_client_type(app, world, ctx):
    from app.clients.models import FunnelStage
    stage = FunnelStage(client_type="business", label="Contract", order=1)
    db.session.add(stage)
    db.session.commit()
    errors = errors_of(lambda: services.create_client(client_data(world, funnel_stage_id=stage.id),
                                                      user(app, "admin")))
    assert errors["funnel_stage_id"] == ["This funnel stage belongs to the other client type."]


def test_builtin_role_permissions_are_not_prefix_matched(app, world, ctx):
    """"can_edit" must not grant "can_edit_action_type" or "can_edit_assets" to Agents (FAB uses re.match)."""
    from app.core.permissions import user_can
    agent = user(app, "agent_d1a")
    assert user_can(agent, "can_edit")
    assert not user_can(agent, "can_edit_action_type")
    assert not user_can(agent, "can_edit_assets")
