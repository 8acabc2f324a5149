"""The XLSX reader (imports.parsing.iter_xlsx): cells read with expat, checked against openpyxl.

openpyxl's read-only, data-only reader is the oracle: for workbooks written by openpyxl (both its
modes) and for sheet XML written by hand in the forms other producers use (shared strings with rich
text and phonetic guides, inline rich strings, prefixed namespaces, rows and cells without
references, formula results, errors, ISO dates, booleans, the 1904 calendar, date and duration
styles), the reader gives the rows openpyxl gives, rendered the way the import has always rendered
them. Then what openpyxl would crash on or expand: a broken row, entity declarations, broken XML.
"""

import datetime as dt
import io
import zipfile

import openpyxl
import pytest
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from app.imports import parsing

NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
STRINGS_TYPE = b"application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
STRINGS_REL = b"http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"


def _package(path, fill=None, sheet=None, strings=None, epoch1904=False, write_only=False):
    """An XLSX file written by openpyxl (`fill(ws)` adds its cells); `sheet` replaces the sheet's
    XML, `strings` adds a shared-strings part of that XML."""
    wb = openpyxl.Workbook(write_only=write_only)
    ws = wb.create_sheet() if write_only else wb.active
    if epoch1904:
        wb.epoch = CALENDAR_MAC_1904
    if fill:
        fill(ws)
    buf = io.BytesIO()
    wb.save(buf)
    with zipfile.ZipFile(buf) as zf:
        parts = {info.filename: zf.read(info) for info in zf.infolist()}
    if sheet is not None:
        parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    if strings is not None:
        parts["xl/sharedStrings.xml"] = strings.encode()
        parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(
            b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="' + STRINGS_TYPE + b'"/></Types>')
        parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(
            b"</Relationships>",
            b'<Relationship Type="' + STRINGS_REL + b'" Target="sharedStrings.xml" Id="rId99"/></Relationships>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return str(path)


def _as_openpyxl_reads(path):
    """The rows as the import read them through openpyxl (line, cell texts, no problem)."""
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        out = []
        for line, row in enumerate(wb.worksheets[0].iter_rows(values_only=True), start=1):
            cells = [parsing._cell_text(c) for c in row]
            while cells and cells[-1] == "":
                cells.pop()
            if cells:
                out.append((line, cells, None))
        return out
    finally:
        wb.close()


def _read(path):
    return list(parsing.iter_xlsx(path))


def _typed_cells(ws):
    ws.append(["email", "firstName", "dateOfBirth", "created", "rating", "share", "flag", "call", "empty", "last"])
    ws.append(["a@example.org", "Ann", dt.date(1990, 5, 17), dt.datetime(2024, 2, 29, 13, 45, 10), 42, 0.125,
               True, dt.timedelta(hours=30, minutes=5), None, "x"])
    ws.append(["b@example.org", "Émilie ☎", dt.datetime(1961, 1, 2), dt.datetime(2020, 1, 1), -7, 1e20, False,
               None, None, "=1+1"])
    ws.append([None, None, None])  # an empty row between two others
    ws.append(["c@example.org", "  spaced  ", None, None, 3.0, -0.5, None, None, None, "12345678901234567890"])


@pytest.mark.parametrize("write_only", [False, True])
@pytest.mark.parametrize("epoch1904", [False, True])
def test_workbooks_written_by_openpyxl_read_as_openpyxl_reads_them(tmp_path, write_only, epoch1904):
    path = _package(tmp_path / "typed.xlsx", _typed_cells, epoch1904=epoch1904, write_only=write_only)
    rows = _read(path)
    assert rows == _as_openpyxl_reads(path)
    # what the import sees, spelled out once
    assert rows[1] == (2, ["a@example.org", "Ann", "1990-05-17", "2024-02-29 13:45:10", "42", "0.125", "true",
                           "1 day, 6:05:00", "", "x"], None)
    assert rows[2][1][6] == "false" and rows[2][1][5] == "100000000000000000000"
    assert [line for line, _, _ in rows] == [1, 2, 3, 5]


SHEET = f"""<?xml version="1.0" encoding="UTF-8"?>
<x:worksheet xmlns:x="{NS}"><x:sheetData>
<x:row r="1"><x:c r="A1" t="s"><x:v>0</x:v></x:c><x:c r="B1" t="s"><x:v>1</x:v></x:c>
  <x:c r="C1" t="s"><x:v>2</x:v></x:c><x:c r="D1" t="inlineStr"><x:is><x:t>phone</x:t></x:is></x:c></x:row>
<x:row r="2"><x:c r="A2" t="s"><x:v>3</x:v></x:c>
  <x:c r="B2" t="inlineStr"><x:is><x:r><x:rPr><x:b/></x:rPr><x:t>Zo</x:t></x:r>
    <x:r><x:t xml:space="preserve">ë </x:t></x:r><x:rPh sb="0" eb="1"><x:t>ゾ</x:t></x:rPh></x:is></x:c>
  <x:c r="C2" t="str"><x:f>UPPER("lee")</x:f><x:v>LEE</x:v></x:c>
  <x:c r="D2" t="n"><x:v>4915123000001</x:v></x:c></x:row>
<x:row><x:c t="s"><x:v>4</x:v></x:c><x:c t="e"><x:v>#N/A</x:v></x:c><x:c><x:f>SUM(A1:A2)</x:f></x:c>
  <x:c t="b"><x:v>1</x:v></x:c></x:row>
<x:row r="5"><x:c r="A5" t="inlineStr"><x:is><x:t>e@example.org</x:t></x:is></x:c>
  <x:c r="C5" t="n"><x:v>1.5E3</x:v></x:c><x:c r="D5" t="d"><x:v>2023-04-05T06:07:08</x:v></x:c></x:row>
<x:row r="6"><x:c r="A6" t="inlineStr"/><x:c r="B6" t="s"/><x:c r="C6"><x:v></x:v></x:c></x:row>
</x:sheetData></x:worksheet>"""
STRINGS = f"""<?xml version="1.0" encoding="UTF-8"?>
<sst xmlns="{NS}" count="5" uniqueCount="5">
<si><t>email</t></si><si><t>firstName</t></si><si><r><t>last</t></r><r><rPr><i/></rPr><t>Name</t></r></si>
<si><t>d@example.org</t><rPh sb="0" eb="1"><t>ディー</t></rPh></si><si><t>a_x005F_x000D_b</t></si>
</sst>"""


def test_sheets_in_other_producers_forms_read_as_openpyxl_reads_them(tmp_path):
    path = _package(tmp_path / "forms.xlsx", sheet=SHEET, strings=STRINGS)
    rows = _read(path)
    assert rows == _as_openpyxl_reads(path)
    assert rows == [
        (1, ["email", "firstName", "lastName", "phone"], None),
        (2, ["d@example.org", "Zoë ", "LEE", "4915123000001"], None),
        (3, ["a_x000D_b", "#N/A", "", "true"], None),
        (5, ["e@example.org", "", "1500", "2023-04-05 06:07:08"], None),
    ]


def test_cells_out_of_order_keep_their_columns(tmp_path):
    """Cells are in column order in a valid sheet; where they are not, each keeps its column
    (openpyxl's reader cut such a row at the last cell written)."""
    sheet = (f'<worksheet xmlns="{NS}"><sheetData><row r="1"><c r="C1" t="inlineStr"><is><t>c</t></is></c>'
             f'<c r="A1" t="inlineStr"><is><t>a</t></is></c></row></sheetData></worksheet>')
    path = _package(tmp_path / "unordered.xlsx", sheet=sheet)
    assert _read(path) == [(1, ["a", "", "c"], None)]


def test_a_sheet_that_starts_below_row_one_numbers_its_rows_as_the_sheet_does(tmp_path):
    sheet = (f'<worksheet xmlns="{NS}"><sheetData><row r="3"><c r="A3" t="inlineStr"><is><t>email</t></is></c></row>'
             f'<row r="4"><c r="A4" t="inlineStr"><is><t>a@example.org</t></is></c></row></sheetData></worksheet>')
    path = _package(tmp_path / "low.xlsx", sheet=sheet)
    assert _read(path) == [(3, ["email"], None), (4, ["a@example.org"], None)]


def test_a_row_that_cannot_be_read_is_a_row_problem_and_its_neighbours_are_read(tmp_path, app):
    sheet = (f'<worksheet xmlns="{NS}"><sheetData>'
             f'<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
             f'<row r="2"><c r="A2" t="s"><v>7</v></c></row>'          # no 8th shared string
             f'<row r="3"><c r="A3" t="n"><v>twelve</v></c></row>'     # not a number
             f'<row r="4"><c r="1A" t="s"><v>0</v></c></row>'          # not a reference
             f'<row r="5"><c r="XFE5" t="s"><v>0</v></c></row>'        # beyond the last column
             f'<row r="6"><c r="A6" t="s"><v>0</v></c></row></sheetData></worksheet>')
    path = _package(tmp_path / "broken-rows.xlsx", sheet=sheet,
                    strings=f'<sst xmlns="{NS}"><si><t>email</t></si></sst>')
    with app.app_context():
        rows = [(line, cells, str(problem) if problem else None) for line, cells, problem in _read(path)]
    malformed = f"A value is longer than {parsing.FIELD_SIZE_LIMIT} characters or the row is malformed."
    assert rows == [(1, ["email"], None), (2, None, malformed), (3, None, malformed), (4, None, malformed),
                    (5, None, malformed), (6, ["email"], None)]


@pytest.mark.parametrize("part, xml", [
    ("strings", f'<!DOCTYPE sst [<!ENTITY a "aaaaaaaa">]><sst xmlns="{NS}"><si><t>&a;</t></si></sst>'),
    ("strings", f'<!DOCTYPE sst [<!ENTITY x SYSTEM "file:///etc/passwd">]><sst xmlns="{NS}"><si><t>&x;</t></si></sst>'),
    ("sheet", f'<!DOCTYPE worksheet [<!ENTITY a "aaaa">]><worksheet xmlns="{NS}"><sheetData><row r="1">'
              f'<c r="A1" t="inlineStr"><is><t>&a;</t></is></c></row></sheetData></worksheet>'),
    ("sheet", f'<worksheet xmlns="{NS}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>email</t>'),
])
def test_entity_declarations_and_broken_xml_refuse_the_file(tmp_path, app, part, xml):
    plain_sheet = (f'<worksheet xmlns="{NS}"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>'
                   f'</sheetData></worksheet>')
    if part == "strings":
        path = _package(tmp_path / "declared.xlsx", sheet=plain_sheet, strings=xml)
    else:
        path = _package(tmp_path / "declared.xlsx", sheet=xml)
    with app.app_context(), pytest.raises(parsing.FileRejected) as exc:
        _read(path)
    with app.app_context():
        assert str(exc.value) == "This is not a valid XLSX file."


def test_rows_are_streamed_not_read_whole(tmp_path):
    """The reader hands rows on as it parses: the first rows of a large sheet come before the
    sheet's end has been parsed (the memory bound of a million-row file)."""
    def fill(ws):
        ws.append(["email", "firstName"])
        for i in range(30_000):
            ws.append([f"c{i}@example.org", f"name {i}"])
    path = _package(tmp_path / "big.xlsx", fill, write_only=True)
    parsed = []
    real = parsing._expat_parts

    def counting(part, handlers):
        for step in real(part, handlers):
            parsed.append(part.tell() if hasattr(part, "tell") else len(parsed))
            yield step
    parsing._expat_parts = counting
    try:
        rows = parsing.iter_xlsx(path)
        first = next(rows)
        blocks_before_first_row = len(parsed)
        rest = sum(1 for _ in rows)
    finally:
        parsing._expat_parts = real
    assert first == (1, ["email", "firstName"], None) and rest == 30_000
    assert blocks_before_first_row == 1 and len(parsed) > 10
