"""Audit log: who exported or downloaded what, when, with which filters.

Stored in a small DuckDB database beside the main one (`<name>.audit.duckdb`): the main file is
served read-only and replaced atomically by imports, so appending to it per download would mean
copying it. Each write opens a short-lived connection under a lock file. Details hold filters and
chart keys only: never client data, identifiers or free text from imported files.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
from pathlib import Path

import duckdb
import pandas as pd

SCHEMA = """
create table if not exists audit_log (
    logged_at timestamp not null,  -- UTC
    user_name varchar not null, -- the signed-in user's e-mail, or 'local user'
    role varchar not null,
    event varchar not null,     -- e.g. download_png, report_pptx, import, settings_changed
    detail varchar not null     -- JSON: chart key, format, filters in force
)
"""


def audit_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.stem + ".audit.duckdb")


def _locked(path: Path):
    lock = open(path.with_name(path.name + ".lock"), "w")  # noqa: SIM115 (closed by caller)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def record(db_path: Path, *, user: str, role: str, event: str, detail: dict) -> None:
    path = audit_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _locked(path)
    try:
        con = duckdb.connect(str(path))
        try:
            con.execute(SCHEMA)
            con.execute(
                "insert into audit_log values ($at, $user, $role, $event, $detail)",
                {
                    "at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    "user": user,
                    "role": role,
                    "event": event,
                    "detail": json.dumps(detail, sort_keys=True, default=str),
                },
            )
        finally:
            con.close()
    finally:
        lock.close()


def read(db_path: Path, limit: int = 500) -> pd.DataFrame:
    path = audit_path(db_path)
    if not path.exists():
        return pd.DataFrame(columns=["logged_at", "user_name", "role", "event", "detail"])
    lock = _locked(path)
    try:
        con = duckdb.connect(str(path))
        try:
            con.execute(SCHEMA)
            return con.execute(
                "select * from audit_log order by logged_at desc limit $limit", {"limit": limit}
            ).df()
        finally:
            con.close()
    finally:
        lock.close()


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
    out["filters"] = [p[0] for p in parts]
    out["details"] = [p[1] for p in parts]
    return out
