"""File encodings (R24) and XLSX resource limits (R26) of the client import.

R24: a file in another encoding than UTF-8 is imported exactly when its encoding is declared; a
UTF-8 file with or without a BOM never carries the BOM into its first header; bytes that are not
valid in the declared encoding give a row error; an undeclared Cyrillic file is never stored as
mojibake. (Files already covered in test_import_pipeline.py: UTF-8 BOM with semicolons, CP1252
detection, Latin-1 with an explicit delimiter, Latin bytes under a declared UTF-8.)

R26: a billion-laughs shared-strings table and zip bombs (a classic one, and one tuned to stay
under the archive checks) inside otherwise valid workbooks are refused in under 2 s with bounded
memory. They are uploaded in a subprocess of their own, its address space capped (RLIMIT_AS) and
each pass cut off after a few seconds, so an unbounded expansion ends that subprocess's pass and
never the test run.
"""

import io
import json
import os
import random
import re
import struct
import subprocess
import sys
import zipfile
import zlib

import pytest

from tests.integration.import_helpers import clients_by_email, run_import

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAD = "email,firstName,lastName,phone,billing.city"


def _headers(app, job_id):
    """The header names the upload stored for an import job."""
    from app.extensions import db
    from app.imports.models import ImportJob
    with app.app_context():
        headers = list(db.session.get(ImportJob, job_id).headers)
        db.session.remove()
    return headers


def _city_and_names(client):
    return client.first_name, client.last_name, client.city


# ----------------------------------------------------------------- R24 encodings

RUSSIAN = ("ivan@example.org", "Иван", "Петров", "Москва")
FRENCH = ("zoe@example.org", "Zoë", "François", "Besançon")


@pytest.mark.parametrize("encoding, person", [("cp1251", RUSSIAN), ("latin-1", FRENCH)])
def test_declared_encoding_gives_the_exact_text(app, world, encoding, person):
    """R24: a cp1251 (Russian) or Latin-1 (French) file declared as such keeps every letter."""
    from app.core.errors import ValidationFailed
    email, first, last, city = person
    data = f"{HEAD}\n{email},{first},{last},+4915123000001,{city}\n".encode(encoding)
    try:
        p, rep = run_import(app, data, encoding=encoding)
    except ValidationFailed as exc:
        pytest.fail(f"the declared {encoding} file was refused: {[str(m) for m in exc.field_errors['file']]}")
    assert (p["created"], p["failed"]) == (1, 0), rep
    assert _city_and_names(clients_by_email(app)[email]) == (first, last, city)


@pytest.mark.parametrize("bom, declared", [(False, None), (False, "utf-8"), (True, None), (True, "utf-8"),
                                           (True, "utf-8-sig")])
def test_utf8_with_or_without_bom_keeps_the_first_header_clean(app, world, bom, declared):
    """R24: the BOM never ends up in the first header name (detected or declared, even as plain utf-8),
    so the e-mail column still maps by itself, and Cyrillic UTF-8 text arrives exactly."""
    email, first, last, city = RUSSIAN
    data = (b"\xef\xbb\xbf" if bom else b"") + f"{HEAD}\n{email},{first},{last},+4915123000001,{city}\n".encode()
    p, rep = run_import(app, data, encoding=declared)
    assert _headers(app, p["id"])[0] == "email"
    assert (p["created"], p["failed"], p["mapping"]["0"]) == (1, 0, "email"), rep
    assert _city_and_names(clients_by_email(app)[email]) == (first, last, city)


def test_cp1251_bytes_under_a_declared_utf8_give_row_errors(app, world):
    """R24: Cyrillic cp1251 rows read as the declared UTF-8 fail one by one with a reason naming the
    encoding; no mojibake is stored, and the plain ASCII row of the same file is imported."""
    rows = [("ivan@example.org", "Иван", "Петров", "+4915123000001", "Москва"),
            ("olga@example.org", "Ольга", "Смирнова", "+4915123000002", "Санкт-Петербург"),
            ("ann@example.org", "Ann", "Lee", "+4915123000003", "Bonn")]
    data = (HEAD + "\n" + "".join(",".join(r) + "\n" for r in rows)).encode("cp1251")
    p, rep = run_import(app, data, encoding="utf-8")
    assert (p["status"], p["created"], p["failed"]) == ("done", 1, 2), rep
    assert [line for line, *_ in rep] == [2, 3]
    assert all("not valid utf-8" in reason for _, _, reason, _ in rep), rep
    stored = clients_by_email(app)
    assert set(stored) == {"ann@example.org"} and stored["ann@example.org"].city == "Bonn"


