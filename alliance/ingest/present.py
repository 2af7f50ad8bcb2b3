"""What the Data page shows, as plain data (no Streamlit here): the preview of an import, the
import history, the data-quality checks, and the handling of uploaded files."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from alliance import queries
from alliance.ingest.read import CSV_SUFFIXES, PARQUET_SUFFIXES, XLSX_SUFFIXES
from alliance.ingest.run import ImportResult
from alliance.panel import Context

MAX_UPLOAD_MB = 200
UPLOAD_TYPES = [s.lstrip(".") for s in (*CSV_SUFFIXES, *XLSX_SUFFIXES, *PARQUET_SUFFIXES)]


@dataclass(frozen=True)
class QualityCheck:
    label: str
    of: str  # what the share is a share of
    help: str
    higher_is_better: bool


QUALITY_CHECKS = {
    "alliance": QualityCheck(
        "Sessions with an alliance score",
        "sessions",
        "Share of sessions with an SRS total or a WAI-SR score. Sessions without one cannot "
        "show a rupture or count towards early alliance.",
        True,
    ),
    "outcome": QualityCheck(
        "Sessions with an outcome score",
        "sessions",
        "Share of sessions with an ORS, PHQ-9 or GAD-7 score. Outcome change needs at least two "
        "per episode.",
        True,
    ),
    "srs_ceiling": QualityCheck(
        "SRS at the ceiling (40)",
        "SRS totals",
        "Share of SRS totals of exactly 40. A high share leaves little room to see a drop and "
        "often means the form is filled in without thought.",
        False,
    ),
    "no_demographics": QualityCheck(
        "Episodes lacking demographics",
        "episodes",
        "Episodes whose age band, gender or race/ethnicity is unknown: they drop out of the "
        "equity views.",
        False,
    ),
    "numbered_out_of_order": QualityCheck(
        "Sessions numbered out of date order",
        "numbered sessions",
        "Sessions whose session number is not higher than every earlier session's number in the "
        "same episode (a typo in a date or a number, or a duplicate).",
        False,
    ),
    "late_first_outcome": QualityCheck(
        "Episodes whose first outcome score is late",
        "episodes with an outcome score",
        "Episodes whose first ORS/PHQ-9/GAD-7 is not at their first session: their change is "
        "measured from a later start and understates improvement.",
        False,
    ),
}


def data_quality(ctx: Context) -> tuple[pd.DataFrame, str | None]:
    """The checks for the sessions in view, through the privacy step; or a notice if the whole
    selection describes fewer than k clients."""
    from alliance.views.common import protect

    df = queries.run(ctx.con, "data_quality", **ctx.params())
    cohort = int(df["cohort_clients"].max()) if not df.empty else 0
    if cohort < ctx.policy.k:
        return df.iloc[0:0], (
            f"This selection describes fewer than {ctx.policy.k} clients, so its data quality "
            "figures are not shown."
        )
    # each check splits its population in two (with / without the property): both parts are
    # cells, so that a share near 100 % cannot disclose a small complement
    parts = pd.concat(
        [
            df[["check_key", "n_clients"]].assign(part="with"),
            df[["check_key", "complement_clients"]]
            .rename(columns={"complement_clients": "n_clients"})
            .assign(part="without"),
        ],
        ignore_index=True,
    )
    parts = protect(ctx, parts, value_cols=[], partition_cols=["check_key"])
    withheld = set(parts.loc[parts["suppressed"], "check_key"])
    shown = df.drop(columns=["complement_clients"]).copy()
    shown["suppressed"] = shown["check_key"].isin(withheld)
    shown["numerator"] = shown["numerator"].astype("Int64").mask(shown["suppressed"])
    shown["share"] = shown["share"].mask(shown["suppressed"])
    shown.insert(1, "check", shown["check_key"].map(lambda k: QUALITY_CHECKS[k].label))
    return shown, None


def import_history(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return queries.run(con, "data_import_history")


def columns_table(result: ImportResult) -> pd.DataFrame:
    """Every column of every file: how it is read and what happens to it."""
    rows = []
    for f in result.files:
        for header, name in f.recognized.items():
            if header in f.identifiers:
                what = "read for the age band, then dropped (never stored)"
            elif name in ("client_id", "therapist_id", "episode_id"):
                what = "pseudonymized (keyed hash); the raw value is never stored"
            else:
                what = "imported"
            rows.append(
                {"file": f.name, "column in file": header, "read as": name, "what happens": what}
            )
        for header in f.identifiers:
            if header not in f.recognized:
                rows.append(
                    {
                        "file": f.name,
                        "column in file": header,
                        "read as": "(identifier)",
                        "what happens": "dropped before reading: never stored",
                    }
                )
        for header in f.ignored:
            rows.append(
                {
                    "file": f.name,
                    "column in file": header,
                    "read as": "(not in the contract)",
                    "what happens": "ignored",
                }
            )
    return pd.DataFrame(rows, columns=["file", "column in file", "read as", "what happens"])


def counts_table(result: ImportResult) -> pd.DataFrame:
    c = result.counts
    items = [
        ("Rows read", result.rows_read),
        ("Rows with problems", result.rows_rejected),
        ("Sessions in the file(s)", result.sessions),
        ("Episodes in the file(s)", result.episodes),
        ("Clients", result.clients),
        ("Therapists", result.therapists),
        ("Sessions to add", c.get("sessions_added")),
        ("Sessions to update", c.get("sessions_updated")),
        ("Sessions already there, unchanged", c.get("sessions_unchanged")),
        ("Episodes to add", c.get("episodes_added")),
        ("Episodes to update", c.get("episodes_updated")),
    ]
    return pd.DataFrame([(k, v) for k, v in items if v is not None], columns=["", "count"]).astype(
        {"count": "Int64"}
    )


def _suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if suffix.lstrip(".") in UPLOAD_TYPES else ".csv"


@contextlib.contextmanager
def saved_uploads(files: Sequence[tuple[str, bytes]]) -> Iterator[list[tuple[Path, str]]]:
    """Write uploaded files to a private temporary folder (owner-only), removed afterwards.

    The stored names are numbers (the user's file name is only shown, never used as a path)."""
    folder = Path(tempfile.mkdtemp(prefix="alliance-upload-"))
    try:
        out = []
        for i, (name, data) in enumerate(files):
            path = folder / f"upload-{i}{_suffix(name)}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            out.append((path, name))
        yield out
    finally:
        shutil.rmtree(folder, ignore_errors=True)
