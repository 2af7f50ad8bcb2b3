"""The `python -m alliance` command line. Exit codes: 0 ok, 1 invalid data, 2 usage error."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from alliance import db, faults


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    counts = db.write_demo(args.db, sessions=args.sessions, seed=args.seed, progress=_progress)
    took = time.perf_counter() - started
    print(
        f"Demo clinic written to {args.db}: {counts['sessions']:,} sessions, "
        f"{counts['episodes']:,} episodes, {counts['therapists']} therapists, "
        f"{counts['sites']} sites in {took:.1f} s"
    )
    return 0


class UsageError(Exception):
    """A bad argument: printed plainly, exit code 2."""


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """--db, --from, --to, --site, --program, --therapist (shared by summary and report)."""
    parser.add_argument("--db", type=Path, default=db.default_db_path())
    parser.add_argument("--from", dest="from_month", metavar="YYYY-MM")
    parser.add_argument("--to", dest="to_month", metavar="YYYY-MM")
    parser.add_argument("--site")
    parser.add_argument("--program")
    parser.add_argument("--therapist", metavar="CODE")


def context_from_args(args: argparse.Namespace):  # -> alliance.panel.Context
    """Open the database read-only and turn the view arguments into a checked Context.

    Default period: the last 12 months with data, as on the dashboard.
    """
    import dataclasses

    from alliance import queries
    from alliance.filters import FilterOptions, default_filters, parse_month
    from alliance.panel import Context
    from alliance.settings import Settings

    if not Path(args.db).exists():
        raise UsageError(f"no database at {args.db} (build one with: python -m alliance demo)")
    con = db.open_read_only(Path(args.db))
    df = queries.run(con, "filter_options", allowed_sites=None)
    months = sorted(df.loc[df["dimension"] == "month", "value"])
    if not months:
        raise UsageError(f"the database at {args.db} holds no sessions")
    values = {d: sorted(p["value"]) for d, p in df[df["dimension"] != "month"].groupby("dimension")}
    first, last = (dt.date.fromisoformat(m) for m in (months[0], months[-1]))
    options = FilterOptions(first_month=first, last_month=last, values=values)
    filters = default_filters(options)
    changes: dict[str, object] = {}
    for flag, attr in (("from_month", "first_month"), ("to_month", "last_month")):
        raw = getattr(args, flag, None)
        if raw is None:
            continue
        month = parse_month(raw)
        if month is None:
            raise UsageError(f"--{flag.removesuffix('_month')} {raw!r}: expected YYYY-MM")
        changes[attr] = month
    for attr in ("site", "program", "therapist"):
        raw = getattr(args, attr, None)
        if raw is None:
            continue
        if raw not in values.get(attr, []):
            known = ", ".join(values.get(attr, [])[:12])
            raise UsageError(f"--{attr} {raw!r} is not in the data (known: {known})")
        changes[attr] = raw
    filters = dataclasses.replace(filters, **changes)
    if filters.first_month > filters.last_month:
        raise UsageError("--from is after --to")
    settings_file = Path(args.db).with_name(Path(args.db).stem + ".settings.json")
    settings, found = Settings.read(settings_file)
    if found:  # figures under settings the clinic did not choose: refused, with how to mend
        reason = "; ".join(found.values())
        raise UsageError(faults.settings_fault(settings_file, reason, fallback=False).text)
    return Context(con=con, filters=filters, settings=settings)


def cmd_summary(args: argparse.Namespace) -> int:
    from alliance import summary

    ctx = context_from_args(args)
    result = summary.compute(ctx)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(summary.as_table(result))
    return 0


def cmd_protection_cost(args: argparse.Namespace) -> int:
    from alliance import protection_cost

    ctx = context_from_args(args)
    result: dict = protection_cost.measure(ctx)
    if args.attacks:
        attack = protection_cost.averaging_attack(ctx, ctx.filters.last_month)
        result = {"figures": result, "averaging_attack": attack}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(protection_cost.text(result.get("figures", result)))
        for row in result.get("averaging_attack", []):
            print(f"  averaging {row['pairs']} period pairs: {row}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from alliance.ingest.command import run_command

    return run_command(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from alliance import bench

    result = bench.run(
        args.sessions,
        args.repeat,
        seed=args.seed,
        pandas=not args.no_pandas,
        browser=args.browser,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['sessions']:,} sessions; build {result['build_s'] or result['build_note']}")
    for page, row in result["pages"].items():
        ratio = (
            f"  pandas p50 {row['pandas_p50_s']:.3f} s  ratio {row['ratio']:.1f}x"
            f"  (given our facts {row['pandas_facts_p50_s']:.3f} s, {row['ratio_facts']:.1f}x)"
            if ("ratio" in row)
            else ""
        )
        print(f"  {page:<14} p50 {row['p50_s']:.3f} s  p95 {row['p95_s']:.3f} s{ratio}")
    print(
        f"peak RSS {result['peak_rss_mb']:.0f} MB (pandas {result.get('pandas_peak_rss_mb')} MB,"
        f" given our facts {result.get('pandas_facts_peak_rss_mb')} MB)"
    )
    for page, row in result.get("browser", {}).items():
        print(f"  browser {page:<14} filter change -> redrawn p50 {row['p50_s']:.2f} s")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from alliance import report

    try:
        return report.run_command(args, context_from_args, progress=_progress)
    except report.PackError as exc:
        raise UsageError(str(exc)) from exc


def cmd_check_faults(args: argparse.Namespace) -> int:
    from alliance import fault_check

    return fault_check.command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m alliance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build the demo clinic")
    demo.add_argument("--db", type=Path, default=db.default_db_path())
    demo.add_argument("--sessions", type=int, default=50_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    summ = sub.add_parser("summary", help="headline metrics for a period (as on the dashboard)")
    add_view_arguments(summ)
    summ.add_argument("--json", action="store_true", help="print one JSON object")
    summ.set_defaults(func=cmd_summary)

    cost = sub.add_parser(
        "protection-cost",
        help="how far the protected Overview figures lie from the exact ones (data staff only)",
    )
    add_view_arguments(cost)
    cost.add_argument("--json", action="store_true", help="print one JSON object")
    cost.add_argument(
        "--attacks",
        action="store_true",
        help="also run the averaging attack on the last month's small groups (slow)",
    )
    cost.set_defaults(func=cmd_protection_cost)

    bench = sub.add_parser("bench", help="time every page at scale, against plain pandas")
    bench.add_argument("--sessions", type=int, default=1_000_000)
    bench.add_argument("--repeat", type=int, default=10)
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--no-pandas", action="store_true", help="skip the pandas baseline")
    bench.add_argument(
        "--browser",
        action="store_true",
        help="also time filter change -> charts redrawn in Chromium (needs requirements-dev)",
    )
    bench.set_defaults(func=cmd_bench)

    imp = sub.add_parser(
        "import",
        help="import a clinic's export (CSV, XLSX or Parquet; see the data contract)",
        description="Validate, pseudonymize and import one or more exports, all or nothing. "
        "Exit 0 imported, 1 invalid data (nothing written), 2 usage error.",
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument("--db", type=Path, default=db.default_db_path())
    imp.add_argument("--date-format", metavar="FMT", help="strptime pattern, e.g. %%m/%%d/%%Y")
    imp.add_argument("--sheet", metavar="NAME", help="worksheet of an .xlsx (default: the first)")
    imp.add_argument("--skip-invalid", action="store_true", help="import the valid rows only")
    imp.add_argument("--rejects", type=Path, metavar="PATH", help="where rejected rows go")
    imp.add_argument("--dry-run", action="store_true", help="validate and report; write nothing")
    imp.add_argument("--replace-demo", action="store_true", help="allow removing the demo clinic")
    imp.add_argument(
        "--accept-new-names",
        action="store_true",
        help="add site and program names that are not yet on the clinic's list",
    )
    imp.add_argument("--quiet", action="store_true", help="no progress lines")
    imp.set_defaults(func=cmd_import)

    rep = sub.add_parser(
        "report",
        help="build a report pack for QI meetings (.pptx, .pdf or .zip), as the Report page",
        description="The same pack as the Report pack page: default = the monthly QI pack. "
        "Exit 0 written, 1 charts could not be drawn (nothing written), 2 usage error (unknown "
        "site, bad month, unknown extension or section).",
    )
    add_view_arguments(rep)
    rep.add_argument("--out", type=Path, required=True, metavar="FILE.pptx|FILE.pdf|FILE.zip")
    rep.add_argument(
        "--sections",
        nargs="+",
        metavar="SECTION",
        help="sections (overview, alliance, profile, ruptures, dropout, outcomes, therapists, "
        "demographics) or single charts as section/chart-key; default: the monthly QI pack",
    )
    rep.add_argument(
        "--meeting-mode", action="store_true", help="show therapists as A, B, C... (for a room)"
    )
    rep.set_defaults(func=cmd_report)

    check = sub.add_parser(
        "check-faults",
        help="each fault a clinic is likely to meet and the sentence it gives, as a table",
    )
    check.add_argument("--json", action="store_true", help="print the rows as JSON")
    check.set_defaults(func=cmd_check_faults)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    faults.command_line_log()
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except faults.FaultError as exc:
        print(f"error: {exc.fault.text}", file=sys.stderr)
        return 1
    except (OSError, MemoryError) as exc:  # the database file, a full disk: a plain sentence
        return _fault_exit(args, exc)
    except Exception as exc:
        if type(exc).__module__ not in ("duckdb", "_duckdb"):
            raise
        return _fault_exit(args, exc)


def _fault_exit(args: argparse.Namespace, exc: BaseException) -> int:
    path = Path(getattr(args, "db", None) or db.default_db_path())
    action = {"demo": "demo build", "report": "report"}.get(args.command, args.command)
    fault = faults.database_fault(exc, path) or faults.write_fault(exc, path=path, action=action)
    print(f"error: {faults.record(fault, exc).text}", file=sys.stderr)
    return 1
