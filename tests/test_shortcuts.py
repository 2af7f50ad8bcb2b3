"""Shortcuts in the named queries give exactly what the direct computation gives.

- Distinct clients over rows that hold one episode each are counted as the rows of clients with
  a single episode plus the distinct clients among the others (derive.sql,
  multi_episode_client). Each query using it is compared with the same query counting
  `count(distinct client_id)` directly.
- An ended episode's largest SRS drop is precomputed (episode_facts.max_srs_drop); with a role's
  site restriction the query reads the sessions instead. With every site allowed both must
  agree.

On the demo clinic and on its variant with therapist and site changes inside episodes
(conftest.transfers_con), over several filter sets.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest

from alliance import queries
from alliance.filters import Filters

REFERENCE = Path(__file__).parent / "reference"
SPLIT_COUNT = re.compile(
    r"count\(\*\) filter \(where not (\w+)( and [^)]*)?\)\s*"
    r"\+ count\(distinct client_id\) filter \(where \1\2?\)",
)
FILTERS = [
    Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1)),
    Filters(first_month=dt.date(2023, 11, 1), last_month=dt.date(2026, 10, 1)),
    Filters(first_month=dt.date(2026, 3, 1), last_month=dt.date(2026, 5, 1), age_band="18-25"),
    Filters(first_month=dt.date(2025, 1, 1), last_month=dt.date(2026, 6, 1), gender="female"),
]
EXTRA = {
    "measure": "ors",
    "max_session": 12,
    "alliance": "srs",
    "rupture_threshold": 2.0,
}


def _direct(sql: str) -> str:
    """The same query with the split count replaced by a plain count(distinct client_id)."""
    direct, n = SPLIT_COUNT.subn(
        lambda m: (
            "count(distinct client_id)"
            + (f" filter (where {m.group(2).removeprefix(' and ')})" if m.group(2) else "")
        ),
        sql,
    )
    assert n > 0, "the query no longer splits its distinct count"
    return direct


def _same(
    got: pd.DataFrame,
    want: pd.DataFrame,
    exact: list[str],
    where: object,
    rounded: tuple[str, ...] | list[str] = ("mean_score", "sd_score"),
) -> None:
    """Counts and keys exactly; mean and SD of the score (or the `rounded` columns) to rounding."""
    for col in exact:
        assert got[col].tolist() == want[col].tolist(), (col, where)
    for col in rounded:
        pd.testing.assert_series_equal(
            got[col].reset_index(drop=True),
            want[col].reset_index(drop=True),
            rtol=1e-12,
            atol=1e-12,
        )


def _same_frame(got: pd.DataFrame, want: pd.DataFrame, where: object) -> None:
    """Same columns and types; floats to rounding (DuckDB's parallel sums may add in another
    order), everything else exactly."""
    assert list(got.columns) == list(want.columns) and (got.dtypes == want.dtypes).all(), where
    floats = [c for c in want.columns if pd.api.types.is_float_dtype(want[c])]
    _same(got, want, [c for c in want.columns if c not in floats], where, floats)


def _split_queries() -> list[str]:
    """Queries splitting the count in one expression (see TWO_STEP for the others)."""
    return sorted(q.name for q in queries.all_queries() if SPLIT_COUNT.search(q.sql))


# queries that split the count over two steps, each compared with a reference elsewhere
TWO_STEP = {
    "profile_dimensions": "tests/test_rollups.py (session-level reference)",
    "profile_clinic": "tests/test_rollups.py (session-level reference)",
    "outcomes_trajectory": "test_trajectory_equals_its_direct_reference below",
    "alliance_by_session_number": "test_session_numbers_equal_their_direct_reference below",
}


def test_every_query_with_the_split_is_compared() -> None:
    names = set(_split_queries())
    assert "therapists_outcome_episodes" in names
    users = {q.name for q in queries.all_queries() if "where not multi" in q.sql}
    assert users - names == set(TWO_STEP)


@pytest.mark.parametrize("clinic", ["demo_con", "transfers_con"])
@pytest.mark.parametrize("name", _split_queries())
def test_split_distinct_count_equals_count_distinct(request, clinic: str, name: str) -> None:
    con = request.getfixturevalue(clinic)
    multi = con.execute(
        "select count(*) filter (where multi_episode_client) from episode_facts"
    ).fetchone()[0]
    assert multi > 50  # clients with several episodes are really there
    query = queries.load(name)
    direct = _direct(query.sql)
    rows = 0
    for f in FILTERS:
        params = {k: v for k, v in {**f.sql_params(None), **EXTRA}.items() if k in query.parameters}
        got = queries.run(con, name, **params)
        want = con.execute(direct, params).df()
        order = list(want.columns)  # rows within a therapist come in no fixed order
        got = got.sort_values(order).reset_index(drop=True)
        want = want.sort_values(order).reset_index(drop=True)
        _same_frame(got, want, (name, f))
        rows += len(want)
    assert rows > 0


@pytest.mark.parametrize("clinic", ["demo_con", "transfers_con"])
def test_largest_drop_shortcut_equals_reading_the_sessions(request, clinic: str) -> None:
    con = request.getfixturevalue(clinic)
    sites = sorted(r[0] for r in con.execute("select name from sites").fetchall())
    for f in FILTERS:
        for threshold in (1.0, 2.0, 5.0):
            base = {**f.sql_params(None), "rupture_threshold": threshold}
            shortcut = queries.run(con, "alliance_drops_dropout", **base)
            scanned = queries.run(con, "alliance_drops_dropout", **{**base, "allowed_sites": sites})
            _same_frame(shortcut, scanned, (f, threshold))
            assert shortcut["had_drop"].tolist() == [False, True]


@pytest.mark.parametrize("clinic", ["demo_con", "transfers_con"])
@pytest.mark.parametrize("measure", ["ors", "phq9"])
def test_trajectory_equals_its_direct_reference(request, clinic: str, measure: str) -> None:
    """The split count and the rollup of ended episodes' scores (derive.sql, outcome_scores)
    give exactly what reading every session before the period's end gives."""
    con = request.getfixturevalue(clinic)
    reference = (REFERENCE / "outcomes_trajectory_direct.sql").read_text()
    keys = ["tercile", "session_number"]
    sites = sorted(r[0] for r in con.execute("select name from sites").fetchall())
    # a role's site restriction applies to every session of the episodes (some moved sites in
    # the transfers clinic): every site, and the first two
    for f, allowed in [(f, None) for f in FILTERS] + [(FILTERS[0], sites), (FILTERS[1], sites[:2])]:
        params = {**f.sql_params(allowed), "measure": measure, "max_session": 12}
        got = queries.run(con, "outcomes_trajectory", **params).sort_values(keys)
        want = con.execute(reference, params).df().sort_values(keys)
        assert len(want) > 0
        # (the terciles' label points are rounded quantiles, not the reference's cut points)
        counts = ["tercile", "session_number", "n_clients", "episodes"]
        _same(got, want, counts, f)


