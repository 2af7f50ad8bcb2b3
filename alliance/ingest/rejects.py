"""The rejects file of ``--skip-invalid``: which rows were left out and why, and nothing else.

A clinic fixes its export at those rows and imports the whole export again: rows already
imported are recognised and change nothing. So the file needs the row numbers and the reasons,
not the data: it holds no identifying column (client, therapist and episode ids, dates of birth,
birth years), and it never repeats a text cell (site, program, gender, race/ethnicity, end
reason): a non-blank one shows as "(text withheld)", since anything typed there (a name, a note,
an address) would otherwise be copied into a second file the clinic must then protect. Numbers
and dates of the contract's own columns stay, and a reason quotes a value only when it is a
number or a date.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import TYPE_CHECKING

from alliance.ingest import contract as C
from alliance.ingest import rules
from alliance.ingest.controlled import WITHHELD_TEXT
from alliance.ingest.problems import message

if TYPE_CHECKING:
    from alliance.ingest.stage import Stage

SHOWN = (
    "session_date",
    "site",
    "program",
    "age",
    "gender",
    "race_ethnicity",
    "end_reason",
    "session_number",
    *rules.SESSION_VALUES,
)
_QUOTABLE = re.compile(r"[-+]?\d+([.,]\d+)?|\d{4}-\d{2}-\d{2}")


def _expr(col: str) -> str:
    """SQL for a column of the rejects file, over the staged row `l`."""
    if col == "session_date":
        return "strftime(l.sdate, '%Y-%m-%d')"
    if col in C.TEXT_COLUMNS:
        bit = 1 << C.TEXT_COLUMNS.index(col)
        return f"case when l.given_text & {bit} <> 0 then '{WITHHELD_TEXT}' end"
    return f"l.{col}"


def _reason(column_name: str, column: str, text: str, value: str) -> str:
    if not column:
        return text
    quote = column_name not in C.TEXT_COLUMNS and _QUOTABLE.fullmatch(value or "")
    return f"{column}: {text}" + (f" ({value})" if quote else "")


def write_rejects(stage: Stage, path: Path) -> int:
    """Write the rejected rows of `stage` to `path`; returns the number of rows written.

    Columns: file, row, problems, then the row's contract values as above (a cell that broke a
    rule is blank)."""
    con = stage.con
    reasons: dict[tuple[int, int], list[str]] = {}
    for r in con.execute(
        "select file_no, row_no, col, rule, value, ref_file, ref_row, detail from problems"
    ).fetchall():
        p = stage._problem(*r)
        reasons.setdefault((r[0], r[1]), []).append(_reason(r[2], p.column, p.message, p.value))
    found = con.execute(
        f"select r.file_no, r.row_no, {', '.join(_expr(c) for c in SHOWN)} "  # noqa: S608 (constant columns)
        "from rejected as r join live as l using (file_no, row_no) order by 1, 2"
    ).fetchall()
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "row", "problems", *SHOWN])
        for file_no, row_no, *values in found:
            why = reasons.get((file_no, row_no)) or _episode_reason(stage, file_no, row_no)
            writer.writerow([stage.sources[file_no].display, row_no, "; ".join(why), *values])
            count += 1
        for p in stage.structural:  # rows the CSV reader could not return at all
            writer.writerow([p.file, p.row, p.message, *([""] * len(SHOWN))])
            count += 1
    return count


def _episode_reason(stage: Stage, file_no: int, row_no: int) -> list[str]:
    first = stage.con.execute(
        """
        select p.file_no, p.row_no
        from live as l join problems as p using (episode_no)
        where l.file_no = $f and l.row_no = $r
        order by p.file_no, p.row_no limit 1
        """,
        {"f": file_no, "r": row_no},
    ).fetchall()
    found = first[0] if first else None
    ref = "" if found is None else str(found[1])
    if found is not None and found[0] != file_no:
        ref += f" of {stage.sources[found[0]].display}"
    return [message("episode_rejected", ref=ref)]