def test_undeclared_cp1251_is_exact_or_refused_never_mojibake(app, world):
    """R24: a cp1251 file uploaded without an encoding is either read as Russian or refused clearly
    (the file, or its rows, with a reason naming the encoding); mojibake such as "Èâàí" is never stored."""
    from app.core.errors import ValidationFailed
    email, first, last, city = RUSSIAN
    data = f"{HEAD}\n{email},{first},{last},+4915123000001,{city}\n".encode("cp1251")
    try:
        p, rep = run_import(app, data)
        refusal = " ".join(reason for _, _, reason, _ in rep) if p["failed"] else ""
    except ValidationFailed as exc:
        refusal = " ".join(str(m) for m in exc.field_errors["file"])
    stored = clients_by_email(app).get(email)
    if stored is not None:
        assert _city_and_names(stored) == (first, last, city), "the undeclared cp1251 file was stored as mojibake"
    else:
        assert "encoding" in refusal.lower(), refusal


# ----------------------------------------------------------------- R26 XLSX bombs

SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
LAUGHS = ('<!DOCTYPE sst [\n<!ENTITY lol0 "lol">\n'
          + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10)) + "]>\n")
LAUGHS_EXPANDED = 3 * 10 ** 9  # characters of &lol9;
ADDRESS_SPACE = 1024 ** 3  # RLIMIT_AS of the subprocess: the app and a workbook need about 130 MiB of it
BOMB_UNITS = 1024  # MiB of the classic zip bomb's single cell (ratio ~1000), far beyond ADDRESS_SPACE once read
# The same bomb tuned to pass the archive checks: 1400 MiB in one cell, ratio ~147 (under the
# refused 200) and ~1.4 GiB unpacked (under the refused 2 GiB), from a 10 MB upload.
TUNED_UNITS, TUNED_NOISE = 1400, bytes(random.Random(26).choice(b"BCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(6144))
PASS_SECONDS = 3  # the subprocess cuts off any single pass at this point and reports it as too slow


def _workbook_parts(first_string, doctype=""):
    """The parts of a real openpyxl workbook (email, first name, last name, phone; one client), moved
    from inline strings to a shared-strings table whose first entry, cell A1, is `first_string`."""
    import openpyxl
    wb = openpyxl.Workbook()
    wb.active.append(["email", "firstName", "lastName", "phone"])
    wb.active.append(["laugh@example.org", "Ann", "Lee", "+4915123000001"])
    buf = io.BytesIO()
    wb.save(buf)
    with zipfile.ZipFile(buf) as zf:
        parts = {info.filename: zf.read(info) for info in zf.infolist()}
    strings = []

    def shared(match):
        strings.append(match[2])
        return f'<c r="{match[1]}" t="s"><v>{len(strings) - 1}</v></c>'
    sheet = re.sub(r'<c r="(\w+)" t="inlineStr"><is><t>(.*?)</t></is></c>', shared,
                   parts["xl/worksheets/sheet1.xml"].decode())
    assert strings[0] == "email"
    strings[0] = first_string
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    parts["xl/sharedStrings.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n{doctype}'
        f'<sst xmlns="{SHEET_NS}" count="{len(strings)}" uniqueCount="{len(strings)}">'
        + "".join(f"<si><t>{s}</t></si>" for s in strings) + "</sst>").encode()
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(
        b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                     b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml" /></Types>')
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>", b'<Relationship Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                             b'relationships/sharedStrings" Target="sharedStrings.xml" Id="rId9" /></Relationships>')
    return parts


def _segment(data, level=9, final=False):
    """Raw deflate of `data` from a fresh compressor, fully flushed (byte-aligned, nothing referenced
    before it), so segments can be chained, and one repeated, into a single valid stream."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + (c.flush() if final else c.flush(zlib.Z_FULL_FLUSH))


def _deflate(data):
    """A zip member as (raw deflate, crc32, size)."""
    return _segment(data, final=True), zlib.crc32(data), len(data)


def _one_cell_sheet(units, noise=b""):
    """sheet1.xml as (raw deflate, crc32, size) with a single inline-string cell: `units` times 1 MiB of
    the letter A, each followed by `noise` stored uncompressed (which lowers the compression ratio).
    The repeated unit is compressed once, so ~1 MB of output stands for 1 GiB in a fraction of a second."""
    head = f'<worksheet xmlns="{SHEET_NS}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>'.encode()
    tail = b"</t></is></c></row></sheetData></worksheet>"
    chunk = b"A" * 1024 ** 2
    unit = _segment(chunk) + (_segment(noise, level=0) if noise else b"")
    crc = zlib.crc32(head)
    for _ in range(units):
        crc = zlib.crc32(noise, zlib.crc32(chunk, crc))
    data = _segment(head) + unit * units + _segment(tail, final=True)
    return data, zlib.crc32(tail, crc), len(head) + units * (len(chunk) + len(noise)) + len(tail)


def _zip(members):
    """A zip archive of {name: (raw deflate, crc32, size)}, written field by field."""
    out, central = io.BytesIO(), []
    for name, (data, crc, size) in members.items():
        offset, encoded = out.tell(), name.encode()
        fields = (20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0)
        out.write(struct.pack("<I5H3I2H", 0x04034B50, *fields) + encoded + data)
        central.append(struct.pack("<IH5H3I2H3HII", 0x02014B50, 20, *fields, 0, 0, 0, 0, offset) + encoded)
    directory, where = b"".join(central), out.tell()
    out.write(directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory),
                                      where, 0))
    return out.getvalue()


# Run in a fresh interpreter: an app on a temporary SQLite file; then, under RLIMIT_AS, each file goes
# through the upload service (and the import, when the upload accepts it), and through the reader a
# running import uses for all its rows, each pass cut off after PASS_SECONDS; last come the controls,
# which expand the bombs with no protection at all.
CHILD = r"""
import json, re, resource, signal, sys, time, zipfile
args = json.loads(sys.argv[1])


class TooSlow(BaseException):  # not an Exception: the app's own `except Exception` must not swallow it
    pass


def too_slow(signum, frame):
    raise TooSlow()


signal.signal(signal.SIGALRM, too_slow)


def memory():
    with open("/proc/self/status") as fh:
        return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in fh)
                if k in ("VmSize", "VmPeak", "VmHWM")}


def timed(res, key, run):
    # run() under the alarm; `key`_seconds is its duration, `key`_cut says it was cut off
    t = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, args["pass_seconds"])
    try:
        run()
    except TooSlow:
        res[key + "_cut"] = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        res[key + "_seconds"] = time.perf_counter() - t


