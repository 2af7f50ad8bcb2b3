"""Issue 19 on the Client demographics page: a group's dropout figures from two periods one
month apart must not give that month's exact count for a small group; the same cell asked
through two filter paths shows the same value; no panel carries a cell key or an exact count.
Ground truth from the exact facts (episode_facts)."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest

from alliance import noise, protected, queries
from alliance.filters import Filters, add_months
from alliance.metrics import demographics as demographic_metrics
from alliance.panel import Context
from alliance.privacy import PrivacyPolicy
from alliance.settings import Settings
from alliance.views import demographics
from alliance.views.demographics_text import display_groups

START = dt.date(2025, 11, 1)
LAST_MONTHS = [dt.date(2026, m, 1) for m in range(1, 10)]
GROUPS = [
    "American Indian or Alaska Native",
    "Multiracial",
    "unknown",
    "Asian",
    "Black or African American",
    "Hispanic or Latino",
    "White",
]


def _ctx(con, k: int = 11, **filters) -> Context:
    return Context(con=con, filters=Filters(**filters), settings=Settings(privacy_k=k))


def _groups(con, k: int = 11, **filters):
    """(exact, shown) all-site group rows of the dropout dots, indexed by group."""
    ctx = _ctx(con, k, **filters)
    raw = queries.run(con, "demographics_dropout", **ctx.params(), dimension="race_ethnicity")
    grid = demographic_metrics.protect_grid(ctx, raw, "race_ethnicity")
    exact = raw[raw["level"] == "group"].set_index("client_group")
    shown = grid[grid["site"] == demographic_metrics.ALL_SITES].set_index("client_group")
    return exact, shown


def _truth(con, month, site, gender, group) -> tuple[int, int]:
    row = con.execute(
        """
        select count(*), count(distinct client_id) from episode_facts
        where ended and end_date >= $a and end_date < $b
          and ($site is null or site = $site) and ($gender is null or gender = $gender)
          and race_ethnicity = $g
        """,
        {"a": month, "b": add_months(month, 1), "site": site, "gender": gender, "g": group},
    ).fetchone()
    return int(row[0]), int(row[1])


@pytest.fixture(scope="module")
def attacks(demo_con) -> list[dict]:
    sites = [
        None,
        *(r[0] for r in demo_con.execute("select name from sites order by 1").fetchall()),
    ]
    found = []
    for site, gender, last in itertools.product(sites, [None, "female", "male"], LAST_MONTHS):
        f = {"site": site, "gender": gender, "first_month": START}
        a_exact, a = _groups(demo_con, last_month=last, **f)
        b_exact, b = _groups(demo_con, last_month=add_months(last, 1), **f)
        for group in GROUPS:
            ended, clients = _truth(demo_con, add_months(last, 1), site, gender, group)
            if not 0 < clients < 11 or group not in a.index or group not in b.index:
                continue
            if a.loc[group, "suppressed"] or b.loc[group, "suppressed"]:
                continue
            found.append(
                {
                    "exact": int(b_exact.loc[group, "ended"] - a_exact.loc[group, "ended"]),
                    "shown": float(b.loc[group, "ended"] - a.loc[group, "ended"]),
                    "truth": ended,
                }
            )
    return found


def test_month_differencing_on_the_group_dropout_recovers_no_more_than_chance(attacks):
    assert len(attacks) >= 30, "too few small groups to judge the attack"
    assert all(a["exact"] == a["truth"] for a in attacks)  # the attack is real
    hits = sum(a["shown"] == a["truth"] for a in attacks)
    assert hits / len(attacks) <= 0.35, (hits, len(attacks))


def test_the_dots_show_the_grid_and_the_clinic_is_protected(demo_ctx):
    view = demographics.build(demo_ctx, "race_ethnicity")
    dots = next(p for p in view.panels if p.key == "demo_dropout").data.set_index("Race/ethnicity")
    exact, shown = _groups(
        demo_ctx.con,
        first_month=demo_ctx.filters.first_month,
        last_month=demo_ctx.filters.last_month,
    )
    for group in shown.index[~shown["suppressed"].astype(bool)]:
        label = display_groups(pd.Series([group])).iloc[0]
        assert dots.loc[label, "ended episodes"] == shown.loc[group, "ended"]
        assert dots.loc[label, "dropout rate %"] == pytest.approx(
            100 * shown.loc[group, "dropout_rate"]
        )
    raw = queries.run(
        demo_ctx.con, "demographics_dropout", **demo_ctx.params(), dimension="race_ethnicity"
    )
    clinic = raw[raw["level"] == "clinic"].iloc[0]
    panel = next(p for p in view.panels if p.key == "demo_dropout")
    assert panel.stats["clinic"] != pytest.approx(clinic["dropout_rate"], abs=1e-12)
    # the outcome panels' clinic-wide rate is the Outcomes page's tile: the same cell
    from alliance.metrics import outcomes

    row = outcomes.summary_row(demo_ctx, "ors")
    tile = outcomes.protected_summary(demo_ctx, row, "ors")
    improve = next(p for p in view.panels if p.key == "demo_reliable_improvement")
    assert improve.stats["clinic"] == pytest.approx(tile["reliable_improvement_rate"])


def test_a_group_at_a_site_is_the_same_cell_through_two_filters(demo_con):
    """The grid cell (group, site) on the whole-clinic page and the group's all-site row on
    the page filtered to that site are the same episodes: the same protected value."""
    f = {"first_month": START, "last_month": dt.date(2026, 10, 1)}
    ctx = _ctx(demo_con, 3, **f)  # a small k: more cells shown to compare (values as at k)
    raw = queries.run(demo_con, "demographics_dropout", **ctx.params(), dimension="race_ethnicity")
    grid = demographic_metrics.protect_grid(ctx, raw, "race_ethnicity")
    compared = 0
    for site in ("Eastgate", "Northside"):
        _, one = _groups(demo_con, 3, site=site, **f)
        cells = grid[grid["site"] == site].set_index("client_group")
        for group in cells.index:
            if cells.loc[group, "suppressed"] or one.loc[group, "suppressed"]:
                continue
            assert cells.loc[group, "ended"] == one.loc[group, "ended"], (site, group)
            assert cells.loc[group, "dropouts"] == one.loc[group, "dropouts"], (site, group)
            compared += 1
    assert compared >= 4


def test_no_key_and_no_exact_count_in_any_panel(demo_ctx):
    for dimension in demographics.DIMENSIONS:
        view = demographics.build(demo_ctx, dimension)
        for panel in view.panels:
            if panel.data is None:
                continue
            assert not [c for c in panel.data.columns if c.endswith("_cellkey")], panel.key
            assert "small fixed adjustment" in panel.reading, panel.key
    view = demographics.build(demo_ctx, "race_ethnicity")
    srs = queries.run(
        demo_ctx.con,
        "demographics_srs",
        **demo_ctx.params(),
        dimension="race_ethnicity",
        srs_cutoff=demo_ctx.settings.srs_cutoff,
    )
    groups = srs[~srs["is_clinic"]].reset_index(drop=True)
    want = noise.perturb_counts(
        groups["srs_n"].to_numpy(float), groups["srs_n_cellkey"].to_numpy(float), demo_ctx.noise, 11
    )
    mean = next(p for p in view.panels if p.key == "demo_mean_srs").data
    mean = mean.set_index("Race/ethnicity")
    compared = 0
    for i, group in enumerate(groups["client_group"]):
        label = display_groups(pd.Series([group])).iloc[0]
        if mean.loc[label, "suppressed"]:
            continue
        assert mean.loc[label, "SRS ratings"] == want[i]
        compared += 1
    assert compared >= 4
    assert (want != groups["srs_n"].to_numpy(float)).mean() > 0.4
    # the site grid's hover counts are the protected ones
    site = next(p for p in view.panels if p.key == "demo_site")
    hover = np.asarray(site.figure.data[0].customdata, float)
    shown = set(site.data["ended episodes"].dropna()) | set(
        next(p for p in view.panels if p.key == "demo_dropout").data["ended episodes"].dropna()
    )
    assert set(hover[np.isfinite(hover)].ravel()) <= shown


def test_rate_withheld_is_the_numerator_rule_for_one_rate() -> None:
    policy = PrivacyPolicy(k=11)
    assert not protected.rate_withheld_for(policy, 0, 0)  # nothing: not a small cell
    assert not protected.rate_withheld_for(policy, 0, 40)  # no events, 40 non-events
    assert protected.rate_withheld_for(policy, 3, 40)  # 3 events
    assert protected.rate_withheld_for(policy, 35, 40)  # 5 non-events
    assert not protected.rate_withheld_for(policy, 11, 22)
    frame = pd.DataFrame({"x": [0, 3, 35, 11], "t": [40, 40, 40, 22]})
    rule = protected.numerator_rule(frame, [protected.Rate("r", "x", "t")], policy.k)
    assert rule.tolist() == [protected.rate_withheld_for(policy, x, t) for x, t in frame.values]
