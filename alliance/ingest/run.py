"""One import, start to finish: inspect, stage, validate, prepare, then plan or write.

All or nothing: nothing is written unless every row is valid (or ``skip_invalid`` was asked
for), and the write itself goes through ``db.writer`` (a private copy of the database, swapped in
atomically), so an import that fails or is killed at any point leaves the database as it was.

A failure of the machine rather than of the data (a full disk, a folder that cannot be written, a
read-only disk, a damaged database, too little memory) is raised as ``faults.FaultError``: its
fault is a plain sentence (alliance/faults.py), and the log records the cause. A failed import
removes its temporary files (db.writer); one that was killed leaves them to the next import,
which sweeps them under the writers' lock.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from alliance import db, faults
from alliance.ingest import contract as C
from alliance.ingest import controlled, merge, names
from alliance.ingest.problems import REPORT_LIMIT
from alliance.ingest.read import Source, UsageError, open_source
from alliance.ingest.result import FileSummary, ImportResult
from alliance.ingest.stage import DEFAULT_MEMORY_LIMIT, Stage
from alliance.pseudonym import SecretKey, SecretKeyError, load_key

KEY_CHECK = "pseudonym_key_check"
Progress = Callable[[float, str], None]


class DemoDataError(UsageError):
    """The database holds the demo clinic and replacing it was not confirmed."""


@dataclass(frozen=True)
class ImportOptions:
    date_format: str | None = None  # strptime pattern for text dates; default ISO YYYY-MM-DD
    sheet: str | None = None  # .xlsx worksheet (default: the first)
    skip_invalid: bool = False  # load the valid rows, write the rejected ones to `rejects`
    rejects: Path | None = None
    dry_run: bool = False  # validate and plan; write nothing (not even a key file)
    replace_demo: bool = False  # allowed to remove the demo clinic (same transaction)
    accept_new_names: bool = False  # site/program names not on the clinic's list are added
    # the race/ethnicity list: None = the clinic settings file's, else US OMB 2024 (controlled.py)
    race_categories: object = None
    memory_limit: str = DEFAULT_MEMORY_LIMIT


def check_date_format(date_format: str | None) -> str:
    """The strptime pattern to use; a UsageError if DuckDB cannot read it."""
    fmt = date_format or "%Y-%m-%d"
    if "%" not in fmt:
        raise UsageError(f"--date-format {fmt!r} has no % directives (e.g. %m/%d/%Y)")
    con = duckdb.connect()
    try:
        con.execute("select try_strptime('2000-01-01', $f)", {"f": fmt}).fetchall()
    except duckdb.Error as exc:
        raise UsageError(f"--date-format {fmt!r} is not a valid date pattern") from exc
    finally:
        con.close()
    return fmt


def target_meta(path: Path) -> dict[str, str]:
    """The database's meta table (empty if there is no database yet)."""
    if not Path(path).exists():
        return {}
    # a private instance: DuckDB shares one instance per path within a process, which after an
    # import may still be the replaced file (e.g. the dashboard's cached connection)
    con = duckdb.connect()
    try:
        con.execute(f"attach {merge.sql_path(Path(path))} as target (read_only)")
        return dict(con.execute("select key, value from target.meta").fetchall())
    except duckdb.Error as exc:
        fault = faults.database_fault(exc, Path(path))
        if fault is None and "meta" in str(exc):
            return {}
        fault = fault or faults.Fault("unusable", f"{path} is not a database this tool can open")
        faults.record(fault, exc)
        raise UsageError(fault.text) from exc
    finally:
        con.close()


def _key_for(path: Path, meta: dict[str, str], *, dry_run: bool) -> SecretKey:
    key = load_key(path, create=False)
    stored = meta.get(KEY_CHECK)
    if key.source == "ephemeral":
        if stored:
            raise SecretKeyError(
                "this database was imported under a secret key that is not available: set "
                "ALLIANCE_SECRET_KEY or restore the key file "
                f"({Path(path).resolve().parent / '.alliance_secret_key'})"
            )
        if not dry_run:
            key = load_key(path, create=True)
    if stored and stored != key.check:
        raise SecretKeyError(
            "the secret key differs from the one this database was imported with, so the same "
            "people would get new pseudonyms: use the original ALLIANCE_SECRET_KEY or key file"
        )
    return key


