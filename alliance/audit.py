"""Audit log: who exported or downloaded what, when, under which role and sites, with which filters.

Stored in a small DuckDB database beside the main one (`<name>.audit.duckdb`): the main file is
served read-only and replaced atomically by imports, so appending to it per download would mean
copying it. Each write opens a short-lived connection under a lock file. Details hold filters and
chart keys only: never client data, identifiers or free text from imported files.

The log fails closed: `record` raises AuditError (its text a plain sentence for the person) when
the entry cannot be written within `WAIT_S` seconds (the log is locked by another program, or
its file or folder cannot be written), and every caller then withholds the export. The log file
and its lock file are created readable by their owner only (0600).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from alliance.db import PRIVATE_FILE, create_private, private_dir

SCHEMA = """
create table if not exists audit_log (
    logged_at timestamp not null,  -- UTC
    user_name varchar not null, -- the signed-in user's e-mail, 'local user', or the OS user
    role varchar not null,      -- director, supervisor, viewer, local, or 'command line'
    event varchar not null,     -- e.g. download_png, report_pptx, import, settings_changed
    detail varchar not null,    -- JSON: chart key, format, filters in force
    sites varchar               -- the role's site restriction: 'all sites', or a JSON list
);
alter table audit_log add column if not exists sites varchar;  -- logs from before it
"""
COLUMNS = ["logged_at", "user_name", "role", "event", "detail", "sites"]
ALL_SITES = "all sites"
WAIT_S = 2.0  # at most this long for a locked log, then the export is refused
COMMAND_LINE = "command line"  # the role recorded for `python -m alliance report`

NOT_WRITTEN = (
    "The audit log could not record this {what} ({why}), so it was not {done}: every "
    "export must be recorded first. Try again in a moment; if it keeps happening, ask the "
    "person who runs the dashboard to check the audit log file."
)


class AuditError(Exception):
    """An entry could not be written (or the log read); str() is a plain sentence."""


def os_user() -> str:
    """The operating-system account running a command (`report` runs are recorded under it)."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor the password database
        return f"uid {os.getuid()}"


def audit_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.stem + ".audit.duckdb")


def sites_value(sites: Sequence[str] | None) -> str:
    """How an entry stores a role's site restriction: 'all sites', or a JSON list ('[]': none)."""
    return ALL_SITES if sites is None else json.dumps(list(sites))


def sites_text(stored: object) -> str:
    """A stored site restriction as a person reads it: all sites, the sites, or no site."""
    if stored is None or (isinstance(stored, float) and pd.isna(stored)):
        return "not recorded"
    if stored == ALL_SITES:
        return ALL_SITES
    try:
        sites = json.loads(str(stored))
    except ValueError:
        return str(stored)
    if isinstance(sites, list):
        return ", ".join(map(str, sites)) if sites else "no site"
    return str(stored)


