"""No raw identifier, name or date of birth from an imported file is stored or printed anywhere:
not in the database file (bytes or any column), not in the staging database, not in the
command's output or problem reports, not in the rejects file, not in the import log."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import pytest

from alliance.ingest import stage as stage_module
from alliance.ingest.stage import STAGE_PREFIX
from tests.test_import_helpers import _no_env_key, base_rows, cli, write_csv  # noqa: F401

SECRETS = {
    "client_id": "ZQCLIENT",  # + a number per client
    "therapist_id": "ZQTHERAPIST",
    "episode_id": "ZQEPISODE",
    "client_name": "Zebediah Quux",
    "dob": "1961-07-23",
    "phone": "555-0199-77",
    "email": "zebediah@example.org",
    "mrn": "MRN778899",
    "notes": "Zanzibar private note",
}


def _export(folder: Path, *, bad_row: bool = False) -> Path:
    rows = []
    for i, r in enumerate(base_rows()):
        client = r["client_id"][-1]
        rows.append(
            {
                **r,
                "client_id": f"{SECRETS['client_id']}{client}",
                "therapist_id": f"{SECRETS['therapist_id']}{r['therapist_id'][-1]}",
                "episode_id": f"{SECRETS['episode_id']}{r['episode_id']}",
                "client_name": f"{SECRETS['client_name']} {client}",
                "dob": SECRETS["dob"],
                "phone": SECRETS["phone"],
                "email": SECRETS["email"],
                "mrn": f"{SECRETS['mrn']}{client}",
                "notes": f"{SECRETS['notes']} {i}",
            }
        )
        del rows[-1]["age"]
    if bad_row:
        rows[3]["srs_total"] = "99"
        rows[4]["episode_id"] = ""
        rows[5]["dob"] = "1961-07-32"
    return write_csv(folder / "export.csv", rows)


def _needles() -> list[bytes]:
    # (not "1961" alone: four digits turn up by chance in the hex of a pseudonym)
    return [v.encode() for v in SECRETS.values()] + [b"07-23", b"Zebediah", b"Quux"]


def _assert_clean(data: bytes, where: str) -> None:
    for needle in _needles():
        assert needle not in data, f"{needle!r} found in {where}"


def _assert_no_column_holds_secrets(db_path: Path) -> None:
    """Compression can hide a string from a byte scan: also look at every stored text value."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        columns = con.execute(
            "select table_name, column_name from duckdb_columns() "
            "where data_type = 'VARCHAR' and database_name = current_database()"
        ).fetchall()
        for table, column in columns:
            values = con.execute(f'select distinct "{column}" from "{table}"').fetchall()  # noqa: S608
            text = "\n".join(str(v[0]) for v in values).encode()
            _assert_clean(text, f"{table}.{column}")
    finally:
        con.close()


@pytest.fixture
def captured_stage(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Look inside every staging database (in memory) just before it is closed."""
    looked: list[str] = []
    original = stage_module.Stage.close

    def close(self):  # noqa: ANN001
        if self.closed:
            return original(self)
        tables = self.con.execute(
            "select table_name, column_name from duckdb_columns() "
            "where data_type = 'VARCHAR' and database_name = current_database() and not internal"
        ).fetchall()
        for table, column in tables:
            values = self.con.execute(f'select distinct "{column}" from "{table}"').fetchall()  # noqa: S608
            _assert_clean("\n".join(str(v[0]) for v in values).encode(), f"stage {table}.{column}")
            looked.append(f"{table}.{column}")
        spill = self.dir / "spill"
        for path in spill.rglob("*") if spill.exists() else []:
            if path.is_file():
                _assert_clean(path.read_bytes(), "a spill file")
        original(self)

    monkeypatch.setattr(stage_module.Stage, "close", close)
    return looked


def test_nothing_identifying_is_stored_or_printed(tmp_path, captured_stage):
    from alliance.ingest import ImportOptions, run_import

    folder = tmp_path / "in"
    folder.mkdir()
    export = _export(folder)
    dbp = tmp_path / "out" / "x.duckdb"
    result = run_import([(export, "export.csv")], dbp, ImportOptions())
    assert result.ok and result.counts["sessions_added"] == 12
    assert set(result.identifiers) == {"client_name", "dob", "phone", "email", "mrn", "notes"}
    _assert_clean(dbp.read_bytes(), "the database file")
    _assert_no_column_holds_secrets(dbp)
    assert "client_keys.client_key" in captured_stage, "the staging database was not examined"
    # the age band was still taken from the date of birth (63 at the first session in 2025)
    con = duckdb.connect(str(dbp), read_only=True)
    assert con.execute("select distinct age_band from episodes").fetchall() == [("45-64",)]
    con.close()
    for path in (tmp_path / "out").iterdir():  # key file, lock: nothing else holds data
        if path.is_file():
            _assert_clean(path.read_bytes(), path.name)
    assert not [p for p in Path(tempfile.gettempdir()).glob(f"{STAGE_PREFIX}{os.getpid()}-*")]


def test_command_output_reports_and_rejects_hold_no_identifiers(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    export = _export(folder, bad_row=True)
    dbp = tmp_path / "out" / "x.duckdb"
    out = cli(str(export), "--db", str(dbp))  # invalid: a problem report
    assert out.returncode == 1
    assert "(hidden)" in out.stderr  # the episode_id and dob problems
    _assert_clean(out.stdout.encode() + out.stderr.encode(), "the problem report")
    rejects = tmp_path / "rejects.csv"
    out = cli(str(export), "--db", str(dbp), "--skip-invalid", "--rejects", str(rejects))
    assert out.returncode == 0, out.stderr
    _assert_clean(out.stdout.encode() + out.stderr.encode(), "the import summary")
    _assert_clean(rejects.read_bytes(), "the rejects file")
    assert len(rejects.read_text().strip().splitlines()) == 1 + 3  # header + rows 5, 6, 7
    _assert_clean(dbp.read_bytes(), "the database file")
    _assert_no_column_holds_secrets(dbp)
    con = duckdb.connect(str(dbp), read_only=True)
    log = con.execute("select * from import_log").fetchall()
    con.close()
    assert "export.csv" not in str(log)
