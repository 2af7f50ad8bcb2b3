"""Problems found in an import: located (file, spreadsheet row, column), never echoing identifiers.

Row numbers are as a person sees the file in a spreadsheet: the header is row 1, so the first
data row is row 2 (a cell spanning several lines of a CSV is one row; blank lines count as rows).
For Parquet, row N is the (N-1)-th record, as if the file were opened with a header row.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from alliance.ingest.contract import FIRST_YEAR

HIDDEN_VALUE = "(hidden)"  # shown instead of the value of an identifying column
WITHHELD_VALUE = "(withheld)"  # shown instead of a cell that may hold anything a person typed
# rules whose cell is never shown: it looks like an identifier, or is free text off its list
WITHHELD_RULES = frozenset({"identifying", "text_long", "gender", "race_ethnicity", "end_reason"})
REPORT_LIMIT = 50

# rule id -> message; formatted with lo, hi, dates (the expected date form), ref (another row)
RULES: dict[str, str] = {
    # file level
    "missing_column": "required column is missing",
    "no_alliance": "no alliance measure: add srs_total (or the four SRS items) or the WAI-SR "
    "items (wai_1 … wai_12) or subscales (wai_task, wai_bond, wai_goal)",
    "no_outcome": "no outcome measure: add ors_total (or the four ORS items), phq9_total or "
    "gad7_total",
    "item_columns": "{detail}",
    "duplicate_column": "two columns are both read as {detail}: keep one",
    "no_rows": "the file has no data rows",
    "unreadable": "{detail}",
    "encoding": "not UTF-8 text: save the file as 'CSV UTF-8' and import it again",
    "unbalanced_quotes": 'a quote (") is opened and never closed, so rows after it cannot be '
    "read reliably: check cells containing double quotes",
    "header": "{detail}",
    # row level
    "extra_fields": "the row has more fields than the header",
    "bad_encoding_row": "the row is not valid UTF-8 text",
    "unreadable_row": "the row could not be read as CSV ({detail})",
    "required": "required value is blank",
    "episode_blank": "episode_id is blank (the file has an episode_id column, so every row needs one)",
    "date": "not a date in the form {dates}",
    "date_future": "the date is in the future",
    "date_old": f"the date is before {FIRST_YEAR}",
    "number": "not a number",
    "range": "outside the range {lo:g}–{hi:g}",
    "decimals": "more than one decimal place",
    "integer": "not a whole number",
    "text_long": "longer than 100 characters or spans several lines (a shifted column or a "
    "note?); the value is not shown",
    "end_reason": "must be planned, dropout, other, ongoing or blank; the value is not shown",
    "identifying": "looks like {detail}: identifiers must never be typed into this column; "
    "the value is not shown",
    "gender": "must be one of {detail} (or a listed synonym such as f, m, nonbinary, declined); "
    "the value is not shown",
    "race_ethnicity": "must be one of the clinic's race/ethnicity categories ({detail}); "
    "the value is not shown",
    "new_name": "not on the clinic's list of {detail} ({n:,} row(s)): correct the file, or "
    "confirm the new name (--accept-new-names; on the Data page, tick 'Add the new names')",
    "items_partial": "{detail} items are incomplete and no total is given: give all four items "
    "or the total",
    "items_total": "differs from the sum of the four items by more than 0.1",
    "wai_partial": "WAI-SR items are incomplete: give all 12 items, or none",
    "wai_sub_partial": "WAI-SR subscales are incomplete: give wai_task, wai_bond and wai_goal, or none",
    "wai_sub_total": "differs from the sum of its WAI-SR items",
    "dob_after": "the date of birth is after the session date",
    "dob_age": "the date of birth gives an age outside 0–120",
    "birth_year_after": "the birth year is after the session date",
    "episode_differs": "differs from row {ref} of the same episode: {detail} must agree within an "
    "episode",
    "age_differs": "age changes more within the episode than its dates allow (compare row {ref})",
    "duplicate": "same session as row {ref} (client, episode, therapist, date and session "
    "number) but with different values: add a session_number to tell same-day sessions apart, "
    "or remove the duplicate",
    "episode_rejected": "another row of this episode is invalid (row {ref})",
}


@dataclass(frozen=True)
class Problem:
    """One problem. `row` None = the whole file; `column` as written in the file's header."""

    file: str
    row: int | None
    column: str
    value: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "problem": self.message,
        }


def message(rule: str, **kw: object) -> str:
    text = RULES.get(rule, rule)
    try:
        return text.format(**kw)
    except (KeyError, ValueError, IndexError):
        return text


def problems_frame(problems: list[Problem]) -> pd.DataFrame:
    cols = ["file", "row", "column", "value", "problem"]
    if not problems:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame([p.as_dict() for p in problems], columns=cols)
    df["row"] = df["row"].astype("Int64")
    return df


def format_report(
    problems: list[Problem], total: int | None = None, limit: int = REPORT_LIMIT
) -> str:
    """Plain-text table of the first `limit` problems and a count of the rest."""
    total = len(problems) if total is None else total
    shown = problems[:limit]
    header = ("file", "row", "column", "value", "problem")
    rows = [
        (p.file, "-" if p.row is None else str(p.row), p.column, _clip(p.value), p.message)
        for p in shown
    ]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header[:-1])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header[:-1], widths, strict=True)) + "  problem"]
    for r in rows:
        lines.append(
            "  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        )
    if total > len(shown):
        lines.append(f"… and {total - len(shown):,} more problem(s) not shown.")
    return "\n".join(lines)


def _clip(value: str, width: int = 30) -> str:
    value = value.replace("\r", " ").replace("\n", " ")
    return value if len(value) <= width else value[: width - 1] + "…"
