"""Properties of the client import over generated files: duplicates and idempotency (R27),
partial failures (R28) and a run that stops at a chosen point inside its chunk loop and is
resumed from its checkpoint (R30, unit variant).

The files are small CSV files of a few known e-mails (in several spellings: case, spaces), some
rows repeating an e-mail, some leaving cells empty, and a few invalid rows (a bad e-mail, no
e-mail, a bad phone). What the import should leave behind is computed here from CL-IO-2's words,
independently of the import code (`expected_clients`): a row with a new e-mail creates a client
when it has a first name and a phone; a row with the e-mail of a client updates it with its
non-empty cells; an invalid row changes nothing. Each Hypothesis example starts from an empty
client table (`_wipe`).
"""

import io
import json
import threading

from hypothesis import HealthCheck, assume, given, settings, strategies as st
from sqlalchemy import select, text

from tests.conftest import user
from tests.integration.import_helpers import run_import

HEAD = "email,firstName,lastName,phone,billing.city"
FIELDS = ("first_name", "last_name", "phone", "city")  # the imported fields, in the file's column order
BAD_PHONE = "12345"

LOCALS = ("ann", "bob", "cem", "dan", "eve", "fay")
# each e-mail in three spellings that name the same client (the key is trimmed and casefolded)
EMAILS = [form.format(local) for local in LOCALS for form in ("{}@example.org", " {}@example.org ")] + [
    local.title() + "@Example.ORG" for local in LOCALS]
BAD_EMAILS = ["not-an-email", ""]
PHONES = [f"+49151230000{n:02d}" for n in range(1, 7)] + ["", BAD_PHONE]
FIRST_NAMES = ["Ann", "Bea", "Cem", "Dora", ""]
LAST_NAMES = ["Lee", "Kim", ""]
CITIES = ["Paris", "Berlin", "Lyon", ""]

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])


def _row(emails):
    return st.tuples(emails, st.sampled_from(FIRST_NAMES), st.sampled_from(LAST_NAMES), st.sampled_from(PHONES),
                     st.sampled_from(CITIES))


# about one row in ten has a bad or no e-mail, one in eight a bad phone
ROW = _row(st.sampled_from(EMAILS + BAD_EMAILS))


def _key(email):
    return email.strip().casefold()


def _invalid(row):
    """A row no client takes: a bad or missing e-mail, or a bad phone."""
    email, _first, _last, phone, _city = row
    return "@" not in email or phone == BAD_PHONE


def expected_clients(rows):
    """The clients ({e-mail: {field: value}}) a run of `rows` leaves in an empty client table, and the
    number of rows it refuses, when the rows of each e-mail are decided in one chunk (the default:
    RepeatPlan holds them together). A valid row of a new e-mail that lacks a first name or a phone
    is kept for the next row of that e-mail and merged with it (its values under the later row's);
    with no such row left it is refused, with the rows kept before it."""
    keys = [_key(row[0]) if "@" in row[0] else None for row in rows]
    clients, carried, refused = {}, {}, 0
    for n, row in enumerate(rows):
        email = keys[n]
        followed = email is not None and email in keys[n + 1:]
        if _invalid(row):
            refused += 1
            if email in carried and not followed:
                refused += carried.pop(email)[1]
            continue
        cells = {f: value.strip() for f, value in zip(FIELDS, row[1:], strict=True) if value.strip()}
        if email in clients:
            clients[email].update(cells)
            continue
        merged, kept = carried.pop(email, ({}, 0))
        merged = {**merged, **cells}
        if "first_name" in merged and "phone" in merged:  # a new personal client needs both
            clients[email] = dict(dict.fromkeys(FIELDS), **merged)
        elif followed:
            carried[email] = (merged, kept + 1)
        else:
            refused += kept + 1
    return clients, refused


def without_rows_refused_only_as_new(rows):
    """`rows` without the rows that lack a first name or a phone for an e-mail that has no client yet.
    Such a row waits for the next row of its e-mail in the same chunk; when the file is split (two
    imports) or its rows of one e-mail fall in different chunks (more held rows than
    IMPORT_MAX_HELD_ROWS), the part alone refuses it, and a later run of the whole file then updates
    the client with it."""
    created, kept = set(), []
    for row in rows:
        if not _invalid(row):
            email = _key(row[0])
            if email not in created:
                if not (row[1].strip() and row[3].strip()):
                    continue
                created.add(email)
        kept.append(row)
    return kept


def csv_text(rows):
    lines = [HEAD] + [",".join(row) for row in rows]
    return "\n".join(lines) + "\n"


