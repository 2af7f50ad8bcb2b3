"""The staging database: where an export is read, validated and made ready, never the real one.

A private in-memory DuckDB database; beyond its memory limit it spills to a fresh owner-only
temporary folder (deleted afterwards, and by the next import if a process was killed). Every file is scanned by DuckDB as text, so that a bad cell
becomes a reported problem rather than a failed cast. Raw client, therapist and episode
identifiers and dates of birth never reach this file: a first scan collects the *distinct*
identifiers, Python turns each into a keyed pseudonym (one HMAC per distinct value) and a small
number, and the loading scan joins those numbers in place of the raw values while it types every
cell and evaluates every row rule (rules.py). Episode rules then run as set-based SQL.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from alliance.ingest import contract as C
from alliance.ingest import names as name_lists
from alliance.ingest import rules, sql
from alliance.ingest.controlled import GENDER_VOCABULARY, KIND_TEXT, Vocabulary, race_vocabulary
from alliance.ingest.problems import HIDDEN_VALUE, WITHHELD_RULES, WITHHELD_VALUE, Problem, message
from alliance.ingest.read import Source
from alliance.pseudonym import SecretKey, episode_message

STAGE_PREFIX = "alliance-import-"
DEFAULT_MEMORY_LIMIT = "512MB"
_CSV_ERRORS = {
    "TOO MANY COLUMNS": ("extra_fields", ""),
    "INVALID ENCODING": ("bad_encoding_row", ""),
    "UNQUOTED VALUE": ("unreadable_row", "a double quote inside a cell that is not quoted"),
    "LINE SIZE OVER MAXIMUM": ("unreadable_row", "the line is too long"),
    "MISSING COLUMNS": ("unreadable_row", "too few fields"),
}


def cleanup_stale_stages() -> None:
    """Remove staging folders left behind by killed imports (their process no longer exists)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{STAGE_PREFIX}*"):
        match = re.match(rf"{STAGE_PREFIX}(\d+)-", folder.name)
        if not match or not folder.is_dir() or folder.stat().st_uid != os.getuid():
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


