"""One place where failures become sentences, for the app and the command line alike.

A fault a clinic is likely to meet (a damaged database file, a path that is a folder or not a
database, a settings file that cannot be used, a folder that cannot be written, a read-only disk,
a full disk, too little memory) becomes a `Fault`: a plain sentence saying what is wrong and what
to do, never an exception's class name nor a traceback. The cause goes to the log (logger
``alliance``): the dashboard's server writes it, with its traceback, to its console (the server
log, `server_log`); the command line keeps it out of the person's way unless ``ALLIANCE_DEBUG`` is
set (`command_line_log`).

    fault = faults.write_fault(exc, path=db_path, action="import", need_bytes=...)
    print(f"error: {fault.text}")          # or st.error(fault.text)
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("alliance")
log.addHandler(logging.NullHandler())  # never Python's last-resort handler (it prints tracebacks)

MB = 1024 * 1024
NOTHING_CHANGED = "Nothing was changed."
DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file

_FULL = ("no space left on device", "disk is full", "disk full", "not enough space")
_READ_ONLY = ("read-only file system",)
_DENIED = ("permission denied", "operation not permitted")
_DAMAGED = (
    "corrupt",
    "checksum",
    "could not read enough bytes",
    "not a valid duckdb database file",
    "serialization error",
    "failed to deserialize",
    "invalid block",
    "attempted to read",
)
_MEMORY = ("out of memory", "memory limit", "could not allocate")


@dataclass(frozen=True)
class Fault:
    """A failure as a person reads it.

    case: a short key (damaged, folder, not_database, unreadable, version, settings,
        permission, read_only, disk_full, memory, unexpected), for tests and the fault table;
    what: what is wrong and what to do;
    closing: what became of the data ("Nothing was changed."), or "".
    """

    case: str
    what: str
    closing: str = ""

    @property
    def text(self) -> str:
        return f"{self.what} {self.closing}".strip()

    def __str__(self) -> str:
        return self.text


class FaultError(Exception):
    """A failure already turned into a sentence (and logged): `fault` says what to do."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.text)
        self.fault = fault


def shown(path: Path | str) -> str:
    """A path as a person reads it: relative to the working folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _text(exc: BaseException) -> str:
    return str(exc).lower()


def _errno(exc: BaseException) -> int | None:
    """The OS error number of `exc` or of what caused it."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _is_duckdb_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return head[8:12] == DUCKDB_MAGIC


# --- the database file ---------------------------------------------------------------------------
def damaged(path: Path) -> Fault:
    return Fault(
        "damaged",
        f"The database file {shown(path)} is damaged (it could not be read). Restore it from a "
        "backup, or move it aside to start again with the demo clinic.",
    )


def database_fault(exc: BaseException, path: Path) -> Fault | None:
    """The sentence for a failure to open or read the database at `path`; None when `exc` is
    not about the file itself (a programming error stays an error)."""
    path = Path(path)
    message = _text(exc)
    if path.is_dir():
        return Fault(
            "folder",
            f"The database path {shown(path)} is a folder, not a database file. Set "
            "ALLIANCE_DB to the dashboard's database file (by default data/alliance.duckdb), "
            "or move the folder aside to start again with the demo clinic.",
        )
    if isinstance(exc, PermissionError) or any(s in message for s in _DENIED):
        return Fault(
            "unreadable",
            f"The database file {shown(path)} cannot be read by the account running the "
            "dashboard (permission denied). Give that account read and write access to it and "
            "to its folder.",
        )
    if "not a valid duckdb database file" in message and not _is_duckdb_file(path):
        return Fault(
            "not_database",
            f"The file {shown(path)} is not a dashboard database (it is not a DuckDB file). "
            "Set ALLIANCE_DB to the dashboard's database file, or move this file aside to "
            "start again with the demo clinic.",
        )
    if "version" in message and ("storage" in message or "duckdb" in message):
        return Fault(
            "version",
            f"The database file {shown(path)} was written by another version of DuckDB than "
            "this dashboard's, so it cannot be read. Open it with the dashboard version that "
            "wrote it, or move it aside to start again with the demo clinic.",
        )
    if any(s in message for s in _DAMAGED):
        return damaged(path)
    try:
        import duckdb

        if isinstance(exc, duckdb.SerializationException | duckdb.InternalException):
            return damaged(path)
    except ImportError:  # pragma: no cover
        pass
    return None


# --- writing: imports, the demo build, refreshing the derived facts -------------------------------
def _folder_of(exc: BaseException, path: Path) -> Path:
    name = getattr(exc, "filename", None)
    where = Path(name) if name else Path(path)
    return where if where.is_dir() else where.parent