def _wipe(app):
    """An empty client table for the next example. Import jobs, their reports and the audit log stay
    (the audit log is append-only on PostgreSQL): the tests read the audit rows of their own jobs."""
    from app.extensions import db
    with app.app_context():
        for table in ("client_tag", "client"):
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
        db.session.remove()


def client_state(app, exact=False):
    """{e-mail: (imported fields, derived and default fields)} of every client; with `exact` also its
    id, UID and timestamps (equal only within one database history)."""
    from app.clients.models import Client
    from app.extensions import db
    columns = [Client.email, *(getattr(Client, f) for f in FIELDS), Client.full_name, Client.project_id,
               Client.desk_id, Client.status_id, Client.state, Client.client_type]
    if exact:
        columns += [Client.id, Client.uid, Client.created_at, Client.updated_at]
    with app.app_context():
        rows = db.session.execute(select(*columns)).all()
        db.session.remove()
    state = {r[0]: tuple(r[1:]) for r in rows}
    assert len(state) == len(rows)
    return state


def imported_fields(state):
    """{e-mail: {field: value}} of the imported fields of a client_state."""
    return {email: dict(zip(FIELDS, values[:len(FIELDS)], strict=True)) for email, values in state.items()}


def audit_rows(app, *job_ids):
    """(operation, field, old, new, client e-mail) of the audit rows of these import jobs, sorted; a
    "create" row's values without its UID and creation time (which differ from one run to another)."""
    from app.clients.models import Client
    from app.core.audit import AuditLog
    from app.extensions import db
    q = (select(AuditLog.operation, AuditLog.field, AuditLog.old_value, AuditLog.new_value, Client.email)
         .outerjoin(Client, Client.id == AuditLog.client_id))
    q = q.where(AuditLog.job_id.in_([f"import-{job_id}" for job_id in job_ids]))
    with app.app_context():
        rows = [tuple(r) for r in db.session.execute(q)]
        db.session.remove()
    out = []
    for operation, field, old, new, email in rows:
        if operation == "create":
            values = json.loads(new)
            assert values.pop("uid") and values.pop("created_at")
            new = json.dumps(values, sort_keys=True)
        out.append((operation, field, old or "", new or "", email))
    return sorted(out)


def _counts(payload):
    return payload["created"], payload["updated"], payload["unchanged"], payload["failed"]


# ----------------------------------------------------------------- R27 duplicates and idempotency

CHUNKING = st.sampled_from([(5000, 50_000), (1, 50_000), (2, 50_000), (3, 50_000), (2, 0), (3, 1)])


@settings(max_examples=40, **SETTINGS)
@given(rows=st.lists(ROW, min_size=1, max_size=30),
       chunking=CHUNKING)
def test_rerun_of_a_file_changes_nothing(app, world, monkeypatch, rows, chunking):
    """R27: import(F); import(F) leaves the clients import(F) left. When every repeated e-mail's rows
    are held together (IMPORT_MAX_HELD_ROWS large enough), the second run writes nothing (ids, UIDs
    and timestamps stay too), reports every row it took as unchanged and adds no audit row; when they
    are not, it goes chunk by chunk and may write (and count) the flips of a repeated e-mail, but the
    clients end with the same values."""
    chunk_size, held = chunking
    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", chunk_size)
    monkeypatch.setitem(app.config, "IMPORT_MAX_HELD_ROWS", held)
    all_held = held >= len(rows)
    if not all_held:
        rows = without_rows_refused_only_as_new(rows)
        assume(rows)
    _wipe(app)
    expected, refused = expected_clients(rows)
    first, report = run_import(app, csv_text(rows))
    once = client_state(app, exact=all_held)
    assert imported_fields(once) == expected, report
    assert (first["status"], first["failed"], first["created"]) == ("done", refused, len(expected)), report

    second, report = run_import(app, csv_text(rows))
    assert client_state(app, exact=all_held) == once, report
    assert (second["status"], second["created"], second["failed"]) == ("done", 0, refused), report
    if all_held:
        assert second["unchanged"] == len(rows) - refused, (second, report)
        assert second["updated"] == 0
        assert audit_rows(app, second["id"]) == []