def file_level_checks(src: Source) -> None:
    """Column-level rules of the contract (per file)."""
    cols = set(src.columns)
    for name in C.REQUIRED:
        if name not in cols:
            src.file_problem("missing_column", name)
    srs_ok = "srs_total" in cols or set(C.SRS_ITEMS) <= cols
    wai_ok = set(C.WAI_ITEMS) <= cols or set(C.WAI_SUBSCALES) <= cols
    if not (srs_ok or wai_ok):
        src.file_problem("no_alliance")
    ors_ok = "ors_total" in cols or set(C.ORS_ITEMS) <= cols
    if not (ors_ok or "phq9_total" in cols or "gad7_total" in cols):
        src.file_problem("no_outcome")
    for label, total, items in (
        ("SRS", "srs_total", C.SRS_ITEMS),
        ("ORS", "ors_total", C.ORS_ITEMS),
    ):
        present = [i for i in items if i in cols]
        if present and total not in cols and len(present) < len(items):
            missing = ", ".join(i for i in items if i not in cols)
            src.file_problem(
                "item_columns",
                present[0],
                detail=f"{label} items without {total}: all four item columns are needed "
                f"(missing {missing})",
            )
    present = [i for i in C.WAI_ITEMS if i in cols]
    if present and len(present) < len(C.WAI_ITEMS):
        missing = ", ".join(i for i in C.WAI_ITEMS if i not in cols)
        src.file_problem(
            "item_columns",
            present[0],
            detail=f"WAI-SR needs all 12 item columns (missing {missing})",
        )
    subs = [s for s in C.WAI_SUBSCALES if s in cols]
    if subs and len(subs) < len(C.WAI_SUBSCALES):
        src.file_problem(
            "item_columns", subs[0], detail="WAI-SR subscales: give wai_task, wai_bond and wai_goal"
        )


def run_import(
    inputs: Sequence[tuple[Path, str]],
    db_path: Path,
    options: ImportOptions = ImportOptions(),  # noqa: B008 (frozen)
    *,
    progress: Progress | None = None,
    problem_limit: int = REPORT_LIMIT,
) -> ImportResult:
    """Import (or with ``dry_run`` preview) the files into the database at `db_path`.

    `inputs` are (path, name shown in messages). Raises UsageError (incl. DemoDataError) and
    SecretKeyError for usage problems, faults.FaultError (a plain sentence) when the machine
    fails the import (disk full, folder not writable, ...); data problems are returned in the
    result, with nothing written. ``result.ok`` says whether the import happened (dry run:
    would happen).
    """
    try:
        return _run_import(inputs, db_path, options, progress=progress, problem_limit=problem_limit)
    except (OSError, duckdb.Error, MemoryError) as exc:
        need = faults.estimate_write_bytes(Path(db_path), [Path(p) for p, _ in inputs])
        action = "preview" if options.dry_run else "import"
        fault = faults.write_fault(exc, path=Path(db_path), action=action, need_bytes=need)
        raise faults.FaultError(faults.record(fault, exc)) from exc


