"""Import runs that work on two cores: chunk N+1 is processed while a writer thread writes chunk N
(PostgreSQL, and SQLite in a file); on large files a helper process normalises the next chunk's
phone numbers.

The writer is held back on purpose here, so the rows of a chunk really are decided while the
chunks before it are still uncommitted, and the result must be what a chunk-by-chunk run gives.
"""

import io
import os
import threading

import pytest
from sqlalchemy import func, select

from tests.conftest import user
from tests.integration.import_helpers import clients_by_email, run_import

_URL = os.environ.get("TEST_DATABASE_URL", "sqlite://")
PIPELINED_ONLY = pytest.mark.skipif(
    _URL in ("sqlite://", "sqlite:///:memory:"),
    reason="writer threads need a database each thread connects to: PostgreSQL, or a SQLite file "
           "(an in-memory SQLite database is one connection, so its imports go chunk by chunk); runs "
           "in the PostgreSQL pass and in the SQLite-file pass of .ci/run")
POSTGRESQL_ONLY = pytest.mark.skipif(not _URL.startswith("postgresql"),
                                     reason="several writer threads are PostgreSQL's (a SQLite file has one "
                                            "write lock, so one writer); runs in the PostgreSQL pass")

HEAD = "email,firstName,lastName,phone,tags"
FILE = "\n".join([
    HEAD,
    "a@example.org,First,Lee,+4915123000001,",        # chunk 1: a created
    "b@example.org,Bea,Lee,+4915123000002,",
    "a@example.org,Second,Lee,+4915123000001,x",      # chunk 2: a (in flight) updated
    "c@example.org,Cem,Lee,+4915123000003,",
    "a@example.org,Third,,,",                          # chunk 3: a updated again, tags kept
    "b@example.org,Bea,Lee,+4915123000002,y",         # b (in flight) gets a tag
    "d@example.org,Dan,Lee,+4915123000004,",
]) + "\n"


@pytest.fixture()
def held_writer(app, monkeypatch):
    """Each chunk's write waits until the next chunk has been processed (or the file has ended)."""
    from app.imports import services

    processed = []
    in_flight_seen = []  # per processed chunk: how many chunks were in flight
    hold = {"on": True}
    events = [threading.Event() for _ in range(64)]
    process, write = services.ImportRun.process, services.ChunkWriter._write

    def held_process(self, chunk, committed=None):
        in_flight_seen.append(len(self.inflight))
        out = process(self, chunk, committed=committed)
        processed.append(len(chunk))
        events[len(processed) - 1].set()
        return out

    def held_write(self, *item):
        n = getattr(self, "_n", 0)
        self._n = n + 1
        if hold["on"]:
            events[n + 1].wait(timeout=2)  # the last chunk has no next one: the timeout lets it pass
        return write(self, *item)

    monkeypatch.setattr(services.ImportRun, "process", held_process)
    monkeypatch.setattr(services.ChunkWriter, "_write", held_write)
    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    # no held rows: the rows of a repeated e-mail go in their own chunks, so later chunks do meet
    # clients that earlier, uncommitted chunks create and change
    monkeypatch.setitem(app.config, "IMPORT_MAX_HELD_ROWS", 0)
    return in_flight_seen, hold