def need_more_bytes(path: Path, need_bytes: int | None) -> int:
    """How much more space a write at `path` needs: its estimate less what is free now (the
    failed write's temporary files are gone by then), at least 1 MB."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    need = need_bytes if need_bytes is not None else estimate_write_bytes(path)
    return max(need - free, MB)


def estimate_write_bytes(path: Path, inputs: list[Path] | None = None) -> int:
    """About how much room a write into the database at `path` takes while it runs: the private
    copy of the database, its growth and write-ahead file (about the size of what is added), and
    DuckDB's margin."""
    try:
        size = Path(path).stat().st_size if Path(path).is_file() else 0
    except OSError:
        size = 0
    added = 0
    for f in inputs or []:
        try:
            added += Path(f).stat().st_size
        except OSError:
            continue
    return size + max(size // 2, 2 * added) + 16 * MB


def write_fault(
    exc: BaseException,
    *,
    path: Path,
    action: str = "import",
    need_bytes: int | None = None,
    writes: str = "its new copy of the database",
) -> Fault:
    """The sentence for a write into the database at `path` that failed (nothing was written:
    every write goes through a private copy swapped in only on success)."""
    path = Path(path)
    number = _errno(exc)
    message = _text(exc)
    if number in (errno.ENOSPC, errno.EDQUOT) or any(s in message for s in _FULL):
        more = math.ceil(need_more_bytes(path, need_bytes) / MB)
        quota = " (the account's disk quota)" if number == errno.EDQUOT else ""
        return Fault(
            "disk_full",
            f"The disk is full{quota}: the {action} needs about {more:,} MB more. Free some "
            "space on that disk, then try again.",
            NOTHING_CHANGED,
        )
    if number == errno.EROFS or any(s in message for s in _READ_ONLY):
        folder = _folder_of(exc, path)
        return Fault(
            "read_only",
            f"The folder {shown(folder)} is on a read-only disk, so the {action} cannot write "
            f"{writes} there. Mount that disk read-write, or move the database to a writable "
            "folder (ALLIANCE_DB).",
            NOTHING_CHANGED,
        )
    if (
        isinstance(exc, PermissionError)
        or number in (errno.EACCES, errno.EPERM)
        or any(s in message for s in _DENIED)
    ):
        folder = _folder_of(exc, path)
        return Fault(
            "permission",
            f"The folder {shown(folder)} cannot be written by the account running the "
            f"dashboard (permission denied), so the {action} cannot write {writes} there. Give "
            "that account write access to the folder.",
            NOTHING_CHANGED,
        )
    if isinstance(exc, MemoryError) or any(s in message for s in _MEMORY):
        return Fault(
            "memory",
            f"The {action} ran out of memory. Import the export in smaller files (for example "
            "one per year), or give the dashboard more memory.",
            NOTHING_CHANGED,
        )
    found = database_fault(exc, path)
    if found is not None:
        return Fault(found.case, found.what, NOTHING_CHANGED)
    return unexpected(exc, action)


def unexpected(exc: BaseException, action: str = "import") -> Fault:
    reason = ""
    if isinstance(exc, OSError) and exc.strerror:
        reason = f" ({exc.strerror.lower()})"
    return Fault(
        "unexpected",
        f"The {action} stopped because of an unexpected problem{reason}. Try again; if it "
        "happens again, the log has the details for the person who runs the dashboard (its "
        "server log; on the command line, run it again with ALLIANCE_DEBUG=1).",
        NOTHING_CHANGED,
    )


# --- settings ------------------------------------------------------------------------------------
def settings_fault(path: Path, reason: str, *, fallback: bool = True) -> Fault:
    """A settings file that cannot be used as it is (`reason` says why, in plain words)."""
    then = (
        "Every page uses the default for what cannot be used, until a director corrects it on "
        "the Settings page and saves."
        if fallback
        else "Correct it (a director can save the settings again on the Settings page), or "
        "delete it to use the defaults."
    )
    return Fault("settings", f"The settings file {shown(path)} could not be used: {reason}. {then}")


def settings_not_saved(exc: BaseException, path: Path) -> Fault:
    """Saving the settings file failed (written atomically: the old file is unchanged)."""
    fault = write_fault(
        exc, path=path, action="saving of the settings", need_bytes=MB, writes="the settings file"
    )
    if fault.case == "unexpected":
        return Fault(
            "unexpected",
            f"The settings could not be saved to {shown(path)}. Ask the person who runs the "
            "dashboard to check that file and its folder.",
            NOTHING_CHANGED,
        )
    return fault


# --- leftovers -----------------------------------------------------------------------------------
def removed_sentence(removed: list[tuple[str, int]]) -> str:
    """What a sweep of stopped writes' leftovers removed, as one sentence ('' if nothing)."""
    if not removed:
        return ""
    size = sum(n for _, n in removed)
    names = ", ".join(name for name, _ in removed)
    what = "file" if len(removed) == 1 else "files"
    return (
        f"Removed {len(removed)} leftover {what} of an import or update that was stopped "
        f"before it finished ({math.ceil(size / MB):,} MB): {names}."
    )


# --- the log -------------------------------------------------------------------------------------
def record(fault: Fault, exc: BaseException | None = None) -> Fault:
    """Write `fault` and its cause (with the traceback) to the log; returns `fault`."""
    if exc is None:
        log.warning("%s", fault.text)
    else:
        log.error("%s [cause: %s: %s]", fault.text, type(exc).__name__, exc, exc_info=exc)
    return fault


_CONFIGURED: set[str] = set()


def server_log() -> None:
    """The dashboard's server: faults and their causes go to its console (stderr), once."""
    if "server" in _CONFIGURED:
        return
    _CONFIGURED.add("server")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def command_line_log() -> None:
    """The command line: causes on stderr only with ALLIANCE_DEBUG set (the person sees the
    sentence; the traceback is for whoever debugs)."""
    if "cli" in _CONFIGURED or not os.environ.get("ALLIANCE_DEBUG"):
        return
    _CONFIGURED.add("cli")
    log.addHandler(logging.StreamHandler(sys.stderr))
    log.setLevel(logging.DEBUG)
