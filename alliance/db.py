"""Where the data lives, and how it is written without ever being half-written.

Design (DuckDB locks a file: one read-write process, or many read-only ones, never both):
the dashboard only ever opens the database read-only. Every write (demo build, import) copies the
current file to a temporary file beside it, writes there, checkpoints, and swaps it in with an
atomic ``os.replace``. Readers notice the new file (inode/mtime) and reopen. A write that fails or
is killed leaves the original file untouched; a lock file serializes concurrent writers.

Files and folders the dashboard creates (database, audit log, settings, key, lock files) are its
owner's only: files 0600, folders 0700, set with the file's creation (``os.open`` with a mode) or
by ``chmod`` right after it and before any data is written, never through the process-wide umask.
The copy swapped in keeps its mode through ``os.replace`` (a rename keeps the inode).

Nothing is left behind: a write that fails removes its copy and the copy's write-ahead file; one
that was killed leaves them (their names carry the writer's process id), and the next start or
write sweeps them (`sweep_leftovers`): a writer's copies whenever no writer holds the lock, other
temporary files once their process is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from alliance.demo import DemoClinic, build_demo

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
BASE_TABLES = ("sites", "programs", "therapists", "clients", "episodes", "sessions")
_log = logging.getLogger("alliance")


def default_db_path() -> Path:
    """`ALLIANCE_DB` from the environment, else data/alliance.duckdb beside the app."""
    env = os.environ.get("ALLIANCE_DB")
    return Path(env) if env else ROOT / "data" / "alliance.duckdb"


PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path) -> None:
    """Create the folder `path` (and missing parents) readable by its owner only (0700).

    Folders that exist already keep their mode: only those created here are made private.
    """
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:  # created meanwhile by another process: leave it as it is
            continue
        os.chmod(folder, PRIVATE_DIR)  # the umask may have taken bits away, never added them


def create_private(path: Path) -> int:
    """Open `path` for writing, created if missing, owner-only (0600) before any byte is in it.

    Returns the file descriptor (the caller closes it). An existing file is made 0600 too.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (a private temporary file, then os.replace), 0600."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's process: alive
        return True
    return True


STALE_AFTER_S = 60.0  # a temporary file of a gone process is left this long (another machine's?)


def sweep_leftovers(path: Path, *, locked: bool = False) -> list[tuple[str, int]]:
    """Remove what killed writes left beside the database at `path`; returns (name, bytes).

    * a writer's copy (``<db>.tmp-<pid>-<id>``) and its ``.wal``: when no writer holds the
      writers' lock (`locked`: the caller holds it), since a copy exists only while its writer
      holds it;
    * other private temporary files (settings, key file: ``.<name>.tmp-<pid>-<id>``) and reader
      links (``.<db>.reader-<pid>-<id>``): when their process is gone and they are older than a
      minute.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        return []
    writer_copy = re.compile(rf"^{re.escape(path.name)}\.tmp-(\d+)-[0-9a-f]+(\.wal)?$")
    ours = "|".join(
        re.escape(n)
        for n in (
            f".{path.name}",
            f".{path.stem}.settings.json",
            f".{path.stem}.audit.duckdb",
            ".alliance_secret_key",
        )
    )
    private_tmp = re.compile(rf"^(?:{ours})\.(?:tmp|reader)-(\d+)-[0-9a-f]+(\.wal)?$")
    removed: list[tuple[str, int]] = []
    lock_fd = None
    try:
        names = sorted(os.listdir(folder))
        copies = [n for n in names if writer_copy.match(n)]
        if copies and not locked:
            try:
                lock_fd = os.open(folder / f"{path.name}.lock", os.O_RDWR)
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a writer is at work: its copy is no leftover
                copies = []
            except FileNotFoundError:  # no lock file: copies of gone processes only
                copies = [n for n in copies if not _pid_alive(int(writer_copy.match(n)[1]))]
        now = time.time()
        for name in names:
            match = private_tmp.match(name)
            if name in copies:
                pass
            elif match and not _pid_alive(int(match[1])):
                try:
                    if now - os.stat(folder / name).st_mtime < STALE_AFTER_S:
                        continue
                except OSError:
                    continue
            else:
                continue
            try:
                size = os.stat(folder / name).st_size
                os.unlink(folder / name)
            except FileNotFoundError:
                continue
            except OSError as exc:  # cannot be removed: said in the log, nothing else
                _log.warning("Could not remove the leftover file %s: %s", folder / name, exc)
                continue
            removed.append((name, size))
    except OSError as exc:
        _log.warning("Could not look for leftover files in %s: %s", folder, exc)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    if removed:
        from alliance.faults import removed_sentence

        _log.info("%s", removed_sentence(removed))
    return removed


def _sql(name: str) -> str:
    return (SCHEMA_DIR / name).read_text()


def apply_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the base tables if they do not exist."""
    con.execute(_sql("tables.sql"))


def facts_version() -> str:
    """Version of the derived facts' definitions (derive.sql and macros.sql)."""
    import hashlib

    text = (_sql("derive.sql") + _sql("macros.sql")).encode()
    return hashlib.sha256(text).hexdigest()[:12]