@PIPELINED_ONLY
def test_rows_decided_while_earlier_chunks_are_in_flight_give_the_chunk_by_chunk_result(app, world, held_writer,
                                                                                       monkeypatch):
    in_flight_seen, hold = held_writer
    p, rep = run_import(app, FILE)
    assert max(in_flight_seen) >= 1, in_flight_seen     # chunks really were decided with others in flight
    assert (p["created"], p["updated"], p["failed"], p["done"]) == (4, 3, 0, 7), rep
    notices = [r for r in rep if r[1] == "notice"]
    assert [r[0] for r in notices] == [4, 6, 7] and all("repeats an earlier row" in r[2] for r in notices)
    clients = clients_by_email(app)
    assert clients["a@example.org"].first_name == "Third"
    assert [t.name for t in clients["a@example.org"].tags] == ["x"]
    assert [t.name for t in clients["b@example.org"].tags] == ["y"]
    assert len({c.uid for c in clients.values()}) == 4

    # the audit tells the same story: one create and each later change, in order
    from app.core.audit import AuditLog
    from app.extensions import db
    with app.app_context():
        a_id = clients["a@example.org"].id
        log = db.session.execute(select(AuditLog.operation, AuditLog.field, AuditLog.new_value)
                                 .where(AuditLog.client_id == a_id).order_by(AuditLog.id)).all()
        db.session.remove()
    assert log[0][:2] == ("create", "import")
    assert [tuple(r) for r in log[1:]] == [("update", "first_name", "Second"), ("update", "tags", "x"),
                                           ("update", "first_name", "Third")]

    # A re-run flips a back to First, Second, Third (one chunk each: 3 updates) and leaves the rest
    # unchanged; chunk by chunk, from the same state, the run counts the same.
    counts = []
    for pipelined in (True, False):
        monkeypatch.setitem(app.config, "IMPORT_PIPELINE", pipelined)
        hold["on"] = pipelined
        again, rep2 = run_import(app, FILE)
        counts.append((again["created"], again["updated"], again["unchanged"], again["failed"]))
    assert counts == [(0, 3, 4, 0)] * 2, rep2
    assert clients_by_email(app)["a@example.org"].first_name == "Third"


@pytest.mark.parametrize("pipelined", [pytest.param(True, marks=PIPELINED_ONLY), False])
def test_a_write_race_is_redone_from_the_checkpoint(app, world, make_client, monkeypatch, pipelined):
    """Another writer creates an e-mail after the run decided to create it: the insert fails, nothing
    of that chunk (or, pipelined, of the ones after it) is committed, and the run redoes the chunk
    from the checkpoint, now updating the other writer's client."""
    from app.imports import services

    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    monkeypatch.setitem(app.config, "IMPORT_PIPELINE", pipelined)
    monkeypatch.setitem(app.config, "IMPORT_MAX_HELD_ROWS", 0)  # chunks of two rows in file order
    process = services.ImportRun.process
    calls = []

    def racing_process(self, chunk, committed=None):
        out = process(self, chunk, committed=committed)
        calls.append(len(chunk))
        if len(calls) == 2:  # chunk 2 decided "create c@"; someone else creates c@ now
            make_client(email="c@example.org", first_name="Other")
        return out

    monkeypatch.setattr(services.ImportRun, "process", racing_process)
    p, rep = run_import(app, FILE)
    assert len(calls) > 4  # chunk 2 (pipelined: and those after it) processed again
    assert (p["created"], p["updated"], p["failed"], p["done"]) == (3, 4, 0, 7), rep
    # c@ (line 5) now updates the other writer's client; the failed attempt does not make it a repeat
    assert [r[0] for r in rep if r[1] == "notice"] == [4, 6, 7], rep
    clients = clients_by_email(app)
    assert clients["c@example.org"].first_name == "Cem"
    assert sorted(clients) == ["a@example.org", "b@example.org", "c@example.org", "d@example.org"]
    from app.clients.models import Client
    from app.extensions import db
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Client)) == 4
        db.session.remove()


PHONES = "\n".join([
    "email,firstName,lastName,phone,additionalPhone",
    "p1@example.org,Ann,Lee,+4915123000001,+34 600 000 001",
    "p2@example.org,Ben,Lee,+49 151 23000002,",
    "p3@example.org,Cy,Lee,12345,+4915123000003",            # invalid phone: the usual error
    "p4@example.org,Di,Lee,+4915123000004,not a phone",      # invalid additional phone
    "p5@example.org,Ed,Lee,'+4915123000005,",                # an exported (neutralised) cell
]) + "\n"


