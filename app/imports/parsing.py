"""Reading client files: CSV (encoding and delimiter detection) and XLSX, streamed row by row.

Each reader yields `(line_number, cells, problem)`: `cells` is a list of strings (None for a
row that could not be read) and `problem` a translated message for such a row. Memory stays
bounded whatever the file size: nothing here holds more than one row.
"""

import codecs
import csv
import datetime as dt
import functools
import os
import stat
import zipfile

from flask_babel import lazy_gettext as _l

DELIMITERS = (",", ";", "\t", "|")   # sniffing never looks beyond these (R25, cpython #119123)
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "cp1251", "latin-1")
# What detection chooses among when a file is not UTF-8 (charset-normalizer's names -> ours): the
# same bytes are Western letters in CP1252 and Latin-1 and Cyrillic ones in CP1251.
_SINGLE_BYTE = {"cp1252": "cp1252", "cp1251": "cp1251", "latin_1": "latin-1"}
# The largest text field of a client is 2,000 characters; anything far beyond is a broken file or an attack.
FIELD_SIZE_LIMIT = 100_000
SAMPLE_BYTES = 256 * 1024
# R26's bounds on a file's shape: columns of its header, and characters of one line of a CSV file (a
# client's row is a few KB; a 512 MB line of commas would otherwise be split into 512M cells).
MAX_COLUMNS = 500
MAX_LINE = 1024 * 1024

# XLSX (a zip archive) limits, checked before any of its XML is parsed (R26, ASVS 5.2.3).
XLSX_MAX_MEMBERS = 1_000
XLSX_MAX_UNCOMPRESSED = 2 * 1024 ** 3
XLSX_MAX_RATIO = 200
# The reader holds one row of a sheet at a time, but all of the shared-strings table, and builds a
# whole row (or shared string) before it is handed on: one row or string of more XML than this, or
# a table larger than that, is refused before it is parsed (a bomb tuned to pass the checks above
# would otherwise put a gigabyte in one cell).
XLSX_MAX_UNIT = 4 * 1024 ** 2
XLSX_MAX_SHARED_STRINGS = 256 * 1024 ** 2

csv.field_size_limit(FIELD_SIZE_LIMIT)


class FileRejected(ValueError):
    """The file as a whole cannot be imported; the message is translated."""


def file_format(filename, head):
    """'xlsx' for a zip archive named .xlsx, 'csv' for text; anything else is refused."""
    name = (filename or "").lower()
    if head.startswith(b"PK\x03\x04"):
        if name.endswith(".xlsx"):
            return "xlsx"
        raise FileRejected(_l("Upload a CSV or XLSX file."))
    if name.endswith(".xlsx") or name.endswith(".xls"):
        raise FileRejected(_l("This is not a valid XLSX file."))
    if b"\x00" in head[:4096]:
        raise FileRejected(_l("Upload a CSV or XLSX file."))
    return "csv"


# ----------------------------------------------------------------- CSV