def qident(name: str) -> str:
    """A DuckDB identifier, quoted (for column names taken from a Parquet schema)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass
class LoadStats:
    rows: int = 0  # data rows read (blank rows not counted)
    blank_rows: int = 0


class Stage:
    """A private staging database for one import."""

    date_form = "YYYY-MM-DD"  # how dates are described in problems
    gender: Vocabulary = GENDER_VOCABULARY
    race: Vocabulary = race_vocabulary()  # the clinic's list may replace it (run.py)

    def __init__(self, *, memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None):
        cleanup_stale_stages()
        # in memory; beyond `memory_limit` DuckDB spills to this owner-only folder
        self.dir = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-"))  # mode 0700
        config: dict[str, object] = {
            "memory_limit": memory_limit,
            "temp_directory": str(self.dir / "spill"),
        }
        if threads:
            config["threads"] = threads
        self.con = duckdb.connect(":memory:", config=config)
        self.con.execute(sql.MACROS)
        self.con.execute(sql.rows_table())
        self.sources: list[Source] = []
        self.structural: list[Problem] = []  # CSV rows the reader could not return
        # raw id -> number, in memory only, shared by all files of the import
        self._clients: dict[str, int] = {}
        self._episodes: dict[tuple[int, str], int] = {}
        self._therapists: dict[str, int] = {}
        self._dobs: dict[str, int] = {}
        self._client_keys: list[str] = []
        self.exact_duplicates = 0
        self.closed = False

    # --- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Free everything (idempotent): the database, the id maps, the spill folder."""
        self.closed = True
        with contextlib.suppress(duckdb.Error):
            self.con.close()
        self._clients.clear()
        self._episodes.clear()
        self._therapists.clear()
        self._dobs.clear()
        self._client_keys.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def prepared(self) -> dict[str, object]:
        """The prepared rows as Arrow, for the writer's connection: the sessions as a stream
        (read once, in batches), the small episode and therapist tables whole."""
        episodes = self.con.sql("select * from inc_episodes").to_arrow_table()
        therapists = self.con.sql("select * from therapist_keys").to_arrow_table()
        stream = self.con.cursor()  # its own connection: the open result is not disturbed
        sessions = stream.sql("select * from inc_sessions").to_arrow_reader(100_000)
        return {"inc_sessions": sessions, "inc_episodes": episodes, "therapist_keys": therapists}

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- loading ------------------------------------------------------------------------------
    def _relation(self, src: Source, file_no: int) -> tuple[str, dict[str, object]]:
        """FROM-clause for scanning the file, and its parameters."""
        if src.fmt == "csv":
            return (
                "read_csv($path, auto_detect = false, header = true, delim = $delim, quote = '\"', "
                "escape = '\"', comment = '', columns = $columns, null_padding = true, "
                "parallel = false, store_rejects = true, rejects_table = $rt, rejects_scan = $rs, "
                "max_line_size = 10000000)",
                {
                    "path": str(src.path),
                    "delim": src.delimiter,
                    "columns": {f"c{i}": "VARCHAR" for i in range(len(src.headers))},
                    "rt": f"rejects_{file_no}",
                    "rs": f"rejects_scan_{file_no}",
                },
            )
        if src.fmt == "parquet":
            return "read_parquet($path, file_row_number = true)", {"path": str(src.path)}
        name = f"xlsx_{file_no}"
        self.con.register(name, src.table)
        return name, {}

    def _col(self, src: Source, name: str) -> str:
        """SQL text expression for a contract column of `src` (NULL if the file lacks it)."""
        pos = src.columns.get(name)
        if pos is None:
            return "null::varchar"
        if src.fmt != "parquet":
            return f"s.c{pos}"
        ref = "s." + qident(src.headers[pos])
        arrow_type = src.parquet_types.get(pos, "")
        if arrow_type.startswith(("date", "timestamp")):
            return f"strftime({ref}, $fmt)"  # typed dates, written in the import's date format
        if arrow_type.startswith(("double", "float", "halffloat")):
            return f"cast(round({ref}, 6) as varchar)"
        return f"cast({ref} as varchar)"

    def _row_no(self, src: Source) -> str:
        if src.fmt == "parquet":
            return "s.file_row_number + 2"
        if src.fmt == "xlsx":
            return "s.__row"
        return "s.__seq + 1"  # record k is row k + 1, unless rows were skipped (below)

    def _number_csv_rows(self, src: Source, file_no: int) -> None:
        """Record k -> spreadsheet row, skipping the rows the reader did not return (blank lines,
        and rows it rejected: those become located problems). Nothing to do in the usual case."""
        self._collect_csv_rejects(src, file_no)
        if src.skipped_rows:
            self.con.execute(
                "update rows set row_no = row_no + len(list_filter($skips::bigint[], "
                "lambda x: x < row_no - 1)) where file_no = $f",
                {"skips": _thresholds(src.skipped_rows), "f": file_no},
            )

    def load(
        self, src: Source, file_no: int, key: SecretKey, date_format: str, today: object
    ) -> LoadStats:
        """Scan one file into `rows`: pseudonymized, typed, each row with its problems."""
        rel, params = self._relation(src, file_no)
        raw = {n: self._col(src, n) for n in sql.RAW_FIELDS}
        id_exprs = [f"coalesce(trim({raw[n]}), '')" for n in sql.ID_COLUMNS]

        # 1. distinct identifiers -> keyed pseudonyms and numbers (raw values in memory only)
        query = (
            f"select distinct {', '.join(f'{e} as k{i}' for i, e in enumerate(id_exprs))} "  # noqa: S608 (constant column names)
            f"from {rel} as s"
        )
        try:
            distinct = self.con.execute(
                query, {**params, "fmt": date_format} if "$fmt" in query else params
            ).fetchall()
        except duckdb.Error as exc:
            src.problems.append(_unreadable(src, exc))
            return LoadStats()
        if src.fmt == "csv":  # this scan parses only the id columns: rejects come from the next
            self._drop_rejects(file_no)
        self.con.register(f"idmap_{file_no}", self._number_ids(distinct, key))
        del distinct

        # 2. one scan: numbers joined in place of raw ids, values typed, row rules evaluated
        if src.fmt == "csv":
            rel, params = self._relation(src, file_no)
            self.con.execute(f"create or replace sequence seq_{file_no} start 1")
            scan = f"(select nextval('seq_{file_no}') as __seq, * from {rel}) as s"  # noqa: S608
        else:
            scan = f"{rel} as s"
        query = sql.load_sql(
            file_no=file_no,
            row_no=self._row_no(src),
            scan=scan,
            raw=raw,
            join=" and ".join(
                f"m.k{i} = {e}"
                for i, e in enumerate(id_exprs)
                if raw[sql.ID_COLUMNS[i]] != "null::varchar"
            )
            or "true",
            has_episode="episode_id" in src.columns,
        )
        try:
            self.con.execute(
                query, {**params, "fmt": date_format, "today": today, **self._list_params()}
            )
        except duckdb.Error as exc:
            src.problems.append(_unreadable(src, exc))
            return LoadStats()
        else:
            if src.fmt == "csv":
                self._number_csv_rows(src, file_no)
        finally:
            self.con.unregister(f"idmap_{file_no}")
            if src.fmt == "csv":
                self._drop_rejects(file_no)
            if src.fmt == "xlsx":
                self.con.unregister(f"xlsx_{file_no}")
                src.table = None
        counts = self.con.execute(
            "select count(*) filter (where not all_blank), count(*) filter (where all_blank) "
            "from rows where file_no = $f",
            {"f": file_no},
        ).fetchall()[0]
        return LoadStats(rows=int(counts[0]), blank_rows=int(counts[1]))

    def _list_params(self) -> dict[str, list[str]]:
        """The controlled lists as query parameters (never as SQL text)."""
        return {
            "gender_keys": list(self.gender.keys),
            "gender_values": list(self.gender.values),
            "race_keys": list(self.race.keys),
            "race_values": list(self.race.values),
        }

    def _number_ids(self, distinct: list[tuple[str, str, str, str]], key: SecretKey) -> pa.Table:
        """Map each distinct (client, episode, therapist, dob) to numbers; new clients, episodes
        and therapists get their keyed pseudonyms in the *_keys tables."""
        new_clients: list[tuple[int, str]] = []
        new_episodes: list[tuple[int, int, str]] = []
        new_therapists: list[tuple[int, str]] = []
        cols: dict[str, list[object]] = {
            n: []
            for n in ("k0", "k1", "k2", "k3", "client_no", "episode_no", "therapist_no", "dob_no")
        }
        for client, episode, therapist, dob in distinct:
            c_no = e_no = t_no = d_no = None
            if client:
                c_no = self._clients.get(client)
                if c_no is None:
                    c_no = self._clients[client] = len(self._clients)
                    self._client_keys.append(key.pseudonym("client", client))
                    new_clients.append((c_no, self._client_keys[c_no]))
                e_no = self._episodes.get((c_no, episode))
                if e_no is None:
                    e_no = self._episodes[(c_no, episode)] = len(self._episodes)
                    client_key = self._client_keys[c_no]
                    episode_key = key.pseudonym("episode", episode_message(client_key, episode))
                    new_episodes.append((e_no, c_no, episode_key))
            if therapist:
                t_no = self._therapists.get(therapist)
                if t_no is None:
                    t_no = self._therapists[therapist] = len(self._therapists)
                    new_therapists.append((t_no, key.pseudonym("therapist", therapist)))
            if dob:
                d_no = self._dobs.setdefault(dob, len(self._dobs))
            for name, value in zip(
                cols, (client, episode, therapist, dob, c_no, e_no, t_no, d_no), strict=True
            ):
                cols[name].append(value)
        for table, rows_, names in (
            ("client_keys", new_clients, ("client_no", "client_key")),
            ("episode_keys", new_episodes, ("episode_no", "client_no", "episode_key")),
            ("therapist_keys", new_therapists, ("therapist_no", "therapist_key")),
        ):
            if rows_:
                self.con.register(
                    "new_keys", pa.table({n: [r[i] for r in rows_] for i, n in enumerate(names)})
                )
                self.con.execute(f"insert into {table} select * from new_keys")  # noqa: S608
                self.con.unregister("new_keys")
        return pa.table(
            {
                n: pa.array(v, type=pa.string() if n.startswith("k") else pa.int32())
                for n, v in cols.items()
            }
        )

    def _collect_csv_rejects(self, src: Source, file_no: int) -> None:
        """Rows DuckDB's CSV reader could not return: reported, and kept out of the numbering."""
        rejected = self.con.execute(
            f"select line, error_type from rejects_{file_no} order by line"  # noqa: S608
        ).fetchall()
        self._drop_rejects(file_no)
        lines: list[int] = []
        for line, error_type in rejected:
            if lines and lines[-1] == int(line):
                continue
            rule, detail = _CSV_ERRORS.get(
                str(error_type), ("unreadable_row", str(error_type).lower())
            )
            lines.append(int(line))
            self.structural.append(
                Problem(src.display, int(line), "", "", rule, message(rule, detail=detail))
            )
        if lines:
            src.skipped_rows = sorted(set(src.skipped_rows) | set(lines))

    def _drop_rejects(self, file_no: int) -> None:
        for table in (f"rejects_{file_no}", f"rejects_scan_{file_no}"):
            self.con.execute(f"drop table if exists {table}")

    # --- validation ---------------------------------------------------------------------------
    def validate(self) -> int:
        """Collect the row problems and run the episode rules; fills `problems` and
        `rejected` (rows to leave out with --skip-invalid). Returns the number of problems."""
        self.con.execute("create or replace view live as select * from rows where not all_blank")
        self.con.execute(rules.PROBLEMS_TABLE)
        self.con.execute(rules.ROW_PROBLEMS)
        for statement in rules.episode_checks():
            self.con.execute(statement)
        self.exact_duplicates = int(
            self.con.execute(
                "select coalesce(sum(n - 1), 0) from duplicate_groups where nv = 1"
            ).fetchall()[0][0]
        )
        self.con.execute(
            """
            create or replace table rejected as
            select distinct file_no, row_no from problems where episode_no is null
            union
            select l.file_no, l.row_no
            from live as l
            semi join (select distinct episode_no from problems where episode_no is not null) as p
                using (episode_no)
            """
        )
        return int(self.con.execute("select count(*) from problems").fetchall()[0][0])

    def problems(self, limit: int | None = None) -> list[Problem]:
        """Problems in file/row order, with the column named as in the file's header."""
        query = (
            "select file_no, row_no, col, rule, value, ref_file, ref_row, detail from problems "
            "order by file_no, row_no, list_position($order, col), rule"
        )
        if limit is not None:
            query += f" limit {int(limit)}"
        found = self.con.execute(query, {"order": list(C.BY_NAME)}).fetchall()
        return [self._problem(*r) for r in found]

    def _problem(self, file_no, row_no, col, rule, value, ref_file, ref_row, detail) -> Problem:
        src = self.sources[file_no]
        column = src.header_of(col) if col else ""
        hidden = col in C.BY_NAME and C.BY_NAME[col].hidden
        shown = HIDDEN_VALUE if hidden and rule != "required" else ("" if value is None else value)
        if rule in WITHHELD_RULES and not hidden:
            shown = WITHHELD_VALUE
        if rule == "identifying":
            detail = KIND_TEXT.get(detail or "", "an identifier")
        elif rule in ("gender", "race_ethnicity"):
            detail = (self.gender if rule == "gender" else self.race).describe()
        ref = ""
        if ref_row is not None:
            ref = str(ref_row)
            if ref_file is not None and ref_file != file_no:
                ref += f" of {self.sources[ref_file].display}"
        spec = C.BY_NAME.get(col)
        text = message(
            rule,
            lo=spec.lo if spec and spec.lo is not None else 0,
            hi=spec.hi if spec and spec.hi is not None else 0,
            dates=self.date_form,
            ref=ref,
            detail=src.header_of(detail) if detail in C.BY_NAME else (detail or ""),
        )
        return Problem(src.display, row_no, column, shown, rule, text)

    def rejected_rows(self) -> int:
        return int(self.con.execute("select count(*) from rejected").fetchall()[0][0])

    def write_rejects(self, path: Path) -> int:
        """The rejected rows and their reasons, without identifiers or text (rejects.py)."""
        from alliance.ingest.rejects import write_rejects

        return write_rejects(self, path)

    # --- the clinic's lists of sites and programs (names.py) ----------------------------------
    def canonicalize_names(self, lists: dict[str, list[str]]) -> None:
        name_lists.canonicalize(self.con, lists)

    def new_names(self, *, valid_rows_only: bool) -> list[tuple[name_lists.NewName, Problem]]:
        """Names off the clinic's list, each with its problem located at its first row."""
        found = []
        for n in name_lists.new_names(self.con, valid_rows_only=valid_rows_only):
            src = self.sources[n.file_no]
            text = message("new_name", detail=name_lists.PLURAL[n.column], n=n.rows)
            column = src.header_of(n.column)
            found.append((n, Problem(src.display, n.row_no, column, n.name, "new_name", text)))
        return found

    # --- preparing ----------------------------------------------------------------------------
    def prepare(self) -> dict[str, int]:
        """Typed sessions and episodes of the valid rows (inc_sessions, inc_episodes; their
        pseudonyms in the *_keys tables). Exact duplicate rows are collapsed."""
        if self.rejected_rows():
            self.con.execute(
                "create or replace table valid as select l.* from live as l "
                "anti join rejected as r using (file_no, row_no)"
            )
        else:
            self.con.execute("create or replace view valid as select * from live")
        self.con.execute(sql.prepare_sessions(deduplicate=self.exact_duplicates > 0))
        self.con.execute(sql.PREPARE_EPISODES.format(age_band=C.age_band_sql("age_at_first")))
        counts = self.con.execute(
            """
            select
                (select count(*) from valid),
                (select count(*) from inc_sessions),
                (select count(*) from inc_episodes),
                (select count(distinct client_key) from inc_episodes),
                (select count(distinct therapist_no) from inc_sessions)
            """
        ).fetchall()[0]
        return {
            "valid_rows": int(counts[0]),
            "sessions": int(counts[1]),
            "episodes": int(counts[2]),
            "clients": int(counts[3]),
            "therapists": int(counts[4]),
        }


# --- helpers ------------------------------------------------------------------------------------
def _thresholds(skipped: list[int]) -> list[int]:
    """Skipped spreadsheet rows s_1 < s_2 < ... -> the k-th returned record is at row
    k + 1 + #{j : s_j - j - 1 < k}."""
    return [s - j - 1 for j, s in enumerate(sorted(set(skipped)), start=1)]


def _unreadable(src: Source, exc: duckdb.Error) -> Problem:
    """A reader error as a located problem; DuckDB's message may quote the raw line: not shown."""
    text = str(exc)
    match = re.search(r"Line: (\d+)", text)
    row = int(match.group(1)) if match else None
    if "unicode" in text.lower() or "utf" in text.lower():
        return Problem(src.display, row, "", "", "encoding", message("encoding"))
    detail = "the file could not be read" + ("" if row is None else " from this row on")
    return Problem(src.display, row, "", "", "unreadable", message("unreadable", detail=detail))
