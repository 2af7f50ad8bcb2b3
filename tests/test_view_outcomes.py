"""Outcomes: the outcomes_* queries on a hand-built clinic with hand-computed answers, the view on
the demo clinic, and the page in AppTest."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from alliance import db, queries
from alliance.filters import Filters
from alliance.metrics import outcomes as metrics
from alliance.panel import Context
from alliance.settings import Settings
from alliance.stats import fisher_z_ci, pre_post_effect_size, wilson_interval
from alliance.views import outcomes
from tests.conftest import ROOT

D = dt.date
PERIOD = Filters(first_month=D(2025, 1, 1), last_month=D(2025, 6, 1))  # Jan - Jun 2025


# --------------------------------------------------------------------------- fixture clinic
#
# Period Jan - Jun 2025. ORS: higher = better, clinical < 25, reliable change 5.
# PHQ-9: higher = worse, clinical >= 10, reliable change 6.
#
# ep  client end        ORS first->last (impr)   PHQ-9 first->last (impr)  early SRS
# 1   1      Jan, plan  20 -> 27   (+7)           14 -> 7    (+7)            (30+34+38)/3 = 34
# 2   2      Feb, drop  30 -> 22   (-8)           8  -> 15   (-7)            36
# 3   3      Mar, other 22 -> 24   (+2)           12 -> 9    (+3)            (40+40+40)/3 = 40
# 4   4      Apr, plan  3.2 -> 8.2 (+5: float 4.999...)  -                   28
#                       (first session Dec 2024, before the period: still counted)
# 9   1      Mar, plan  26 -> 25   (-1)           10 -> 4    (+6)            none
# excluded: 5 one ORS and one PHQ-9 only; 6 open (no end reason); 7 ended Dec 2024; 8 ended
# Jul 2025 (after the period).
#
# ORS, 5 episodes of 4 clients: reliable improvement 1 and 4 (2/5), deterioration 2 (1/5);
#   clinical at intake 1, 3, 4 (3): recovered 1 only (3 ends at 24, 4 at 8.2): 1/3, reliable 1/3.
# PHQ-9, 4 episodes (1, 2, 3, 9): reliable improvement 1 and 9 (6 >= 6): 2/4, deterioration 2:
#   1/4; clinical at intake 1 (14), 3 (12), 9 (10 >= 10): 3; recovered all three (7, 9, 4 < 10):
#   3/3; reliable recovery 1 and 9: 2/3 (3 improved only 3 points).

EPISODES = [
    # episode, client, end reason
    (1, 1, "planned"),
    (2, 2, "dropout"),
    (3, 3, "other"),
    (4, 4, "planned"),
    (5, 5, "planned"),
    (6, 6, None),
    (7, 7, "planned"),
    (8, 8, "planned"),
    (9, 1, "planned"),
]
SESSIONS = [
    # episode, date, srs, ors, phq9
    (1, D(2025, 1, 6), 30, 20.0, 14),
    (1, D(2025, 1, 13), 34, 24.0, None),
    (1, D(2025, 1, 20), 38, 27.0, 7),
    (2, D(2025, 2, 3), 36, 30.0, 8),
    (2, D(2025, 2, 10), None, 22.0, 15),
    (3, D(2025, 3, 3), 40, 22.0, 12),
    (3, D(2025, 3, 10), 40, None, None),
    (3, D(2025, 3, 17), 40, None, None),
    (3, D(2025, 3, 24), 20, 24.0, 9),
    (4, D(2024, 12, 16), 28, 3.2, None),
    (4, D(2025, 4, 14), None, 8.2, None),
    (5, D(2025, 5, 5), None, 15.0, 20),
    (5, D(2025, 5, 12), 30, None, None),
    (6, D(2025, 3, 1), 30, 10.0, 20),
    (6, D(2025, 3, 8), 30, 30.0, 5),
    (7, D(2024, 12, 2), 30, 10.0, 20),
    (7, D(2024, 12, 9), 30, 30.0, 5),
    (8, D(2025, 6, 23), 30, 10.0, 20),
    (8, D(2025, 7, 7), 30, 30.0, 5),
    (9, D(2025, 2, 24), None, 26.0, 10),
    (9, D(2025, 3, 10), None, 25.0, 4),
]


def build_fixture(path: Path) -> None:
    with db.writer(path, fresh=True) as con:
        con.execute("insert into sites values (1, 'North'), (2, 'South')")
        con.execute("insert into programs values (1, 'Adult outpatient')")
        con.execute("insert into therapists values (1, 'p1', 'T-AAAA')")
        con.execute("insert into clients select i, 'c' || i from range(1, 9) t(i)")
        for episode, client, reason in EPISODES:
            con.execute(
                "insert into episodes values (?, ?, ?, 1, '26-44', 'female', 'White', ?)",
                [episode, client, f"e{episode}", reason],
            )
        for sid, (episode, day, srs, ors, phq) in enumerate(SESSIONS, start=1):
            con.execute(
                """
                insert into sessions (session_id, episode_id, therapist_id, site_id,
                    session_date, srs_total, ors_total, phq9_total)
                values (?, ?, 1, 1, ?, ?, ?, ?)
                """,
                [sid, episode, day, srs, ors, phq],
            )
        db.set_meta(con, "dataset_kind", "clinic")
        db.rebuild_facts(con)


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("outcomes") / "fixture.duckdb"
    build_fixture(path)
    c = db.open_read_only(path)
    yield c
    c.close()


def run(con, name: str, measure: str = "ors", filters: Filters = PERIOD, **extra):
    params = {**filters.sql_params(None), **extra}
    declared = queries.load(name).parameters
    for key, value in Settings().outcome_params(measure).items():
        if key in declared:
            params[key] = value
    return queries.run(con, name, **params)


# --------------------------------------------------------------------------- SQL by hand


def test_summary_ors_by_hand(con):
    row = run(con, "outcomes_summary", "ors").iloc[0]
    # ended in period: 1, 2, 3, 4, 5, 9 (6 open, 7 before, 8 after)
    assert row["ended"] == 6
    assert (row["outcome_n"], row["n_clients"]) == (5, 4)
    assert (row["reliable_improvement"], row["reliable_deterioration"]) == (2, 1)
    assert (row["clinical_n"], row["clinical_clients"]) == (3, 3)
    assert (row["recovered"], row["reliably_recovered"]) == (1, 1)
    assert row["mean_improvement"] == pytest.approx((7 - 8 + 2 + 5 - 1) / 5)
    firsts = [20, 30, 22, 3.2, 26]
    assert row["sd_first"] == pytest.approx(np.std(firsts, ddof=1))
    # early SRS 34, 36, 40, 28 against improvement 7, -8, 2, 5 (episode 9 has no SRS)
    assert (row["r_n"], row["r_clients"]) == (4, 4)
    assert row["r"] == pytest.approx(np.corrcoef([34, 36, 40, 28], [7, -8, 2, 5])[0, 1])


def test_summary_phq9_by_hand(con):
    row = run(con, "outcomes_summary", "phq9").iloc[0]
    assert (row["outcome_n"], row["n_clients"]) == (4, 3)
    assert (row["reliable_improvement"], row["reliable_deterioration"]) == (2, 1)
    assert (row["clinical_n"], row["recovered"], row["reliably_recovered"]) == (3, 3, 2)
    assert row["mean_improvement"] == pytest.approx((7 - 7 + 3 + 6) / 4)


def test_outcome_summary_rates_intervals_and_effect_size(con):
    ctx = Context(con=con, filters=PERIOD, settings=Settings(privacy_k=1))
    s = metrics.outcome_summary(ctx, "ors")
    assert s["outcome_n"] == 5 and s["clinical_n"] == 3
    assert s["reliable_improvement_rate"] == pytest.approx(2 / 5)
    assert s["reliable_deterioration_rate"] == pytest.approx(1 / 5)
    assert s["recovery_rate"] == pytest.approx(1 / 3)
    assert s["reliable_recovery_rate"] == pytest.approx(1 / 3)
    low, high = wilson_interval(2, 5)
    assert s["reliable_improvement_rate_ci"] == pytest.approx([low[0], high[0]])
    first, last = [20, 30, 22, 3.2, 26], [27, 22, 24, 8.2, 25]
    assert s["pre_post_effect_size"] == pytest.approx(pre_post_effect_size(first, last, True))
    r = np.corrcoef([34, 36, 40, 28], [7, -8, 2, 5])[0, 1]
    assert s["alliance_outcome_r"] == pytest.approx(r)
    assert s["alliance_outcome_r_ci"] == pytest.approx(list(fisher_z_ci(r, 4)))
    assert s["withheld"] == []
    json.dumps(s)  # plain numbers, lists and None only

    p = metrics.outcome_summary(ctx, "phq9")
    assert p["recovery_rate"] == 1.0 and p["reliable_recovery_rate"] == pytest.approx(2 / 3)
    assert p["pre_post_effect_size"] == pytest.approx(
        pre_post_effect_size([14, 8, 12, 10], [7, 15, 9, 4], False)
    )


def test_outcome_summary_withholds_small_populations(con):
    ctx = Context(con=con, filters=PERIOD, settings=Settings())  # k = 11 > 4 clients
    s = metrics.outcome_summary(ctx, "ors")
    assert s["reliable_improvement_rate"] is None and s["reliable_improvement_rate_ci"] is None
    assert s["alliance_outcome_r"] is None
    assert "recovery_rate" in s["withheld"]


def test_monthly_by_hand(con):
    df = run(con, "outcomes_monthly", "ors")
    got = {
        r.month.strftime("%Y-%m"): (
            r.outcome_n,
            r.n_clients,
            r.reliable_improvement,
            r.reliable_deterioration,
            r.clinical_n,
            r.recovered,
        )
        for r in df.itertuples()
    }
    assert got == {
        "2025-01": (1, 1, 1, 0, 1, 1),
        "2025-02": (1, 1, 0, 1, 0, 0),
        "2025-03": (2, 2, 0, 0, 1, 0),  # episodes 3 and 9
        "2025-04": (1, 1, 1, 0, 1, 0),  # episode 4 began in Dec 2024
    }


def test_distribution_by_hand(con):
    df = run(
        con,
        "outcomes_distribution",
        "ors",
        reliable_change=5.0,
        bin_width=1.0,
        lowest_bin=-5.0,
        highest_bin=15.0,
    )
    got = {(r.bin, r.band): r.episodes for r in df.itertuples()}
    # improvements 7, -8 (pooled into the lowest bin), 2, 5 (4.999... in floating point), -1
    assert got == {
        (-5.0, "reliable deterioration"): 1,
        (-1.0, "no reliable change"): 1,
        (2.0, "no reliable change"): 1,
        (5.0, "reliable improvement"): 1,
        (7.0, "reliable improvement"): 1,
    }


def test_trajectory_by_hand(con):
    df = run(con, "outcomes_trajectory", "ors", max_session=2)
    # early SRS 28 (ep 4), 34 (ep 1), 36 (ep 2), 40 (ep 3): cut points 34 and 36; the labels'
    # interpolated quantiles, rounded, are 34 and 36 too (no client's value is returned)
    assert set(df["label_low"]) == {34.0} and set(df["label_high"]) == {36.0}
    clients = df.groupby("tercile")["tercile_clients"].max().to_dict()
    assert clients == {1: 2, 2: 1, 3: 1}
    got = {(r.tercile, r.session_number): (r.episodes, r.mean_score) for r in df.itertuples()}
    # tercile 1 = episodes 4 and 1; session 1: 3.2 (Dec 2024, before the period) and 20
    assert got[(1, 1)] == (2, pytest.approx((3.2 + 20) / 2))
    # sessions 2+ pooled per episode: ep 1 (24 + 27) / 2 = 25.5, ep 4 8.2
    assert got[(1, 2)] == (2, pytest.approx((25.5 + 8.2) / 2))
    assert got[(2, 1)] == (1, pytest.approx(30.0)) and got[(2, 2)] == (1, pytest.approx(22.0))
    # episode 3: ORS only at sessions 1 and 4
    assert got[(3, 1)] == (1, pytest.approx(22.0)) and got[(3, 2)] == (1, pytest.approx(24.0))
    assert len(got) == 6


def test_trajectory_follows_the_role_restriction(con):
    params = {**PERIOD.sql_params(["South"]), "measure": "ors", "max_session": 12}
    assert queries.run(con, "outcomes_trajectory", **params).empty


def test_alliance_bins_by_hand(con):
    df = run(con, "outcomes_alliance_bins", "ors", fractions=[0.5])
    rows = {r.bin: r for r in df.itertuples()}
    # median cut 34: (28, +5) and (34, +7) at or below; (36, -8) and (40, +2) above
    assert rows[1].episodes == 2 and rows[1].mean_improvement == pytest.approx(6.0)
    # the label gets the interpolated median (35), never a client's 34
    assert math.isnan(rows[1].label_low) and rows[1].label_high == 35.0
    assert rows[2].episodes == 2 and rows[2].mean_improvement == pytest.approx(-3.0)
    assert rows[2].label_low == 35.0 and math.isnan(rows[2].label_high)
    assert rows[2].mean_early_srs == pytest.approx(38.0)


def test_fixture_view_is_withheld_below_k_and_renders_at_k_1(con):
    small = outcomes.build(Context(con=con, filters=PERIOD, settings=Settings()))
    assert small.notice and "fewer than 11 clients" in small.notice and not small.panels
    full = outcomes.build(Context(con=con, filters=PERIOD, settings=Settings(privacy_k=1)))
    assert full.notice is None
    assert [p.key for p in full.panels] == [
        "distribution",
        "monthly_change",
        "monthly_recovery",
        "trajectory",
        "alliance_outcome",
    ]


# --------------------------------------------------------------------------- the demo clinic


def test_demo_alliance_outcome_r_near_published(demo_ctx):
    s = metrics.outcome_summary(demo_ctx, "ors")
    r, (low, high) = s["alliance_outcome_r"], s["alliance_outcome_r_ci"]
    assert low < r < high
    assert 0.15 < r < 0.40
    # the interval is the Fisher z interval at the episode count, and holds the published .278
    assert (low, high) == pytest.approx(fisher_z_ci(r, s["r_n"]))
    assert low <= outcomes.PUBLISHED_R <= high
    assert 0.3 < s["pre_post_effect_size"] < 1.5
    assert s["withheld"] == []


def test_demo_summary_matches_an_independent_computation(demo_ctx):
    """Recompute from the episode rows in pandas (the view only ships sufficient statistics)."""
    f = demo_ctx.filters
    df = demo_ctx.con.execute(
        """
        select first_score, last_score, early_srs
        from episode_outcomes
        where measure = 'ors' and ended and n_admin >= 2
          and end_date >= $a and end_date < $b
        """,
        {"a": f.date_from, "b": f.date_to},
    ).df()
    imp = (df["last_score"] - df["first_score"]).round(6)
    s = metrics.outcome_summary(demo_ctx, "ors")
    assert s["outcome_n"] == len(df)
    assert s["reliable_improvement_rate"] == pytest.approx((imp >= 5).mean())
    assert s["reliable_deterioration_rate"] == pytest.approx((imp <= -5).mean())
    clinical = df["first_score"] < 25
    recovered = clinical & (df["last_score"] >= 25)
    assert s["recovery_rate"] == pytest.approx(recovered.sum() / clinical.sum())
    assert s["reliable_recovery_rate"] == pytest.approx(
        (recovered & (imp >= 5)).sum() / clinical.sum()
    )
    ok = df["early_srs"].notna()
    assert s["alliance_outcome_r"] == pytest.approx(
        np.corrcoef(df.loc[ok, "early_srs"], imp[ok])[0, 1]
    )
    assert s["pre_post_effect_size"] == pytest.approx(
        pre_post_effect_size(df["first_score"], df["last_score"], True)
    )


@pytest.mark.parametrize("measure", ["ors", "phq9", "gad7"])
def test_demo_each_measure_renders(demo_ctx, measure):
    ctx = dataclasses.replace(
        demo_ctx, filters=dataclasses.replace(demo_ctx.filters, outcome_measure=measure)
    )
    view = outcomes.build(ctx)
    assert view.notice is None
    assert len(view.tiles) == 8 and all(t.value is not None for t in view.tiles)
    assert len(view.panels) == 5 and all(p.figure is not None for p in view.panels)
    label = {"ors": "ORS", "phq9": "PHQ-9", "gad7": "GAD-7"}[measure]
    direction = "higher = better" if measure == "ors" else "higher = worse"
    for panel in view.panels:
        layout = panel.figure.layout
        assert label in layout.title.text and "n = " in layout.title.subtitle.text
        assert panel.reading
    trajectory = next(p for p in view.panels if p.key == "trajectory")
    assert trajectory.figure.layout.yaxis.title.text == f"{label} score ({direction})"
    assert len(trajectory.figure.data) == 6  # three terciles, each a band and a line
    bins = next(p for p in view.panels if p.key == "alliance_outcome")
    assert "association, not a cause" in bins.reading and "regression to the mean" in bins.reading
    assert bins.stats["published_r"] == pytest.approx(0.278)
    # a reliable improvement rate of the chosen measure sits in its Wilson interval
    tile = next(t for t in view.tiles if t.key == "reliable_improvement_rate")
    assert "95% CI" in tile.n_text and "n = " in tile.n_text
    # no displayed cell describes 1 .. k-1 clients
    for panel in view.panels:
        if "n_clients" in panel.data:
            n = panel.data["n_clients"].dropna()
            assert not ((n > 0) & (n < ctx.policy.k)).any()


def test_demo_empty_selection_gives_messages_not_exceptions(demo_ctx):
    f = demo_ctx.filters
    # Harbor View does not use the PHQ-9
    phq_none = dataclasses.replace(
        demo_ctx, filters=dataclasses.replace(f, site="Harbor View", outcome_measure="phq9")
    )
    view = outcomes.build(phq_none)
    assert view.notice and "PHQ-9" in view.notice and not view.tiles
    # no such therapist: nothing ended at all
    nobody = dataclasses.replace(demo_ctx, filters=dataclasses.replace(f, therapist="T-NONE"))
    view = outcomes.build(nobody)
    assert view.notice and "No episodes ended" in view.notice
    s = metrics.outcome_summary(nobody, "ors")
    assert s["outcome_n"] == 0 and s["reliable_improvement_rate"] is None
    assert s["alliance_outcome_r"] is None and s["pre_post_effect_size"] is None
    # a cohort below the privacy threshold
    strict = dataclasses.replace(demo_ctx, settings=Settings(privacy_k=100_000))
    assert "fewer than 100000 clients" in outcomes.build(strict).notice


def test_demo_one_month_one_site_still_renders(demo_ctx):
    """A small selection: panels fall back to messages or withheld cells, never errors."""
    f = dataclasses.replace(
        demo_ctx.filters,
        first_month=D(2026, 10, 1),
        last_month=D(2026, 10, 1),
        site="Westbrook (opened 2026)",
    )
    view = outcomes.build(dataclasses.replace(demo_ctx, filters=f))
    assert view.notice or all(p.figure is not None or p.message for p in view.panels)


# --------------------------------------------------------------------------- the page


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_page_renders_and_follows_the_outcome_measure(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    at.switch_page("pages/outcomes.py").run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "Reliable improvement" in labels and "Pre–post effect size" in labels
    before = _charts(at)
    assert len(before) == 5
    assert "ORS" in before[0]["layout"]["title"]["text"]
    values_before = [m.value for m in at.metric]

    at.radio(key="f_outcome").set_value("phq9").run()
    assert not at.exception
    after = _charts(at)
    assert len(after) == 5
    assert "PHQ-9" in after[0]["layout"]["title"]["text"]
    assert after[3]["layout"]["yaxis"]["title"]["text"] == "PHQ-9 score (higher = worse)"
    assert [m.value for m in at.metric] != values_before
    assert [c["data"] for c in after] != [c["data"] for c in before]


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        (
            "outcomes_distribution",
            {"bin_width": 1.0, "lowest_bin": -5.0, "highest_bin": 15.0, "reliable_change": 5.0},
        ),
        ("outcomes_trajectory", {"max_session": 12}),
        ("outcomes_alliance_bins", {"fractions": [0.25, 0.5, 0.75]}),
    ],
)
def test_declared_columns_match_the_result(con, name, extra):
    """The queries tests/test_queries.py cannot call generically."""
    df = run(con, name, "ors", **extra)
    assert list(df.columns) == list(queries.load(name).columns)
    assert not df.empty
