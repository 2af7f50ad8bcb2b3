"""Precomputed rollups give exactly what the unaggregated computation gives.

Queries that read a rollup (derive.sql) are compared with their session-level reference: the
same question computed from every session (tests/reference/*_from_sessions.sql, the earlier
implementations that the hand-computed tests in tests/test_view_profile.py were written
against). Counts must match exactly; means and SDs to floating-point rounding.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from alliance import queries
from alliance.filters import Filters
from alliance.metrics import profile as profile_metrics

REFERENCE = Path(__file__).parent / "reference"


def _filter_sets(con: duckdb.DuckDBPyConnection) -> list[Filters]:
    opts = queries.run(con, "filter_options", allowed_sites=None)
    values = {d: sorted(g["value"]) for d, g in opts.groupby("dimension")}
    rng = random.Random(3)
    out = [
        Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1)),
        Filters(first_month=dt.date(2023, 11, 1), last_month=dt.date(2026, 10, 1)),
        Filters(first_month=dt.date(2026, 3, 1), last_month=dt.date(2026, 3, 1)),
    ]
    for _ in range(6):
        pick = {
            attr: rng.choice(values[attr])
            for attr in ("site", "program", "therapist", "age_band", "gender", "race_ethnicity")
            if rng.random() < 0.35
        }
        out.append(Filters(first_month=dt.date(2025, 1, 1), last_month=dt.date(2026, 6, 1), **pick))
    return out


def _compare(got: pd.DataFrame, want: pd.DataFrame) -> None:
    keys = ["grouping", "unit", "subgroup", "dimension"]
    # the cell keys of the protected-statistics step: compared in test_profile_cell_keys
    got = got.drop(columns=[c for c in got.columns if c.endswith("_cellkey")])
    assert list(got.columns) == list(want.columns)
    got = got.sort_values(keys).reset_index(drop=True)
    want = want.sort_values(keys).reset_index(drop=True)
    assert len(got) == len(want)
    for col in ["n_clients", "episodes", "administrations", *keys]:
        assert got[col].tolist() == want[col].tolist(), col
    for col in ["mean_score", "sd_score"]:
        pd.testing.assert_series_equal(got[col], want[col], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("clinic", ["demo", "transfers"])
@pytest.mark.parametrize("name", ["profile_dimensions", "profile_clinic"])
@pytest.mark.parametrize("alliance", ["srs", "wai"])
def test_profile_rollup_equals_sessions(request, clinic: str, name: str, alliance: str) -> None:
    con = request.getfixturevalue("demo_con" if clinic == "demo" else "transfers_con")
    if clinic == "transfers":
        moved = con.execute(
            "select count(*) filter (where not single_therapist), "
            "count(*) filter (where not single_site), "
            "count(*) filter (where multi_episode_client) from episode_facts"
        ).fetchone()
        assert min(moved) > 50, moved  # the paths under test are really taken
    reference = (REFERENCE / f"{name}_from_sessions.sql").read_text()
    compared = 0
    for f in _filter_sets(con):
        params = {**f.sql_params(None), "alliance": alliance}
        want = con.execute(reference, params).df()
        if name == "profile_clinic":
            _compare(queries.run(con, name, **params), want)
            compared += len(want)
            continue
        # every grouping, each section's, and the clinic alone: the groupings asked for
        # (with the clinic) and nothing else, each exactly as the reference computes it
        for groupings in (
            profile_metrics.ALL_GROUPINGS,
            *profile_metrics.SECTION_GROUPINGS.values(),
            (),
        ):
            got = queries.run(con, name, **params, groupings=list(groupings))
            part = want[want["grouping"].isin(["clinic", *groupings])]
            _compare(got, part)
            compared += len(part)
    # the comparison saw real rows, not empty frames (the clinic query has 3-4 rows per set)
    assert compared > (100 if name == "profile_dimensions" else 12)


def test_rollup_cells_sum_to_sessions(demo_con) -> None:
    """Each rollup cell holds the count and sum of its sessions' items (spot check in SQL)."""
    diff = demo_con.execute(
        """
        with s as (
            select month, episode_id, therapist, site,
                   count(srs_goals) as n, sum(srs_goals) as total,
                   count(wai_task_mean) as n_wai, sum(wai_task_mean) as total_wai
            from session_facts
            group by all
        )
        select count(*) from s
        full join episode_month_items as r using (month, episode_id, therapist, site)
        where coalesce(s.n, 0) <> coalesce(r.n_srs_goals, 0)
           or abs(coalesce(s.total, 0) - coalesce(r.s10_srs_goals, 0) / 10) > 1e-9
           or coalesce(s.n_wai, 0) <> coalesce(r.n_wai_approach, 0)
           or coalesce(s.total_wai, 0) <> coalesce(r.s_wai_approach, 0)
        """
    ).fetchone()[0]
    assert diff == 0


@pytest.mark.parametrize("alliance", ["srs", "wai"])
def test_profile_cell_keys(demo_con, alliance: str) -> None:
    """The cell keys of profile_dimensions and profile_clinic are the sums of their records'
    keys (alliance/noise.py): each episode counted once per unit (its `ekey`), computed here
    from the sessions; the administrations' key is derived from it in the view (the same
    records), never summed by the queries."""
    item = "srs_relationship" if alliance == "srs" else "wai_bond_mean"
    f = Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1))
    params = {**f.sql_params(None), "alliance": alliance}
    want = demo_con.execute(
        f"""
        with s as (
            select * from session_facts
            where session_date >= $date_from and session_date < $date_to and {item} is not null
        ),
        units as (
            select 'clinic' as grouping, 'clinic' as unit, * from s
            union all select 'site', site, * from s
            union all select 'month', strftime(month, '%Y-%m-%d'), * from s
        ),
        episodes as (
            select grouping, unit, any_value(ekey) as ekey, sum(ckey)::bigint as akey
            from units group by grouping, unit, episode_id
        )
        select grouping, unit, sum(ekey)::bigint as episodes_cellkey,
               sum(akey)::bigint as administrations_cellkey
        from episodes group by grouping, unit
        """,
        {"date_from": params["date_from"], "date_to": params["date_to"]},
    ).df()
    want = want.set_index(["grouping", "unit"]).sort_index()
    got = queries.run(demo_con, "profile_dimensions", **params, groupings=["site", "month"])
    got = got[got["dimension"] == "heard"].set_index(["grouping", "unit"]).sort_index()
    cols = ["episodes_cellkey"]
    assert "administrations_cellkey" not in got.columns
    assert len(got) == len(want) > 10
    assert got[cols].astype("int64").equals(want.loc[got.index, cols].astype("int64"))
    clinic = queries.run(demo_con, "profile_clinic", **params).set_index("dimension")
    assert clinic.loc["heard", cols].astype("int64").tolist() == (
        want.loc[("clinic", "clinic"), cols].astype("int64").tolist()
    )
    # the view derives the administrations' key from the episodes' (noise.derived_key)
    from alliance import noise
    from alliance.panel import Context
    from alliance.settings import Settings

    ctx = Context(con=demo_con, filters=f, settings=Settings())
    table = profile_metrics.clinic_table(ctx).set_index("dimension")
    assert (
        table.loc["heard", "administrations_cellkey"]
        == noise.derived_key(
            np.array([table.loc["heard", "episodes_cellkey"]], dtype="float64"), "administrations"
        )[0]
    )