def detect_encoding(sample):
    """UTF-8 (with or without BOM) when the bytes are valid UTF-8, else CP1252, CP1251 or Latin-1."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    cut = sample.rfind(b"\n")
    body = sample[:cut] if cut > 0 and len(sample) >= SAMPLE_BYTES else sample
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # Not UTF-8: one of the single-byte encodings we read, as charset-normalizer judges the text
    # (a Russian file in CP1251 read as CP1252 would be stored as "Èâàí Ïåòðîâ").
    from charset_normalizer import from_bytes
    best = from_bytes(body, cp_isolation=list(_SINGLE_BYTE)).best()
    return _SINGLE_BYTE.get(best.encoding if best is not None else "", "cp1252")


def detect_delimiter(text_sample):
    """The candidate giving the most columns, consistently, over the first lines; ',' by default."""
    lines = text_sample.splitlines()[:30]
    if len(text_sample) >= SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line of a sample may be cut
    best, best_score = ",", (False, 1)
    for delim in DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=delim))
        except csv.Error:
            continue
        if not rows:
            continue
        counts = [len(r) for r in rows if r]
        width = counts[0] if counts else 1
        consistent = all(c == width for c in counts)
        score = (consistent and width > 1, width if consistent else 1)
        if score > best_score:
            best, best_score = delim, score
    return best


def _read_sample(path):
    with open(path, "rb") as fh:
        return fh.read(SAMPLE_BYTES)


def sniff_csv(path, encoding=None, delimiter=None):
    """(encoding, delimiter) of a CSV file; explicit choices win over detection."""
    sample = _read_sample(path)
    encoding = encoding or detect_encoding(sample)
    if encoding not in ENCODINGS:
        raise FileRejected(_l("Unsupported encoding: %(name)s.", name=encoding))
    if encoding == "utf-8" and sample.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    if not delimiter:
        delimiter = detect_delimiter(sample.decode(encoding, errors="replace"))
    if delimiter not in DELIMITERS:
        raise FileRejected(_l("Choose a delimiter: comma, semicolon, tab or vertical bar."))
    return encoding, delimiter


def _bad_bytes(cells):
    """Undecodable bytes survive as lone surrogates (surrogateescape); UTF-8 cannot encode those."""
    try:
        "".join(cells).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _capped_lines(fh, cut):
    """The file's lines, each of at most MAX_LINE characters: a longer one is read past in pieces and
    given as an empty line, its number added to `cut` (memory stays bounded whatever the line)."""
    number = 0
    while line := fh.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE and not line.endswith("\n"):
            while (rest := fh.readline(MAX_LINE)) and not rest.endswith("\n"):
                pass
            cut.append(number)
            line = "\n"
        yield line


def iter_csv(path, encoding, delimiter):
    """Yield (line, cells, problem) for every record, the header first (line 1)."""
    with open(path, encoding=encoding, errors="surrogateescape", newline="") as fh:
        cut = []
        reader = csv.reader(_capped_lines(fh, cut), delimiter=delimiter, strict=False)
        start = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error:
                yield start, None, _l("A value is longer than %(max)d characters or the row is malformed.",
                                      max=FIELD_SIZE_LIMIT)
                start = reader.line_num + 1
                continue
            line = start
            start = reader.line_num + 1
            if cut and cut[0] <= reader.line_num:  # the record ran over a line read past: reported instead
                for number in cut:
                    yield number, None, _l("The line is longer than %(max)d characters.", max=MAX_LINE)
                cut.clear()
                continue
            if not cells:
                continue
            if _bad_bytes(cells):
                yield line, [c.encode("utf-8", "replace").decode("utf-8") for c in cells], _l(
                    "The row contains bytes that are not valid %(encoding)s; choose the file's encoding.",
                    encoding=encoding)
                continue
            yield line, cells, None


# ----------------------------------------------------------------- XLSX

def check_xlsx_archive(path):
    """Refuse zip bombs and odd archives before any XML is parsed (R26)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if len(members) > XLSX_MAX_MEMBERS:
                raise FileRejected(_l("The XLSX file has too many parts."))
            total = 0
            for info in members:
                name = info.filename
                if name.startswith("/") or ".." in name.split("/") or "\\" in name:
                    raise FileRejected(_l("The XLSX file contains unsafe paths."))
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise FileRejected(_l("The XLSX file contains unsafe paths."))
                total += info.file_size
                if info.file_size > 1024 * 1024 and info.file_size > XLSX_MAX_RATIO * max(info.compress_size, 1):
                    raise FileRejected(_l("The XLSX file is compressed suspiciously well and was refused."))
            if total > XLSX_MAX_UNCOMPRESSED:
                raise FileRejected(_l("The XLSX file is too large once unpacked."))
            if "xl/workbook.xml" not in {m.filename for m in members}:
                raise FileRejected(_l("This is not a valid XLSX file."))
            if sum(m.file_size for m in members if m.filename.lower().endswith("sharedstrings.xml")) \
                    > XLSX_MAX_SHARED_STRINGS:
                raise FileRejected(_l("The XLSX file holds too much text to read; save it as CSV and import that."))
            for info in members:
                if info.filename.lower().endswith(".xml") and info.file_size > XLSX_MAX_UNIT:
                    end = b"si>" if info.filename.lower().endswith("sharedstrings.xml") else b"row>"
                    with zf.open(info) as part:
                        if _has_oversize_unit(part, end):
                            raise FileRejected(_l("The XLSX file has a row or a value too large to read."))
    except zipfile.BadZipFile:
        raise FileRejected(_l("This is not a valid XLSX file."))


