"""PostgreSQL COPY with its foreign keys held once per referenced row (bulk._hold_references).

The per-row checks are left out only when the referenced rows are locked the way those checks lock
them; whenever that cannot be done, the database's own checks run. Each test shows one side: the
rows are held against a concurrent delete, a missing reference is still refused, the setting goes
back at once, and a trigger of the table's own or a role without the privilege keeps the checks.
"""

import os

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

_URL = os.environ.get("TEST_DATABASE_URL", "sqlite://")
pytestmark = pytest.mark.skipif(not _URL.startswith("postgresql"),
                                reason="COPY and session_replication_role are PostgreSQL's; runs in the "
                                       "PostgreSQL pass")


def _tags(db, names):
    from app.clients.models import Tag
    tags = [Tag(name=n) for n in names]
    db.session.add_all(tags)
    db.session.commit()
    return [t.id for t in tags]


def _other_connection(db):
    """A second connection to the test database, as another session would have."""
    url = db.engine.url
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
                           autocommit=True)


def _role(db):
    return db.session.execute(text("SELECT current_setting('session_replication_role')")).scalar()


def test_copied_rows_hold_their_references_against_a_delete(app, world, make_client):
    from app.clients.models import client_tag
    from app.core import bulk
    from app.extensions import db

    cid = make_client()
    with app.app_context():
        keep, gone = _tags(db, ["held", "free"])
        bulk.insert_rows(db.session, client_tag, [(cid, keep)], columns=("client_id", "tag_id"))
        assert _role(db) == "origin"  # replica only for the COPY itself
        with _other_connection(db) as other:
            other.execute("SET lock_timeout = '300ms'")
            other.execute("DELETE FROM tag WHERE id = %s", [gone])  # not referenced: goes
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("DELETE FROM tag WHERE id = %s", [keep])
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("DELETE FROM client WHERE id = %s", [cid])
        db.session.commit()
        assert db.session.execute(select(client_tag.c.tag_id).where(client_tag.c.client_id == cid)).scalars().all() \
            == [keep]
        db.session.remove()


def test_the_checks_are_left_out_only_when_every_reference_is_found(app, world, make_client):
    from app.clients.models import client_tag
    from app.core import bulk
    from app.extensions import db

    cid = make_client()
    with app.app_context():
        (tag,) = _tags(db, ["one"])
        cols = ["client_id", "tag_id"]
        assert bulk._hold_references(db.session, client_tag, cols, [], [(cid, tag)], {}) is True
        assert _role(db) == "replica"
        db.session.rollback()
        assert _role(db) == "origin"
        # a client id nobody inserted, unless the caller says this transaction did
        assert bulk._hold_references(db.session, client_tag, cols, [], [(cid + 1000, tag)], {}) is False
        assert _role(db) == "origin"
        assert bulk._hold_references(db.session, client_tag, cols, [], [(cid + 1000, tag)],
                                     {"client_id": {cid + 1000}}) is True
        db.session.rollback()
        # a foreign-key column given a value by a column default cannot be checked here
        assert bulk._hold_references(db.session, client_tag, ["client_id"], ["tag_id"], [(cid,)], {}) is False
        db.session.remove()


def test_a_missing_reference_is_refused_as_before(app, world, make_client):
    from app.clients.models import client_tag
    from app.core import bulk
    from app.extensions import db

    cid = make_client()
    with app.app_context():
        (tag,) = _tags(db, ["real"])
        with pytest.raises(IntegrityError, match="fk_client_tag_tag_id_tag"):
            bulk.insert_rows(db.session, client_tag, [(cid, tag), (cid, tag + 999)], columns=("client_id", "tag_id"))
        db.session.rollback()
        assert db.session.execute(select(client_tag.c.client_id)).all() == []
        db.session.remove()


def test_a_table_with_an_insert_trigger_of_its_own_keeps_the_checks(app, world, make_client):
    """Replica mode would skip an ordinary trigger too: with one on the table, nothing is left out."""
    from app.clients.models import client_tag
    from app.core import bulk
    from app.extensions import db

    cid = make_client()
    with app.app_context():
        (tag,) = _tags(db, ["watched"])
        with db.engine.begin() as conn:
            conn.execute(text("CREATE FUNCTION tag_probe() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN RAISE EXCEPTION 'probe trigger ran'; END $$"))
            conn.execute(text("CREATE TRIGGER tag_probe BEFORE INSERT ON client_tag FOR EACH ROW "
                              "EXECUTE FUNCTION tag_probe()"))
        try:
            assert bulk._hold_references(db.session, client_tag, ["client_id", "tag_id"], [], [(cid, tag)], {}) \
                is False
            db.session.rollback()
            with pytest.raises(Exception, match="probe trigger ran"):
                bulk.insert_rows(db.session, client_tag, [(cid, tag)], columns=("client_id", "tag_id"))
            db.session.rollback()
        finally:
            with db.engine.begin() as conn:
                conn.execute(text("DROP TRIGGER tag_probe ON client_tag"))
                conn.execute(text("DROP FUNCTION tag_probe()"))
        db.session.remove()


