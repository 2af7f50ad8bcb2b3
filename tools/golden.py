"""Prove a change moves no number: snapshot everything a person can see, then compare.

    python tools/golden.py snapshot --db DB --out DIR   # run with the code before, then after
    python tools/golden.py compare DIR_BEFORE DIR_AFTER  # exit 1 and list every difference

A snapshot holds, for one database file:
- `summary --json` for several filter sets (the command line's exact figures);
- every CSV of a report pack with every section (what a pack exports);
- every page's View (tiles, panels: titles, subtitles, readings, messages, the data behind each
  chart and the figure itself) for fixed and random filter sets, for an ordinary role and for a
  role without therapist-level access in meeting mode.

Floats are compared to 1e-9 relative: DuckDB's parallel sums may add in another order from one
plan to the next (the 15th significant digit); anything beyond that is a change.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import importlib
import json
import math
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

REL = 1e-9


def _pages() -> dict[str, tuple[str, str | None, tuple[str | None, ...]]]:
    """page -> (module, keyword naming a view, views); from the catalog where there is one."""
    try:
        from alliance import catalog  # type: ignore[attr-defined]

        return catalog.golden_pages()
    except ImportError:
        from alliance import bench

        return {
            page: (mod, bench.VIEWS[page][0] if page in bench.VIEWS else None, bench.views(page))
            for page, mod in bench.PAGES.items()
        }


def _plain(value: object) -> object:
    """JSON-able, with every array a list, so figures compare value by value."""
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        # plotly's typed array: decode it, so values compare to REL, not byte for byte
        raw = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return _plain(raw)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _view_record(view) -> dict:
    tiles = [_plain(dataclasses.asdict(t)) for t in view.tiles]
    panels = []
    for p in view.panels:
        panels.append(
            {
                "key": p.key,
                "title": p.title,
                "subtitle": p.subtitle,
                "reading": p.reading,
                "message": p.message,
                "withheld": p.withheld,
                "section": p.section,
                "stats": _plain(p.stats),
                "data": p.data.to_csv(index=False) if p.data is not None else None,
                "figure": None if p.figure is None else _plain(p.figure.to_dict()),
            }
        )
    return {
        "title": view.title,
        "question": view.question,
        "notice": view.notice,
        "n_clients": view.n_clients,
        "tiles": tiles,
        "panels": panels,
    }


def _filter_sets(con) -> list:
    from alliance import bench

    therapist = sorted(con.sql("SELECT code FROM therapists").fetchall())[0][0]
    from alliance.filters import Filters, add_months

    fixed = bench.random_filters(con, 1)[0]
    last = fixed.last_month
    year = add_months(last, -11)
    sets = [
        Filters(first_month=year, last_month=last),
        Filters(first_month=add_months(last, -2), last_month=last, site="Northside"),
        Filters(first_month=year, last_month=last, site="Eastgate", age_band="65+"),
        Filters(first_month=year, last_month=last, program="Couples", alliance_measure="wai"),
        Filters(first_month=year, last_month=last, therapist=therapist, outcome_measure="phq9"),
        Filters(first_month=add_months(last, -23), last_month=last, gender="Female"),
    ]
    return sets + bench.random_filters(con, 6, seed=7)


def snapshot(db_path: Path, out: Path) -> None:
    from alliance import db
    from alliance.panel import Context
    from alliance.settings import Settings

    out.mkdir(parents=True, exist_ok=True)
    con = db.open_read_only(db_path)
    therapist = sorted(con.sql("SELECT code FROM therapists").fetchall())[0][0]
    con.close()
    summaries = [
        [],
        ["--site", "Northside"],
        ["--from", "2025-01", "--to", "2025-06"],
        ["--program", "Couples", "--site", "Eastgate"],
        ["--therapist", therapist],
    ]
    for i, args in enumerate(summaries):
        text = subprocess.run(
            [sys.executable, "-m", "alliance", "summary", "--db", str(db_path), "--json", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (out / f"summary-{i}.json").write_text(text)

    with tempfile.TemporaryDirectory() as tmp:
        pack = Path(tmp) / "pack.zip"
        pages = list(_pages())
        subprocess.run(
            [sys.executable, "-m", "alliance", "report", "--db", str(db_path), "--out", str(pack)]
            + ["--sections", *pages],
            check=True,
            capture_output=True,
        )
        with zipfile.ZipFile(pack) as z:
            for name in sorted(z.namelist()):
                if name.endswith(".csv"):
                    target = out / "report" / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(name))

    con = db.open_read_only(db_path)
    settings = Settings()
    records: dict[str, object] = {}
    for i, f in enumerate(_filter_sets(con)):
        for role, extra in (
            ("staff", {}),
            ("viewer", {"therapist_level": False, "meeting_mode": True}),
        ):
            if role == "viewer" and i % 3:
                continue
            ctx = Context(con=con, filters=f, settings=settings, **extra)
            for page, (module, kw, views) in _pages().items():
                build = importlib.import_module(module).build
                for v in views:
                    view = build(ctx) if v is None else build(ctx, **{kw: v})
                    records[f"{i}/{role}/{page}/{v}"] = _view_record(view)
    (out / "views.json").write_text(json.dumps(records, indent=1, sort_keys=True))


def _diff(a: object, b: object, where: str, out: list[str]) -> None:
    if len(out) > 200:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'after' if k in b else 'before'}")
            else:
                _diff(a[k], b[k], f"{where}/{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} items before, {len(b)} after")
        for j, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, f"{where}[{j}]", out)
    elif isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not math.isclose(a, b, rel_tol=REL, abs_tol=1e-12):
            out.append(f"{where}: {a!r} before, {b!r} after")
    elif isinstance(a, str) and isinstance(b, str) and "\n" in a and "," in a:
        _diff_csv(a, b, where, out)
    elif a != b:
        out.append(f"{where}: {str(a)[:200]!r} before, {str(b)[:200]!r} after")


def _diff_csv(a: str, b: str, where: str, out: list[str]) -> None:
    la, lb = a.splitlines(), b.splitlines()
    if len(la) != len(lb):
        out.append(f"{where}: {len(la)} lines before, {len(lb)} after")
        return
    for j, (x, y) in enumerate(zip(la, lb, strict=False)):
        if x == y:
            continue
        xa, ya = x.split(","), y.split(",")
        same = len(xa) == len(ya)
        for u, v in zip(xa, ya, strict=False):
            if u == v:
                continue
            try:
                same = same and math.isclose(float(u), float(v), rel_tol=REL, abs_tol=1e-12)
            except ValueError:
                same = False
        if not same:
            out.append(f"{where} line {j + 1}: {x[:200]!r} before, {y[:200]!r} after")


def compare(before: Path, after: Path) -> list[str]:
    out: list[str] = []
    names = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    names |= {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    for name in sorted(names):
        a, b = before / name, after / name
        if not a.exists() or not b.exists():
            out.append(f"{name}: only {'after' if b.exists() else 'before'}")
        elif name.suffix == ".json":
            _diff(
                _plain(json.loads(a.read_text())), _plain(json.loads(b.read_text())), str(name), out
            )
        else:
            _diff_csv(a.read_text(), b.read_text(), str(name), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot")
    s.add_argument("--db", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "snapshot":
        snapshot(args.db, args.out)
        return 0
    diffs = compare(args.before, args.after)
    for line in diffs:
        print(line)
    print(f"{len(diffs)} difference(s)" if diffs else "identical")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