def test_rows_of_a_new_email_are_completed_by_its_later_rows(app, world):
    """R27 / CL-IO-2 ("re-running the same file is safe: the second run reports everything as
    unchanged"): a row without a first name or phone, for an e-mail that a later row of the file
    creates, is decided with that row. Refused on its own, it would update the client the later row
    creates when the file is run again."""
    rows = [("ann@example.org", "", "", "", "Paris"), ("ann@example.org", "Ann", "", "", "Lyon"),
            ("ann@example.org", "", "Lee", "+4915123000001", ""), ("bob@example.org", "Bob", "", "", "Rome")]
    first, report = run_import(app, csv_text(rows))
    once = client_state(app, exact=True)
    assert imported_fields(once) == {"ann@example.org": dict(first_name="Ann", last_name="Lee",
                                                             phone="+4915123000001", city="Lyon")}
    assert _counts(first) == (1, 2, 0, 1), report  # as if line 2 had created ann and lines 3 and 4 updated her
    assert [(line, kind) for line, kind, *_ in report] == [(4, "notice"), (5, "error")], report
    assert "repeats line 2" in report[0][2] and "Phone is required" in report[1][2]
    second, report = run_import(app, csv_text(rows))
    assert client_state(app, exact=True) == once, report
    assert _counts(second) == (0, 0, 3, 1), report
    assert expected_clients(rows) == (imported_fields(once), 1)


@settings(max_examples=30, **SETTINGS)
@given(rows=st.lists(ROW, min_size=1, max_size=30), data=st.data())
def test_shuffled_file_gives_the_same_set_of_clients(app, world, rows, data):
    """R27: the rows of a file in another order leave clients of the same e-mails (their values may
    differ: the later row of an e-mail wins), each as the rows in that order say."""
    shuffled = data.draw(st.permutations(rows), label="shuffled")
    _wipe(app)
    run_import(app, csv_text(rows))
    in_order = client_state(app)
    _wipe(app)
    _, report = run_import(app, csv_text(shuffled))
    reordered = client_state(app)
    assert set(reordered) == set(in_order), report
    assert imported_fields(in_order) == expected_clients(rows)[0]
    assert imported_fields(reordered) == expected_clients(shuffled)[0], report


@settings(max_examples=20, **SETTINGS)
@given(rows=st.lists(ROW, min_size=1, max_size=30, unique_by=lambda row: _key(row[0])), data=st.data())
def test_shuffled_file_of_distinct_emails_gives_the_same_clients(app, world, rows, data):
    """R27: with one row per e-mail, the order of the rows does not matter at all."""
    shuffled = data.draw(st.permutations(rows), label="shuffled")
    _wipe(app)
    in_order_run, _ = run_import(app, csv_text(rows))
    in_order = client_state(app)
    _wipe(app)
    reordered_run, report = run_import(app, csv_text(shuffled))
    assert client_state(app) == in_order, report
    assert _counts(reordered_run) == _counts(in_order_run)
    assert imported_fields(in_order) == expected_clients(rows)[0]


@settings(max_examples=30, **SETTINGS)
@given(rows=st.lists(ROW, min_size=1, max_size=30), data=st.data(), chunking=CHUNKING)
def test_file_in_two_parts_gives_the_clients_of_the_whole_file(app, world, monkeypatch, rows, data, chunking):
    """R27: with F = A then B (A the first k rows, B the rest, each with the header),
    import(A); import(B) leaves the clients import(F) leaves."""
    chunk_size, held = chunking
    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", chunk_size)
    monkeypatch.setitem(app.config, "IMPORT_MAX_HELD_ROWS", held)
    rows = without_rows_refused_only_as_new(rows)  # A alone refuses what B's rows would complete
    assume(rows)
    k = data.draw(st.integers(0, len(rows)), label="k")
    _wipe(app)
    whole, _ = run_import(app, csv_text(rows))
    at_once, at_once_audit = client_state(app), audit_rows(app, whole["id"])
    _wipe(app)
    part_a, _ = run_import(app, csv_text(rows[:k]))
    part_b, report = run_import(app, csv_text(rows[k:]))
    assert client_state(app) == at_once, report
    assert imported_fields(at_once) == expected_clients(rows)[0]
    assert part_a["created"] + part_b["created"] == whole["created"]
    assert part_a["failed"] + part_b["failed"] == whole["failed"]
    # one "create" audit row per client either way (what the updates say depends on the split: a run
    # writes the net change of a client's rows in one chunk)
    assert sorted(r[4] for r in audit_rows(app, part_a["id"], part_b["id"]) if r[0] == "create") == sorted(at_once)
    assert sorted(r[4] for r in at_once_audit if r[0] == "create") == sorted(at_once)


# ----------------------------------------------------------------- R28 partial failures

