"""The benchmark (`python -m alliance bench`): its plain-pandas baselines answer the same
questions as the named queries (the typical one deriving the episodes from the sessions as
episode_facts does), and the command prints the JSON the README documents."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from alliance import bench, bench_pandas, db, queries
from alliance.filters import Filters
from alliance.settings import Settings
from alliance.views import demographics, profile, ruptures


@pytest.fixture(scope="module", params=["typical", "facts"])
def frames(request, demo_con):
    return bench_pandas.load(demo_con, facts=request.param == "facts")


def _same_columns(got: pd.DataFrame, want: pd.DataFrame, where: object) -> int:
    """Every column of `got` equals `want`'s (rows matched by index): floats to 1e-12, the rest
    exactly (missing = missing). Returns the number of columns compared."""
    assert got.index.equals(want.index), where
    for col in got.columns:
        a, b = got[col], want[col]
        if pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{col} {where}")
        else:
            plain = [[None if pd.isna(v) else v for v in x.astype(object)] for x in (a, b)]
            assert plain[0] == plain[1], (col, where)
    return len(got.columns)


@pytest.mark.parametrize("clinic", ["demo_con", "transfers_con"])
def test_derived_episodes_equal_episode_facts(request, clinic: str) -> None:
    """The typical baseline groups each episode from its sessions by derive.sql's definitions:
    every column it derives equals episode_facts', on the demo clinic and on the one with
    therapist and site changes inside episodes (where the site is the first session's and the
    therapist the one who held most sessions, on a tie the one who held the earliest)."""
    con = request.getfixturevalue(clinic)
    data = bench_pandas.load(con)
    got = bench_pandas.derive_episodes(data.sessions).set_index("episode_id").sort_index()
    want = con.execute("select * from episode_facts").df().set_index("episode_id").sort_index()
    assert len(got) == len(want) > 1000
    assert set(got.columns) <= set(want.columns)
    assert _same_columns(got, want[got.columns], clinic) >= 25
    moved = con.execute("select count(*) from episode_facts where not single_therapist")
    assert (moved.fetchone()[0] > 100) == (clinic == "transfers_con")
    ties = con.execute(  # episodes whose therapists held equally many sessions: the first wins
        """
        select count(*) from (
            select episode_id from (
                select episode_id, therapist, count(*) as n from session_facts group by all
            )
            group by episode_id having count(*) > 1 and min(n) = max(n)
        )
        """
    ).fetchone()[0]
    assert (ties > 10) == (clinic == "transfers_con")
    # masking the sessions by an episode's own attributes keeps whole episodes
    f = Filters(first_month=dt.date(2025, 1, 1), last_month=dt.date(2026, 6, 1), gender="female")
    part = bench_pandas.episodes(data, f).set_index("episode_id").sort_index()
    want = want[want["gender"] == "female"]
    assert len(part) == len(want) > 100
    _same_columns(part, want[part.columns], (clinic, "female"))


@pytest.mark.parametrize("measure", bench_pandas.MEASURES)
def test_derived_outcomes_equal_episode_outcomes(transfers_con, measure: str) -> None:
    data = bench_pandas.load(transfers_con)
    e = bench_pandas.derive_episodes(data.sessions)
    got = bench_pandas.derive_outcomes(e, measure).set_index("episode_id").sort_index()
    want = transfers_con.execute("select * from episode_outcomes where measure = ?", [measure]).df()
    want = want.set_index("episode_id").sort_index()
    assert len(got) == len(want) > 500
    cols = ["measure", "first_score", "last_score", "n_admin", "improvement", "end_date"]
    _same_columns(got[cols], want[cols], measure)


def _cases(con) -> list[Filters]:
    site = con.execute("select min(site) from session_facts").fetchone()[0]
    base = Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1))
    return [
        base,
        dataclasses.replace(base, site=site, outcome_measure="phq9"),
        Filters(first_month=dt.date(2026, 4, 1), last_month=dt.date(2026, 6, 1), gender="female"),
    ]


def test_pandas_headline_equals_the_named_queries(frames, demo_con) -> None:
    """Each baseline's headline figures (bench_pandas._headline) against overview_sessions and
    overview_episodes: counts exactly, means, SDs and r to 1e-9."""
    settings = Settings()
    for f in _cases(demo_con):
        got = bench_pandas._headline(frames, bench_pandas.episodes(frames, f), f, settings)
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


def test_pandas_drops_dropout_equals_the_named_query(frames, demo_con) -> None:
    settings = Settings()
    for f in _cases(demo_con):
        e = bench_pandas.ended_in_view(bench_pandas.episodes(frames, f), f)
        got = bench_pandas.drops_dropout(e, settings)
        want = queries.run(
            demo_con,
            "alliance_drops_dropout",
            **f.sql_params(None),
            rupture_threshold=settings.rupture_threshold,
        )
        assert got["had_drop"].tolist() == want["had_drop"].tolist() == [False, True], f
        for col in ("episodes", "dropouts"):
            assert got[col].tolist() == want[col].tolist(), (col, f)
        np.testing.assert_allclose(got["dropout_rate"], want["dropout_rate"], rtol=1e-12)


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
        assert row["pandas_facts_p50_s"] > 0, page
        ratio = row["pandas_facts_p50_s"] / row["p50_s"]
        assert row["ratio_facts"] == pytest.approx(ratio, abs=0.006)
    assert first["min_ratio"] == min(r["ratio"] for r in first["pages"].values())
    assert first["min_ratio_facts"] == min(r["ratio_facts"] for r in first["pages"].values())
    assert first["pandas_facts_peak_rss_mb"] > 50 and first["pandas_facts_load_s"] > 0
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
    assert "ratio_facts" not in second["pages"]["overview"]


@pytest.mark.parametrize("clinic", ["demo_con", "transfers_con"])
def test_pandas_profile_equals_the_named_query(request, clinic: str) -> None:
    """The profile baseline computes profile_dimensions' statistic (each episode's mean item
    score in the unit is one observation), for every grouping the page shows, SRS and WAI-SR."""
    con = request.getfixturevalue(clinic)
    data = bench_pandas.load(con)
    groupings = [g for gs in bench_pandas.PROFILE_GROUPINGS.values() for g in gs]
    keys = ["grouping", "unit", "subgroup", "dimension"]
    compared = 0
    for f in _cases(con):
        for alliance in ("srs", "wai"):
            f = dataclasses.replace(f, alliance_measure=alliance)
            got = bench_pandas.profile_dimensions(data, f, groupings)
            want = queries.run(
                con,
                "profile_dimensions",
                **f.sql_params(None),
                alliance=alliance,
                groupings=["/".join(g) for g in groupings],
            )
            assert len(got) == len(want), (clinic, f)
            got = got.sort_values(keys).set_index(keys)
            want = want.sort_values(keys).set_index(keys)
            _same_columns(got, want[got.columns], (clinic, f))
            compared += len(want)
    assert compared > 2000
