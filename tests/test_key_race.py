"""The key-file race (issue 21): imports started at once into a new database location all
succeed, one after another, under one pseudonymization key; the key file is never read half
written, and creating it leaves no temporary file behind."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb

from alliance import pseudonym
from tests.conftest import ROOT
from tests.test_import_helpers import SAMPLE, _no_env_key  # noqa: F401

IMPORTS = 6


def test_imports_started_at_once_into_a_new_location_all_succeed_with_one_key(tmp_path):
    path = tmp_path / "new" / "clinic.duckdb"
    env = {k: v for k, v in os.environ.items() if k != "ALLIANCE_SECRET_KEY"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "alliance", "import", "--quiet", str(SAMPLE), "--db", str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(IMPORTS)
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, err in outcomes:
        assert code == 0, err
        assert "Traceback" not in err
    key_file = path.parent / pseudonym.KEY_FILE_NAME
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("select count(*) from import_log").fetchall() == [(IMPORTS,)]
        assert con.execute("select count(*) from sessions").fetchall() == [(9,)]  # same file
        stored = con.execute("select value from meta where key = 'pseudonym_key_check'").fetchall()
    finally:
        con.close()
    assert stored == [(pseudonym.load_key(path).check,)]
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, f"{path.name}.lock", pseudonym.KEY_FILE_NAME]
    )


def _create(db_path: str, queue) -> None:  # a separate process: one contender of the race
    os.environ.pop("ALLIANCE_SECRET_KEY", None)
    try:
        queue.put(pseudonym.load_key(Path(db_path), create=True).key.hex())
    except Exception as exc:  # noqa: BLE001 (reported to the test)
        queue.put(f"failed: {exc}")


def test_the_loser_of_the_key_file_race_reads_the_winners_key(tmp_path):
    """Many processes create the key file at the same moment, many times over: every one of
    them gets the same, complete key (before: one in three races read a half-written file)."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(5):
        db_path = tmp_path / f"r{round_}" / "clinic.duckdb"
        queue = ctx.Queue()
        procs = [ctx.Process(target=_create, args=(str(db_path), queue)) for _ in range(8)]
        for p in procs:
            p.start()
        keys = [queue.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert len(set(keys)) == 1 and not keys[0].startswith("failed"), keys
        assert [p.name for p in db_path.parent.iterdir()] == [pseudonym.KEY_FILE_NAME]


def test_the_key_file_is_written_complete_before_it_appears(tmp_path, monkeypatch):
    """The final name appears only with the whole key in it: a process that finds the file
    while the creator is between writing and syncing never sees it empty."""
    seen = []
    real_fsync = os.fsync
    key_file = tmp_path / pseudonym.KEY_FILE_NAME

    def fsync(fd):
        seen.append(key_file.exists())  # the final name while the bytes are being synced
        return real_fsync(fd)

    monkeypatch.delenv("ALLIANCE_SECRET_KEY", raising=False)
    monkeypatch.setattr(pseudonym.os, "fsync", fsync)
    key = pseudonym.load_key(tmp_path / "clinic.duckdb", create=True)
    assert seen and seen[0] is False
    assert bytes.fromhex(key_file.read_text().strip()) == key.key
