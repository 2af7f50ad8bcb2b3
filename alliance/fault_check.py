"""``python -m alliance check-faults``: each fault a clinic is likely to meet, run through the real
code paths on a small demo clinic in a temporary folder, with the sentence it gives, whether the
database's bytes stayed the same and whether anything was left behind. Prints a table (or JSON).

The disk and permission faults are injected (an OSError with the operating system's error
number where the import copies the database): a full disk or a read-only mount cannot be made
without privileges, and as root a folder's mode does not stop a write. Not part of `make test`
(tests/test_faults.py checks the same cases); `make check-faults` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

from alliance import db, faults
from alliance.settings import Settings


def _hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _run_cli(argv: list[str]) -> tuple[int, str]:
    from alliance import cli

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    return code, err.getvalue()


def _first_error(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    return lines[0].removeprefix("error: ") if lines else text.strip()


def _contract_csv(folder: Path) -> Path:
    rows = ["client_id,therapist_id,session_date,site,episode_id,program,srs_total,ors_total"]
    for c in range(12):
        for i in range(3):
            rows.append(
                f"C-{c},T-{c % 3},2025-0{1 + i}-1{c % 9},North,1,Adult outpatient,3{i},2{i}"
            )
    path = folder / "export.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="alliance-faults-") as tmp:
        tmp = Path(tmp)
        good = tmp / "good" / "alliance.duckdb"
        db.private_dir(good.parent)
        db.write_demo(good, sessions=3000, seed=5)

        def case(name: str, folder: Path, target: Path, action) -> None:
            before, listing = _hash(target), sorted(os.listdir(folder))
            code, message = action()
            rows.append(
                {
                    "case": name,
                    "exit": code,
                    "message": message,
                    "unchanged": _hash(target) == before,
                    "left behind": sorted(set(os.listdir(folder)) - set(listing)),
                }
            )

        for kind in ("truncated", "corrupted bytes", "a folder", "not a DuckDB file"):
            folder = tmp / kind.replace(" ", "-")
            folder.mkdir()
            target = folder / "alliance.duckdb"
            if kind == "a folder":
                target.mkdir()
            elif kind == "not a DuckDB file":
                target.write_text("client_id\nC-1\n")
            else:
                shutil.copyfile(good, target)
                size = target.stat().st_size
                if kind == "truncated":
                    os.truncate(target, size // 3)
                else:
                    with open(target, "r+b") as fh:
                        fh.seek(size // 4)
                        fh.write(bytes(range(256)) * (size // 512))

            def summary(target: Path = target) -> tuple[int, str]:
                code, err = _run_cli(["summary", "--db", str(target)])
                return code, _first_error(err)

            case(f"database {kind}", folder, target, summary)

        settings_cases = {
            "settings file corrupted": '{"privacy_k": 11, "srs_cut',
            "settings k = 0": '{"privacy_k": 0}',
            "settings k = -5": '{"privacy_k": -5}',
            'settings cutoff "abc"': '{"srs_cutoff": "abc"}',
        }
        for name, text in settings_cases.items():
            folder = tmp / f"s{len(rows)}"
            folder.mkdir()
            target = folder / "alliance.settings.json"
            target.write_text(text)

            def banner(target: Path = target) -> tuple[int, str]:
                _, found = Settings.read(target)  # the app: defaults for these, and a banner
                return 0, faults.settings_fault(target, "; ".join(found.values())).text

            case(name + " (app banner)", folder, target, banner)

        export = _contract_csv(tmp)
        for name, number, text in (
            ("import: read-only folder", 13, "Permission denied"),
            ("import: read-only mount", 30, "Read-only file system"),
            ("import: full disk", 28, "No space left on device"),
        ):
            folder = tmp / f"i{len(rows)}"
            folder.mkdir()
            target = folder / "alliance.duckdb"
            code, err = _run_cli(["import", "--quiet", str(export), "--db", str(target)])
            if code != 0:
                raise RuntimeError(f"the check's own import failed: {err}")

            def failing(target: Path = target, number: int = number, text: str = text):
                def fail(src, dst, *a, **k):
                    raise OSError(number, text, str(dst))

                with mock.patch.object(db.shutil, "copyfile", fail):
                    code, err = _run_cli(["import", "--quiet", str(export), "--db", str(target)])
                return code, " ".join(err.strip().splitlines()).removeprefix("error: ")

            case(name, folder, target, failing)

        folder = tmp / f"i{len(rows) - 1}"
        target = folder / "alliance.duckdb"
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        for suffix in ("", ".wal"):
            (folder / f"{target.name}.tmp-{gone.pid}-0f0f0f{suffix}").write_bytes(b"\0" * (1 << 20))

        def sweep(target: Path = target) -> tuple[int, str]:
            return 0, faults.removed_sentence(db.sweep_leftovers(target))

        case("leftovers of a killed import (start/import)", folder, target, sweep)
    return rows


def table(rows: list[dict[str, object]]) -> str:
    out = ["case | exit | database unchanged | left behind | message", "-" * 100]
    for r in rows:
        left = ", ".join(r["left behind"]) or "nothing"  # type: ignore[arg-type]
        out.append(f"{r['case']} | {r['exit']} | {'yes' if r['unchanged'] else 'NO'} | {left}")
        out.append(f"    {r['message']}")
    return "\n".join(out)


def command(args: argparse.Namespace) -> int:
    rows = run()
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    plain = all(
        not any(w in str(r["message"]) for w in ("Error", "Exception", "Traceback")) for r in rows
    )
    return 0 if plain and all(r["unchanged"] for r in rows[:-1]) else 1