@pytest.mark.parametrize("clinic", ["demo_con", "transfers_con"])
def test_rupture_followup_equals_its_direct_reference(request, clinic: str) -> None:
    """Reading the sessions of ended episodes (derive.sql, ended_sessions) gives exactly what
    reading every session before the period's end gives."""
    con = request.getfixturevalue(clinic)
    reference = (REFERENCE / "rupture_followup_direct.sql").read_text()
    sites = sorted(r[0] for r in con.execute("select name from sites").fetchall())
    cases = [(f, None) for f in FILTERS] + [(FILTERS[0], sites[:2]), (FILTERS[1], sites[1:])]
    for f, allowed in cases:
        for threshold, window in ((2.0, 2), (1.0, 1), (3.0, 6)):
            params = {
                **f.sql_params(allowed),
                "measure": "ors",
                "rupture_threshold": threshold,
                "repair_window": window,
            }
            got = queries.run(con, "rupture_followup", **params)
            want = con.execute(reference, params).df()
            assert set(want["rupture_group"]) >= {"none", "repaired"}
            counts = ["rupture_group", "n_clients", "episodes", "dropouts", "outcome_n"]
            counts.append("outcome_clients")
            for col in counts:
                assert got[col].tolist() == want[col].tolist(), (col, f, threshold, window)
            for col in ["dropout_rate", "mean_sessions", "mean_ruptures", "mean_improvement"]:
                pd.testing.assert_series_equal(got[col], want[col], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("clinic", ["demo_con", "transfers_con"])
def test_rupture_rates_equal_their_direct_reference(request, clinic: str) -> None:
    """Counting administrations and their clients from the per-month rollup (derive.sql,
    srs_month_cells) and only the ruptures from the sessions gives exactly what one aggregation
    of every session in view gives: per unit, for each set of units, under several settings,
    filters and site restrictions."""
    con = request.getfixturevalue(clinic)
    reference = (REFERENCE / "rupture_rates_direct.sql").read_text()
    sites = sorted(r[0] for r in con.execute("select name from sites").fetchall())
    therapist = con.execute("select min(therapist) from session_facts").fetchone()[0]
    cases = [(f, None) for f in FILTERS] + [
        (FILTERS[0], sites[:2]),
        (FILTERS[1], sites[1:]),
        (
            Filters(
                first_month=dt.date(2026, 1, 1), last_month=dt.date(2026, 6, 1), therapist=therapist
            ),
            None,
        ),
        (
            Filters(
                first_month=dt.date(2026, 9, 1), last_month=dt.date(2026, 10, 1), site=sites[0]
            ),
            None,
        ),
    ]
    for f, allowed in cases:
        for threshold, window in ((2.0, 2), (1.0, 1), (3.5, 6)):
            params = {
                **f.sql_params(allowed),
                "rupture_threshold": threshold,
                "repair_window": window,
            }
            everything = con.execute(reference, {**params, "detail": True}).df()
            assert len(everything) > 3, (f, allowed)
            assert everything["ruptures"].sum() > 0
            # every unit, each section's, and the clinic alone: the units asked for (with the
            # clinic) and nothing else, each exactly as the reference computes it
            for groupings in (["month", "site", "therapist"], ["month"], ["site", "therapist"], []):
                got = queries.run(con, "rupture_rates", **params, groupings=groupings)
                keep = everything["grouping"].isin(["clinic", *groupings])
                want = everything[keep].reset_index(drop=True)
                # the query's cell-key columns follow the reference's (checked against the
                # exact facts in tests/test_protected_ruptures.py)
                keys = [c for c in got.columns if c.endswith("_cellkey")]
                assert list(got.columns) == [*want.columns, *keys]
                for col in want.columns:
                    if col in ("rupture_rate", "repair_rate"):
                        pd.testing.assert_series_equal(got[col], want[col], rtol=1e-12, atol=1e-12)
                    else:
                        assert got[col].tolist() == want[col].tolist(), (col, f, groupings)


@pytest.mark.parametrize("clinic", ["demo_con", "transfers_con"])
@pytest.mark.parametrize("alliance", ["srs", "wai"])
def test_session_numbers_equal_their_direct_reference(request, clinic: str, alliance: str) -> None:
    """Counting single-episode clients as rows (episodes in the pooled last bin) and only the
    others distinct gives exactly count(distinct client_id) over every row."""
    con = request.getfixturevalue(clinic)
    reference = (REFERENCE / "alliance_by_session_number_direct.sql").read_text()
    keys = ["cohort", "session_number"]
    sites = sorted(r[0] for r in con.execute("select name from sites").fetchall())
    compared = 0
    for f, allowed in [(f, None) for f in FILTERS] + [(FILTERS[1], sites[:2])]:
        for last, cohort in ((12, 6), (4, 6), (8, 3)):
            params = {
                **f.sql_params(allowed),
                "alliance": alliance,
                "last_number": last,
                "cohort_sessions": cohort,
            }
            got = queries.run(con, "alliance_by_session_number", **params).sort_values(keys)
            want = con.execute(reference, params).df().sort_values(keys)
            assert len(want) > 0
            _same(got, want, [*keys, "n_clients", "n"], (f, last, cohort))
            compared += len(want)
    assert compared > 50
    # the shortcut matters: some clients have two episodes' sessions at one session number
    twice = con.execute(
        "select count(*) from (select client_id, session_index from session_facts "
        "group by all having count(distinct episode_id) > 1)"
    ).fetchone()[0]
    assert twice > 50