def _run_import(
    inputs: Sequence[tuple[Path, str]],
    db_path: Path,
    options: ImportOptions,
    *,
    progress: Progress | None,
    problem_limit: int,
) -> ImportResult:
    say = progress or (lambda _f, _m: None)
    started = time.perf_counter()
    db_path = Path(db_path)
    if options.skip_invalid and options.rejects is None and not options.dry_run:
        raise UsageError("--skip-invalid needs --rejects PATH (where the rejected rows go)")
    if options.rejects is not None and not options.skip_invalid:
        raise UsageError("--rejects only makes sense with --skip-invalid")
    if not inputs:
        raise UsageError("no file to import")
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", options.memory_limit):
        raise UsageError(f"memory limit {options.memory_limit!r}: expected e.g. 512MB or 2GB")
    fmt = check_date_format(options.date_format)
    meta = target_meta(db_path)
    kind = meta.get("dataset_kind", "none" if not db_path.exists() else "empty")
    if kind == "demo" and not options.replace_demo and not options.dry_run:
        raise DemoDataError(
            f"{db_path} holds the demo clinic. Importing replaces it: add --replace-demo "
            "(on the Data page: tick 'Replace the demo clinic')."
        )
    key = _key_for(db_path, meta, dry_run=options.dry_run)
    lists = names.read_lists(db_path, kind)
    race_spec = options.race_categories
    if race_spec is None:
        race_spec = controlled.race_setting(controlled.settings_file_of(db_path))
    race = controlled.race_vocabulary(race_spec)

    say(0.02, "Reading the files")
    sources = [
        open_source(path, display=name, sheet=options.sheet, date_format=fmt)
        for path, name in inputs
    ]
    result = ImportResult(
        files=[FileSummary(s.display, s.fmt, s.fingerprint) for s in sources],
        problems=[],
        dry_run=options.dry_run,
        dataset_kind_before=kind,
        skip_invalid=options.skip_invalid,
        accept_new_names=options.accept_new_names,
    )
    for src, summary in zip(sources, result.files, strict=True):
        if src.headers:
            file_level_checks(src)
        summary.recognized = {src.headers[p]: name for name, p in src.columns.items()}
        summary.identifiers = list(src.identifiers)
        summary.ignored = list(src.ignored)

    with Stage(memory_limit=options.memory_limit) as stage:
        stage.date_form = "YYYY-MM-DD" if options.date_format is None else options.date_format
        stage.race = race
        for file_no, (src, summary) in enumerate(zip(sources, result.files, strict=True)):
            stage.sources.append(src)
            if not src.readable:
                continue
            say(0.05 + 0.3 * file_no / len(sources), f"Reading {src.display}")
            stats = stage.load(src, file_no, key, fmt, dt.date.today())
            summary.rows, summary.blank_rows = stats.rows, stats.blank_rows
            if stats.rows == 0 and src.readable:
                src.file_problem("no_rows")
        structural = list(stage.structural)
        result.rows_read = sum(f.rows for f in result.files) + len(structural)
        file_problems = [p for s in sources for p in s.problems]
        if file_problems:
            result.problems = (file_problems + structural)[:problem_limit]
            result.problem_count = len(file_problems) + len(structural)
            result.seconds = time.perf_counter() - started
            return result

        say(0.4, "Checking every rule")
        stage.canonicalize_names(lists)
        count = stage.validate()
        result.problem_count = count + len(structural)
        if result.problem_count:
            rows = stage.problems(limit=problem_limit) + structural
            order = {s.display: i for i, s in enumerate(sources)}
            rows.sort(key=lambda p: (order.get(p.file, 0), p.row or 0))
            result.problems = rows[:problem_limit]
        result.rows_rejected = stage.rejected_rows() + len(structural)
        for found, problem in stage.new_names(valid_rows_only=options.skip_invalid):
            if lists[found.column]:
                result.new_names.append(problem)
                result.unlisted.setdefault(found.column, []).append(found.name)
            else:
                result.first_list.setdefault(found.column, []).append(found.name)
        if result.problem_count and not options.skip_invalid:
            result.seconds = time.perf_counter() - started
            return result
        if result.needs_confirmation and not options.dry_run:
            result.seconds = time.perf_counter() - started  # nothing written, not even rejects
            return result
        if options.skip_invalid and options.rejects is not None and not options.dry_run:
            result.rejects_written = stage.write_rejects(Path(options.rejects))

        say(0.55, "Pseudonymizing and preparing")
        sizes = stage.prepare()
        result.valid_rows = sizes["valid_rows"]
        result.sessions = sizes["sessions"]
        result.episodes = sizes["episodes"]
        result.clients = sizes["clients"]
        result.therapists = sizes["therapists"]
        if result.valid_rows == 0:
            result.seconds = time.perf_counter() - started
            return result

        if options.dry_run:
            say(0.8, "Comparing with the database")
            merge.attach_target(stage.con, db_path if kind not in ("demo", "none") else None)
            result.counts = merge.plan(stage.con)
            merge.detach_target(stage.con)
            result.seconds = time.perf_counter() - started
            say(1.0, "Preview ready")
            return result

        handover = stage.prepared()
        say(0.65, "Writing a new copy of the database")
        with db.writer(db_path) as con:
            con.execute(f"set memory_limit = '{options.memory_limit}'")
            current = db.dataset_kind(con)  # again, under the writers' lock
            if current == "demo":
                if not options.replace_demo:
                    raise DemoDataError(f"{db_path} holds the demo clinic: add --replace-demo")
                merge.remove_demo(con)
                result.replaced_demo = True
            _check_lists(con, lists, result)  # the lists this import was checked against
            stored = db.get_meta(con).get(KEY_CHECK)
            if stored and stored != key.check:
                raise SecretKeyError("the secret key differs from this database's")
            merge.attach_stage(con, handover)
            result.counts = merge.plan(con)  # reads the staged sessions, once
            merge.detach_stage(con)
            del handover
            stage.close()  # its memory is better used by the writes
            merge.apply(con)
            merge.drop_plan(con)
            db.set_meta(con, "dataset_kind", "clinic")
            db.set_meta(con, KEY_CHECK, key.check)
            say(0.85, "Deriving session and episode facts")
            db.rebuild_facts(con)
            _log_import(con, result, sources)
            say(0.95, "Saving")
        result.written = True
    result.seconds = time.perf_counter() - started
    say(1.0, "Imported")
    return result


