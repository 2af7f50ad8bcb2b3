"""Alliance (trust) page: its queries on the hand-built clinic, the SPC logic, the demo, the app.

The hand-built clinic is the one of tests/test_view_dropout.py (its docstring has the table): 16
SRS ratings in 2025 from 7 episodes of 7 clients.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import statistics

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from streamlit.testing.v1 import AppTest

from alliance import noise, protected, queries
from alliance.charts import control
from alliance.filters import Filters
from alliance.metrics import alliance as alliance_metrics
from alliance.panel import Context
from alliance.settings import Settings
from alliance.stats import mean_ci, mean_interval
from alliance.views import alliance_page
from tests.conftest import ROOT
from tests.test_view_dropout import YEAR_2025, build_clinic

D = dt.date
SRS = {  # episode -> SRS totals in session order (None = not rated)
    1: [38, 39, 40, 36],
    2: [30, 32],
    3: [34, None, 35.5, 33],
    4: [37, 36],
    5: [35, 33],
    6: [33.3, 31.3],
    7: [30],
}
ALL_SRS = [v for values in SRS.values() for v in values if v is not None]


@pytest.fixture(scope="module")
def hand_con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    from alliance import db

    path = tmp_path_factory.mktemp("alliance_view") / "hand.duckdb"
    build_clinic(path)
    con = db.open_read_only(path)
    yield con
    con.close()


def hand_ctx(con: duckdb.DuckDBPyConnection, k: int = 1, **filters: object) -> Context:
    return Context(con, dataclasses.replace(YEAR_2025, **filters), Settings(privacy_k=k))


def run(ctx: Context, name: str, **extra: object) -> pd.DataFrame:
    return queries.run(ctx.con, name, **ctx.params(), **extra)


def noisy(ctx: Context, count: float, key: float) -> float:
    """A count as the page shows it: with its cell's noise (alliance/noise.py)."""
    one = noise.perturb_counts(np.array([count], float), np.array([key], float), ctx.noise, 1)
    return float(one[0])


# --------------------------------------------------------------------------- SQL, by hand


def test_summary_by_hand(hand_con):
    s = run(hand_ctx(hand_con), "alliance_summary", srs_cutoff=36.0).iloc[0]
    assert s["sessions"] == 17 and s["srs_n"] == 16 and s["srs_clients"] == 7
    assert s["mean_srs"] == pytest.approx(statistics.mean(ALL_SRS))
    assert s["sd_srs"] == pytest.approx(statistics.stdev(ALL_SRS))
    # below 36: E2 30, 32; E3 34, 35.5, 33; E5 35, 33; E6 33.3, 31.3; E7 30 -> 10 (36 is not)
    assert s["srs_below"] == 10
    assert s["wai_n"] == 3 and s["mean_wai"] == pytest.approx((4 + 4 + 2) / 3)


def test_distribution_bins_by_hand(hand_con):
    df = run(
        hand_ctx(hand_con),
        "alliance_distribution",
        alliance="srs",
        bin_floor=25.0,
        bin_width=1.0,
        scale_max=40.0,
    )
    bins = {(r.bin_low, r.bin_high): r.n for r in df.itertuples()}
    assert sum(bins.values()) == 16
    assert bins[(40.0, 40.0)] == 1  # the top score on its own
    assert bins[(39.0, 40.0)] == 1  # 39
    assert bins[(30.0, 31.0)] == 2  # 30 (E2), 30 (E7)
    assert bins[(33.0, 34.0)] == 3  # 33 (E3), 33 (E5), 33.3 (E6)
    assert bins[(35.0, 36.0)] == 2  # 35 (E5), 35.5 (E3)
    assert df["share"].sum() == pytest.approx(1.0)
    # everything below the floor is pooled into one bin with a null lower edge
    pooled = run(
        hand_ctx(hand_con),
        "alliance_distribution",
        alliance="srs",
        bin_floor=33.0,
        bin_width=1.0,
        scale_max=40.0,
    )
    low = pooled[pooled["bin_low"].isna()].iloc[0]
    assert low["bin_high"] == 33.0 and low["n"] == 4  # 30, 30, 32, 31.3
    assert low["n_clients"] == 3  # E2 and E7 (30, 32), E6 (31.3)