def _has_oversize_unit(part, end=b"row>", block=1024 ** 2):
    """True when an XML part streamed from the archive has a unit (a row: text up to `end`, which
    ends </row> and </x:row>; a shared string: b"si>") of more than XLSX_MAX_UNIT bytes (a part
    without any counts as one). Reads in blocks and stops at the first one: a gigabyte cell is
    refused after about XLSX_MAX_UNIT bytes of it. An end split between two blocks is missed, which
    only joins two units."""
    since = 0
    while data := part.read(block):
        units = data.split(end)  # bytes.split, not a regex: a 100k-row sheet is 60 MB of XML
        if len(units) > 1:
            if since + len(units[0]) > XLSX_MAX_UNIT or max(map(len, units[1:-1]), default=0) > XLSX_MAX_UNIT:
                return True
            since = 0
        since += len(units[-1])
        if since > XLSX_MAX_UNIT:
            return True
    return False


def _cell_text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# The cells of a sheet are read with expat, not openpyxl's cell reader: openpyxl builds objects per
# cell (an inline or rich string goes through its descriptor machinery), ~370 us a 16-cell row of
# the sheets its own write-only mode writes, and reads a shared-strings table the same way. openpyxl
# still reads the package: which part is the first sheet, where the shared strings are, which
# styles are dates, the workbook's epoch. Both transitional and strict spreadsheet namespaces.
_SHEET_NAMESPACES = ("http://schemas.openxmlformats.org/spreadsheetml/2006/main",
                     "http://purl.oclc.org/ooxml/spreadsheetml/main")
_TAGS = {f"{ns} {local}": local for ns in _SHEET_NAMESPACES
         for local in ("row", "c", "v", "is", "t", "rPh", "si")}
XLSX_BLOCK = 64 * 1024
XLSX_MAX_COLUMN = 16_384  # XFD, the last column a sheet can have


def _refuse_declarations(*_args):
    # defusedxml's rules, which openpyxl's reader followed: no entity declarations (billion
    # laughs) and no external entities (XXE). A sheet or a string table has no use for either.
    raise FileRejected(_l("This is not a valid XLSX file."))


def _expat_parts(part, handlers):
    """Feed an archive part to a fresh expat parser in blocks; yields after each block so the
    caller hands on what the handlers collected (memory: one block's worth of rows)."""
    import pyexpat
    parser = pyexpat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = handlers
    parser.EntityDeclHandler = _refuse_declarations
    parser.UnparsedEntityDeclHandler = _refuse_declarations
    parser.ExternalEntityRefHandler = _refuse_declarations
    try:
        while data := part.read(XLSX_BLOCK):
            parser.Parse(data, False)
            yield
        parser.Parse(b"", True)
        yield
    except pyexpat.ExpatError:
        raise FileRejected(_l("This is not a valid XLSX file."))


class _Text:
    """The text of a string item (a shared string's <si>, an inline string's <is>): its <t>
    elements, plain or in rich-text runs, without the phonetic guides (<rPh>), as openpyxl's Text.content."""

    __slots__ = ("parts", "taking", "phonetic")

    def __init__(self):
        self.parts, self.taking, self.phonetic = [], False, 0

    def start(self, tag):
        if tag == "t":
            self.taking = not self.phonetic
        elif tag == "rPh":
            self.phonetic += 1

    def end(self, tag):
        if tag == "t":
            self.taking = False
        elif tag == "rPh":
            self.phonetic -= 1

    def take(self):
        text = "".join(self.parts)
        self.parts.clear()
        return text


def _shared_strings(archive, name):
    """The workbook's shared strings, in order (openpyxl's read_string_table, its "x005F_" rule too)."""
    strings = []
    text = _Text()
    tags = _TAGS

    def start(name, _attrs):
        tag = tags.get(name)
        if tag is not None:
            text.start(tag)

    def end(name):
        tag = tags.get(name)
        if tag == "si":
            strings.append(text.take().replace("x005F_", ""))
        elif tag is not None:
            text.end(tag)

    def chars(data):
        if text.taking:
            text.parts.append(data)

    with archive.open(name) as part:
        for _ in _expat_parts(part, (start, end, chars)):
            pass
    return strings


@functools.lru_cache(maxsize=4096)
def _column_of(letters):
    """The column number of a cell reference's letters ("AB" -> 28)."""
    from openpyxl.utils.cell import column_index_from_string
    return column_index_from_string(letters)