def _check_lists(
    con: duckdb.DuckDBPyConnection, checked: dict[str, list[str]], result: ImportResult
) -> None:
    """Under the writers' lock: the clinic's lists are those the import was checked against,
    or grew meanwhile only by another import (several first imports started at once into a new
    database) so that every name this import starts a list with is on it, spelled the same.
    Otherwise names.check_unchanged's UsageError (nothing is written)."""
    try:
        names.check_unchanged(con, checked)
    except UsageError:
        now = names.current_lists(con)
        for col in names.COLUMNS:
            grown = set(checked[col]) <= set(now[col])
            first_on_list = all(n in now[col] for n in result.first_list.get(col, []))
            if not (grown and first_on_list):
                raise
        # every name the import brings is now on the list, as the other import spelled it


def _log_import(
    con: duckdb.DuckDBPyConnection, result: ImportResult, sources: list[Source]
) -> None:
    """One import_log row: when, counts, the files' SHA-256 fingerprints (never their names)."""
    next_id = con.execute("select coalesce(max(import_id), 0) + 1 from import_log").fetchall()[0][0]
    con.execute(
        """
        insert into import_log (
            import_id, imported_at, file_fingerprint, file_format, rows_read, sessions_added,
            sessions_updated, sessions_unchanged, episodes_updated, rows_rejected
        ) values ($id, $at, $fp, $fmt, $rows, $added, $updated, $unchanged, $episodes, $rejected)
        """,
        {
            "id": next_id,
            "at": dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
            "fp": ",".join(s.fingerprint for s in sources),
            "fmt": "+".join(sorted({s.fmt for s in sources})),
            "rows": result.rows_read,
            "added": result.counts["sessions_added"],
            "updated": result.counts["sessions_updated"],
            "unchanged": result.counts["sessions_unchanged"],
            "episodes": result.counts["episodes_updated"],
            "rejected": result.rows_rejected,
        },
    )