def test_three_bad_rows_among_ten_thousand(app, world, monkeypatch):
    """R28 (the policy is per row: CL-IO-2 "invalid rows never block valid ones"): 10,000 rows, 3 of
    them invalid (the first row, the last row of the first chunk and the last row of the file), give
    exactly 3 reported errors with their lines and reasons, and 9,997 new clients."""
    from app.clients.models import Client
    from app.extensions import db

    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 5000)
    bad = {1: "not-an-email,Bad,Row,+4915123900001,",       # line 2: the e-mail
           5000: "x5000@example.org,Bad,Row,12345,",          # line 5001: the phone (last row of chunk 1)
           10_000: "x10000@example.org,,Row,+4915123900002,"}  # line 10001: no first name (the last row)
    lines = [HEAD] + [bad.get(n) or f"x{n}@example.org,Anna,Row{n},+4915123{n:06d},City{n % 7}"
                      for n in range(1, 10_001)]
    payload, report = run_import(app, "\n".join(lines) + "\n")

    assert payload["status"] == "done"
    assert (payload["total"], payload["done"]) == (10_000, 10_000)
    assert _counts(payload) == (9_997, 0, 0, 3)
    assert payload["notices"] == 0
    assert [(line, kind) for line, kind, _reason, _raw in report] == [(2, "error"), (5001, "error"),
                                                                       (10_001, "error")]
    reasons = [reason for _line, _kind, reason, _raw in report]
    assert reasons[0].startswith("email: "), reasons
    assert reasons[1].startswith("phone: "), reasons
    assert reasons[2].startswith("firstName: "), reasons
    with app.app_context():
        emails = set(db.session.scalars(select(Client.email)))
        db.session.remove()
    assert len(emails) == 9_997
    assert emails == {f"x{n}@example.org" for n in range(2, 10_000) if n != 5000}


# ----------------------------------------------------------------- R30 a run that stops mid-file

class Crash(Exception):
    """The run stops here (a worker dying at this point of the chunk loop)."""


# Where the run stops: before a chunk is processed; in its write, before anything of it is written or
# after its clients, tags and audit rows are (uncommitted); after its report rows are written, just
# before the checkpoint moves.
STOPS = ("submit", "write-before", "write-after", "report")

R30_EMAILS = [f"r{n}@example.org" for n in range(60)]
R30_ROW = _row(st.sampled_from(R30_EMAILS + ["R1@Example.org", " r2@example.org "] + BAD_EMAILS))


def _stopping_run(app, monkeypatch, stops):
    """Patch the chunk loop to raise Crash at the chosen calls ({point: {n-th call, ...}}, counted over
    every run); returns the calls made so far per point, and the checkpoints each chunk started from."""
    from app.imports import services

    calls = dict.fromkeys(STOPS, 0)
    checkpoints = []
    lock = threading.Lock()

    def stop_here(point):
        with lock:
            calls[point] += 1
            n = calls[point]
        if n in stops.get(point, ()):
            raise Crash(f"{point} #{n}")

    # the originals, not an earlier example's patches (monkeypatch undoes them only after the test)
    submit, write, save_report = (getattr(f, "original", f) for f in (
        services._submit_chunk, services.ImportRun.write, services.ImportRun.save_report))

    def submit_chunk(run, writer, through, chunk, writers):
        checkpoints.append(writer.committed)
        stop_here("submit")
        return submit(run, writer, through, chunk, writers)

    def write_chunk(self, *args, **kwargs):
        stop_here("write-before")
        out = write(self, *args, **kwargs)
        stop_here("write-after")
        return out

    def save_chunk_report(self, rows):
        out = save_report(self, rows)
        stop_here("report")
        return out

    submit_chunk.original, write_chunk.original, save_chunk_report.original = submit, write, save_report
    monkeypatch.setattr(services, "_submit_chunk", submit_chunk)
    monkeypatch.setattr(services.ImportRun, "write", write_chunk)
    monkeypatch.setattr(services.ImportRun, "save_report", save_chunk_report)
    return calls, checkpoints


def _run_to_the_end(app, text_):
    """Store the file and run it with services.run_import, resuming it after each Crash as a new
    delivery of the job would; returns (job id, number of crashes, committed_through after each)."""
    from app.extensions import db
    from app.imports import services

    crashes, after = 0, []
    with app.app_context():
        job_id = services.store_upload(io.BytesIO(text_.encode()), "r30.csv", user(app, "admin")).id
        for _attempt in range(4):  # at most two stops, and the run to the end
            try:
                job = services.run_import(job_id)
            except Crash:
                db.session.rollback()
                crashes += 1
                job = db.session.get(services.ImportJob, job_id)
                assert job.status == "running"  # not marked failed: services.run_import does not
                after.append(job.committed_through)
                continue
            assert job.status == "done"
            break
        db.session.remove()
    return job_id, crashes, after