from flask_migrate import upgrade
from sqlalchemy import select
from app import create_app
from app.cli import sync_security
from app.clients.models import Client, ClientStatus
from app.core.errors import ValidationFailed
from app.extensions import db
from app.imports import parsing, services
from app.organisation.models import Project

app = create_app("config.TestConfig", SQLALCHEMY_DATABASE_URI="sqlite:///" + args["db"],
                 IMPORT_FOLDER=args["imports"], REDIS_URL="")
with app.app_context():
    upgrade(revision="heads")
    sync_security()
    sm = app.appbuilder.sm
    sm.add_user("admin", "Admin", "Tester", "admin@staff.test", sm.find_role("Admin"), "Passw0rd!x")
    db.session.add_all([Project(name="Project One", key="P1", active=True),
                        ClientStatus(label="New", colour="#123456", order=10, is_default=True)])
    db.session.commit()
    import openpyxl  # loaded before the limit, as in a running server
before = memory()
resource.setrlimit(resource.RLIMIT_AS, (args["limit"], args["limit"]))
out = {"before": before, "files": {}}


def check(name, path, res):
    def upload():
        admin = sm.find_user(username="admin")
        try:
            with open(path, "rb") as fh:
                job = services.store_upload(fh, name, admin)
        except ValidationFailed as exc:
            res["refused"] = [str(m) for m in exc.field_errors.get("file", [])]
            return
        res["refused"] = None
        job = services.start(job, admin)
        res["job"] = [job.status, job.reason, job.created_count, job.failed_count]
        res["report"] = [[str(x)[:200] for x in row] for row in services.report_rows(job)]

    def rows():
        try:
            res["rows"] = [[c[:80] for c in cells or []] for _, cells, _ in parsing.iter_file(path, "xlsx")]
        except parsing.FileRejected as exc:
            res["rows_refused"] = str(exc)

    with app.app_context():
        timed(res, "upload", upload)
        db.session.rollback()
        timed(res, "rows", rows)
        res["clients"] = [[c.email[:80], (c.first_name or "")[:80]] for c in db.session.scalars(select(Client))]
        db.session.remove()


for name, path in args["files"].items():
    mark, res = memory()["VmHWM"], {}
    try:
        check(name, path, res)
    except BaseException as exc:  # MemoryError and the like: the harm this subprocess is here to contain
        res["crash"] = f"{type(exc).__name__}: {exc}"[:300]
    res["peak_growth"] = memory()["VmHWM"] - mark
    out["files"][name] = res