class _SheetCells:
    """A cell's value as openpyxl's read-only, data-only reader gives it (its WorkSheetParser.parse_cell)."""

    def __init__(self, strings, epoch, date_styles, duration_styles):
        from openpyxl.utils.datetime import from_excel, from_ISO8601
        self.strings, self.epoch = strings, epoch
        self.date_styles, self.duration_styles = date_styles, duration_styles
        self.from_excel, self.from_iso = from_excel, from_ISO8601

    def value(self, kind, style, text):
        if not text:
            return None
        if kind == "n":
            number = float(text) if ("." in text or "E" in text or "e" in text) else int(text)
            if style and int(style) in self.date_styles:
                try:
                    return self.from_excel(number, self.epoch, timedelta=int(style) in self.duration_styles)
                except (OverflowError, ValueError):
                    return "#VALUE!"
            return number
        if kind == "s":
            return self.strings[int(text)]
        if kind == "b":
            return bool(int(text))
        if kind == "d":
            return self.from_iso(text)
        return text  # "str" (a formula's text), "e" (an error such as #N/A)


def _sheet_rows(part, cells):
    """Yield (row number, [cell text, ...], bad) for each <row> of a sheet part; `bad`: a cell of
    the row could not be read (a broken reference or value)."""
    rows = []
    text = _Text()
    tags = _TAGS
    strings = cells.strings
    number, col, values, kind, style, in_value, inline, bad = 0, 0, None, None, None, False, False, False
    value_parts = []

    def start(name, attrs):
        nonlocal number, col, values, kind, style, in_value, inline, bad
        tag = tags.get(name)
        if tag == "c":
            ref = attrs.get("r")
            if ref:
                try:
                    col = _column_of(ref.rstrip("0123456789"))
                except ValueError:
                    col, bad = col + 1, True
            else:
                col += 1
            kind = attrs.get("t", "n")
            style = attrs.get("s")
            inline = False
            value_parts.clear()
        elif tag == "v":
            in_value = True
        elif tag == "is":
            inline = True
        elif tag == "row":
            ref = attrs.get("r")
            number = int(ref) if ref and ref.isdigit() else number + 1
            col, values, bad = 0, [], False
        elif tag is not None and inline:
            text.start(tag)

    def end(name):
        nonlocal values, in_value, inline, bad
        tag = tags.get(name)
        if tag == "c":
            if values is None:  # a cell outside any row
                return
            try:
                if kind == "s":
                    value = strings[int(value_parts[0] if len(value_parts) == 1 else "".join(value_parts))] \
                        if value_parts else ""
                elif kind == "inlineStr":
                    value = text.take() if inline else ""
                else:
                    value = _cell_text(cells.value(kind, style, "".join(value_parts)))
            except (ValueError, IndexError, TypeError, OverflowError):
                bad = True
                return
            finally:
                inline = False
            if col > XLSX_MAX_COLUMN:
                bad = True
            elif col > len(values):
                if col - 1 > len(values):
                    values.extend([""] * (col - 1 - len(values)))
                values.append(value)
            else:
                values[col - 1] = value
        elif tag == "v":
            in_value = False
        elif tag == "row":
            if values is not None:
                rows.append((number, values, bad))
            values = None
        elif tag is not None and inline:
            text.end(tag)

    def chars(data):
        if in_value:
            value_parts.append(data)
        elif text.taking:
            text.parts.append(data)

    for _ in _expat_parts(part, (start, end, chars)):
        yield from rows
        rows.clear()


def _open_book(fh):
    """(archive, first worksheet's part, shared-strings part or None, epoch, date styles, duration
    styles): openpyxl reads the package, the workbook and its styles (small parts), not the cells."""
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet
    from openpyxl.xml.constants import SHARED_STRINGS
    reader = ExcelReader(fh, read_only=True, data_only=True)
    reader.read_manifest()
    reader.read_workbook()
    apply_stylesheet(reader.archive, reader.parser.wb)
    wb = reader.parser.wb
    sheet = next((rel.target for _sheet, rel in reader.parser.find_sheets()
                  if rel.target in reader.valid_files and "chartsheet" not in rel.Type), None)
    strings = reader.package.find(SHARED_STRINGS)
    return (reader.archive, sheet, strings.PartName[1:] if strings is not None else None, wb.epoch,
            getattr(wb, "_date_formats", set()), getattr(wb, "_timedelta_formats", set()))


