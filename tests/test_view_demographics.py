"""Client demographics (equity): group metrics with intervals, group x site, and privacy.

SQL is checked on the small hand-built clinic of tests/small_clinic.py (answers worked
out in the comments), the client-cluster intervals against hand computation, small groups on
the demo clinic, the page through AppTest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from streamlit.testing.v1 import AppTest

from alliance import db, noise, protected, queries
from alliance.filters import Filters
from alliance.metrics.demographics_clusters import (
    ClusterSums,
    clustered_mean_ci,
    clustered_mean_diff_vs_overall,
    clustered_rate_ci,
    clustered_rate_diff_vs_overall,
    effective_n,
)
from alliance.panel import Context
from alliance.privacy import PrivacyPolicy, assert_no_small_cells, display_table
from alliance.settings import Settings
from alliance.stats import risk_difference, risk_difference_vs_overall, wilson_interval
from alliance.views import demographics
from tests.conftest import ROOT
from tests.small_clinic import YEAR, build_small_clinic

NHPI = "Native Hawaiian or Pacific Islander"


@pytest.fixture(scope="module")
def small_con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("demographics") / "small.duckdb"
    build_small_clinic(path)
    con = db.open_read_only(path)
    yield con
    con.close()


def small_ctx(con, k: int = 1) -> Context:
    return Context(con=con, filters=YEAR, settings=Settings(privacy_k=k))


# --------------------------------------------------------------------------- SQL by hand


def test_dropout_by_group_and_site_by_hand(small_con):
    df = queries.run(
        small_con, "demographics_dropout", **YEAR.sql_params(), dimension="race_ethnicity"
    )
    got = {
        (r.level, r.client_group, r.site): (r.n_clients, r.ended, r.dropouts)
        for r in df.astype(object).where(df.notna(), None).itertuples()
    }
    black = "Black or African American"
    # ended episodes: White 1 N, 3 S (dropout), 5 S, 7 N; Asian 2 N (dropout), 4 S;
    # Black 6 N (dropout), 9 N; episode 8 is open
    assert got == {
        ("cell", "Asian", "North"): (1, 1, 1),
        ("cell", "Asian", "South"): (1, 1, 0),
        ("cell", black, "North"): (2, 2, 1),
        ("cell", "White", "North"): (2, 2, 0),
        ("cell", "White", "South"): (2, 2, 1),
        ("group", "Asian", None): (2, 2, 1),
        ("group", black, None): (2, 2, 1),
        ("group", "White", None): (4, 4, 1),
        ("clinic", None, None): (8, 8, 3),
    }


def test_srs_sums_by_group_by_hand(small_con):
    df = queries.run(
        small_con,
        "demographics_srs",
        **YEAR.sql_params(),
        dimension="race_ethnicity",
        srs_cutoff=36.0,
    )
    white = df[df["client_group"] == "White"].iloc[0]
    # White clients: c1 (ep 1: 30 34 38 40 and open ep 8: 37), c3 (32), c5 (35 37), c7 (39 40)
    assert (white["n_clients"], white["clusters"], white["srs_n"]) == (4, 4, 10)
    assert white["srs_sum"] == 362 and white["below"] == 4  # 30, 34, 32, 35
    assert white["sum_y2"] == 179**2 + 32**2 + 72**2 + 79**2
    assert white["sum_ym"] == 179 * 5 + 32 * 1 + 72 * 2 + 79 * 2
    assert white["sum_m2"] == 25 + 1 + 4 + 4
    assert white["sum_b2"] == 4 + 1 + 1 + 0 and white["sum_bm"] == 2 * 5 + 1 + 1 * 2
    clinic = df[df["is_clinic"]].iloc[0]
    assert (clinic["n_clients"], clinic["srs_n"], clinic["srs_sum"], clinic["below"]) == (
        8,
        18,
        644,
        7,
    )


def test_outcomes_by_group_by_hand(small_con):
    df = queries.run(
        small_con,
        "demographics_outcomes",
        **YEAR.sql_params(),
        dimension="age_band",
        **Settings().outcome_params("ors"),
    )
    got = {
        (r.client_group if not r.is_clinic else "clinic"): (
            r.n_clients,
            r.outcome_n,
            r.reliable_improvement,
            r.clinical_n,
            r.recovered,
        )
        for r in df.itertuples()
    }
    # ORS change: ep1 15->26 (26-44), ep2 20->22 (18-25), ep4 22->30, ep5 24->23 (45-64),
    # ep6 10->12, ep7 20->28 (26-44), ep9 21->27 (65+); all start < 25 (clinical)
    assert got == {
        "18-25": (1, 1, 0, 1, 0),
        "26-44": (3, 3, 2, 3, 2),
        "45-64": (2, 2, 1, 2, 1),
        "65+": (1, 1, 1, 1, 1),
        "clinic": (7, 7, 4, 7, 4),
    }


# --------------------------------------------------------------------------- intervals by hand


def _white_and_clinic() -> tuple[ClusterSums, ClusterSums]:
    # White SRS clusters (client: ratings m, sum y): c1 5/179, c3 1/32, c5 2/72, c7 2/79
    white = ClusterSums(
        c=np.array([4.0]),
        y=np.array([362.0]),
        m=np.array([10.0]),
        y2=np.array([179.0**2 + 32**2 + 72**2 + 79**2]),
        ym=np.array([179.0 * 5 + 32 + 72 * 2 + 79 * 2]),
        m2=np.array([34.0]),
    )
    # other clusters: c2 2/69, c4 3/117, c6 2/58, c8 1/38
    rest = dict(c=4.0, y=282.0, m=8.0, y2=69**2 + 117**2 + 58**2 + 38**2)
    rest |= dict(ym=69 * 2 + 117 * 3 + 58 * 2 + 38.0, m2=4 + 9 + 4 + 1.0)
    clinic = ClusterSums(*(np.array([getattr(white, f)[0] + rest[f]]) for f in rest))
    return white, clinic


def test_clustered_mean_interval_by_hand():
    white, _ = _white_and_clinic()
    mean, low, high = clustered_mean_ci(white)
    # r = 36.2; residuals y_c - r m_c: -2, -4.2, -0.4, 6.6 -> sum of squares 65.36
    var = 4 / 3 * 65.36 / 10**2
    half = sps.t.ppf(0.975, 3) * np.sqrt(var)
    assert mean[0] == pytest.approx(36.2)
    assert (low[0], high[0]) == pytest.approx((36.2 - half, 36.2 + half))


def test_clustered_mean_difference_by_hand():
    white, clinic = _white_and_clinic()
    diff, low, high = clustered_mean_diff_vs_overall(white, clinic)
    # rest: r = 282 / 8 = 35.25; residuals -1.5, 11.25, -12.5, 2.75 -> 292.625
    v_white, v_rest = 4 / 3 * 65.36 / 100, 4 / 3 * 292.625 / 64
    w = 10 / 18
    dof = (v_white + v_rest) ** 2 / (v_white**2 / 3 + v_rest**2 / 3)
    half = sps.t.ppf(0.975, dof) * np.sqrt(v_white + v_rest)
    assert diff[0] == pytest.approx((1 - w) * (36.2 - 35.25))
    assert diff[0] == pytest.approx(36.2 - 644 / 18)  # = group mean - clinic mean
    assert (low[0], high[0]) == pytest.approx((diff[0] - (1 - w) * half, diff[0] + (1 - w) * half))


def test_clustered_rate_uses_the_effective_number_of_ratings():
    # 4 clients, 5 ratings each, 4, 1, 2 and 3 below the cutoff: p = 0.5; residuals
    # y_c - p m_c = 1.5, -1.5, -0.5, 0.5 -> 5; var = 4/3 * 5 / 20^2; n_eff = 0.25 / var = 15
    below = ClusterSums(
        c=np.array([4.0]),
        y=np.array([10.0]),
        m=np.array([20.0]),
        y2=np.array([16.0 + 1 + 4 + 9]),
        ym=np.array([50.0]),
        m2=np.array([100.0]),
    )
    rate, low, high, n_eff = clustered_rate_ci(below)
    assert rate[0] == pytest.approx(0.5) and n_eff[0] == pytest.approx(15.0)
    lo, hi = wilson_interval(7.5, 15.0)
    assert (low[0], high[0]) == pytest.approx((lo[0], hi[0]))
    # White clients of the small clinic: 2 of 5, 1 of 1, 1 of 2, 0 of 2 below: p = 0.4, the
    # residuals 0, 0.6, 0.2, -0.8 give 0.24 / (4/3 * 1.04 / 100) = 17.3 > 10 ratings: capped
    white = ClusterSums(*(np.array([v]) for v in (4.0, 4.0, 10.0, 6.0, 13.0, 34.0)))
    assert effective_n(white)[0] == 10.0
    # no variation at all (p = 0): the number of clients, the cautious choice
    none = ClusterSums(*(np.array([v]) for v in (4.0, 0.0, 20.0, 0.0, 0.0, 100.0)))
    assert effective_n(none)[0] == 4.0


def test_clustered_rate_difference_follows_risk_difference_vs_overall():
    # group: 3 clients with 9, 10, 11 ratings of which 1, 2, 3 below; rest: 9, 10, 11 and 1, 1, 2
    group = ClusterSums(*(np.array([v]) for v in (3.0, 6.0, 30.0, 14.0, 62.0, 302.0)))
    clinic = ClusterSums(*(np.array([v]) for v in (6.0, 10.0, 60.0, 20.0, 103.0, 604.0)))
    diff, low, high = clustered_rate_diff_vs_overall(group, clinic)
    rest = clinic.minus(group)
    ng, nr = effective_n(group)[0], effective_n(rest)[0]
    rd = risk_difference(0.2 * ng, ng, 4 / 30 * nr, nr)
    assert diff[0] == pytest.approx(0.2 - 10 / 60)
    assert (low[0], high[0]) == pytest.approx((rd.low * 0.5, rd.high * 0.5))


# --------------------------------------------------------------------------- the view, small clinic


def test_dropout_by_group_with_wilson_and_risk_difference(small_con):
    """The shown figures are the protected ones (issue 19): White's 1 dropout of 4 endings and
    the clinic's 3 of 8, each count with its cell's noise (k = 1 here, so nothing is withheld);
    rate, Wilson interval and the gap from the clinic are formed from those, the gap's interval
    being the exact Newcombe interval's half-widths widened for the noise."""
    ctx = small_ctx(small_con)
    view = demographics.build(ctx, "race_ethnicity")
    panel = next(p for p in view.panels if p.key == "demo_dropout")
    data = panel.data.set_index("Race/ethnicity")
    white = data.loc["White"]
    raw = queries.run(
        small_con, "demographics_dropout", **YEAR.sql_params(), dimension="race_ethnicity"
    )
    row = raw[(raw["level"] == "group") & (raw["client_group"] == "White")].iloc[0]
    clinic = raw[raw["level"] == "clinic"].iloc[0]
    assert (row["dropouts"], row["ended"], clinic["dropouts"], clinic["ended"]) == (1, 4, 3, 8)

    def shown(r, col):
        return noise.perturb_counts(
            np.array([float(r[col])]), np.array([float(r[f"{col}_cellkey"])]), ctx.noise, 1
        )[0]

    x, n = shown(row, "dropouts"), shown(row, "ended")
    cx, cn = shown(clinic, "dropouts"), shown(clinic, "ended")
    assert white["ended episodes"] == n
    assert white["dropout rate %"] == pytest.approx(100 * x / n)
    lo, hi = protected.wilson(pd.Series([x]), pd.Series([n]), ctx.noise)
    assert (white["95% CI low %"], white["95% CI high %"]) == pytest.approx(
        (lo[0] * 100, hi[0] * 100)
    )
    assert panel.stats["clinic"] == pytest.approx(cx / cn)
    assert white["difference from clinic-wide (pct points)"] == pytest.approx(
        100 * (x / n - cx / cn)
    )
    rd = risk_difference_vs_overall(1, 4, 3, 8)
    width = white["difference 95% CI high"] - white["difference 95% CI low"]
    assert width >= (rd.high - rd.low) * 100 - 1e-9  # widened for the noise, never narrower
    # groups in a neutral order (alphabetical, 'unknown' last), never by value
    assert list(data.index) == ["Asian", "Black or African American", "White"]


