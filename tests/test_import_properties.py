"""Property tests: a malformed cell anywhere is reported at its spreadsheet row and column, and
the database is left byte-for-byte as it was; valid exports in any dialect import the same."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alliance.ingest import format_report
from tests.test_import_helpers import (  # noqa: F401 (fixture)
    COLUMNS,
    _no_env_key,
    base_rows,
    file_hash,
    import_,
)

CORRUPTIONS = {
    "srs_total": ["41", "-0.5", "abc", "35.55", "1e1", "nan"],
    "ors_total": ["40.1", "x", "12,34"],
    "phq9_total": ["28", "3.5", "-"],
    "gad7_total": ["-1", "22"],
    "age": ["121", "-3", "4.5", "old"],
    "session_date": ["2025-13-01", "31/01/2025", "1989-06-01", "2099-01-01", "", "yesterday"],
    "site": ["", "   "],
    "end_reason": ["done", "drop out", "planned!"],
    "client_id": ["", " "],
    "therapist_id": [""],
}
HEADER_STYLES = {
    "as is": lambda c: c,
    "title": lambda c: " " + c.replace("_", " ").title() + " ",
    "upper-dash": lambda c: c.upper().replace("_", "-"),
}


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clinic database holding the base export (so 'unchanged' is a real claim)."""
    folder = tmp_path_factory.mktemp("prop")
    path = folder / "x.duckdb"
    rows = base_rows()
    src = folder / "base.csv"
    with open(src, "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    assert import_(src, path).ok
    return path


def _write(path: Path, rows, *, delimiter, style, blank_before, multiline) -> None:
    columns = [*COLUMNS, "notes"]
    out = [delimiter.join(_q(HEADER_STYLES[style](c), delimiter) for c in columns)]
    for i, row in enumerate(rows):
        out.extend([""] * blank_before.count(i))
        notes = "line one\nline two" if i in multiline else ""
        values = [row.get(c, "") for c in COLUMNS] + [notes]
        out.append(delimiter.join(_q(v, delimiter) for v in values))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def _q(value: str, delimiter: str) -> str:
    if any(ch in value for ch in (delimiter, '"', "\n", ",")):
        return '"' + value.replace('"', '""') + '"'
    return value


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_malformed_cell_is_located_and_nothing_changes(base_db: Path, data) -> None:
    rows = base_rows()
    target = data.draw(st.integers(0, len(rows) - 1), label="data row")
    column = data.draw(st.sampled_from(sorted(CORRUPTIONS)), label="column")
    value = data.draw(st.sampled_from(CORRUPTIONS[column]), label="value")
    delimiter = data.draw(st.sampled_from([",", ";", "\t"]), label="delimiter")
    style = data.draw(st.sampled_from(sorted(HEADER_STYLES)), label="header style")
    blank_before = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=3), label="blanks")
    multiline = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=3), label="multiline")
    rows[target][column] = value

    before = file_hash(base_db)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.csv"
        _write(
            path,
            rows,
            delimiter=delimiter,
            style=style,
            blank_before=blank_before,
            multiline=multiline,
        )
        result = import_(path, base_db)
    assert not result.ok and not result.written
    expected_row = 2 + target + sum(1 for b in blank_before if b <= target)
    expected_column = HEADER_STYLES[style](column).strip()
    located = {(p.row, p.column) for p in result.problems}
    assert (expected_row, expected_column) in located, format_report(result.problems)
    assert {p.row for p in result.problems} == {expected_row}
    assert file_hash(base_db) == before
    con = duckdb.connect(str(base_db), read_only=True)
    assert con.execute("select count(*) from sessions").fetchall() == [(12,)]
    con.close()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    order=st.permutations(list(range(12))),
    delimiter=st.sampled_from([",", ";", "\t"]),
    style=st.sampled_from(sorted(HEADER_STYLES)),
)
def test_a_valid_export_in_any_dialect_or_order_changes_nothing(
    base_db: Path, order, delimiter, style
):
    rows = [base_rows()[i] for i in order]
    before = file_hash(base_db)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.csv"
        _write(path, rows, delimiter=delimiter, style=style, blank_before=[], multiline=[])
        result = import_(path, base_db, dry_run=True)
    assert result.ok, format_report(result.problems)
    assert result.counts["sessions_unchanged"] == 12 and result.counts["sessions_added"] == 0
    assert result.counts["episodes_updated"] == 0
    assert file_hash(base_db) == before
