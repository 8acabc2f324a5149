"""Reading client files: CSV (encoding and delimiter detection) and XLSX, streamed row by row.

Each reader yields `(line_number, cells, problem)`: `cells` is a list of strings (None for a
row that could not be read) and `problem` a translated message for such a row. Memory stays
bounded whatever the file size: nothing here holds more than one row.
"""

import codecs
import csv
import datetime as dt
import os
import re
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

# XLSX (a zip archive) limits, checked before openpyxl opens it (R26, ASVS 5.2.3).
XLSX_MAX_MEMBERS = 1_000
XLSX_MAX_UNCOMPRESSED = 2 * 1024 ** 3
XLSX_MAX_RATIO = 200
# openpyxl holds one row of a sheet at a time, but all of the shared-strings table, and builds a
# whole row (or shared string) before we see it: one row or string of more XML than this, or a
# table larger than that, is refused before it is parsed (a bomb tuned to pass the checks above
# would otherwise put a gigabyte in one cell).
XLSX_MAX_UNIT = 4 * 1024 ** 2
XLSX_MAX_SHARED_STRINGS = 256 * 1024 ** 2
_UNIT_END = re.compile(rb"(?:row|si)>")  # ends a row or a shared string (</row>, </x:row>, </si> …)

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
                    with zf.open(info) as part:
                        if _has_oversize_unit(part):
                            raise FileRejected(_l("The XLSX file has a row or a value too large to read."))
    except zipfile.BadZipFile:
        raise FileRejected(_l("This is not a valid XLSX file."))


def _has_oversize_unit(part, block=1024 ** 2):
    """True when an XML part streamed from the archive has a row or shared string of more than
    XLSX_MAX_UNIT bytes (a part without any counts as one). Reads in blocks and stops at the first
    one: a gigabyte cell is refused after about XLSX_MAX_UNIT bytes of it. An end split between two
    blocks is missed, which only joins two units."""
    since = 0
    while data := part.read(block):
        pos = 0
        for end in _UNIT_END.finditer(data):
            if since + end.end() - pos > XLSX_MAX_UNIT:
                return True
            since, pos = 0, end.end()
        since += len(data) - pos
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


def _size_from_the_sheet_head(self):
    """openpyxl's ReadOnlyWorksheet._get_size (openpyxl 3.1), reading only up to where the rows start.
    openpyxl's own looks for <dimension> among "end" events, so for a sheet without one (openpyxl's
    write-only mode omits it, as other writers do) it parses the whole sheet before the first row is
    read: 34 s of the 44 s a 100k-row sheet took to import's reader. Same outcome: the declared
    dimension, or none."""
    from openpyxl.worksheet._reader import DATA_TAG, DIMENSION_TAG
    from openpyxl.worksheet.dimensions import SheetDimension
    from openpyxl.xml.functions import iterparse  # defusedxml's, as openpyxl's own
    src = self._get_source()
    try:
        for _event, element in iterparse(src, events=("start",)):
            if element.tag == DIMENSION_TAG:
                bounds = SheetDimension.from_tree(element).boundaries
                if bounds is not None:
                    self._min_column, self._min_row, self._max_column, self._max_row = bounds
                return
            if element.tag == DATA_TAG:
                return
    finally:
        src.close()


def _openpyxl():
    import openpyxl  # defusedxml is installed, so openpyxl parses with it (billion laughs, XXE)
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet
    if ReadOnlyWorksheet._get_size is not _size_from_the_sheet_head:
        ReadOnlyWorksheet._get_size = _size_from_the_sheet_head
    return openpyxl


def iter_xlsx(path):
    """Yield (line, cells, problem) from the first sheet, read-only and streamed."""
    openpyxl = _openpyxl()
    check_xlsx_archive(path)
    fh = open(path, "rb")  # a file object: stored names have no extension for openpyxl to check
    try:
        wb = openpyxl.load_workbook(fh, read_only=True, data_only=True)
    except Exception:  # openpyxl raises many types for a broken archive
        fh.close()
        raise FileRejected(_l("This is not a valid XLSX file."))
    try:
        ws = wb.worksheets[0]
        for line, row in enumerate(ws.iter_rows(values_only=True), start=1):
            cells = [_cell_text(c) for c in row]
            while cells and cells[-1] == "":
                cells.pop()
            if not cells:
                continue
            if any(len(c) > FIELD_SIZE_LIMIT for c in cells):
                yield line, None, _l("A value is longer than %(max)d characters or the row is malformed.",
                                     max=FIELD_SIZE_LIMIT)
                continue
            yield line, cells, None
    finally:
        wb.close()
        fh.close()


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