def expand_naively(xml):
    entities = dict(re.findall(r'<!ENTITY (\w+) "([^"]*)">', xml))
    done = {}

    def value(name):
        if name not in done:
            done[name] = re.sub(r"&(\w+);", lambda m: value(m[1]), entities[name])
        return done[name]
    return len(value("lol9"))


def read_part(name, part):
    with zipfile.ZipFile(args["files"][name]) as zf:
        return zf.read(part)


controls = {}
for name, run in (("laughs", lambda: expand_naively(read_part("laughs.xlsx", "xl/sharedStrings.xml").decode())),
                  ("zip", lambda: len(read_part("zipbomb.xlsx", "xl/worksheets/sheet1.xml")))):
    try:
        controls[name] = run()
    except MemoryError:
        controls[name] = "MemoryError"
out["controls"] = controls
out["after"] = memory()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """The XLSX files of R26 through the upload in a capped subprocess; returns what it reported."""
    folder = tmp_path_factory.mktemp("xlsx-limits")
    plain = {n: _deflate(d) for n, d in _workbook_parts("email").items()}
    laughs = {n: _deflate(d) for n, d in _workbook_parts("&lol9;", LAUGHS).items()}
    files = {"laughs.xlsx": laughs,
             "zipbomb.xlsx": dict(plain, **{"xl/worksheets/sheet1.xml": _one_cell_sheet(BOMB_UNITS)}),
             "tuned.xlsx": dict(plain, **{"xl/worksheets/sheet1.xml": _one_cell_sheet(TUNED_UNITS, TUNED_NOISE)}),
             "plain.xlsx": plain}
    paths = {}
    for name, members in files.items():
        paths[name] = str(folder / name)
        with open(paths[name], "wb") as fh:
            fh.write(_zip(members))
    args = {"db": str(folder / "child.db"), "imports": str(folder / "imports"), "limit": ADDRESS_SPACE,
            "pass_seconds": PASS_SECONDS, "files": paths}
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the upload subprocess hung for 90 s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"the upload subprocess died ({done.returncode}): {done.stderr[-3000:]}"
    report = json.loads(lines[-1][len("RESULT "):])
    report["sizes"] = {name: os.path.getsize(path) for name, path in paths.items()}
    report["unpacked"] = {name: sum(size for _, _, size in members.values()) for name, members in files.items()}
    return report


def _refused_fast_and_small(res, message=""):
    """The upload refuses the file, the reader of a running import too, each within 2 s, the memory
    peak grows by less than 64 MiB, and no client is stored."""
    assert "crash" not in res, res["crash"]
    for step in ("upload", "rows"):
        assert not res.get(f"{step}_cut"), f"{step}: still running after {PASS_SECONDS} s, cut off ({res})"
        assert res[f"{step}_seconds"] < 2, f"{step} took {res[f'{step}_seconds']:.1f} s"
    assert res["peak_growth"] < 64 * 1024 ** 2, f"the memory peak grew by {res['peak_growth'] / 1024 ** 2:.0f} MiB"
    assert res.get("refused") and message in res["refused"][0], res
    assert res.get("rows_refused") and message in res["rows_refused"], res
    assert res["clients"] == [], res["clients"]


def test_billion_laughs_shared_strings_are_refused_fast_and_small(bombs):
    """R26: nested entities in xl/sharedStrings.xml (3·10⁹ characters once expanded, cell A1) are refused
    by the upload and by the reader of a running import, quickly and without the memory growing."""
    assert bombs["sizes"]["laughs.xlsx"] < 10_000
    _refused_fast_and_small(bombs["files"]["laughs.xlsx"], "This is not a valid XLSX file.")


def test_zip_bomb_xlsx_is_refused_fast_and_small(bombs):
    """R26: a ~1 MB workbook whose sheet unpacks to 1 GiB (ratio ~1000) is refused before any XML is
    read, by the upload and by the reader of a running import, quickly and without the memory growing."""
    assert bombs["sizes"]["zipbomb.xlsx"] < 2 * 1024 ** 2 and bombs["unpacked"]["zipbomb.xlsx"] > 1024 ** 3
    _refused_fast_and_small(bombs["files"]["zipbomb.xlsx"], "compressed suspiciously well")