def test_a_role_that_may_not_set_the_replication_role_keeps_the_checks(app, world, make_client):
    from app.clients.models import client_tag
    from app.core import bulk
    from app.extensions import db

    cid = make_client()
    with app.app_context():
        (tag,) = _tags(db, ["plain"])
        with db.engine.begin() as conn:
            conn.execute(text("DO $$ BEGIN CREATE ROLE clientdesk_plain NOLOGIN; "
                              "EXCEPTION WHEN duplicate_object THEN NULL; END $$"))
            conn.execute(text("GRANT USAGE ON SCHEMA public TO clientdesk_plain"))
            conn.execute(text("GRANT SELECT, INSERT ON client_tag, tag, client TO clientdesk_plain"))
        db.session.execute(text("SET LOCAL ROLE clientdesk_plain"))
        cols = ["client_id", "tag_id"]
        assert bulk._reference_plan(db.session, client_tag) is None
        assert bulk._hold_references(db.session, client_tag, cols, [], [(cid, tag)], {}) is False
        bulk.insert_rows(db.session, client_tag, [(cid, tag)], columns=cols)  # the checks run, and pass
        with pytest.raises(IntegrityError, match="fk_client_tag_tag_id_tag"):
            bulk.insert_rows(db.session, client_tag, [(cid, tag + 999)], columns=cols)
        db.session.rollback()
        db.session.remove()


def test_an_import_leaves_no_reference_dangling(app, world):
    """The import's writes go through the held path (client rows, tags, report rows); afterwards
    every foreign key of those tables points at a row."""
    from app.extensions import db
    from tests.integration.import_helpers import run_import

    lines = ["email,firstName,lastName,phone,project,desk,status,tags"]
    lines += [f"ref{n}@example.org,Ref,Row{n},+49151230{n:05d},P1,{'D1a' if n % 2 else 'D1b'},VIP,"
              f"{'a' if n % 3 else 'b'}" for n in range(40)]
    lines += ["broken,Bad,Row,+4915123099999,P1,,,"]
    payload, report = run_import(app, "\n".join(lines) + "\n")
    assert (payload["created"], payload["failed"], [r[0] for r in report]) == (40, 1, [42])
    with app.app_context():
        dangling = db.session.execute(text("""
            SELECT (SELECT count(*) FROM client c WHERE NOT EXISTS (SELECT 1 FROM project p WHERE p.id = c.project_id)
                      OR (c.desk_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM desk d WHERE d.id = c.desk_id))
                      OR NOT EXISTS (SELECT 1 FROM client_status s WHERE s.id = c.status_id)
                      OR NOT EXISTS (SELECT 1 FROM ab_user u WHERE u.id = c.created_by_id)),
                   (SELECT count(*) FROM client_tag t WHERE NOT EXISTS (SELECT 1 FROM client c WHERE c.id = t.client_id)
                      OR NOT EXISTS (SELECT 1 FROM tag g WHERE g.id = t.tag_id)),
                   (SELECT count(*) FROM client_tag)""")).one()
        assert tuple(dangling) == (0, 0, 40)
        db.session.remove()


def test_an_internal_trigger_other_than_the_foreign_key_checks_keeps_them(app, world):
    """A deferrable unique constraint rechecks through an internal trigger, which replica mode would
    skip: such a table keeps the database's checks (and its duplicates are still refused)."""
    from sqlalchemy import Column, Integer, MetaData, Table

    from app.core import bulk
    from app.extensions import db

    with app.app_context():
        (tag,) = _tags(db, ["deferred"])
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE bulk_probe (id integer PRIMARY KEY, tag_id integer REFERENCES tag (id), "
                              "code integer UNIQUE DEFERRABLE INITIALLY DEFERRED)"))
        probe = Table("bulk_probe", MetaData(), Column("id", Integer, primary_key=True), Column("tag_id", Integer),
                      Column("code", Integer))
        try:
            assert bulk._reference_plan(db.session, probe) is None
            bulk.insert_rows(db.session, probe, [(1, tag, 7), (2, tag, 7)], columns=("id", "tag_id", "code"))
            with pytest.raises(IntegrityError):
                db.session.commit()
            db.session.rollback()
            with db.engine.begin() as conn:  # without the deferrable constraint the same table is covered
                conn.execute(text("ALTER TABLE bulk_probe DROP CONSTRAINT bulk_probe_code_key"))
            assert bulk._reference_plan(db.session, probe) == [("tag_id", "tag", "id")]
            assert bulk._hold_references(db.session, probe, ["id", "tag_id"], [], [(1, tag), (2, "1")], {}) is False
            db.session.rollback()
        finally:
            db.session.rollback()
            with db.engine.begin() as conn:
                conn.execute(text("DROP TABLE bulk_probe"))
        db.session.remove()
