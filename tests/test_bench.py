"""The benchmark (`python -m alliance bench`): its plain-pandas baseline answers the same
questions as the named queries, and the command prints the JSON the README documents."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest

from alliance import bench, bench_pandas, db, queries
from alliance.filters import Filters
from alliance.settings import Settings
from alliance.views import demographics, profile, ruptures


@pytest.fixture(scope="module")
def frames(demo_con):
    return bench_pandas.load(demo_con)


def _cases(con) -> list[Filters]:
    site = con.execute("select min(site) from session_facts").fetchone()[0]
    base = Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1))
    return [
        base,
        dataclasses.replace(base, site=site, outcome_measure="phq9"),
        Filters(first_month=dt.date(2026, 4, 1), last_month=dt.date(2026, 6, 1), gender="female"),
    ]


def test_pandas_headline_equals_the_named_queries(frames, demo_con) -> None:
    """The baseline's headline figures (bench_pandas._headline) against overview_sessions and
    overview_episodes: counts exactly, means, SDs and r to 1e-9."""
    settings = Settings()
    for f in _cases(demo_con):
        got = bench_pandas._headline(frames, f, settings)
        params = f.sql_params(None)
        s = queries.run(demo_con, "overview_sessions", **params, srs_cutoff=settings.srs_cutoff)
        e = queries.run(
            demo_con,
            "overview_episodes",
            **params,
            **settings.outcome_params(f.outcome_measure),
        )
        s, e = s.iloc[0], e.iloc[0]
        assert s["sessions"] > 100 and e["outcome_n"] > 10, f
        for key in ("sessions", "n_clients", "active_episodes", "therapists", "srs_n"):
            assert got[key] == s[key], (key, f)
        assert got["srs_below"] == s["srs_below"], f
        for key in (
            "ended",
            "dropouts",
            "outcome_n",
            "outcome_clients",
            "reliable_improvement",
            "reliable_deterioration",
            "clinical_n",
            "recovered",
        ):
            assert got[key] == e[key], (key, f)
        assert got["ended_clients"] == e["n_clients"], f
        assert math.isclose(got["mean_srs"], s["mean_srs"], rel_tol=1e-9)
        assert math.isclose(got["sd_srs"], s["sd_srs"], rel_tol=1e-9)
        assert math.isclose(got["r"], e["r"], rel_tol=1e-9, abs_tol=1e-12)


def test_every_page_has_a_pandas_baseline_that_runs(frames, demo_con) -> None:
    settings = Settings()
    assert set(bench_pandas.PAGES) == set(bench.PAGES)
    for f in _cases(demo_con):
        for page, run in bench_pandas.PAGES.items():
            for view in bench.views(page):  # no exception on any page or view, for each set
                run(frames, f, settings) if view is None else run(frames, f, settings, view)


def test_pages_with_views_are_timed_view_by_view(demo_con) -> None:
    """The bench's views of a page are the page's own (a renamed section fails here)."""
    assert set(bench.views("profile")) == set(profile.SECTIONS)
    assert set(bench.views("demographics")) == set(demographics.DIMENSIONS)
    assert set(bench.views("ruptures")) == set(ruptures.SECTIONS)
    assert set(bench_pandas.PROFILE_GROUPINGS) == set(profile.SECTIONS)
    assert bench.views("overview") == (None,)


def test_bench_command_prints_the_documented_json(tmp_path, monkeypatch) -> None:
    """End to end at a small size: both workers in their own processes, the clinic built once
    into the bench directory and reused by the next run."""
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path)
    first = bench.run(4000, repeat=2, seed=3)
    assert first["sessions"] == 4000 and first["build_s"] > 0
    assert set(first["pages"]) == set(bench.PAGES)
    for page, row in first["pages"].items():
        assert 0 < row["p50_s"] <= row["p95_s"], page
        assert row["pandas_p50_s"] > 0, page
        assert row["ratio"] == pytest.approx(row["pandas_p50_s"] / row["p50_s"], abs=0.006)
    assert first["min_ratio"] == min(r["ratio"] for r in first["pages"].values())
    for page in bench.VIEWS:  # the pooled figures and each view's
        row = first["pages"][page]
        assert set(row["views"]) == set(bench.views(page))
        assert all(0 < v["p50_s"] <= v["p95_s"] for v in row["views"].values()), page
    assert first["peak_rss_mb"] > 50 and first["pandas_peak_rss_mb"] > 50
    path = bench.bench_db(4000, 3)
    assert path.parent == tmp_path and path.exists()
    with db.open_read_only(path) as con:
        assert con.execute("select count(*) from episode_items").fetchone()[0] > 0
    second = bench.run(4000, repeat=1, seed=3, pandas=False)
    assert second["build_s"] is None and second["build_note"] == f"reused {path.name}"
    assert "ratio" not in second["pages"]["overview"]
