"""All or nothing: an import that fails, or is killed at any point, leaves the database as it was."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pytest

from alliance import db
from alliance.ingest import export_contract_csv, merge
from alliance.ingest.command import run_command
from alliance.ingest.stage import STAGE_PREFIX
from tests.conftest import ROOT
from tests.test_import_helpers import SAMPLE, _no_env_key, file_hash, import_  # noqa: F401


@pytest.fixture(scope="module")
def big_export(
    tmp_path_factory: pytest.TempPathFactory, demo_con: duckdb.DuckDBPyConnection
) -> Path:
    """The 30k-session demo clinic written out as a contract export, its sites and programs
    renamed to those of the sample (the clinic's lists in `clinic_db`), so that the import goes
    through without confirming new names."""
    folder = tmp_path_factory.mktemp("atomic")
    demo = folder / "demo.csv"
    assert export_contract_csv(demo_con, demo) > 20_000
    path = folder / "export.csv"
    con = duckdb.connect()
    con.execute(
        f"""
        copy (
            select * replace (
                case when site in ('Northside', 'Riverside', 'Eastgate') then 'North'
                     else 'South' end as site,
                case when program in ('Adult outpatient', 'Intensive outpatient')
                     then 'Adult outpatient' when program is not null then 'Couples' end
                     as program
            )
            from read_csv('{demo}', all_varchar = true)
        ) to '{path}' (header)
        """  # noqa: S608 (test paths)
    )
    con.close()
    return path


@pytest.fixture
def clinic_db(tmp_path: Path) -> Path:
    path = tmp_path / "clinic.duckdb"
    assert import_(SAMPLE, path).ok
    return path


def _stage_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{STAGE_PREFIX}*")}


def _assert_unchanged(path: Path, before: str) -> None:
    assert file_hash(path) == before
    con = duckdb.connect(str(path), read_only=True)  # and it still opens
    try:
        assert con.execute("select count(*) from sessions").fetchall() == [(9,)]
        assert con.execute("select count(*) from session_facts").fetchall() == [(9,)]
    finally:
        con.close()


@pytest.mark.parametrize("kill_at", ["Checking every rule", "Writing a new copy", "Saving"])
def test_a_killed_import_leaves_the_database_unchanged(clinic_db, big_export, kill_at):
    before = file_hash(clinic_db)
    env = {k: v for k, v in os.environ.items() if k != "ALLIANCE_SECRET_KEY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alliance", "import", str(big_export), "--db", str(clinic_db)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:
            if kill_at in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if kill_at == "Saving" and proc.returncode == 0 or file_hash(clinic_db) != before:
        # killed (or finished) after the atomic swap: then the import must be complete
        assert kill_at == "Saving", "the database changed although the import was killed early"
        con = duckdb.connect(str(clinic_db), read_only=True)
        assert con.execute("select count(*) from import_log").fetchall() == [(2,)]
        assert con.execute("select count(*) from sessions").fetchall()[0][0] > 20_000
        con.close()
        return
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    _assert_unchanged(clinic_db, before)
    # the next import cleans up what the killed one left behind, then works
    leftovers = [p for p in clinic_db.parent.iterdir() if ".tmp-" in p.name]
    for p in leftovers:
        p.unlink()
    assert import_(SAMPLE, clinic_db).counts["sessions_unchanged"] == 9
    assert not any(name.startswith(f"{STAGE_PREFIX}{proc.pid}-") for name in _stage_dirs())


def test_an_exception_while_writing_leaves_the_database_unchanged(clinic_db, monkeypatch, tmp_path):
    before = file_hash(clinic_db)
    original = merge.apply

    def apply_then_fail(con):
        original(con)  # every table written in the private copy ...
        raise RuntimeError("boom")  # ... and then something goes wrong

    monkeypatch.setattr(merge, "apply", apply_then_fail)
    rows = SAMPLE.read_text().replace("C-100", "C-200")
    other = tmp_path / "other.csv"
    other.write_text(rows)
    with pytest.raises(RuntimeError):
        import_(other, clinic_db)
    _assert_unchanged(clinic_db, before)
    assert not [p for p in clinic_db.parent.iterdir() if ".tmp-" in p.name]


def test_a_full_disk_is_reported_plainly(clinic_db, monkeypatch, tmp_path, capsys):
    before = file_hash(clinic_db)

    def no_space(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(db.shutil, "copyfile", no_space)
    other = tmp_path / "other.csv"
    other.write_text(SAMPLE.read_text().replace("C-100", "C-300"))
    args = argparse.Namespace(
        files=[other],
        db=clinic_db,
        date_format=None,
        sheet=None,
        skip_invalid=False,
        rejects=None,
        dry_run=False,
        replace_demo=False,
        quiet=True,
    )
    assert run_command(args) == 1
    err = capsys.readouterr().err
    assert "the database is unchanged" in err and "Traceback" not in err
    _assert_unchanged(clinic_db, before)


def test_concurrent_imports_are_serialized(clinic_db, tmp_path):
    """Two imports at once: the lock makes the second wait; both land, nothing is lost."""
    files = []
    for n in (1, 2):
        path = tmp_path / f"e{n}.csv"
        path.write_text(SAMPLE.read_text().replace("C-100", f"C-5{n}"))
        files.append(path)
    env = {k: v for k, v in os.environ.items() if k != "ALLIANCE_SECRET_KEY"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "alliance", "import", "--quiet", str(f), "--db", str(clinic_db)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for f in files
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    con = duckdb.connect(str(clinic_db), read_only=True)
    try:
        assert con.execute("select count(*) from clients").fetchall() == [(9,)]
        assert con.execute("select count(*) from import_log").fetchall() == [(3,)]
    finally:
        con.close()


def test_a_reader_keeps_its_view_while_an_import_swaps_the_file(clinic_db, tmp_path):
    """The dashboard's read-only connection is not disturbed; a new one sees the new data."""
    reader = db.open_read_only(clinic_db)
    signature = db.file_signature(clinic_db)
    other = tmp_path / "other.csv"
    other.write_text(SAMPLE.read_text().replace("C-100", "C-400"))
    assert import_(other, clinic_db).ok
    assert reader.execute("select count(*) from sessions").fetchall() == [(9,)]
    assert db.file_signature(clinic_db) != signature
    # DuckDB keeps one instance per path in a process: the new file is seen once the old
    # connection is closed (see the report: ui.connection must close it when the signature changes)
    reader.close()
    fresh = db.open_read_only(clinic_db)
    assert fresh.execute("select count(*) from sessions").fetchall() == [(18,)]
    fresh.close()


def test_facts_from_an_earlier_version_are_rebuilt_and_base_data_kept(demo_db, tmp_path):
    """After an upgrade changed derive.sql, the file's derived facts are rebuilt once from its
    base tables (which stay exactly as they were); a current file is left alone."""
    import shutil

    from alliance import db

    path = tmp_path / "alliance.duckdb"
    shutil.copyfile(demo_db, path)
    assert db.facts_are_current(path)
    with db.writer(path) as con:  # as an earlier version left it: no ended_sessions yet
        con.execute("drop table ended_sessions")
        db.set_meta(con, "facts_version", "earlier")
    assert not db.facts_are_current(path)

    def base(p):
        con = db.open_read_only(p)
        try:
            return [
                con.execute(f"select * from {t} order by all").fetchall() for t in db.BASE_TABLES
            ]  # noqa: S608
        finally:
            con.close()

    before = base(path)
    db.refresh_facts(path)
    assert db.facts_are_current(path)
    assert base(path) == before
    con = db.open_read_only(path)
    assert con.execute("select count(*) from ended_sessions").fetchone()[0] > 0
    con.close()