def test_wai_subscales_average_episode_means_by_hand(hand_con):
    df = run(hand_ctx(hand_con), "alliance_wai_subscales").set_index("subscale")
    # E1: task (5 + 4) / 2 = 4.5, bond 4, goal (3 + 4) / 2 = 3.5, total 4; E4: all 2
    assert df.loc["task", "mean_score"] == pytest.approx((4.5 + 2) / 2)
    assert df.loc["task", "sd_score"] == pytest.approx(statistics.stdev([4.5, 2]))
    assert df.loc["bond", "mean_score"] == pytest.approx(3.0)
    assert df.loc["goal", "mean_score"] == pytest.approx(2.75)
    assert df.loc["total", "mean_score"] == pytest.approx(3.0)
    assert df.loc["task", "episodes"] == 2 and df.loc["task", "administrations"] == 3
    assert list(df.index) == ["task", "bond", "goal", "total"]


def test_by_session_number_by_hand(hand_con):
    df = run(
        hand_ctx(hand_con),
        "alliance_by_session_number",
        alliance="srs",
        last_number=3,
        cohort_sessions=2,
    )
    got = {(r.cohort, r.session_number): (r.n, r.mean_score) for r in df.itertuples()}
    # session 1 of all 7 episodes; session 2 of 5 (E3's is unrated, E7 has none)
    assert got[("all", 1)] == (7, pytest.approx((38 + 30 + 34 + 37 + 35 + 33.3 + 30) / 7))
    assert got[("all", 2)] == (5, pytest.approx((39 + 32 + 36 + 33 + 31.3) / 5))
    # 3 pools sessions 3 and later: E1 40, 36; E3 35.5, 33
    assert got[("all", 3)] == (4, pytest.approx((40 + 36 + 35.5 + 33) / 4))
    # the fixed cohort (sessions 1 and 2 in the period) leaves out E7
    assert got[("fixed", 1)] == (6, pytest.approx((38 + 30 + 34 + 37 + 35 + 33.3) / 6))
    assert ("fixed", 3) not in got


def test_fixed_cohort_follows_the_period(hand_con):
    march = hand_ctx(hand_con, first_month=D(2025, 3, 1), last_month=D(2025, 3, 1))
    df = run(march, "alliance_by_session_number", alliance="srs", last_number=12, cohort_sessions=2)
    fixed = df[df["cohort"] == "fixed"]
    # in March, E3 (sessions 1-4), E4 and E6 (1-2) qualify, E7 (1 only) does not; E3's
    # session 2 is unrated
    assert fixed.set_index("session_number")["n"].to_dict() == {1: 3, 2: 2}


def test_alliance_drops_by_hand(hand_con):
    d = run(hand_ctx(hand_con), "alliance_drops", rupture_threshold=2.0).iloc[0]
    # ratings with a previous SRS: E1 3, E2 1, E3 2 (the unrated session is skipped), E4 1,
    # E5 1, E6 1 = 9; drops of >= 2: E1 40->36, E3 35.5->33, E5 35->33, E6 33.3->31.3 = 4
    assert d["with_previous"] == 9 and d["drops"] == 4
    assert d["drop_rate"] == pytest.approx(4 / 9)
    # the threshold is a parameter: at 3 points only E1 (4) counts
    assert run(hand_ctx(hand_con), "alliance_drops", rupture_threshold=3.0).iloc[0]["drops"] == 1


def test_dropout_after_drops_by_hand(hand_con):
    df = run(hand_ctx(hand_con), "alliance_drops_dropout", rupture_threshold=2.0)
    got = df.set_index("had_drop")[["episodes", "dropouts"]].to_dict("index")
    # with a drop: E1, E3 (dropout), E5, E6; without: E2 (dropout), E4
    assert got == {True: {"episodes": 4, "dropouts": 1}, False: {"episodes": 2, "dropouts": 1}}