def test_the_phone_helper_process_changes_nothing_but_where_numbers_are_parsed(app, world, monkeypatch):
    """With the helper process, normalize_phone answers from numbers it normalised ahead; results,
    errors and messages are those of the run without it."""
    from app.core import validators

    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    served = []
    real = validators.phones_ahead

    def spy(known):
        served.append(dict(known))
        return real(known)

    monkeypatch.setattr(validators, "phones_ahead", spy)
    outcomes = []
    for helper_min_rows, prefix in ((1, "with"), (0, "without")):
        monkeypatch.setitem(app.config, "IMPORT_HELPER_MIN_ROWS", helper_min_rows)
        p, rep = run_import(app, PHONES.replace("@example.org", f"@{prefix}.example.org"))
        clients = {email.split("@")[0]: (c.phone, c.additional_phone)
                   for email, c in clients_by_email(app).items() if email.endswith(f"@{prefix}.example.org")}
        outcomes.append(((p["created"], p["failed"]), [(line, kind, reason) for line, kind, reason, _ in rep],
                         clients))
    assert outcomes[0] == outcomes[1]
    (created, failed), report, clients = outcomes[0]
    assert (created, failed) == (3, 2)
    assert [line for line, _, _ in report] == [4, 5]
    assert clients["p1"] == ("+4915123000001", "+34600000001") and clients["p5"][0] == "+4915123000005"
    # the helper really answered: the first run's chunks came with the numbers normalised ahead
    ahead = {k: val for known in served[:3] for k, val in known.items()}
    assert ahead["+49 151 23000002"] == "+4915123000002" and "12345" not in ahead and "not a phone" not in ahead
    assert all(not known for known in served[3:])  # the run without the helper got none


def test_a_helper_started_early_for_a_large_looking_file_is_used_only_if_the_file_has_the_rows(
        app, world, monkeypatch):
    """The helper starts before the file's first pass when the file is large enough to hold
    IMPORT_HELPER_MIN_ROWS rows; once the pass counts fewer, it is closed (its process ends) and the
    run parses its numbers itself. With enough rows the early helper serves the chunks."""
    from app.core import validators
    from app.imports import services

    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    started, closed, served = [], [], []
    real_init, real_close, real_ahead = services.PhoneHelper.__init__, services.PhoneHelper.close, \
        validators.phones_ahead

    def init(self, columns):
        real_init(self, columns)
        started.append(self)

    def close(self):
        real_close(self)
        closed.append(self.process.returncode)

    def ahead(known):
        served.append(dict(known))
        return real_ahead(known)

    monkeypatch.setattr(services.PhoneHelper, "__init__", init)
    monkeypatch.setattr(services.PhoneHelper, "close", close)
    monkeypatch.setattr(validators, "phones_ahead", ahead)
    size = len(PHONES.encode())
    # 5 rows in a file that could hold more: started early, closed after the pass, nothing served
    monkeypatch.setitem(app.config, "IMPORT_HELPER_MIN_ROWS", 6)
    assert size // services.PhoneHelper.MIN_ROW_BYTES >= 6
    p, _ = run_import(app, PHONES)
    assert (p["created"], p["failed"]) == (3, 2)
    assert len(started) == 1 and closed == [0] and all(not known for known in served)
    # the same file with a threshold it meets: one helper, started early, answers the chunks
    served.clear()
    monkeypatch.setitem(app.config, "IMPORT_HELPER_MIN_ROWS", 5)
    p, _ = run_import(app, PHONES.replace("@example.org", "@again.example.org"))
    assert (p["created"], p["failed"]) == (3, 2)
    assert len(started) == 2 and closed == [0, 0] and any(known for known in served)


@POSTGRESQL_ONLY
def test_two_writers_work_side_by_side_and_commit_in_file_order(app, world, monkeypatch):
    """The first chunk's writer is slowed down: the second writer writes its chunk meanwhile, but
    commits only after the first, and the checkpoint moves chunk by chunk in file order."""
    import time

    from app.imports import services

    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    monkeypatch.setitem(app.config, "IMPORT_WRITERS", 2)
    monkeypatch.setitem(app.config, "IMPORT_MAX_HELD_ROWS", 0)  # chunks of two rows in file order
    spans = []
    write, real_commit = services.ImportRun.write, services.ChunkWriter._write

    def slow_first(self, creates, touched, now, **kw):
        if any(rec.email == "a@example.org" for rec in creates):
            time.sleep(0.5)
        return write(self, creates, touched, now, **kw)

    def timed(self, item, previous):
        start = time.monotonic()
        try:
            return real_commit(self, item, previous)
        finally:
            spans.append((item[0], start, time.monotonic(), self.run.done))

    monkeypatch.setattr(services.ImportRun, "write", slow_first)
    monkeypatch.setattr(services.ChunkWriter, "_write", timed)
    p, rep = run_import(app, FILE)
    assert (p["created"], p["updated"], p["failed"], p["done"]) == (4, 3, 0, 7), rep
    by_end = sorted(spans, key=lambda s: s[2])
    assert [s[0] for s in by_end] == [2, 4, 6, 7]          # finished (committed) in file order
    assert [s[3] for s in by_end] == [2, 4, 6, 7]          # and each moved the checkpoint to its end
    first, second = sorted(spans)[:2]
    assert second[1] < first[2]                            # the second chunk was written meanwhile
    assert clients_by_email(app)["a@example.org"].first_name == "Third"