def test_zip_bomb_tuned_under_the_archive_limits_is_refused_fast_and_small(bombs):
    """R26: a 10 MB workbook whose single cell unpacks to ~1.4 GiB at a ratio of ~147 passes the archive
    checks (ratio 200, 2 GiB); it must still be refused quickly and without the memory growing, not
    parsed into one giant value."""
    size, unpacked = bombs["sizes"]["tuned.xlsx"], bombs["unpacked"]["tuned.xlsx"]
    assert size < 11 * 1024 ** 2 and 1024 ** 3 < unpacked < 2 * 1024 ** 3 and 100 < unpacked / size < 200
    _refused_fast_and_small(bombs["files"]["tuned.xlsx"], "a row or a value too large to read")


def test_the_bomb_files_are_otherwise_valid_workbooks(bombs):
    """R26: the same workbook with a harmless first shared string is accepted and imported, so the bombs
    are refused for what they hold, not for a broken archive or shared-strings table."""
    res = bombs["files"]["plain.xlsx"]
    assert "crash" not in res, res["crash"]
    assert res["refused"] is None and res["job"][0] == "done" and res["job"][2] == 1, res
    assert res["rows"][0] == ["email", "firstName", "lastName", "phone"], res["rows"]
    assert res["clients"] == [["laugh@example.org", "Ann"]]


def test_the_bombs_exhaust_the_capped_subprocess_when_expanded_naively(bombs):
    """R26: the limit and the bombs are real: the app needs a small part of the address space, and
    expanding either bomb with no protection in the same subprocess runs out of it, so a missing
    protection would fail the tests above rather than pass them."""
    assert bombs["before"]["VmSize"] < ADDRESS_SPACE // 4, bombs["before"]
    assert bombs["controls"] == {"laughs": "MemoryError", "zip": "MemoryError"}, bombs["controls"]
    assert LAUGHS_EXPANDED > ADDRESS_SPACE and BOMB_UNITS * 1024 ** 2 >= ADDRESS_SPACE


# ----------------------------------------------------------------- R26 the shape of a CSV file

def test_a_header_of_more_columns_than_an_import_reads_is_refused_at_upload(app, world):
    """R26: at most parsing.MAX_COLUMNS columns; the upload says how many the file has."""
    from app.core.errors import ValidationFailed
    from app.imports import parsing, services
    from tests.conftest import user
    header = ",".join(["email"] + [f"meta.c{n}" for n in range(parsing.MAX_COLUMNS)])
    with app.app_context():
        with pytest.raises(ValidationFailed) as exc:
            services.store_upload(io.BytesIO(f"{header}\na@example.org\n".encode()), "wide.csv", user(app, "admin"))
        assert str(exc.value.field_errors["file"][0]) == (
            f"The file has {parsing.MAX_COLUMNS + 1} columns; an import reads at most {parsing.MAX_COLUMNS}.")
        at_limit = ",".join(["email"] + [f"meta.c{n}" for n in range(parsing.MAX_COLUMNS - 1)])
        job = services.store_upload(io.BytesIO(f"{at_limit}\na@example.org\n".encode()), "ok.csv", user(app, "admin"))
        assert len(job.headers) == parsing.MAX_COLUMNS


def test_an_overlong_csv_line_is_a_row_error_and_its_neighbours_import(app, world):
    """R26: a line of more than parsing.MAX_LINE characters (here 3 MB of separators, which would be
    3M cells) is read past in pieces and reported; the rows around it are imported."""
    from app.imports import parsing
    long_line = "c@example.org" + "," * (3 * parsing.MAX_LINE)
    data = (f"{HEAD}\na@example.org,Ann,Lee,+4915123000001,Paris\n{long_line}\n"
            f"b@example.org,Bob,Kim,+4915123000002,Rome\n").encode()
    p, rep = run_import(app, data)
    assert (p["created"], p["failed"]) == (2, 1), rep
    assert [(line, reason) for line, _kind, reason, _raw in rep] == [
        (3, f"The line is longer than {parsing.MAX_LINE} characters.")]
    assert set(clients_by_email(app)) == {"a@example.org", "b@example.org"}


def test_an_overlong_header_line_is_refused_with_its_reason(app, world):
    from app.core.errors import ValidationFailed
    from app.imports import parsing, services
    from tests.conftest import user
    with app.app_context():
        with pytest.raises(ValidationFailed) as exc:
            services.store_upload(io.BytesIO(("email" + ";" * (parsing.MAX_LINE + 5) + "\n").encode()), "h.csv",
                                  user(app, "admin"))
        assert str(exc.value.field_errors["file"][0]) == f"The line is longer than {parsing.MAX_LINE} characters."
