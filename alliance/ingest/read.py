"""Opening an export: format, encoding, delimiter, header, and which columns mean what.

Nothing here reads the data rows into Python (except for .xlsx, which has to be unzipped and
parsed cell by cell): CSV and Parquet are scanned by DuckDB (see stage.py). This module decides
how: the delimiter (comma, semicolon or tab, from the header line), the header names and their
contract meaning, and the spreadsheet row numbers of records the CSV reader does not return
(blank lines), so that every problem can be reported at the row a person sees in a spreadsheet.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from alliance.ingest.contract import classify, normalize_name
from alliance.ingest.problems import Problem, message

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
PARQUET_SUFFIXES = (".parquet", ".pq")
DELIMITERS = (",", ";", "\t")
_CHUNK = 1 << 20
_BLANK_LINE = re.compile(rb"\n\r?(?=\n)")


class UsageError(Exception):
    """Not a data problem: a missing file, an unknown format, a sheet that does not exist."""


@dataclass
class Source:
    """One input file, inspected: how to scan it and what its columns mean."""

    path: Path
    display: str  # as the user named it: shown in problems, never stored
    fmt: str  # 'csv' | 'xlsx' | 'parquet'
    fingerprint: str = ""  # SHA-256 of the bytes (stored in import_log; never the name)
    headers: list[str] = field(default_factory=list)  # header texts in file order
    columns: dict[str, int] = field(default_factory=dict)  # contract name -> header position
    identifiers: list[str] = field(default_factory=list)  # header texts dropped as identifiers
    ignored: list[str] = field(default_factory=list)  # header texts not in the contract
    problems: list[Problem] = field(default_factory=list)  # file-level problems
    delimiter: str = ","
    skipped_rows: list[int] = field(default_factory=list)  # CSV rows the reader does not return
    table: pa.Table | None = None  # .xlsx: the cells as text (c0..cN, __row)
    parquet_types: dict[int, str] = field(default_factory=dict)  # position -> arrow type

    @property
    def readable(self) -> bool:
        return bool(self.headers) and not any(p.row is None for p in self.problems)

    def header_of(self, column: str) -> str:
        """The header text of a contract column as written in this file."""
        pos = self.columns.get(column)
        return self.headers[pos] if pos is not None else column

    def file_problem(self, rule: str, column: str = "", **kw: object) -> None:
        self.problems.append(Problem(self.display, None, column, "", rule, message(rule, **kw)))


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in XLSX_SUFFIXES:
        return "xlsx"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix == ".xls":
        raise UsageError(f"{path.name}: old Excel .xls files are not supported; save as .xlsx")
    raise UsageError(
        f"{path.name}: unknown file type {suffix or '(none)'}; use .csv, .xlsx or .parquet"
    )


def open_source(
    path: Path,
    *,
    display: str | None = None,
    sheet: str | None = None,
    date_format: str | None = None,
    fmt: str | None = None,
) -> Source:
    """Inspect one file. Raises UsageError for usage problems; data problems go in .problems."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{display or path}: no such file")
    if not path.is_file():
        raise UsageError(f"{display or path}: not a file")
    src = Source(path=path, display=display or str(path), fmt=fmt or detect_format(path))
    if src.fmt == "csv":
        _inspect_csv(src)
    elif src.fmt == "xlsx":
        src.fingerprint = _sha256(path)
        _read_xlsx(src, sheet, date_format)
    else:
        src.fingerprint = _sha256(path)
        _inspect_parquet(src)
    if src.headers:
        _classify_columns(src)
    return src


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _classify_columns(src: Source) -> None:
    seen: dict[str, int] = {}
    for pos, header in enumerate(src.headers):
        norm = normalize_name(header)
        if not norm:
            src.headers[pos] = header = f"(unnamed column {pos + 1})"
            src.ignored.append(header)
            continue
        kind, name = classify(norm)
        if kind == "contract":
            assert name is not None
            if name in seen:
                src.file_problem(
                    "duplicate_column",
                    header,
                    detail=f"{name} ({src.headers[seen[name]]!r} and {header!r})",
                )
                continue
            seen[name] = pos
            src.columns[name] = pos
            if name in ("date_of_birth", "birth_year"):
                src.identifiers.append(header)  # read for the age band, then dropped
        elif kind == "identifier":
            src.identifiers.append(header)
        else:
            src.ignored.append(header)