# ----------------------------------------------------------------- rows of one key held together

def _audit_rows(app):
    from app.core.audit import AuditLog
    from app.extensions import db
    with app.app_context():
        n = db.session.scalar(select(func.count(AuditLog.id)))
        db.session.remove()
    return n


@pytest.mark.parametrize("pipelined", [pytest.param(True, marks=PIPELINED_ONLY), False])
def test_a_rerun_of_a_file_repeating_keys_across_chunks_changes_and_counts_nothing(app, world, monkeypatch,
                                                                                  pipelined):
    """a@'s rows fall in three chunks of two and b@'s in two: they wait for the last row of their
    e-mail and are applied together, so a re-run leaves every client as it is (CL-IO-2)."""
    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    monkeypatch.setitem(app.config, "IMPORT_PIPELINE", pipelined)
    p, rep = run_import(app, FILE)
    assert (p["created"], p["updated"], p["failed"], p["done"]) == (4, 3, 0, 7), rep
    assert [(r[0], r[1]) for r in rep] == [(4, "notice"), (6, "notice"), (7, "notice")]
    assert "repeats line 2" in rep[0][2] and "repeats line 2" in rep[1][2] and "repeats line 3" in rep[2][2]
    clients = clients_by_email(app)
    a, b = clients["a@example.org"], clients["b@example.org"]
    assert (a.first_name, a.last_name, a.phone, [t.name for t in a.tags]) == ("Third", "Lee", "+4915123000001",
                                                                                ["x"])
    assert [t.name for t in b.tags] == ["y"]
    audit = _audit_rows(app)

    again, rep2 = run_import(app, FILE)
    assert (again["created"], again["updated"], again["unchanged"], again["failed"]) == (0, 0, 7, 0), rep2
    assert _audit_rows(app) == audit
    assert clients_by_email(app)["a@example.org"].first_name == "Third"


def test_held_rows_are_read_again_after_a_crash(app, world, monkeypatch):
    """The run stops after its first chunk: a@'s first row (line 2) waited for its last one (line 6)
    and was never committed; the resumed run reads it again and applies it with line 6."""
    from app.extensions import db
    from app.imports import services

    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    monkeypatch.setitem(app.config, "IMPORT_PIPELINE", False)
    text = "\n".join(["email,firstName,lastName,phone,billing.city",
                      "a@example.org,First,Lee,+4915123000001,",
                      "b@example.org,Bea,Lee,+4915123000002,",
                      "c@example.org,Cem,Lee,+4915123000003,",
                      "d@example.org,Dan,Lee,+4915123000004,",
                      "a@example.org,,,,Paris",
                      "e@example.org,Eve,Lee,+4915123000005,"]) + "\n"
    real, calls = services._submit_chunk, []

    def crash_on_second(run, writer, through, chunk, writers):
        calls.append([line for line, _, _ in chunk])
        if len(calls) == 2:
            raise KeyboardInterrupt("the worker dies")
        return real(run, writer, through, chunk, writers)

    monkeypatch.setattr(services, "_submit_chunk", crash_on_second)
    with app.app_context():
        job = services.store_upload(io.BytesIO(text.encode()), "held.csv", user(app, "admin"))
        job_id = job.id
        with pytest.raises(KeyboardInterrupt):
            services.run_import(job_id)
        db.session.rollback()
        assert calls == [[3, 4], [5, 2, 6]]
        job = db.session.get(services.ImportJob, job_id)
        assert (job.status, job.committed_through, job.created_count) == ("running", 3, 2)
        assert set(clients_by_email(app)) == {"b@example.org", "c@example.org"}
        job = services.run_import(job_id)
        assert (job.status, job.committed_through, job.created_count, job.updated_count) == ("done", 6, 5, 1)
        db.session.remove()
    assert calls[2:] == [[5, 2, 6], [7]]  # from the checkpoint: line 2 again, with its key's last row
    a = clients_by_email(app)["a@example.org"]
    assert (a.first_name, a.phone, a.city) == ("First", "+4915123000001", "Paris")