@contextmanager
def _connected(path: Path, wait_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to the log under its lock file, waiting at most `wait_s`.

    Raises AuditError (a plain reason) when the lock or the file cannot be had in time.
    """
    deadline = time.monotonic() + wait_s
    try:
        private_dir(path.parent)
        lock_fd = create_private(path.with_name(path.name + ".lock"))
    except OSError as exc:
        raise AuditError(f"its folder cannot be written: {exc.strerror or exc}") from exc
    try:
        while True:  # the lock file: bounded, never an unbounded wait
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise AuditError(
                        f"it stayed locked by another writer for {wait_s:g} seconds"
                    ) from None
                time.sleep(0.05)
        con = None
        while con is None:  # DuckDB's own lock: another program may hold the file open
            try:
                con = duckdb.connect(str(path))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise AuditError(
                        "the file is locked by another program or cannot be written"
                    ) from exc
                time.sleep(0.05)
            except (duckdb.Error, OSError) as exc:
                raise AuditError("the file cannot be opened for writing") from exc
        try:
            # a new log holds only DuckDB's header yet; one an earlier version left readable
            # by others is made owner-only too
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, PRIVATE_FILE)
            yield con
        finally:
            con.close()
    finally:
        os.close(lock_fd)  # closing releases the lock


def record(
    db_path: Path,
    *,
    user: str,
    role: str,
    sites: Sequence[str] | None,
    event: str,
    detail: dict,
    wait_s: float = WAIT_S,
) -> None:
    """Append one entry; `sites` is the role's restriction (None: all sites).

    Raises AuditError when the entry could not be written: the caller must not deliver.
    """
    path = audit_path(db_path)
    try:
        with _connected(path, wait_s) as con:
            con.execute(SCHEMA)
            con.execute(
                "insert into audit_log (logged_at, user_name, role, event, detail, sites) "
                "values ($at, $user, $role, $event, $detail, $sites)",
                {
                    "at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    "user": user,
                    "role": role,
                    "event": event,
                    "detail": json.dumps(detail, sort_keys=True, default=str),
                    "sites": sites_value(sites),
                },
            )
    except AuditError:
        raise
    except (duckdb.Error, OSError) as exc:  # e.g. a full disk or a read-only file
        raise AuditError("the file cannot be written") from exc


def not_written(exc: AuditError, what: str = "download", done: str = "delivered") -> str:
    """The plain sentence for a person whose export was refused because of `exc`."""
    return NOT_WRITTEN.format(what=what, why=exc, done=done)


def guarded(
    build: Callable[[], bytes], write_entry: Callable[[], None], outcome: Outcome | None = None
) -> Callable[[], bytes]:
    """A download's data callable that records its audit entry before building the bytes.

    `write_entry()` raises AuditError when the entry cannot be written: the callable then raises
    too (Streamlit delivers nothing) and `outcome` keeps the plain reason for the page to show.
    """

    def deliver() -> bytes:
        try:
            write_entry()
        except AuditError as exc:
            if outcome is not None:
                outcome.finished(not_written(exc))
            raise
        if outcome is not None:
            outcome.finished(None)
        return build()

    return deliver


class Outcome:
    """What became of a download's clicks: filled in by the data callable (Streamlit runs it in
    another thread), read by the click's callback in the page's run (`wait_for_next`)."""

    def __init__(self) -> None:
        import threading

        self._cond = threading.Condition()
        self._done = 0
        self._seen = 0
        self._error: str | None = None

    def finished(self, error: str | None) -> None:
        with self._cond:
            self._done += 1
            self._error = error
            self._cond.notify_all()

    def wait_for_next(self, timeout_s: float) -> str | None:
        """The refusal message of the click not yet reported (None: delivered, or not known
        within `timeout_s`)."""
        with self._cond:
            self._cond.wait_for(lambda: self._done > self._seen, timeout=timeout_s)
            if self._done <= self._seen:
                return None
            self._seen = self._done
            return self._error


def read(db_path: Path, limit: int = 500, wait_s: float = WAIT_S) -> pd.DataFrame:
    """The newest entries first. Raises AuditError when the log cannot be opened in time."""
    path = audit_path(db_path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        with _connected(path, wait_s) as con:
            con.execute(SCHEMA)
            return con.execute(
                f"select {', '.join(COLUMNS)} from audit_log "  # noqa: S608 (fixed column names)
                "order by logged_at desc limit $limit",
                {"limit": limit},
            ).df()
    except AuditError:
        raise
    except (duckdb.Error, OSError) as exc:
        raise AuditError("the file cannot be read") from exc


def readable(log: pd.DataFrame) -> pd.DataFrame:
    """The log as a person reads it: the filters in force and the other details as short text.

    `filters` (a dict of URL-style filter values) becomes "from=2025-11 · to=2026-10 · …
    · site=Riverside"; every other detail key becomes "key: value" in `details`. The log is
    small (one row per export), so this runs per row.
    """

    def split(raw: str) -> tuple[str, str]:
        try:
            detail = json.loads(raw)
        except (TypeError, ValueError):
            return "", str(raw)
        if not isinstance(detail, dict):
            return "", str(detail)
        filters = detail.pop("filters", None)
        if isinstance(filters, dict):  # the period first, then the rest as stored
            keys = [k for k in ("from", "to") if k in filters]
            keys += [k for k in filters if k not in keys]
            shown = " · ".join(f"{k}={filters[k]}" for k in keys)
        else:
            shown = str(filters or "")
        rest = " · ".join(
            f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in detail.items()
        )
        return shown, rest

    parts = [split(raw) for raw in log["detail"]]
    out = log.drop(columns=["detail"])
    if "sites" in out:  # shown beside the role it restricts
        out.insert(list(out.columns).index("role") + 1, "sites", out.pop("sites").map(sites_text))
    out["filters"] = [p[0] for p in parts]
    out["details"] = [p[1] for p in parts]
    return out