def test_site_grid_marks_withheld_cells_and_protects_rows_and_columns(small_con):
    # k = 2: the single-client cells (Asian at North and at South) are withheld; the row
    # then needs its all-site figure or another cell withheld as well
    ctx = small_ctx(small_con, k=2)
    view = demographics.build(ctx, "race_ethnicity")
    grid = next(p for p in view.panels if p.key == "demo_site")
    cells = grid.data.set_index(["Race/ethnicity", "site"])
    assert cells.loc[("Asian", "North"), "suppressed"]
    assert cells.loc[("Asian", "South"), "suppressed"]
    assert pd.isna(cells.loc[("Asian", "North"), "dropout rate %"])
    text = json.dumps(grid.figure.to_plotly_json()["data"][0]["text"], default=str)
    assert "n < 2" in text
    assert_no_small_cells(grid.data, policy=ctx.policy)
    shown = display_table(grid.data, policy=ctx.policy)
    assert (shown.loc[grid.data["suppressed"].to_numpy(), "n_clients"] == "n < 2").all()


def test_too_small_selection_and_unknown_dimension(small_con):
    view = demographics.build(small_ctx(small_con, k=11))
    assert view.notice and not view.panels
    with pytest.raises(ValueError, match="unknown dimension"):
        demographics.build(small_ctx(small_con), "postcode")