def iter_xlsx(path):
    """Yield (line, cells, problem) from the first sheet, streamed: `line` is the sheet's row number."""
    check_xlsx_archive(path)
    with open(path, "rb") as fh:  # a file object: stored names have no extension for openpyxl to check
        try:
            archive, sheet, strings, epoch, dates, durations = _open_book(fh)
        except FileRejected:
            raise
        except Exception:  # openpyxl raises many types for a broken package
            raise FileRejected(_l("This is not a valid XLSX file."))
        try:
            if sheet is None:
                return
            cells = _SheetCells(_shared_strings(archive, strings) if strings else [], epoch, dates, durations)
            with archive.open(sheet) as part:
                for line, values, bad in _sheet_rows(part, cells):
                    while values and values[-1] == "":
                        values.pop()
                    if not values and not bad:
                        continue
                    if bad or any(len(c) > FIELD_SIZE_LIMIT for c in values):
                        yield line, None, _l("A value is longer than %(max)d characters or the row is malformed.",
                                             max=FIELD_SIZE_LIMIT)
                        continue
                    yield line, values, None
        finally:
            archive.close()


# ----------------------------------------------------------------- a second pass from a spool


class Spool:
    """The items of one pass over a file, kept as plain CSV for the next pass.

    An import reads its file twice (the repeat plan, then the run). A CSV file is read again in
    ~0.3 s per 100k rows, but a sheet's XML takes 5-10 s: so the first pass over an XLSX file writes
    what it yields here and the second reads that back. Each item is one CSV record: its line, then
    "-" when the row could not be read (no cells) or "+" and its cells, then its problem (empty for
    none). The spool is a nameless temporary file in `folder` (no other run can open it, and it is
    gone when closed or when its process dies); it is only read once its pass has ended. One that
    would grow past `max_bytes` (a sheet of long shared strings repeated in many cells takes far
    more room written out) is dropped, and the file is read again instead.
    """

    def __init__(self, folder, max_bytes):
        self.folder = folder
        self.max_bytes = max_bytes
        self.fh = None
        self.ready = False

    def tee(self, items):
        """Yield `items` as they come while writing them to the spool."""
        import io
        import tempfile
        self.close()
        # write_through: each row goes on to the binary file at once, whose position is then the size
        self.fh = fh = io.TextIOWrapper(tempfile.TemporaryFile("w+b", dir=self.folder), encoding="utf-8",
                                        errors="surrogatepass", newline="", write_through=True)
        writer = csv.writer(fh)
        for item in items:
            if fh is not None:
                line, cells, problem = item
                writer.writerow((line, "-" if cells is None else "+", "" if problem is None else str(problem),
                                 *(cells or ())))
                if fh.buffer.tell() > self.max_bytes:
                    self.close()
                    fh = None
            yield item
        self.ready = fh is not None

    def items(self):
        """The spooled items, in the order they were written (each call reads from the start)."""
        self.fh.seek(0)
        for record in csv.reader(self.fh):
            yield int(record[0]), (record[3:] if record[1] == "+" else None), (record[2] or None)

    def close(self):
        self.ready = False
        if self.fh is not None:
            self.fh.close()
            self.fh = None


# ----------------------------------------------------------------- one entry point

def iter_file(path, fmt, encoding=None, delimiter=None):
    if not os.path.exists(path):
        raise FileRejected(_l("The uploaded file is no longer available."))
    if fmt == "xlsx":
        return iter_xlsx(path)
    return iter_csv(path, encoding, delimiter)


def read_head(path, fmt, encoding=None, delimiter=None, rows=10):
    """(headers, first data rows) for the preview."""
    it = iter_file(path, fmt, encoding, delimiter)
    headers, sample = None, []
    for _line, cells, problem in it:
        if headers is None:
            if problem is not None:
                raise FileRejected(str(problem))
            headers = [c.strip().lstrip("\ufeff") for c in (cells or [])]
            continue
        sample.append(cells or [])
        if len(sample) >= rows:
            break
    if hasattr(it, "close"):
        it.close()
    if not headers:
        raise FileRejected(_l("The file is empty."))
    if len(headers) > MAX_COLUMNS:
        raise FileRejected(_l("The file has %(n)d columns; an import reads at most %(max)d.", n=len(headers),
                              max=MAX_COLUMNS))
    return headers, sample
