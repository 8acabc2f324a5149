"""The spool of an XLSX import (imports.parsing.Spool): the run reads back what the plan's pass read.

An import passes over its file twice; for an XLSX file the first pass keeps its rows as CSV in a
nameless temporary file and the second reads them from there instead of parsing the sheet again.
The spool must give back exactly the items it was given (cells of any text, unreadable rows with
their problem, the sheet's line numbers), be used only after a whole pass, and give way to a
second read of the file when it would grow too large. An import with the spool and one without
must end the same.
"""

import io
import zipfile

import openpyxl
import pytest

from app.imports import parsing
from tests.integration.import_helpers import clients_by_email, run_import

HOSTILE = ["a,b", 'say "hi"', "two\nlines", "cr\ronly", "crlf\r\nend", "nul\x00inside", "  padded  ", "",
           "=1+1", "Ñandú Тест 東京", "x" * 5000, "\ud800"]


def _items():
    return [(1, ["email", "note"], None), (2, ["a@example.org"] + HOSTILE, None),
            (5, None, "A value is longer than 100000 characters or the row is malformed."),
            (6, [""], None), (70000, ["b@example.org", "last"], None)]


def test_the_spool_gives_back_every_item_as_it_was_given(tmp_path):
    spool = parsing.Spool(str(tmp_path), 10 ** 6)
    passed = list(spool.tee(iter(_items())))
    assert passed == _items() and spool.ready
    assert list(spool.items()) == _items()
    assert list(spool.items()) == _items()  # each read starts from the beginning
    assert list(tmp_path.iterdir()) == []  # nameless: nothing another run could open or leave behind
    spool.close()
    assert not spool.ready


def test_a_spool_that_would_outgrow_its_bound_is_dropped_and_the_pass_goes_on(tmp_path):
    items = [(n, [f"c{n}@example.org", "y" * 100], None) for n in range(1, 200)]
    spool = parsing.Spool(str(tmp_path), 5_000)
    assert list(spool.tee(iter(items))) == items  # the plan's pass sees every row all the same
    assert not spool.ready and spool.fh is None


def test_a_pass_that_did_not_reach_the_end_leaves_no_spool_to_read(tmp_path):
    spool = parsing.Spool(str(tmp_path), 10 ** 6)
    tee = spool.tee(iter(_items()))
    next(tee)
    next(tee)
    tee.close()
    assert not spool.ready


BOB_NOTE = 'tab\tand "quotes", commas ' + "z" * 200  # the spool passes 300 bytes at this row


def _workbook():
    """Repeated e-mails in different chunks (held rows), an update of an earlier row, a row that
    cannot be read (a cell past the last column), a bad phone, and texts that need quoting."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["email", "firstName", "lastName", "phone", "description"])
    ws.append(["ann@example.org", "Ann", "Lee", "+4915123000001", 'first, "quoted"\nline'])
    ws.append(["bob@example.org", "Bob", "Kay", "+4915123000002", BOB_NOTE])
    ws.append(["cid@example.org", "Cid", "Roe", "not a phone", "x"])
    ws.append(["dan@example.org", "Dan", "Fox", "+4915123000004", "semi; colon"])
    ws.append(["ann@example.org", "Anna", "Lee", "+4915123000001", "second"])
    ws.append(["eve@example.org", "Eve", "Ng", "+4915123000005", "Ñandú Тест"])
    buf = io.BytesIO()
    wb.save(buf)
    with zipfile.ZipFile(buf) as zf:
        parts = {info.filename: zf.read(info) for info in zf.infolist()}
    # a seventh data row whose only cell lies beyond column XFD: unreadable
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
        b"</sheetData>", b'<row r="8"><c r="XFE8" t="inlineStr"><is><t>x</t></is></c></row></sheetData>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("spool_bytes, sheet_reads", [(10 ** 6, 1), (0, 2), (300, 2)])
def test_an_xlsx_import_ends_the_same_with_or_without_its_spool(app, world, monkeypatch, spool_bytes, sheet_reads):
    monkeypatch.setitem(app.config, "IMPORT_SPOOL_MAX_BYTES", spool_bytes)  # 300: dropped at row 3
    monkeypatch.setitem(app.config, "IMPORT_CHUNK_SIZE", 2)
    reads = []  # whole passes over the sheet (the upload's preview reads only its head)
    real = parsing.iter_xlsx

    def counted(path):
        yield from real(path)
        reads.append(path)
    monkeypatch.setattr(parsing, "iter_xlsx", counted)
    p, rep = run_import(app, _workbook(), filename="clients.xlsx", project=world.p1)
    assert len(reads) == sheet_reads
    assert (p["created"], p["updated"], p["failed"], p["total"]) == (4, 1, 2, 7), rep
    assert [(line, kind, reason) for line, kind, reason, _raw in rep] == [
        (4, "error", "phone: Enter the phone number in international format, like +14155550123."),
        (6, "notice", "The e-mail repeats line 2 of this file; the later row updates the earlier one."),
        (8, "error", f"A value is longer than {parsing.FIELD_SIZE_LIMIT} characters or the row is malformed.")]
    clients = clients_by_email(app)
    assert sorted(clients) == ["ann@example.org", "bob@example.org", "dan@example.org", "eve@example.org"]
    # the held row and the later row of its e-mail made one client, the later values winning
    assert (clients["ann@example.org"].first_name, clients["ann@example.org"].description) == ("Anna", "second")
    assert clients["bob@example.org"].description == BOB_NOTE
    assert clients["dan@example.org"].description == "semi; colon"
    assert clients["eve@example.org"].description == "Ñandú Тест"
