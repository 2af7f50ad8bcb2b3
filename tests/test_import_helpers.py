"""Helpers for the import tests: small contract files written in tmp_path (no tests here)."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from alliance.ingest import ImportOptions, ImportResult, run_import
from tests.conftest import ROOT

# shared/ sits beside the checkout (locally and in CI)
SAMPLE = ROOT.parent / "shared" / "samples" / "sessions-example.csv"
COLUMNS = [
    "client_id",
    "therapist_id",
    "session_date",
    "site",
    "episode_id",
    "program",
    "age",
    "gender",
    "race_ethnicity",
    "end_reason",
    "srs_total",
    "ors_total",
    "phq9_total",
    "gad7_total",
]


def base_rows() -> list[dict[str, str]]:
    """Four clients, two therapists, two sites: every row valid."""
    rows = []
    plan = [
        ("C-1", "T-A", "North", "1", "Adult outpatient", "34", "female", "White"),
        ("C-2", "T-A", "North", "1", "Adult outpatient", "22", "male", "Black or African American"),
        ("C-3", "T-B", "South", "A", "Couples", "51", "non-binary", "Hispanic or Latino"),
        ("C-4", "T-B", "South", "7", "Adult outpatient", "67", "female", "Asian"),
    ]
    for c, (client, ther, site, ep, program, age, gender, race) in enumerate(plan):
        for i in range(3):
            rows.append(
                {
                    "client_id": client,
                    "therapist_id": ther,
                    "session_date": f"2025-0{c + 1}-{10 + 7 * i:02d}",
                    "site": site,
                    "episode_id": ep,
                    "program": program,
                    "age": age,
                    "gender": gender,
                    "race_ethnicity": race,
                    "end_reason": "planned" if i == 2 and c % 2 == 0 else "",
                    "srs_total": f"{35 + i}.5",
                    "ors_total": f"{18 + 3 * i}.0",
                    "phq9_total": str(15 - 3 * i),
                    "gad7_total": str(12 - 2 * i),
                }
            )
    return rows


def write_csv(
    path: Path,
    rows: Sequence[dict[str, str]],
    columns: Sequence[str] | None = None,
    *,
    delimiter: str = ",",
    bom: bool = False,
    newline: str = "\n",
) -> Path:
    columns = list(columns or (rows[0].keys() if rows else COLUMNS))
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator=newline)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
    return path


def write_xlsx(
    path: Path, rows: Sequence[dict[str, object]], columns: Sequence[str], sheet="Sessions"
):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(list(columns))
    for row in rows:
        ws.append([row.get(c) for c in columns])
    wb.save(path)
    return path


def import_(files: Path | Sequence[Path], db: Path, **options: object) -> ImportResult:
    paths = [files] if isinstance(files, Path) else list(files)
    return run_import([(p, p.name) for p in paths], db, ImportOptions(**options))


def file_hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "ALLIANCE_SECRET_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "alliance", "import", "--quiet", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def problem_at(result: ImportResult, row: int | None, column: str) -> list[str]:
    """Rules of the problems reported at (row, column)."""
    return [p.rule for p in result.problems if p.row == row and p.column == column]


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALLIANCE_SECRET_KEY", raising=False)
