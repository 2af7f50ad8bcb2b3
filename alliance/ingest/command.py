"""``python -m alliance import``: run an import and report it. Exit 0 imported, 1 invalid data
(nothing written), 2 usage error. No traceback for any data problem; raw identifiers are never
printed (values of identifying columns show as "(hidden)", cells that may hold anything a person
typed as "(withheld)").

``--accept-new-names`` confirms site and program names that are not yet on the clinic's list
(names.py); without it such a name stops the import. The parser is alliance/cli.py's; a parser
without the flag reads as "not confirmed"."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

from alliance import db, faults
from alliance.ingest.problems import format_report
from alliance.ingest.read import UsageError
from alliance.ingest.run import ImportOptions, ImportResult, run_import
from alliance.pseudonym import SecretKeyError


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def run_command(args: argparse.Namespace) -> int:
    options = ImportOptions(
        date_format=args.date_format,
        sheet=args.sheet,
        skip_invalid=args.skip_invalid,
        rejects=args.rejects,
        dry_run=args.dry_run,
        replace_demo=args.replace_demo,
        accept_new_names=bool(getattr(args, "accept_new_names", False)),
    )
    inputs = [(Path(f), str(f)) for f in args.files]
    faults.command_line_log()
    if not args.dry_run:  # what killed imports left behind (when no import is at work)
        swept = faults.removed_sentence(db.sweep_leftovers(Path(args.db)))
        if swept:
            print(swept, file=sys.stderr)
    try:
        result = run_import(
            inputs, Path(args.db), options, progress=None if args.quiet else _progress
        )
    except (UsageError, SecretKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except faults.FaultError as exc:  # the machine failed the import: a plain sentence
        return _failed(exc.fault)
    except (OSError, duckdb.Error, MemoryError) as exc:  # db.writer: the database is untouched
        fault = faults.write_fault(exc, path=Path(args.db), action="import")
        return _failed(faults.record(fault, exc))
    return report(result, Path(args.db), options)


def _failed(fault: faults.Fault) -> int:
    print(f"error: {fault.what}", file=sys.stderr)
    print("Nothing was imported; the database is unchanged.", file=sys.stderr)
    return 1


def report(result: ImportResult, db_path: Path, options: ImportOptions) -> int:
    if result.problem_count:
        print(
            f"{result.problem_count:,} problem(s) in {result.rows_read:,} rows:",
            file=sys.stderr,
        )
        print(format_report(result.problems, result.problem_count), file=sys.stderr)
    if result.needs_confirmation:
        print(
            f"{len(result.new_names):,} name(s) not on the clinic's list of sites and programs:",
            file=sys.stderr,
        )
        print(format_report(result.new_names), file=sys.stderr)
        print(
            "If they are right, import again with --accept-new-names to add them to the list; "
            "otherwise correct the file.",
            file=sys.stderr,
        )
    if not result.ok:
        if result.problem_count == 0 and result.valid_rows == 0 and not result.needs_confirmation:
            print("error: no data rows to import.", file=sys.stderr)
        print("Nothing was imported; the database is unchanged.", file=sys.stderr)
        return 1
    if result.dry_run:
        print(f"Dry run: nothing was written to {db_path}. The import would give:")
        if result.needs_replace_demo:
            print("  (the database holds the demo clinic: the import needs --replace-demo)")
    else:
        print(f"Imported into {db_path}:")
    for line in result.summary_lines():
        print("  " + line)
    if result.rows_rejected and options.rejects is not None and not result.dry_run:
        print(
            f"  {result.rows_rejected:,} rejected row(s) and their reasons written to "
            f"{options.rejects} (identifying columns left out)"
        )
    return 0