def test_held_rows_beyond_the_limit_go_chunk_by_chunk(app, world, monkeypatch):
    """IMPORT_MAX_HELD_ROWS=1: b@'s group (one waiting row, ending first) is held; a@'s (two) is not."""
    from app.imports import services

    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    monkeypatch.setitem(app.config, "IMPORT_MAX_HELD_ROWS", 1)
    monkeypatch.setitem(app.config, "IMPORT_PIPELINE", False)
    lines = []
    real = services._submit_chunk

    def spy(run, writer, through, chunk, writers):
        lines.append([line for line, _, _ in chunk])
        return real(run, writer, through, chunk, writers)

    monkeypatch.setattr(services, "_submit_chunk", spy)
    text = "\n".join([
        HEAD,
        "a@example.org,First,Lee,+4915123000001,",        # a: three rows, two would wait
        "b@example.org,Bea,Lee,+4915123000002,",          # b: two rows, one waits (held)
        "a@example.org,Second,Lee,+4915123000001,x",
        "c@example.org,Cem,Lee,+4915123000003,",
        "b@example.org,Bea,Lee,+4915123000002,y",
        "a@example.org,Third,,,",
        "d@example.org,Dan,Lee,+4915123000004,",
    ]) + "\n"
    p, rep = run_import(app, text)
    assert lines == [[2, 4], [5, 3, 6], [7, 8]]
    assert (p["created"], p["updated"], p["failed"]) == (4, 3, 0), rep
    assert clients_by_email(app)["a@example.org"].first_name == "Third"


SQLITE_FILE_ONLY = pytest.mark.skipif(not _URL.startswith("sqlite:///") or _URL == "sqlite:///:memory:",
                                      reason="SQLite's ids ahead; runs in the SQLite-file pass of .ci/run")


@SQLITE_FILE_ONLY
def test_a_web_insert_taking_an_id_handed_out_ahead_loses_nothing(app, world, make_client, monkeypatch):
    """SQLite has no sequence: a pipelined run hands out the ids after the highest one written. A
    client created elsewhere (the web) before the writer inserts takes one of them; the writer's
    insert fails, nothing of its chunk is committed, and the run goes on chunk by chunk from the
    checkpoint, where the ids come from the insert."""
    from app.imports import services

    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    monkeypatch.setitem(app.config, "IMPORT_MAX_HELD_ROWS", 0)
    remember, handed, web = services.ImportRun.remember, [], []

    def web_insert_after_ids(self, through, creates, touched):
        handed.extend(rec.id for rec in creates)
        if creates and not web:  # ids handed out and committed, the chunk not yet with the writer
            web.append(make_client(email="web@example.org", first_name="Web"))
        return remember(self, through, creates, touched)

    monkeypatch.setattr(services.ImportRun, "remember", web_insert_after_ids)
    p, rep = run_import(app, FILE)
    assert web and web[0] == handed[0]  # the web client took the id handed out to a@ ahead
    assert len(handed) < 4  # the ids of later chunks came from the chunk-by-chunk inserts
    assert (p["created"], p["updated"], p["failed"], p["done"]) == (4, 3, 0, 7), rep
    clients = clients_by_email(app)
    assert sorted(clients) == ["a@example.org", "b@example.org", "c@example.org", "d@example.org",
                               "web@example.org"]
    assert clients["web@example.org"].id == web[0] and clients["web@example.org"].first_name == "Web"
    assert clients["a@example.org"].first_name == "Third" and clients["a@example.org"].id != handed[0]
    assert len({c.id for c in clients.values()}) == 5 and len({c.uid for c in clients.values()}) == 5