def rebuild_facts(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the derived per-session and per-episode facts and the filter macros."""
    con.execute(_sql("derive.sql"))
    con.execute(_sql("macros.sql"))
    set_meta(con, "facts_version", facts_version())
    through = con.execute("select max(session_date) from sessions").fetchone()[0]
    set_meta(con, "data_version", uuid.uuid4().hex[:12])
    set_meta(con, "through_date", str(through) if through else "")
    set_meta(con, "built_at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute(
        "insert or replace into meta (key, value) values ($key, $value)",
        {"key": key, "value": value},
    )


def get_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("select key, value from meta").fetchall())


@contextlib.contextmanager
def writer(path: Path, *, fresh: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to a private copy of `path`, swapped in atomically on success.

    With `fresh=True` the copy starts empty. On any exception (or if the process dies) the
    original file is left exactly as it was and the copy is removed.
    """
    path = Path(path)
    private_dir(path.parent)
    lock_path = path.with_name(path.name + ".lock")
    with os.fdopen(create_private(lock_path), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sweep_leftovers(path, locked=True)  # copies of killed writers: no writer is at work
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        try:
            if path.exists() and not fresh:
                # the copy is created owner-only and empty, then filled (copyfile keeps the
                # mode of a file it writes into)
                os.close(create_private(tmp))
                shutil.copyfile(path, tmp)
            con = duckdb.connect(str(tmp))
            try:
                os.chmod(tmp, PRIVATE_FILE)  # a fresh file: DuckDB wrote only its header yet
                apply_schema(con)
                yield con
                con.execute("checkpoint")
            finally:
                con.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, PRIVATE_FILE)
            os.replace(tmp, path)  # the rename keeps the copy's owner-only mode
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                leftover.unlink(missing_ok=True)


def write_demo(
    path: Path,
    *,
    sessions: int = 50_000,
    seed: int = 7,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, int]:
    """Build the demo clinic into `path` (replacing whatever is there). Returns row counts."""
    say = progress or (lambda _f, _m: None)
    clinic = build_demo(sessions=sessions, seed=seed, progress=progress)
    with writer(path, fresh=True) as con:
        say(0.85, "Writing tables")
        _insert_all(con, clinic)
        say(0.92, "Deriving episode facts")
        set_meta(con, "dataset_kind", "demo")
        set_meta(con, "demo_seed", str(seed))
        rebuild_facts(con)
        counts = {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in BASE_TABLES}  # noqa: S608 (fixed table names)
    say(1.0, "Done")
    return counts


def _insert_all(con: duckdb.DuckDBPyConnection, clinic: DemoClinic) -> None:
    import pyarrow as pa

    for table in BASE_TABLES:
        # through Arrow: DuckDB scans it without per-value conversion of the nullable columns
        frame = pa.Table.from_pandas(getattr(clinic, table), preserve_index=False)  # noqa: F841 (read by DuckDB's replacement scan)
        cols = ", ".join(getattr(clinic, table).columns)
        con.execute(f"insert into {table} ({cols}) select {cols} from frame")  # noqa: S608


def facts_are_current(path: Path) -> bool:
    """Whether the file's derived facts were built by this code's derive.sql / macros.sql."""
    con = open_read_only(path)
    try:
        return get_meta(con).get("facts_version") == facts_version()
    finally:
        con.close()


def refresh_facts(path: Path) -> None:
    """Rebuild the derived facts of an existing file (after an upgrade changed their
    definitions), atomically like every write: the base tables are copied unchanged."""
    with writer(path) as con:
        rebuild_facts(con)


def dataset_kind(con: duckdb.DuckDBPyConnection) -> str:
    """'demo', 'clinic', or 'empty'."""
    return get_meta(con).get("dataset_kind", "empty")


def reader_config() -> dict[str, str]:
    """DuckDB settings of the dashboard's read-only connections.

    DuckDB's buffer manager would otherwise grow to 80% of RAM on a large clinic (it caches the
    file's blocks); capping it keeps the dashboard process within a modest server's memory
    (target: under 2 GB resident at 10 M sessions, see README "Performance"). Large hash
    aggregates beyond the cap spill to a temporary directory instead of failing.
    `ALLIANCE_DUCKDB_MEMORY` overrides the cap (a DuckDB size, e.g. '4GB').
    Results need not keep the storage order of their rows (every named query that returns
    several rows says its order with ORDER BY): DuckDB then skips order bookkeeping in its
    parallel operators, 5-10% faster at 10 M sessions.
    """
    import tempfile

    return {
        "memory_limit": os.environ.get("ALLIANCE_DUCKDB_MEMORY", "1200MB"),
        "temp_directory": str(Path(tempfile.gettempdir()) / "alliance-duckdb-spill"),
        "preserve_insertion_order": "false",
    }


def open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the file at `path` as it is now.

    DuckDB keeps one database instance per path in a process, so after a writer swapped in a
    new file, connecting to the same path again would return the old, replaced data. Connecting
    through a fresh hard link (removed at once; the open file stays readable) always opens the
    current file, while connections to the old one finish their queries undisturbed.
    """
    path = Path(path)
    link = path.with_name(f".{path.name}.reader-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.link(path, link)
    except OSError:  # a filesystem without hard links: plain open
        return duckdb.connect(str(path), read_only=True, config=reader_config())
    try:
        return duckdb.connect(str(link), read_only=True, config=reader_config())
    finally:
        link.unlink(missing_ok=True)


def file_signature(path: Path) -> tuple[int, int, int]:
    """Changes whenever a writer swaps in a new file (used to reopen and to key caches)."""
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)
