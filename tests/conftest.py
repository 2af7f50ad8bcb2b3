"""Shared fixtures: a real demo-clinic DuckDB file per test session, and AppTest set-up."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import duckdb
import numpy as np
import pytest

from alliance import db
from alliance.filters import Filters
from alliance.panel import Context
from alliance.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEMO_SESSIONS = 30_000


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real demo clinic (30k sessions, seed 7) built once per test run."""
    path = tmp_path_factory.mktemp("demo") / "alliance.duckdb"
    db.write_demo(path, sessions=DEMO_SESSIONS, seed=7)
    return path


@pytest.fixture(scope="session")
def demo_con(demo_db: Path) -> duckdb.DuckDBPyConnection:
    con = db.open_read_only(demo_db)
    yield con
    con.close()


@pytest.fixture(scope="session")
def transfers_con(demo_db: Path, tmp_path_factory: pytest.TempPathFactory):
    """The demo clinic with therapist and site changes inside episodes, as real clinics have.

    The demo keeps one therapist and site per episode; here about one episode in eight moves
    to another therapist from its third session on (and half of those to another site too), and
    another one in eight stays with its therapist but moves to another site (a therapist working
    at two sites), so the queries' paths for episodes seen by several therapists or at several
    sites are compared with the reference as well.
    """
    path = tmp_path_factory.mktemp("transfers") / "alliance.duckdb"
    shutil.copyfile(demo_db, path)
    con = duckdb.connect(str(path))
    con.execute(
        """
        update sessions as s
        set therapist_id = case when s.episode_id % 8 = 0 then (s.therapist_id % t.n) + 1
                                else s.therapist_id end,
            site_id = case when s.episode_id % 16 = 0 or s.episode_id % 8 = 4
                           then (s.site_id % t.sites) + 1 else s.site_id end
        from (select count(*) as n, (select count(*) from sites) as sites from therapists) as t
        where s.episode_id % 4 = 0
          and s.session_id in (
              select session_id from session_facts where session_index >= 3
          )
        """
    )
    db.rebuild_facts(con)
    con.execute("checkpoint")
    con.close()
    ro = db.open_read_only(path)
    yield ro
    ro.close()


@pytest.fixture
def demo_ctx(demo_con: duckdb.DuckDBPyConnection) -> Context:
    """Context over the last 12 months of the demo clinic, default settings."""
    filters = Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1))
    return Context(con=demo_con, filters=filters, settings=Settings())


@pytest.fixture
def app_env(demo_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app at the demo database and work around an AppTest quirk.

    AppTest re-detects the legacy pages/ folder on every run and then runs only the current
    page script, skipping the entry script (the real server does not: st.navigation switches
    that legacy mode off for good). Keeping the flag off makes AppTest run dashboard.py each
    time, as the server does.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
    monkeypatch.setenv("ALLIANCE_DB", str(demo_db))
    monkeypatch.chdir(ROOT)
    return demo_db


# --------------------------------------------------------------------------- comparing views


def _plain(x):
    """A numpy array, or plotly's base64 form of one ({'dtype', 'bdata'[, 'shape']}), as a list."""
    if isinstance(x, dict) and "bdata" in x and "dtype" in x:
        arr = np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"])
        shape = x.get("shape")
        if shape:
            arr = arr.reshape([int(n) for n in str(shape).split(",")])
        return arr.tolist()
    return x.tolist() if isinstance(x, np.ndarray) else x


def same_panels(a, b, where: str = "") -> None:
    """Equal, with floats to 1e-9 relative (DuckDB's parallel sums may add in another order
    when a query forms other groupings: differences of ~1e-15), in nested lists and dicts."""
    a, b = (_plain(x) for x in (a, b))
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        a, b = list(a), list(b)
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), where
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_panels(x, y, f"{where}[{i}]")
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            same_panels(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b, where


def panel_parts(p) -> list:
    figure = p.figure.to_plotly_json() if p.figure is not None else None
    data = json.loads(p.data.to_json(orient="split", double_precision=15))
    return [p.key, p.title, p.reading, p.message, p.section, figure, data]


def groupings_asked(monkeypatch, query: str) -> list[list[str]]:
    """Record the `groupings` each run of the named query asks for (the query still runs)."""
    from alliance import queries

    asked: list[list[str]] = []
    original = queries.run

    def run(con, name, **params):
        if name == query:
            asked.append(list(params["groupings"]))
        return original(con, name, **params)

    monkeypatch.setattr(queries, "run", run)
    return asked


def sections_make_the_whole(module, ctx, whole) -> None:
    """Each section of a page that shows one at a time has the whole view's tiles and its own
    panels (labelled with the section), and the sections together are the whole view (what a
    report builds), panel for panel."""
    together = []
    for section, label in module.SECTIONS.items():
        v = module.build(ctx, section)
        assert v.n_clients == whole.n_clients, section
        same_panels([asdict(t) for t in v.tiles], [asdict(t) for t in whole.tiles], section)
        assert v.panels and {p.section for p in v.panels} == {label}, section
        together += v.panels
    same_panels([panel_parts(p) for p in together], [panel_parts(p) for p in whole.panels])