# --- CSV ----------------------------------------------------------------------------------------
def _inspect_csv(src: Source) -> None:
    """Fingerprint, encoding of the header, delimiter, header names, blank lines, quote balance."""
    h = hashlib.sha256()
    quotes = 0
    newlines = 0
    blank_lines: list[int] = []
    carry = b""
    base_line = 1  # line number of the first line in `carry`
    first = b""
    tail = b""
    with open(src.path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
            if len(first) < 65536:
                first += chunk[: 65536 - len(first)]
            quotes += chunk.count(b'"')
            newlines += chunk.count(b"\n")
            buf = carry + chunk
            if b"\n\n" in buf or b"\n\r\n" in buf:
                for m in _BLANK_LINE.finditer(buf):
                    line = base_line + buf.count(b"\n", 0, m.start() + 1)
                    if not blank_lines or line > blank_lines[-1]:
                        blank_lines.append(line)
            keep = buf[-2:]
            base_line += buf.count(b"\n", 0, len(buf) - len(keep))
            carry = keep
            tail = (tail + chunk)[-4096:]
    src.fingerprint = h.hexdigest()

    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in first[:4096]:
        src.file_problem("encoding")
        return
    text = first.decode("utf-8-sig", errors="ignore") if first else ""
    try:
        codecs.getincrementaldecoder("utf-8-sig")().decode(first, final=False)
    except UnicodeDecodeError as exc:
        if exc.start < len(first) - 4:
            line = first.count(b"\n", 0, exc.start) + 1
            if line == 1:  # the header itself: nothing sensible can be read
                src.file_problem("encoding")
                return
    first_line = text.split("\n", 1)[0].rstrip("\r")
    if not first_line.strip():
        src.file_problem("header", detail="the first line is empty: the header must be on row 1")
        return
    counts = {d: first_line.count(d) for d in DELIMITERS}
    src.delimiter = max(DELIMITERS, key=lambda d: (counts[d], -DELIMITERS.index(d)))
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=src.delimiter, strict=False))
    except (csv.Error, StopIteration):
        src.file_problem("header", detail="the header row could not be read")
        return
    src.headers = [cell.strip() for cell in header]
    if quotes % 2:
        src.file_problem("unbalanced_quotes")
    # blank lines after the last line with content change nothing
    content_lines = newlines + 1 - tail[len(tail.rstrip(b"\r\n")) :].count(b"\n")
    inner = [b for b in blank_lines if b <= content_lines]
    if inner and quotes:
        inner = _blank_records(src)  # quoted cells may span lines: count records, not lines
    src.skipped_rows = inner


def _blank_records(src: Source) -> list[int]:
    """Spreadsheet row numbers of empty records (rare: only for files with blank lines AND
    quotes, where a line number is not a row number). A plain streaming pass of Python's csv
    module; it keeps nothing but the row numbers."""
    rows: list[int] = []
    with open(src.path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=src.delimiter, strict=False)
        for number, record in enumerate(reader, start=1):
            if not record:
                rows.append(number)
    return rows


# --- XLSX ---------------------------------------------------------------------------------------
def _cell_text(value: object, date_format: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.strftime(date_format)
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.strftime(date_format)
    if isinstance(value, float):
        return format(value, ".10g")
    return str(value)


def _read_xlsx(src: Source, sheet: str | None, date_format: str | None) -> None:
    """Read a worksheet's cells as text (Excel dates written in the import's date format).

    Excel rows keep their own numbers, so blank rows need no special care.
    """
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    fmt = date_format or "%Y-%m-%d"
    try:
        wb = load_workbook(src.path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError):
        src.file_problem("unreadable", detail="not a readable .xlsx workbook")
        return
    try:
        if sheet is not None:
            if sheet not in wb.sheetnames:
                raise UsageError(
                    f"{src.display}: no sheet named {sheet!r} (sheets: {', '.join(wb.sheetnames)})"
                )
            ws = wb[sheet]
        else:
            ws = wb.worksheets[0]
        header_row: int | None = None
        cols: list[list[str | None]] = []
        row_numbers: list[int] = []
        width = 0
        for number, values in enumerate(ws.iter_rows(min_row=1, values_only=True), start=1):
            cells = [_cell_text(v, fmt) for v in values]
            if all(c is None or not str(c).strip() for c in cells):
                continue
            if header_row is None:
                header_row = number
                while cells and (cells[-1] is None or not str(cells[-1]).strip()):
                    cells.pop()
                src.headers = [("" if c is None else str(c)).strip() for c in cells]
                width = len(cells)
                cols = [[] for _ in range(width)]
                continue
            for i in range(width):
                cols[i].append(cells[i] if i < len(cells) else None)
            row_numbers.append(number)
    finally:
        wb.close()
    if header_row is None:
        src.file_problem("no_rows")
        return
    arrays = {f"c{i}": pa.array(col, type=pa.string()) for i, col in enumerate(cols)}
    arrays["__row"] = pa.array(row_numbers, type=pa.int64())
    src.table = pa.table(arrays)


# --- Parquet ------------------------------------------------------------------------------------
def _inspect_parquet(src: Source) -> None:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(src.path)
    except (pa.ArrowException, OSError):
        src.file_problem("unreadable", detail="not a readable Parquet file")
        return
    src.headers = [str(n) for n in schema.names]
    src.parquet_types = {i: str(schema.field(i).type) for i in range(len(schema.names))}