# --------------------------------------------------------------------------- demo clinic


@pytest.fixture(scope="module")
def demo_race(demo_con) -> object:
    ctx = Context(
        con=demo_con,
        filters=Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1)),
        settings=Settings(),
    )
    return demographics.build(ctx, "race_ethnicity")


def test_demo_small_groups_are_withheld_and_labelled_never_dropped(demo_race):
    policy = PrivacyPolicy(k=11)
    keys = [p.key for p in demo_race.panels]
    assert keys == [
        "demo_mean_srs",
        "demo_srs_below",
        "demo_dropout",
        "demo_reliable_improvement",
        "demo_recovery",
        "demo_site",
    ]
    for panel in demo_race.panels[:5]:
        data = panel.data.set_index("Race/ethnicity")
        assert NHPI in data.index, panel.key  # present, marked, not dropped
        assert data.loc[NHPI, "suppressed"] and pd.isna(data.loc[NHPI, "n_clients"])
        assert_no_small_cells(panel.data, policy=policy)
        shown = display_table(panel.data, policy=policy)
        assert (shown.loc[panel.data["suppressed"].to_numpy(), "n_clients"] == "n < 11").all()
        fig = panel.figure.to_plotly_json()
        labelled = [t for t in fig["data"] if t.get("mode") == "text"]
        assert labelled and NHPI in list(labelled[0]["y"]) and "n < 11" in labelled[0]["text"]
        # with one group withheld, at least one more is, so neither can be recovered
        assert data["suppressed"].sum() >= 2
    grid = demo_race.panels[-1]
    cells = grid.data.set_index(["Race/ethnicity", "site"])
    nhpi_sites = cells.loc[NHPI]
    assert nhpi_sites["suppressed"].all()  # e.g. one client at Northside: "n < 11"
    assert_no_small_cells(grid.data, policy=policy)


