"""Every failure is a plain sentence and nothing is left behind (issue 21).

Each fault a clinic is likely to meet, through the app (AppTest: the real dashboard.py frame) and
the command line (in process and as a subprocess): the plain message (alliance/faults.py), no
error box (`at.exception`), no traceback and no exception class name, the database's bytes
unchanged and no leftover files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from alliance import db, faults
from alliance.ingest import merge
from alliance.ingest.command import run_command
from alliance.settings import Settings, SettingsError
from tests.conftest import ROOT
from tests.test_import_helpers import SAMPLE, _no_env_key, file_hash, import_  # noqa: F401

CLASS_NAMES = ("Error", "Exception", "Traceback", "OSError", "PermissionError")


def plain(text: str) -> bool:
    """No traceback, no exception class name."""
    return not any(name in text for name in CLASS_NAMES)


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)


def _texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.warning, *at.error, *at.info, *at.caption, *at.title)]
    return "\n".join(str(p) for p in parts)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- damaged databases -----------------------------------------------------------------------
def _damage(kind: str, good: Path, target: Path) -> None:
    if kind == "folder":
        target.mkdir()
        return
    if kind == "not a DuckDB file":
        target.write_text("client_id,session_date\nC-1,2025-01-02\n")
        return
    shutil.copyfile(good, target)
    size = target.stat().st_size
    if kind == "truncated":
        os.truncate(target, size // 3)
    elif kind == "corrupted bytes":
        with open(target, "r+b") as fh:  # the data blocks, past the header and the catalog
            fh.seek(size // 4)
            fh.write(bytes(range(256)) * ((size // 2) // 256))


EXPECTED = {
    "truncated": "is damaged (it could not be read). Restore it from a backup, or move it aside",
    "corrupted bytes": "is damaged (it could not be read). Restore it from a backup",
    "folder": "is a folder, not a database file",
    "not a DuckDB file": "is not a dashboard database (it is not a DuckDB file)",
}


@pytest.fixture
def small_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small") / "alliance.duckdb"
    db.write_demo(path, sessions=4000, seed=3)
    return path


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_the_app_shows_one_plain_page_for_a_database_it_cannot_use(
    app_env, small_db, tmp_path, monkeypatch, kind
):
    path = tmp_path / "alliance.duckdb"
    _damage(kind, small_db, path)
    before = file_hash(path) if path.is_file() else None
    listing = _listing(tmp_path)
    monkeypatch.setenv("ALLIANCE_DB", str(path))
    at = _app().run()
    assert not at.exception
    text = _texts(at)
    assert EXPECTED[kind] in text, text
    assert plain(text)
    assert len(at.warning) == 1 and not at.error  # one explanatory page, nothing else
    if before is not None:
        assert file_hash(path) == before
    assert _listing(tmp_path) == listing


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_the_command_line_says_it_plainly_for_a_database_it_cannot_use(small_db, tmp_path, kind):
    path = tmp_path / "alliance.duckdb"
    _damage(kind, small_db, path)
    before = file_hash(path) if path.is_file() else None
    listing = _listing(tmp_path)
    for args in (["summary"], ["import", "--quiet", str(SAMPLE)]):
        proc = subprocess.run(
            [sys.executable, "-m", "alliance", *args, "--db", str(path)],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "ALLIANCE_SECRET_KEY"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode in (1, 2), proc.stderr
        assert EXPECTED[kind] in proc.stderr, proc.stderr
        assert plain(proc.stderr), proc.stderr
    if before is not None:
        assert file_hash(path) == before
    assert _listing(tmp_path) == listing


# --- settings ----------------------------------------------------------------------------------
BAD_SETTINGS = {
    "corrupted": ('{"privacy_k": 11, "srs_cut', "it is not a valid settings file"),
    "k = 0": ('{"privacy_k": 0}', "smallest group shown (privacy_k) is 0, but must be between"),
    "k = -5": ('{"privacy_k": -5}', "smallest group shown (privacy_k) is -5"),
    "cutoff abc": ('{"srs_cutoff": "abc"}', 'SRS cutoff (srs_cutoff) must be a number, not "abc"'),
}


@pytest.fixture
def own_copy(app_env, small_db, tmp_path, monkeypatch) -> Path:
    path = tmp_path / "alliance.duckdb"
    shutil.copyfile(small_db, path)
    monkeypatch.setenv("ALLIANCE_DB", str(path))
    return path


def _settings_file(path: Path) -> Path:
    return path.with_name(path.stem + ".settings.json")


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_a_bad_settings_file_falls_back_with_a_banner_and_is_mended_on_the_settings_page(
    own_copy, case
):
    text, reason = BAD_SETTINGS[case]
    _settings_file(own_copy).write_text(text)
    at = _app().run()
    assert not at.exception
    banner = [w.value for w in at.warning if "could not be used" in w.value]
    assert len(banner) == 1 and reason in banner[0].replace("\\", ""), banner
    assert "Settings page" in banner[0] and plain(banner[0])
    at.switch_page("pages/settings.py").run()
    assert not at.exception
    k = next(n for n in at.number_input if n.label == "Smallest group shown (clients)")
    assert k.value == 11  # the default in force
    next(b for b in at.button if b.label == "Save settings").click().run()
    assert not at.exception
    saved = Settings.from_json(_settings_file(own_copy).read_text())  # valid now
    assert saved.privacy_k == 11
    at.switch_page("pages/overview.py").run()
    assert not at.exception
    assert not [w for w in at.warning if "could not be used" in w.value]


def test_a_value_outside_its_range_is_refused_when_read_and_when_saved(tmp_path):
    for text, reason in BAD_SETTINGS.values():
        with pytest.raises(SettingsError, match=reason.split(" (")[0].split('"')[0]):
            Settings.from_json(text)
    target = tmp_path / "s.json"
    for bad in (Settings(privacy_k=0), Settings(privacy_k=-5), Settings(srs_cutoff="abc")):  # type: ignore[arg-type]
        with pytest.raises(SettingsError):
            bad.save(target)
    assert not target.exists() and not list(tmp_path.iterdir())
    # the values the file may hold: the defaults, the page's own limits; whole numbers read as such
    Settings().save(target)
    assert Settings.load(target) == Settings()
    lenient, found = Settings.parse('{"srs_cutoff": 36, "repair_window": 3.0, "privacy_k": 500}')
    assert (lenient.srs_cutoff, lenient.repair_window, lenient.privacy_k) == (36.0, 3, 11)
    assert list(found) == ["privacy_k"]
    assert Settings().replace(privacy_k=1).privacy_k == 1  # code and tests may use any value


def test_the_command_line_refuses_a_bad_settings_file_plainly(small_db, tmp_path):
    path = tmp_path / "alliance.duckdb"
    shutil.copyfile(small_db, path)
    _settings_file(path).write_text('{"privacy_k": -5}')
    proc = subprocess.run(
        [sys.executable, "-m", "alliance", "summary", "--db", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "could not be used: smallest group shown (privacy_k) is -5" in proc.stderr
    assert plain(proc.stderr)


# --- imports the machine fails -------------------------------------------------------------------
@pytest.fixture
def clinic_db(tmp_path: Path) -> Path:
    path = tmp_path / "clinic" / "clinic.duckdb"
    path.parent.mkdir()
    assert import_(SAMPLE, path).ok
    return path


def _args(files: list[Path], path: Path) -> argparse.Namespace:
    return argparse.Namespace(
        files=files,
        db=path,
        date_format=None,
        sheet=None,
        skip_invalid=False,
        rejects=None,
        dry_run=False,
        replace_demo=False,
        accept_new_names=False,
        quiet=True,
    )


def _os_error(number: int, text: str):
    def fail(src, dst, *a, **k):
        raise OSError(number, text, str(dst))

    return fail


def _in_write(exc: Exception):
    original = merge.apply

    def apply_then_fail(con):
        original(con)  # the private copy is written, then the disk says no
        raise exc

    return apply_then_fail


IMPORT_FAULTS = {
    "read-only folder": (
        "copyfile",
        _os_error(13, "Permission denied"),
        "cannot be written by the account running the dashboard (permission denied)",
    ),
    "read-only mount": ("copyfile", _os_error(30, "Read-only file system"), "read-only disk"),
    "full disk (copy)": (
        "copyfile",
        _os_error(28, "No space left on device"),
        "The disk is full: the import needs about",
    ),
    "full disk (DuckDB)": (
        "apply",
        _in_write(
            duckdb.TransactionException(
                "TransactionContext Error: Failed to commit: could not write: "
                "No space left on device"
            )
        ),
        "The disk is full: the import needs about",
    ),
}


@pytest.mark.parametrize("case", list(IMPORT_FAULTS))
def test_an_import_the_machine_fails_says_so_plainly_and_leaves_nothing(
    clinic_db, tmp_path, monkeypatch, capsys, case
):
    where, failure, expected = IMPORT_FAULTS[case]
    if where == "copyfile":
        monkeypatch.setattr(db.shutil, "copyfile", failure)
    else:
        monkeypatch.setattr(merge, "apply", failure)
    before = file_hash(clinic_db)
    listing = _listing(clinic_db.parent)
    other = tmp_path / "other.csv"
    other.write_text(SAMPLE.read_text().replace("C-100", "C-300"))
    assert run_command(_args([other], clinic_db)) == 1
    err = capsys.readouterr().err
    assert expected in err, err
    assert plain(err) and "(" + "OSError)" not in err and "TransactionException" not in err
    assert "the database is unchanged" in err
    if "full" in case:
        assert "MB more" in err
    assert file_hash(clinic_db) == before
    assert _listing(clinic_db.parent) == listing  # no copy, no .wal


def test_the_fault_sentences_name_no_exception_class():
    path = Path("data/alliance.duckdb")
    cases = [
        faults.write_fault(PermissionError(13, "Permission denied", "x"), path=path),
        faults.write_fault(OSError(30, "Read-only file system"), path=path),
        faults.write_fault(OSError(28, "No space left on device"), path=path, need_bytes=40 << 20),
        faults.write_fault(MemoryError(), path=path),
        faults.write_fault(RuntimeError("boom"), path=path),
        faults.database_fault(duckdb.IOException("Could not read enough bytes"), path),
        faults.settings_fault(path, "it is not a valid settings file"),
    ]
    for fault in cases:
        assert fault is not None and plain(fault.text) and fault.text.endswith("."), fault
    assert cases[2].text.startswith("The disk is full: the import needs about")
    assert cases[2].text.endswith(
        "MB more. Free some space on that disk, then try again. Nothing was changed."
    )


# --- leftovers of killed imports -------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leave_leftovers(path: Path, pid: int) -> list[str]:
    names = [f"{path.name}.tmp-{pid}-abc123", f"{path.name}.tmp-{pid}-abc123.wal"]
    for name in names:
        (path.parent / name).write_bytes(b"\0" * 300_000)
    return names


def test_an_import_sweeps_what_a_killed_import_left_and_says_so(clinic_db, tmp_path):
    names = _leave_leftovers(clinic_db, _dead_pid())
    other = tmp_path / "other.csv"
    other.write_text(SAMPLE.read_text().replace("C-100", "C-600"))
    proc = subprocess.run(
        [sys.executable, "-m", "alliance", "import", "--quiet", str(other), "--db", str(clinic_db)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "ALLIANCE_SECRET_KEY"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Removed 2 leftover files of an import or update that was stopped" in proc.stderr
    assert all(n in proc.stderr for n in names)
    assert not [p for p in clinic_db.parent.iterdir() if ".tmp-" in p.name]


def test_a_start_sweeps_leftovers_and_says_so(own_copy):
    names = _leave_leftovers(own_copy, _dead_pid())
    at = _app().run()
    assert not at.exception
    notes = [i.value for i in at.info if "leftover" in i.value]
    assert len(notes) == 1 and all(
        n.replace("_", "\\_") in notes[0] or n in notes[0] for n in names
    )
    assert not [p for p in own_copy.parent.iterdir() if ".tmp-" in p.name]


def test_the_copy_of_a_writer_at_work_is_never_swept(clinic_db):
    with db.writer(clinic_db) as con:  # holds the writers' lock, its copy beside the file
        copies = [p for p in clinic_db.parent.iterdir() if ".tmp-" in p.name]
        assert copies
        assert db.sweep_leftovers(clinic_db) == []
        assert all(p.exists() for p in copies)
        con.execute("select 1").fetchall()


def test_a_settings_save_that_fails_says_so(own_copy, monkeypatch):
    at = _app().run()
    at.switch_page("pages/settings.py").run()

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(db.os, "replace", full)
    next(b for b in at.button if b.label == "Save settings").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("The disk is full" in e and "Nothing was changed" in e for e in errors), errors
    assert not _settings_file(own_copy).exists()
    assert not [p for p in own_copy.parent.iterdir() if ".tmp-" in p.name]


def test_the_fault_check_command_prints_a_plain_table():
    from alliance import fault_check

    rows = fault_check.run()
    assert len(rows) == 12
    assert all(r["unchanged"] and not r["left behind"] for r in rows), rows
    assert all(plain(str(r["message"])) and str(r["message"]).endswith(".") for r in rows)
    assert "Removed 2 leftover files" in str(rows[-1]["message"])
    assert "case | exit" in fault_check.table(rows)
