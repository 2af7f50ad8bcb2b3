"""Named SQL queries: one `.sql` file per question in queries/, run with checked parameters.

A query file opens with a comment block: what it answers, then a ``Parameters:`` section
(``--   $name: type, meaning``) and a ``Columns:`` section (``--   name: type/unit, meaning``).
A missing or unknown parameter is an error, never a silent NULL; every call runs on its own
cursor (a DuckDB connection is not thread-safe, Streamlit runs one thread per browser session).
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

QUERY_DIR = Path(__file__).resolve().parent.parent / "queries"
_PARAM_USE = re.compile(r"\$([a-z_][a-z0-9_]*)")
_CURSOR_LOCK = threading.Lock()
_HEADER_ITEM = re.compile(r"^--\s+\$?([a-z_][a-z0-9_]*)\s*:\s*(.+)$")


class QueryError(ValueError):
    """A query was called with missing or unknown parameters, or its file is malformed."""


@dataclass(frozen=True)
class NamedQuery:
    name: str
    doc: str
    parameters: dict[str, str]
    columns: dict[str, str]
    sql: str

    def used_parameters(self) -> set[str]:
        body = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return set(_PARAM_USE.findall(body))


def _parse(name: str, text: str) -> NamedQuery:
    doc: list[str] = []
    sections: dict[str, dict[str, str]] = {"parameters": {}, "columns": {}}
    current: str | None = None
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        stripped = line[2:].strip()
        if stripped.lower() in ("parameters:", "columns:"):
            current = stripped[:-1].lower()
            continue
        item = _HEADER_ITEM.match(line)
        if current and item:
            sections[current][item.group(1)] = item.group(2).strip()
        elif current is None:
            doc.append(stripped)
    return NamedQuery(
        name=name,
        doc=" ".join(d for d in doc if d).strip(),
        parameters=sections["parameters"],
        columns=sections["columns"],
        sql=text,
    )


@functools.cache
def load(name: str) -> NamedQuery:
    path = QUERY_DIR / f"{name}.sql"
    if not path.is_file():
        raise QueryError(f"no query named {name!r} in {QUERY_DIR}")
    return _parse(name, path.read_text())


def all_queries() -> list[NamedQuery]:
    return [load(p.stem) for p in sorted(QUERY_DIR.glob("*.sql"))]


def _checked(name: str, params: dict[str, Any]) -> NamedQuery:
    query = load(name)
    declared = set(query.parameters)
    missing = declared - params.keys()
    unknown = params.keys() - declared
    if missing or unknown:
        raise QueryError(
            f"query {name!r}: missing parameters {sorted(missing)}, unknown {sorted(unknown)}"
        )
    return query


def _cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    with _CURSOR_LOCK:  # views run parts side by side (views.common.gather)
        return con.cursor()


def run(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> pd.DataFrame:
    """Run the named query with exactly its declared parameters; returns a DataFrame."""
    query = _checked(name, params)
    cur = _cursor(con)
    try:
        return cur.execute(query.sql, params).df()
    finally:
        cur.close()


def run_rows(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> pd.DataFrame:
    """`run` for a query that returns one row per episode (statistics that need every
    observation, e.g. the therapist ICC): fetched through Arrow, whose text columns become
    pandas' Arrow-backed strings without a Python object per value (hundreds of thousands of
    rows: about half the time of `run`). For text, number and boolean columns the frame equals
    `run`'s (tests/test_queries.py); dates and integers with nulls convert differently, so
    aggregate queries keep `run`.
    """
    query = _checked(name, params)
    cur = _cursor(con)
    try:
        return cur.sql(query.sql, params=params).to_arrow_table().to_pandas()
    finally:
        cur.close()
