"""The clinic's own lists of site and program names (data-contract.md, "Controlled values").

The list is what the database's ``sites`` and ``programs`` tables hold. An import into a
database without a list (a new database, an empty one, or the demo clinic being replaced) takes
the file's names as the list, and the summary prints them. Later, a name that is not on the
list stops the whole import, nothing written, until the person importing confirms it
(``--accept-new-names``; on the Data page a checkbox) or corrects the file: so that a person's
name, a note or a typo typed into site or program never becomes a filter option or a chart label
unnoticed.

Names are matched like the controlled lists, ignoring case and extra spaces, and are stored as
the list spells them ("northside " is Northside); a new name as the file first spells it. The
writer checks again, under its lock, that the list is still the one the import was checked
against (another import may have changed it meanwhile).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from alliance.ingest.read import UsageError

COLUMNS = ("site", "program")
TABLES = {"site": "sites", "program": "programs"}
PLURAL = {"site": "sites", "program": "programs"}


@dataclass(frozen=True)
class NewName:
    """A name the file uses that the clinic's list does not hold; located at its first row."""

    column: str
    name: str
    file_no: int
    row_no: int
    rows: int


def current_lists(con: duckdb.DuckDBPyConnection, schema: str = "") -> dict[str, list[str]]:
    """Each column's list as the database holds it (empty list: no list yet)."""
    prefix = f"{schema}." if schema else ""
    return {
        col: [
            r[0]
            for r in con.execute(f"select name from {prefix}{table} order by name").fetchall()  # noqa: S608 (constant names)
        ]
        for col, table in TABLES.items()
    }


def read_lists(db_path: Path, kind: str) -> dict[str, list[str]]:
    """The lists of the database an import goes into. A new database and the demo clinic (which
    the import replaces) have none."""
    if kind in ("none", "demo") or not Path(db_path).exists():
        return {col: [] for col in COLUMNS}
    from alliance.ingest.merge import sql_path

    con = duckdb.connect()  # private instance, as run.target_meta
    try:
        con.execute(f"attach {sql_path(Path(db_path))} as target (read_only)")
        return current_lists(con, "target")
    except duckdb.Error as exc:
        raise UsageError(f"{db_path} is not a database this tool can open") from exc
    finally:
        con.close()


def canonicalize(con: duckdb.DuckDBPyConnection, lists: dict[str, list[str]]) -> None:
    """In the staging database: build ``name_map`` (every name the files use -> the list's
    spelling, or the file's first spelling if new) and write the list's spelling into ``rows``."""
    pairs = [(col, name) for col, names in lists.items() for name in names]
    con.register(
        "name_list_in",
        pa.table({"col": [p[0] for p in pairs], "name": [p[1] for p in pairs]}).cast(
            pa.schema([("col", pa.string()), ("name", pa.string())])
        ),
    )
    con.execute(
        """
        create or replace temp table name_map as
        with
        listed as (
            select col, label_key(name) as key, min(name) as name
            from name_list_in group by all
        ),
        spellings as (  -- distinct spellings first: the key is computed once per spelling
            select 'site' as col, site as spelling, min((file_no, row_no)) as first_at
            from rows where site is not null and not all_blank group by site
            union all
            select 'program', program, min((file_no, row_no))
            from rows where program is not null and not all_blank group by program
        ),
        seen as (
            select col, label_key(spelling) as key, arg_min(spelling, first_at) as spelling
            from spellings group by all
        )
        select s.col, s.key, coalesce(l.name, s.spelling) as name, l.name is not null as known
        from seen as s
        left join listed as l using (col, key)
        """
    )
    con.unregister("name_list_in")
    for col in COLUMNS:
        con.execute(
            f"""
            create or replace temp table name_fix as
            select d.spelling, m.name
            from (select distinct {col} as spelling from rows where {col} is not null) as d
            join name_map as m on m.col = '{col}' and m.key = label_key(d.spelling)
            where d.spelling <> m.name
            """  # noqa: S608 (constant column names)
        )
        if con.execute("select count(*) from name_fix").fetchall()[0][0]:
            con.execute(
                f"update rows set {col} = f.name from name_fix as f where rows.{col} = f.spelling"  # noqa: S608
            )
    con.execute("drop table if exists name_fix")


def new_names(con: duckdb.DuckDBPyConnection, *, valid_rows_only: bool) -> list[NewName]:
    """Names off the list, each at its first row with its number of rows. With
    `valid_rows_only` (``--skip-invalid``) rows that are left out anyway do not count."""
    skip = "anti join rejected as r using (file_no, row_no)" if valid_rows_only else ""
    found = con.execute(
        f"""
        with used as (
            select 'site' as col, site as name, file_no, row_no from live where site is not null
            union all
            select 'program', program, file_no, row_no from live where program is not null
        )
        select u.col, u.name, arg_min(u.file_no, (u.file_no, u.row_no)),
               arg_min(u.row_no, (u.file_no, u.row_no)), count(*)
        from used as u
        join name_map as m on m.col = u.col and m.name = u.name and not m.known
        {skip}
        group by u.col, u.name
        order by u.col desc, 3, 4
        """  # noqa: S608 (constant SQL)
    ).fetchall()
    return [NewName(c, n, int(f), int(r), int(k)) for c, n, f, r, k in found]


def check_unchanged(con: duckdb.DuckDBPyConnection, checked: dict[str, list[str]]) -> None:
    """In the writer, under its lock: the lists are still those the import was checked
    against; otherwise a UsageError (nothing is written)."""
    now = current_lists(con)
    for col in COLUMNS:
        if sorted(now[col]) != sorted(checked[col]):
            raise UsageError(
                f"the clinic's list of {PLURAL[col]} changed while this import was checked "
                "(another import?): nothing was imported; import the file again"
            )
