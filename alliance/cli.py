"""The `python -m alliance` command line. Exit codes: 0 ok, 1 invalid data, 2 usage error."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alliance import db


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m alliance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build the demo clinic")
    demo.add_argument("--db", type=Path, default=db.default_db_path())
    demo.add_argument("--sessions", type=int, default=50_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)