def test_demo_group_withheld_in_the_dots_cannot_be_rebuilt_from_its_sites(demo_race):
    dots = demo_race.panels[2].data.set_index("Race/ethnicity")
    grid = demo_race.panels[-1].data
    for group in dots.index[dots["suppressed"]]:
        row = grid[grid["Race/ethnicity"] == group]
        visible = row[~row["suppressed"]]
        # the visible site cells must not add up to the (withheld) group total
        assert row["suppressed"].any() or visible["ended episodes"].sum() == 0, group


def test_demo_dimensions_and_intervals(demo_con, demo_ctx):
    age = demographics.build(demo_ctx, "age_band")
    dropout = next(p for p in age.panels if p.key == "demo_dropout").data
    assert list(dropout["Age band"]) == ["<18", "18-25", "26-44", "45-64", "65+"]
    # every visible interval contains its estimate; every difference interval its difference
    for panel in age.panels[:5]:
        d = panel.data[~panel.data["suppressed"]]
        value, low, high, diff = d.columns[3], d.columns[4], d.columns[5], d.columns[6]
        assert ((d[low] <= d[value] + 1e-9) & (d[value] <= d[high] + 1e-9)).all()
        assert (
            (d["difference 95% CI low"] <= d[diff] + 1e-9)
            & (d[diff] <= d["difference 95% CI high"] + 1e-9)
        ).all()
    # the session-level intervals allow for clustering: wider than a naive Wilson on ratings
    below = next(p for p in age.panels if p.key == "demo_srs_below").data
    row = below.iloc[2]
    naive_lo, naive_hi = wilson_interval(
        row["below cutoff %"] / 100 * row["SRS ratings"], row["SRS ratings"]
    )
    assert row["95% CI high %"] - row["95% CI low %"] > (naive_hi[0] - naive_lo[0]) * 100
    # filtering to one group of the dimension leaves one group equal to the clinic
    one = dataclasses.replace(
        demo_ctx, filters=dataclasses.replace(demo_ctx.filters, gender="female")
    )
    gender = demographics.build(one, "gender")
    g = next(p for p in gender.panels if p.key == "demo_dropout")
    assert list(g.data["Gender"]) == ["female"]
    assert g.data["difference from clinic-wide (pct points)"].iloc[0] == 0
    assert "filtered to one gender" in g.reading


# --------------------------------------------------------------------------- the page (AppTest)


def test_page_renders_and_the_dimension_widget_changes_the_charts(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    at.switch_page("pages/demographics.py").run()
    assert not at.exception
    assert at.radio(key="demo_dimension").value == "race_ethnicity"
    charts = at.get("plotly_chart")
    assert len(charts) == 6
    first = json.loads(charts[0].proto.spec)
    assert first["layout"]["title"]["text"] == "Mean SRS by race/ethnicity"
    assert "n < 11" in json.dumps(first["data"])
    at.radio(key="demo_dimension").set_value("age_band").run()
    assert not at.exception
    after = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert after["layout"]["title"]["text"] == "Mean SRS by age band"
    assert "26-44" in json.dumps(after["data"]) and NHPI not in json.dumps(after["data"])
