"""Issue 19 on the Outcomes page: two addresses one month apart must not give a small group's
exact outcome counts by subtraction; the same cell asked through two periods shows the same
protected value; no panel carries a cell key or an exact count. Ground truth from the exact
facts (episode_outcomes), as `summary` would give it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest

from alliance import noise, queries
from alliance.filters import Filters, add_months
from alliance.metrics import outcomes as metrics
from alliance.panel import Context
from alliance.settings import Settings
from alliance.views import outcomes

START = dt.date(2025, 11, 1)
LAST_MONTHS = [dt.date(2026, m, 1) for m in range(1, 10)]
RACES = [
    None,
    "American Indian or Alaska Native",
    "Native Hawaiian or Pacific Islander",
    "Multiracial",
    "unknown",
    "Asian",
]


def _ctx(con, **filters) -> Context:
    return Context(con=con, filters=Filters(**filters), settings=Settings())


def _figures(con, **filters) -> tuple[dict, dict]:
    """(exact, shown) headline of the page: the exact one only judges; tiles show `shown`."""
    ctx = _ctx(con, **filters)
    row = metrics.summary_row(ctx, "ors")
    return metrics.summary_from_row(row, "ors"), metrics.protected_summary(ctx, row, "ors")


def _truth(con, month: dt.date, site, race) -> tuple[int, int, int]:
    """One month's ORS outcome episodes, their reliable improvements and distinct clients."""
    row = con.execute(
        """
        select count(*), count(*) filter (where round(improvement, 6) >= 5),
               count(distinct client_id)
        from episode_outcomes
        where measure = 'ors' and ended and n_admin >= 2
          and end_date >= $a and end_date < $b
          and ($site is null or site = $site) and ($race is null or race_ethnicity = $race)
        """,
        {"a": month, "b": add_months(month, 1), "site": site, "race": race},
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


@pytest.fixture(scope="module")
def attacks(demo_con) -> list[dict]:
    sites = [
        None,
        *(r[0] for r in demo_con.execute("select name from sites order by 1").fetchall()),
    ]
    found = []
    for site, race, last in itertools.product(sites, RACES, LAST_MONTHS):
        episodes, improved, clients = _truth(demo_con, add_months(last, 1), site, race)
        if not 0 < clients < 11:
            continue
        a_exact, a = _figures(
            demo_con, first_month=START, last_month=last, site=site, race_ethnicity=race
        )
        b_exact, b = _figures(
            demo_con,
            first_month=START,
            last_month=add_months(last, 1),
            site=site,
            race_ethnicity=race,
        )
        if min(a_exact["outcome_clients"], b_exact["outcome_clients"]) < 11:
            continue  # the page shows nothing
        found.append(
            {
                "exact": b_exact["outcome_n"] - a_exact["outcome_n"],
                "shown": b["outcome_n"] - a["outcome_n"],
                "truth": episodes,
                "exact_improved": b_exact["counts"]["reliable_improvement_rate"]
                - a_exact["counts"]["reliable_improvement_rate"],
                "shown_improved": b["reliable_improvement"] - a["reliable_improvement"],
                "truth_improved": improved,
            }
        )
    return found


def test_month_differencing_on_the_outcomes_tiles_recovers_no_more_than_chance(attacks):
    assert len(attacks) >= 30, "too few small groups to judge the attack"
    # the attack works on exact figures: what the page showed before protection
    assert all(a["exact"] == a["truth"] for a in attacks)
    assert all(a["exact_improved"] == a["truth_improved"] for a in attacks)
    hits = sum(a["shown"] == a["truth"] for a in attacks)
    assert hits / len(attacks) <= 0.35, (hits, len(attacks))
    hits = sum(a["shown_improved"] == a["truth_improved"] for a in attacks)
    assert hits / len(attacks) <= 0.35, (hits, len(attacks))


def test_the_tiles_show_the_protected_headline(demo_ctx):
    view = outcomes.build(demo_ctx)
    tiles = {t.key: t for t in view.tiles}
    row = metrics.summary_row(demo_ctx, "ors")
    shown = metrics.protected_summary(demo_ctx, row, "ors")
    exact = metrics.summary_raw(demo_ctx, "ors")
    assert tiles["outcome_n"].value == shown["outcome_n"] != exact["outcome_n"]
    for key in ("reliable_improvement_rate", "recovery_rate", "mean_improvement"):
        assert tiles[key].value == pytest.approx(shown[key])
        assert tiles[key].value != pytest.approx(exact[key], abs=1e-12)
    assert f"n = {shown['outcome_n']:,} episodes" in tiles["reliable_improvement_rate"].n_text
    # summary's figures stay exact
    assert metrics.outcome_summary(demo_ctx, "ors")["outcome_n"] == exact["outcome_n"]


def test_the_same_month_through_two_periods_shows_the_same_value(demo_con):
    month = "Aug 2026"

    def monthly(**f):
        ctx = _ctx(demo_con, **f)
        row = metrics.summary_row(ctx, "ors")
        now = metrics.summary_from_row(row, "ors")
        panels = outcomes._monthly(ctx, now, metrics.protected_summary(ctx, row, "ors"))
        return {p.key: p.data.set_index("month") for p in panels}

    long = monthly(first_month=START, last_month=dt.date(2026, 10, 1))
    short = monthly(first_month=dt.date(2026, 5, 1), last_month=dt.date(2026, 8, 1))
    for key, cols in (
        ("monthly_change", ["n_clients", "n", "reliable_improvement", "reliable_improvement_rate"]),
        ("monthly_recovery", ["n_clients", "n", "recovered", "recovery_rate"]),
    ):
        a, b = long[key].loc[month, cols], short[key].loc[month, cols]
        assert a.tolist() == b.tolist(), key
    # the one-month page's tile is the same cell again
    _, one = _figures(demo_con, first_month=dt.date(2026, 8, 1), last_month=dt.date(2026, 8, 1))
    assert one["outcome_n"] == long["monthly_change"].loc[month, "n"]
    assert one["reliable_improvement"] == long["monthly_change"].loc[month, "reliable_improvement"]


def _exact_counts(ctx) -> dict[str, pd.DataFrame]:
    rc = ctx.settings.reliable_change("ors")
    p = ctx.params()
    return {
        "distribution": queries.run(
            ctx.con,
            "outcomes_distribution",
            **p,
            measure="ors",
            reliable_change=rc,
            bin_width=1.0,
            lowest_bin=-rc,
            highest_bin=3 * rc,
        ),
        "trajectory": queries.run(
            ctx.con, "outcomes_trajectory", **p, measure="ors", max_session=12
        ),
    }


def test_no_key_and_no_exact_count_in_any_panel(demo_ctx):
    view = outcomes.build(demo_ctx)
    exact = _exact_counts(demo_ctx)
    for panel in view.panels:
        assert not [c for c in panel.data.columns if c.endswith("_cellkey")], panel.key
        for trace in panel.figure.to_plotly_json()["data"]:
            assert "cellkey" not in str(trace.get("customdata", "")), panel.key
    # the histogram's counts (table and hover) are the protected ones: each cell's noise
    dist = next(p for p in view.panels if p.key == "distribution")
    raw = exact["distribution"]
    want = noise.perturb_counts(
        raw["episodes"].to_numpy(float), raw["episodes_cellkey"].to_numpy(float), demo_ctx.noise, 11
    )
    shown = dist.data["episodes"].to_numpy(float)
    ok = ~dist.data["suppressed"].to_numpy(bool)
    assert np.array_equal(shown[ok], want[ok])
    assert (shown[ok] != raw["episodes"].to_numpy(float)[ok]).mean() > 0.4
    hover = np.concatenate(
        [
            np.asarray(t.customdata, float)[:, 0]
            for t in dist.figure.data
            if t.customdata is not None
        ]
    )
    assert set(hover[np.isfinite(hover)]) <= set(want[ok])
    # trajectory and bars: shown episode counts are never the exact ones wholesale
    traj = next(p for p in view.panels if p.key == "trajectory").data
    t_raw = exact["trajectory"]
    assert sorted(traj["episodes"].dropna()) != sorted(
        t_raw.loc[t_raw["n_clients"] >= 11, "episodes"].astype(float)
    )
    bins = next(p for p in view.panels if p.key == "alliance_outcome")
    assert bins.stats["r_n"] != metrics.summary_raw(demo_ctx, "ors")["r_n"]
    for panel in view.panels:
        assert "small fixed adjustment" in panel.reading, panel.key


@pytest.mark.parametrize("measure", ["phq9"])
def test_other_measure_also_protected(demo_ctx, measure):
    ctx = dataclasses.replace(
        demo_ctx, filters=dataclasses.replace(demo_ctx.filters, outcome_measure=measure)
    )
    view = outcomes.build(ctx)
    exact = metrics.summary_raw(ctx, measure)
    tile = next(t for t in view.tiles if t.key == "outcome_n")
    assert tile.value != exact["outcome_n"]  # this cell's noise is not 0 (demo clinic)
    assert abs(tile.value - exact["outcome_n"]) <= ctx.noise.max_noise