def _job(app, job_id):
    from app.extensions import db
    from app.imports import services
    with app.app_context():
        job = db.session.get(services.ImportJob, job_id)
        out = dict(status=job.status, total=job.total_rows, through=job.committed_through,
                   counts=(job.created_count, job.updated_count, job.unchanged_count, job.failed_count,
                           job.notice_count),
                   report=[tuple(r[:3]) for r in services.report_rows(job)])
        db.session.remove()
    return out


@settings(max_examples=15, **SETTINGS)
@given(rows=st.lists(R30_ROW, min_size=50, max_size=150), chunk_size=st.integers(2, 9), data=st.data())
def test_run_stopped_inside_the_chunk_loop_resumes_without_loss_or_duplicates(app, world, monkeypatch, rows,
                                                                            chunk_size, data):
    """R30 (unit variant): the run stops at one or two Hypothesis-chosen calls inside its chunk loop and is
    resumed from the job's checkpoint. The result is the one of a run that never stopped: every row taken
    exactly once (one client per e-mail the file creates, one "create" audit row of the job per client),
    the same audit trail, counts and report; `committed_through` never went back."""
    from app.clients.models import Client
    from app.extensions import db

    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", chunk_size)
    text_ = csv_text(rows)
    expected, refused = expected_clients(rows)

    # the run that never stops, counting the calls at each point
    calls, _ = _stopping_run(app, monkeypatch, {})
    _wipe(app)
    clean_id, crashes, _ = _run_to_the_end(app, text_)
    assert crashes == 0
    clean, clean_state, clean_audit = _job(app, clean_id), client_state(app), audit_rows(app, clean_id)
    assert imported_fields(clean_state) == expected
    assert clean["counts"][0] == len(expected) and clean["counts"][3] == refused

    # the same file, stopping at the chosen calls (counted over the stopped run and its resumptions)
    point = data.draw(st.sampled_from(STOPS), label="point")
    stops = {point: {data.draw(st.integers(1, calls[point]), label="call")}}
    if data.draw(st.booleans(), label="stops twice"):
        again = data.draw(st.sampled_from(STOPS), label="second point")
        stops.setdefault(again, set()).add(data.draw(st.integers(1, calls[again] + 2), label="second call"))
    _wipe(app)
    _, checkpoints = _stopping_run(app, monkeypatch, stops)
    job_id, crashes, after = _run_to_the_end(app, text_)
    assert crashes >= 1

    job = _job(app, job_id)
    assert (job["status"], job["through"], job["total"]) == ("done", len(rows), len(rows))
    # committed_through never went back: each chunk starts from the checkpoint of the one before it (or
    # a later one), and a resumed run from the checkpoint the stopped one left
    assert checkpoints == sorted(checkpoints), checkpoints
    assert after == sorted(after) and set(after) <= set(checkpoints), (after, checkpoints)

    state = client_state(app)
    assert state == clean_state
    assert imported_fields(state) == expected
    with app.app_context():
        n_clients = db.session.scalar(select(db.func.count()).select_from(Client))
        client_ids = set(db.session.scalars(select(Client.id)))
        db.session.remove()
    assert n_clients == len(expected)
    job_audit = audit_rows(app, job_id)
    creates = [r for r in job_audit if r[0] == "create"]
    assert len(creates) == n_clients and {r[4] for r in creates} == set(expected)
    assert _create_audit_ids(app, job_id) == client_ids
    assert job_audit == clean_audit

    created, updated, unchanged, failed, _notices = job["counts"]
    assert created + updated + unchanged + failed == len(rows)
    assert job["counts"] == clean["counts"]
    assert (created, failed) == (len(expected), refused)
    assert job["report"] == clean["report"]
    assert sum(1 for r in job["report"] if r[1] == "error") == failed


def _create_audit_ids(app, job_id):
    from app.core.audit import AuditLog
    from app.extensions import db
    with app.app_context():
        ids = list(db.session.scalars(select(AuditLog.entity_id).where(AuditLog.job_id == f"import-{job_id}",
                                                                       AuditLog.operation == "create")))
        db.session.remove()
    assert len(ids) == len(set(ids))
    return set(ids)