def test_dropout_after_drops_follows_the_period(hand_con):
    # episodes that ended in March: E3 (drop, dropout), E6 (drop), E4 (no drop)
    march = hand_ctx(hand_con, first_month=D(2025, 3, 1), last_month=D(2025, 3, 1))
    df = run(march, "alliance_drops_dropout", rupture_threshold=2.0)
    got = df.set_index("had_drop")[["episodes", "dropouts"]].to_dict("index")
    assert got == {True: {"episodes": 2, "dropouts": 1}, False: {"episodes": 1, "dropouts": 0}}


# --------------------------------------------------------------------------- SPC helpers


def test_mean_interval_matches_mean_ci_from_raw_values():
    values = [31.0, 35.5, 36.0, 38.2, 40.0, 33.3]
    lo, hi = mean_interval([statistics.mean(values)], [statistics.stdev(values)], [len(values)])
    want = mean_ci(values)
    assert (lo[0], hi[0]) == (pytest.approx(want.low), pytest.approx(want.high))
    lo1, _ = mean_interval([3.0], [0.0], [1])
    assert np.isnan(lo1[0])


def test_baseline_is_the_first_months_with_data():
    values = pd.Series([np.nan, 1.0, 2.0, np.nan, 3.0, 4.0, 5, 6, 7, 8, 9])
    assert (
        control.baseline_mask(values, 3).tolist()
        == [
            False,
            True,
            True,
            False,
            True,
        ]
        + [False] * 6
    )
    # fewer than 3 + 6 months with data: no separate baseline, every shown month (run chart)
    short = pd.Series([np.nan, 1.0, 2.0, np.nan, 3.0, 4.0])
    assert control.baseline_mask(short, 3).tolist() == [False, True, True, False, True, True]


def test_run_rules_judge_the_months_after_the_baseline_against_the_drawn_centre():
    # baseline 12, 10, 13, 9 (centre line 11.5, drawn); then six points above it: a shift,
    # and 20 is outside the upper limit 19
    months = pd.Series(pd.date_range("2025-01-01", periods=10, freq="MS"))
    values = np.array([12, 10, 13, 9, 14, 12, 15, 13, 16, 20], dtype=float)
    base = control.baseline_mask(pd.Series(values), 4)
    frame = control.spc_frame(months, values, 11.5, 4.0, 19.0, base)
    assert frame["judged"].tolist() == [False] * 4 + [True] * 6
    assert frame["shift"].tolist() == [False] * 4 + [True] * 6
    assert frame["astronomical"].tolist() == [False] * 9 + [True]
    assert not frame["trend"].any()
    note = control.spc_note(frame)
    assert "6 month(s) in a shift" in note and "first May 2025" in note
    assert control.spc_baseline_text(frame) == "baseline Jan 2025 – Apr 2025 (4 months)"


# --------------------------------------------------------------------------- the view


def test_view_on_hand_data(hand_con):
    """The page shows the hand-computed figures as protected: each count with its cell's
    noise, whose key is the sum of its records' keys (checked against the facts by hand)."""
    ctx = hand_ctx(hand_con)
    v = alliance_page.build(ctx)
    assert v.notice is None
    s = alliance_metrics.summary(ctx)
    assert (s["srs_n"], s["srs_below"], s["with_previous"], s["drops"]) == (16, 10, 9, 4)
    keys = hand_con.execute(
        """
        select sum(ckey) filter (where srs is not null), sum(ckey) filter (where srs < 36)
        from session_facts where session_date >= $date_from and session_date < $date_to
        """,
        {k: ctx.params()[k] for k in ("date_from", "date_to")},
    ).fetchone()
    assert (s["srs_n_cellkey"], s["srs_below_cellkey"]) == keys
    srs_n = noisy(ctx, 16, s["srs_n_cellkey"])
    below = noisy(ctx, 10, s["srs_below_cellkey"])
    tiles = {t.key: t for t in v.tiles}
    mean = noise.perturb_means(
        np.array([statistics.mean(ALL_SRS)]),
        np.array([srs_n]),
        np.array([s["srs_n_cellkey"]], float),
        40.0,
        ctx.noise,
    )[0]
    assert tiles["mean_srs"].value == pytest.approx(mean)
    assert f"n = {srs_n:,.0f} ratings" in tiles["mean_srs"].n_text
    assert tiles["srs_below_cutoff_rate"].value == pytest.approx(below / srs_n)
    lo, hi = protected.wilson(pd.Series([below]), pd.Series([srs_n]), ctx.noise)
    assert f"{lo[0]:.1%} to {hi[0]:.1%}" in tiles["srs_below_cutoff_rate"].n_text
    assert tiles["drop_rate"].value == pytest.approx(
        noisy(ctx, 4, s["drops_cellkey"]) / noisy(ctx, 9, s["with_previous_cellkey"])
    )
    panels = {p.key: p for p in v.panels}
    drops = panels["drops"].data.set_index("group")
    raw = run(ctx, "alliance_drops_dropout", rupture_threshold=2.0).set_index("had_drop")
    for had, group, dropouts, episodes in (
        (True, "With a drop of 2+ points", 1, 4),  # 1 of 4: 0.25 exact
        (False, "Without a drop", 1, 2),  # 1 of 2: 0.5 exact
    ):
        row = raw.loc[had]
        assert (row["dropouts"], row["episodes"]) == (dropouts, episodes)
        want = noisy(ctx, dropouts, row["dropouts_cellkey"]) / noisy(
            ctx, episodes, row["episodes_cellkey"]
        )
        assert drops.loc[group, "dropout_rate"] == pytest.approx(want)
    assert "association" in panels["drops"].reading
    assert "Ruptures & repair" in panels["drops"].reading


def test_distribution_shares_are_of_all_ratings_even_when_bins_are_withheld(hand_con):
    v = alliance_page.build(hand_ctx(hand_con, k=2))  # single-client bins are withheld
    panel = {p.key: p for p in v.panels}["distribution"]
    bars = next(t for t in panel.figure.data if t.type == "bar")
    shown = [y for y in bars.y if y is not None and not np.isnan(y)]
    assert panel.withheld
    assert sum(shown) < 1  # not rescaled to 1: a withheld bin does not inflate the others
    visible = panel.data.dropna(subset=["share"])
    # each shown bin's share is of all ratings, both counts protected (16 ratings by hand)
    ctx = hand_ctx(hand_con, k=2)
    total = alliance_metrics.protected_summary(ctx, alliance_metrics.summary(ctx))["srs_n"]
    assert total == noisy(ctx, 16, alliance_metrics.summary(ctx)["srs_n_cellkey"])
    assert visible["share"].tolist() == pytest.approx((visible["n"] / total).tolist())


def test_too_small_selection_gets_a_notice(hand_con):
    v = alliance_page.build(hand_ctx(hand_con, k=11))  # 7 clients < 11
    assert v.notice and "fewer than 11 clients" in v.notice and not v.panels


def test_empty_selection_gives_a_message(demo_con):
    nothing = Filters(
        first_month=D(2024, 1, 1), last_month=D(2024, 6, 1), site="Westbrook (opened 2026)"
    )
    v = alliance_page.build(Context(demo_con, nothing, Settings()))
    assert v.notice and "No sessions" in v.notice


def test_wai_without_wai_ratings_gives_messages_not_errors(demo_ctx):
    # the WAI-SR is recorded at Eastgate and in the intensive outpatient program only
    filters = dataclasses.replace(
        demo_ctx.filters, site="Northside", program="Adult outpatient", alliance_measure="wai"
    )
    ctx = dataclasses.replace(demo_ctx, filters=filters)
    v = alliance_page.build(ctx)
    panels = {p.key: p for p in v.panels}
    for key in ("distribution", "wai_subscales", "alliance_spc", "by_session"):
        assert panels[key].figure is None and "WAI-SR" in panels[key].message
    assert panels["drops"].figure is not None  # drops are SRS-based


def test_view_runs_on_the_demo_clinic(demo_ctx):
    v = alliance_page.build(demo_ctx)
    assert v.notice is None
    assert [p.key for p in v.panels] == ["distribution", "alliance_spc", "by_session", "drops"]
    for p in v.panels:
        assert p.figure is not None, p.key
        assert p.figure.layout.title.text and "n = " in p.figure.layout.title.subtitle.text
        assert p.reading, p.key
    dist = v.panels[0].figure
    assert "SRS total < 36" in dist.layout.title.subtitle.text
    by_session = {p.key: p for p in v.panels}["by_session"].data
    assert set(by_session["group"]) == {"All episodes", "Same episodes, sessions 1–6"}


def test_wai_measure_adds_the_subscales(demo_ctx):
    ctx = dataclasses.replace(
        demo_ctx, filters=dataclasses.replace(demo_ctx.filters, alliance_measure="wai")
    )
    v = alliance_page.build(ctx)
    panels = {p.key: p for p in v.panels}
    sub = panels["wai_subscales"].data.set_index("subscale")
    assert len(sub) == 4
    bond, task = sub.filter(like="Bond", axis=0).iloc[0], sub.filter(like="Task", axis=0).iloc[0]
    assert bond["mean_score"] > task["mean_score"]  # the demo (and the literature): Bond highest
    # the interval is a normal interval over the protected episodes, widened for the noise
    z = sps.norm.ppf(0.975)
    n = float(bond["episodes"])
    extra = (ctx.noise.sum_share * 4.0) ** 2 / 3 / n**2
    half = np.sqrt((z * bond["sd_score"]) ** 2 / n + z**2 * extra)
    assert bond["high"] - bond["mean_score"] == pytest.approx(half)
    assert "WAI-SR" in panels["distribution"].title
    assert {t.key for t in v.tiles} >= {"mean_wai", "srs_below_cutoff_rate"}


def test_riverside_shift_after_the_june_2025_training(demo_con):
    """The demo's alliance training at Riverside (June 2025) shows as a flagged shift."""
    f = Filters(first_month=D(2024, 6, 1), last_month=D(2026, 10, 1), site="Riverside")
    v = alliance_page.build(Context(demo_con, f, Settings()))
    frame = {p.key: p for p in v.panels}["alliance_spc"].data
    frame = frame.assign(month=pd.to_datetime(frame["month"]))
    assert frame.loc[frame["baseline"], "month"].max() == pd.Timestamp("2025-05-01")
    shift = frame.loc[frame["shift"].astype(bool), "month"]
    assert len(shift) >= 6
    assert shift.min() > pd.Timestamp("2025-06-01")
    after = frame[frame["month"] >= pd.Timestamp("2025-09-01")]
    assert after["shift"].astype(bool).all()
    assert (after["value"] > after["centre"]).all()


# --------------------------------------------------------------------------- the page


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)


def _titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_alliance_page_renders_and_follows_the_alliance_measure(app_env):
    at = _app().run()
    at.switch_page("pages/alliance.py").run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Alliance (trust)"]
    assert "SRS below cutoff" in [m.label for m in at.metric]
    titles = _titles(at)
    assert len(titles) == 4 and "How clients rate the alliance: SRS total" in titles
    at.radio(key="f_alliance").set_value("wai").run()
    assert not at.exception
    titles = _titles(at)
    assert "How clients rate the alliance: WAI-SR mean item score" in titles
    assert "WAI-SR subscales: task, bond and goal" in titles
    assert "Mean WAI-SR item score" in [m.label for m in at.metric]


def test_alliance_page_follows_a_filter(app_env):
    at = _app().run()
    at.switch_page("pages/alliance.py").run()
    before = [m.value for m in at.metric]
    at.selectbox(key="f_site").set_value("Riverside").run()
    assert not at.exception
    assert [m.value for m in at.metric] != before


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        (
            "alliance_distribution",
            {"alliance": "wai", "bin_floor": 2.5, "bin_width": 0.25, "scale_max": 5.0},
        ),
        (
            "alliance_by_session_number",
            {"alliance": "wai", "last_number": 12, "cohort_sessions": 6},
        ),
    ],
)
def test_declared_columns_of_the_queries_with_own_parameters(demo_ctx, name, extra):
    df = run(demo_ctx, name, **extra)
    assert list(df.columns) == list(queries.load(name).columns)
    assert len(df) > 0
