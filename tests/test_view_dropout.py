"""Dropout page: its queries on a hand-built clinic, its statistics, the demo clinic, the app.

The hand-built clinic (`build_clinic`, also used by tests/test_view_alliance.py), all in 2025:

  episode  client site   end       SRS totals by session       early SRS          drop >= 2?
  E1       1      North  planned   38, 39, 40, 36              (38+39+40)/3 = 39  yes (40 -> 36)
  E2       2      North  dropout   30, 32                      31                 no
  E3       3      North  dropout   34, -, 35.5, 33             102.5/3 = 34.1667  yes (35.5 -> 33)
  E4       4      North  planned   37, 36                      36.5               no (1 point)
  E5       5      South  other     35, 33                      34                 yes (exactly 2)
  E6       6      South  planned   33.3, 31.3                  32.3               yes (2.0 only
                                                                                  after rounding:
                                                                                  33.3 - 31.3 =
                                                                                  1.9999999999996)
  E7       7      North  open      30                          30                 -

WAI-SR: E1 session 1 Task items 5, Bond 4, Goal 3 (mean 4); E1 session 2 all items 4; E4 session 1
all items 2.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import statistics
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from alliance import db, noise, protected, queries
from alliance.filters import Filters
from alliance.metrics import dropout as metrics
from alliance.metrics import dropout_stats
from alliance.panel import Context
from alliance.settings import Settings
from alliance.stats import cohens_d, logistic_curve, logistic_or_per_sd_lower, wilson_interval
from alliance.views import dropout
from tests.conftest import ROOT

D = dt.date
YEAR_2025 = Filters(first_month=D(2025, 1, 1), last_month=D(2025, 12, 1))
FULL_DEMO = Filters(first_month=D(2023, 11, 1), last_month=D(2026, 10, 1))

# (episode, client, site, end_reason, [(date, srs), ...]) ; therapist alternates 1, 2
EPISODES = [
    (
        1,
        1,
        1,
        "planned",
        [(D(2025, 1, 6), 38), (D(2025, 1, 13), 39), (D(2025, 1, 20), 40), (D(2025, 1, 27), 36)],
    ),
    (2, 2, 1, "dropout", [(D(2025, 2, 3), 30), (D(2025, 2, 10), 32)]),
    (
        3,
        3,
        1,
        "dropout",
        [(D(2025, 3, 3), 34), (D(2025, 3, 10), None), (D(2025, 3, 17), 35.5), (D(2025, 3, 24), 33)],
    ),
    (4, 4, 1, "planned", [(D(2025, 3, 5), 37), (D(2025, 3, 12), 36)]),
    (5, 5, 2, "other", [(D(2025, 2, 5), 35), (D(2025, 2, 12), 33)]),
    (6, 6, 2, "planned", [(D(2025, 3, 6), 33.3), (D(2025, 3, 13), 31.3)]),
    (7, 7, 1, None, [(D(2025, 3, 20), 30)]),
]
EARLY = {1: 39.0, 2: 31.0, 3: 102.5 / 3, 4: 36.5, 5: 34.0, 6: 32.3}
DROPOUT = {1: 0, 2: 1, 3: 1, 4: 0, 5: 0, 6: 0}


def build_clinic(path: Path) -> None:
    """The hand-built clinic of the module docstring."""
    with db.writer(path, fresh=True) as con:
        con.execute("insert into sites values (1, 'North'), (2, 'South')")
        con.execute("insert into programs values (1, 'Adult outpatient')")
        con.execute("insert into therapists values (1, 'p1', 'T-AAAA'), (2, 'p2', 'T-BBBB')")
        for _, client, _, _, _ in EPISODES:
            con.execute("insert into clients values (?, ?)", [client, f"c{client}"])
        sid = 0
        for ep, client, site, end, sessions in EPISODES:
            con.execute(
                "insert into episodes values (?, ?, ?, 1, '26-44', 'female', 'White', ?)",
                [ep, client, f"e{ep}", end],
            )
            for number, (day, srs) in enumerate(sessions, start=1):
                sid += 1
                con.execute(
                    """
                    insert into sessions (session_id, episode_id, therapist_id, site_id,
                        session_date, session_number, srs_total)
                    values (?, ?, ?, ?, ?, ?, ?)
                    """,
                    [sid, ep, 1 + ep % 2, site, day, number, srs],
                )
        # WAI-SR: E1 session 1 (Task 5, Bond 4, Goal 3), E1 session 2 (all 4), E4 session 1 (all 2)
        con.execute(
            """
            update sessions set wai_1 = 5, wai_2 = 5, wai_10 = 5, wai_12 = 5,
                wai_3 = 4, wai_5 = 4, wai_7 = 4, wai_9 = 4,
                wai_4 = 3, wai_6 = 3, wai_8 = 3, wai_11 = 3
            where episode_id = 1 and session_number = 1
            """
        )
        for ep, number, item in ((1, 2, 4), (4, 1, 2)):
            con.execute(
                """
                update sessions set wai_1 = $v, wai_2 = $v, wai_3 = $v, wai_4 = $v, wai_5 = $v,
                    wai_6 = $v, wai_7 = $v, wai_8 = $v, wai_9 = $v, wai_10 = $v, wai_11 = $v,
                    wai_12 = $v
                where episode_id = $ep and session_number = $n
                """,
                {"v": item, "ep": ep, "n": number},
            )
        db.set_meta(con, "dataset_kind", "clinic")
        db.rebuild_facts(con)


@pytest.fixture(scope="module")
def hand_con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("dropout_view") / "hand.duckdb"
    build_clinic(path)
    con = db.open_read_only(path)
    yield con
    con.close()


def hand_ctx(con: duckdb.DuckDBPyConnection, k: int = 1, **filters: object) -> Context:
    """k = 1 switches small-cell suppression off so every hand-computed cell is visible."""
    return Context(
        con=con,
        filters=dataclasses.replace(YEAR_2025, **filters),
        settings=Settings(privacy_k=k),
    )


def run(ctx: Context, name: str, **extra: object):
    return queries.run(ctx.con, name, **ctx.params(), **extra)


def noisy(ctx: Context, count: float, key: float) -> float:
    """A count as the page shows it: with its cell's noise (alliance/noise.py)."""
    one = noise.perturb_counts(np.array([count], float), np.array([key], float), ctx.noise, 1)
    return float(one[0])


# --------------------------------------------------------------------------- SQL, by hand


def test_summary_counts_ended_episodes_and_dropouts(hand_con):
    s = run(hand_ctx(hand_con), "dropout_summary").iloc[0]
    assert s["ended"] == 6 and s["n_clients"] == 6  # E7 is open
    assert s["dropouts"] == 2 and s["dropout_rate"] == pytest.approx(2 / 6)
    assert s["with_early_srs"] == 6 and s["early_dropouts"] == 2
    assert s["early_dropout_clients"] == 2 and s["early_other_clients"] == 4
    assert s["planned"] == 3
    # last session numbers: dropouts E2 = 2, E3 = 4 -> median 3; planned E1 4, E4 2, E6 2 -> 2
    assert s["median_last_dropout"] == 3 and s["median_last_planned"] == 2


def test_site_filter_uses_the_episode_site(hand_con):
    s = run(hand_ctx(hand_con, site="South"), "dropout_summary").iloc[0]
    assert s["ended"] == 2 and s["dropouts"] == 0  # E5 (other), E6 (planned)


def test_early_srs_is_recovered_exactly_from_the_groups(hand_con):
    g = run(hand_ctx(hand_con), "dropout_early_srs")
    assert g["episodes"].sum() == 6 and g["dropouts"].sum() == 2
    got = dict(zip(g["early_srs"].round(9), g["dropouts"], strict=True))
    want = {round(EARLY[e], 9): DROPOUT[e] for e in EARLY}
    assert got == want
    e3 = g.loc[(g["early_srs"] - 102.5 / 3).abs() < 1e-12]
    assert len(e3) == 1  # 34.1666... exactly, not rounded to 34.2


def test_dropout_by_alliance_band_by_hand(hand_con):
    b = run(hand_ctx(hand_con), "dropout_by_alliance_band", srs_cutoff=36.0).set_index("band")
    # below 36: E2 (31, dropout), E3 (34.17, dropout), E5 (34), E6 (32.3) -> 2 of 4
    assert b.loc["below", "episodes"] == 4 and b.loc["below", "dropouts"] == 2
    assert b.loc["below", "dropout_rate"] == pytest.approx(0.5)
    assert b.loc["below", "mean_early_srs"] == pytest.approx((31 + 102.5 / 3 + 34 + 32.3) / 4)
    # at or above 36: E1 (39), E4 (36.5) -> 0 of 2
    assert b.loc["at_or_above", "episodes"] == 2 and b.loc["at_or_above", "dropouts"] == 0
    # the cutoff is a parameter: at 33, only E2 (31) and E6 (32.3) are below
    b33 = run(hand_ctx(hand_con), "dropout_by_alliance_band", srs_cutoff=33.0).set_index("band")
    assert b33.loc["below", "episodes"] == 2 and b33.loc["below", "dropouts"] == 1


def test_dropout_by_quintile_by_hand(hand_con):
    q = run(hand_ctx(hand_con), "dropout_by_quintile").set_index("quintile")
    # sorted early SRS 31, 32.3, 34, 34.17, 36.5, 39: 20/40/60/80% cut points (discrete)
    # 32.3, 34, 34.17, 36.5 -> Q1 {31 d, 32.3}, Q2 {34}, Q3 {34.17 d}, Q4 {36.5}, Q5 {39}
    assert q["episodes"].tolist() == [2, 1, 1, 1, 1]
    assert q["dropouts"].tolist() == [1, 0, 1, 0, 0]
    # labels get the interpolated percentiles rounded to whole points, never a client's 32.3
    assert q.loc[1, "label_high"] == 32.0 and np.isnan(q.loc[1, "label_low"])
    assert q.loc[5, "label_low"] == 37.0 and np.isnan(q.loc[5, "label_high"])  # 36.5 -> 37


def test_last_session_shares_by_hand(hand_con):
    df = run(hand_ctx(hand_con), "dropout_last_session", last_number=13)
    got = {(r.ending, r.last_session): (r.episodes, r.share) for r in df.itertuples()}
    assert got == {
        ("dropout", "2"): (1, pytest.approx(0.5)),  # E2
        ("dropout", "4"): (1, pytest.approx(0.5)),  # E3
        ("planned", "2"): (2, pytest.approx(2 / 3)),  # E4, E6
        ("planned", "4"): (1, pytest.approx(1 / 3)),  # E1
    }
    pooled = run(hand_ctx(hand_con), "dropout_last_session", last_number=3)
    assert set(pooled["last_session"]) == {"2", "3+"}  # 4 sessions pool into 3+


def test_effect_groups_count_clients_by_site_and_dropout(hand_con):
    g = run(hand_ctx(hand_con), "dropout_effect_groups")
    total = g[g["site"].isna()].set_index("dropout")["n_clients"].to_dict()
    assert total == {False: 4, True: 2}
    south = g[g["site"] == "South"].set_index("dropout")["n_clients"].to_dict()
    assert south == {False: 2}


# --------------------------------------------------------------------------- statistics


def test_dropout_alliance_stats_by_hand(hand_con):
    stats = dropout_stats.dropout_alliance_stats(hand_ctx(hand_con))
    assert set(stats) == set(dropout_stats.STAT_KEYS)
    stay = [EARLY[e] for e in EARLY if not DROPOUT[e]]  # 39, 36.5, 34, 32.3
    left = [EARLY[e] for e in EARLY if DROPOUT[e]]  # 31, 34.1667
    # pooled SD with n - 1 weighting, computed with the statistics module (not numpy)
    pooled = ((3 * statistics.variance(stay) + 1 * statistics.variance(left)) / 4) ** 0.5
    d = (statistics.mean(stay) - statistics.mean(left)) / pooled
    # (35.45 - 32.5833) / sqrt((3 * 8.57667 + 1 * 5.01389) / 4) = 2.86667 / 2.77236 = 1.0340
    assert stats["alliance_dropout_d"] == pytest.approx(d)
    assert stats["alliance_dropout_d"] == pytest.approx(1.0340, abs=1e-4)
    lo, hi = stats["alliance_dropout_d_ci"]
    se = (6 / 8 + d**2 / 12) ** 0.5  # sqrt((n1 + n2)/(n1 n2) + d^2 / (2 (n1 + n2)))
    assert (lo, hi) == (pytest.approx(d - 1.959964 * se), pytest.approx(d + 1.959964 * se))
    x = [EARLY[e] for e in EARLY]
    y = [DROPOUT[e] for e in EARLY]
    assert stats["dropout_point_biserial_r"] == pytest.approx(statistics.correlation(x, y))
    assert stats["n"] == 6
    # the grouped logistic fit gives what a per-episode fit gives
    per_episode = logistic_or_per_sd_lower(x, y)
    assert stats["dropout_or_per_sd_lower"] == pytest.approx(per_episode.value, rel=1e-6)
    assert stats["dropout_or_per_sd_lower_ci"] == pytest.approx(
        [per_episode.low, per_episode.high],
        rel=1e-4,  # both fits iterate to a tolerance
    )


def test_stats_are_nan_not_an_error_without_dropouts(hand_con):
    stats = dropout_stats.dropout_alliance_stats(hand_ctx(hand_con, site="South"))
    assert stats["n"] == 2
    assert np.isnan(stats["alliance_dropout_d"]) and np.isnan(stats["dropout_or_per_sd_lower"])


def test_grouped_logistic_fit_equals_the_per_episode_fit_on_the_demo(demo_con):
    ctx = Context(demo_con, FULL_DEMO, Settings())
    groups = dropout_stats.pool(queries.run(demo_con, "dropout_early_srs", **ctx.params()))
    x, y = dropout_stats.expand(groups)
    model = dropout_stats.GroupedLogit(groups)
    want = logistic_or_per_sd_lower(x, y)
    got = model.or_per_sd_lower()
    assert (got.value, got.low, got.high) == pytest.approx((want.value, want.low, want.high))
    grid = np.linspace(28, 40, 13)
    pd_want = logistic_curve(x, y, grid)
    pd_got = model.curve(grid)
    for col in ("p", "low", "high"):
        assert pd_got[col].to_numpy() == pytest.approx(pd_want[col].to_numpy(), rel=1e-6)


def test_cohens_d_by_site_from_the_groups_equals_the_per_episode_d_on_the_demo(demo_con):
    """Per site: the weighted moments give cohens_d on the site's rebuilt episodes."""
    ctx = Context(demo_con, FULL_DEMO, Settings())
    groups = queries.run(demo_con, "dropout_early_srs", **ctx.params())
    got = dropout_stats.d_by_site(groups)
    sites = sorted(groups["site"].dropna().unique())
    assert list(got) == sites and len(sites) > 1
    for site in sites:
        x, y = dropout_stats.expand(groups[groups["site"] == site])
        want = cohens_d(x[y == 0], x[y == 1])
        d = got[site]
        assert d.n == want.n
        assert (d.value, d.low, d.high) == pytest.approx((want.value, want.low, want.high))


def test_cohens_d_by_site_is_nan_for_a_site_with_too_few_dropouts():
    groups = pd.DataFrame(
        {
            "site": ["A", "A", "A", "B", "B", "B"],
            "early_srs": [30.0, 34.0, 36.0, 30.0, 34.0, 36.0],
            # A: dropouts 30, 34 and other endings 34, 36, 36 (by hand: d below); B: one dropout
            "episodes": [1, 2, 2, 2, 1, 1],
            "dropouts": [1, 1, 0, 1, 0, 0],
        }
    )
    got = dropout_stats.d_by_site(groups)
    # A: other = 34, 36, 36 (mean 35.333, var 1.3333); dropouts = 30, 34 (mean 32, var 8)
    # pooled var = (2 * 1.3333 + 1 * 8) / 3 = 3.5556, SD 1.8856; d = 3.3333 / 1.8856 = 1.7678
    assert got["A"].value == pytest.approx(1.767767, abs=1e-6)
    assert got["A"].n == 5
    assert np.isnan(got["B"].value) and got["B"].n == 4


def test_cumulative_share_stops_at_the_first_withheld_bin():
    part = pd.DataFrame(
        {"share": [0.3, 0.2, np.nan, 0.1, np.nan], "suppressed": [False, False, True, False, True]}
    )
    got = metrics._cumulative_visible(part)
    assert got.iloc[:2].tolist() == pytest.approx([0.3, 0.5])
    assert got.iloc[2:].isna().all()  # 0.1 after a withheld bin would give the bin away


# --------------------------------------------------------------------------- the view


def test_view_on_hand_data_shows_the_hand_computed_numbers(hand_con):
    """The hand-computed figures as the page shows them: every count with its cell's noise,
    whose key is the sum of its episodes' keys (checked against the facts by hand)."""
    ctx = hand_ctx(hand_con)
    v = dropout.build(ctx)
    assert v.notice is None
    s = metrics.summary(ctx)
    assert (s["ended"], s["dropouts"]) == (6, 2)
    keys = hand_con.execute(
        """
        select sum(ekey), sum(ekey) filter (where dropout) from episode_facts
        where ended and end_date >= $date_from and end_date < $date_to
        """,
        {k: ctx.params()[k] for k in ("date_from", "date_to")},
    ).fetchone()
    assert (s["ended_cellkey"], s["dropouts_cellkey"]) == keys
    ended, drops = noisy(ctx, 6, keys[0]), noisy(ctx, 2, keys[1])
    tiles = {t.key: t for t in v.tiles}
    assert tiles["dropout_rate"].value == pytest.approx(drops / ended)
    lo, hi = protected.wilson(pd.Series([drops]), pd.Series([ended]), ctx.noise)
    assert f"{lo[0]:.1%} to {hi[0]:.1%}" in tiles["dropout_rate"].n_text
    assert f"n = {ended:,.0f} ended episodes" in tiles["dropout_rate"].n_text
    panels = {p.key: p for p in v.panels}
    bands = panels["dropout_bands"].data.set_index("group")
    raw = run(ctx, "dropout_by_alliance_band", srs_cutoff=36.0).set_index("band")
    for band, group, n_drop, n_ep in (
        ("below", "Early SRS below 36", 2, 4),  # 0.5 exact
        ("at_or_above", "Early SRS 36 or above", 0, 2),  # 0 exact
    ):
        row = raw.loc[band]
        assert (row["dropouts"], row["episodes"]) == (n_drop, n_ep)
        want = noisy(ctx, n_drop, row["dropouts_cellkey"]) / noisy(
            ctx, n_ep, row["episodes_cellkey"]
        )
        assert bands.loc[group, "dropout_rate"] == pytest.approx(want)
    assert bands.loc["Early SRS 36 or above", "dropout_rate"] == 0  # 0 stays 0
    when = panels["dropout_when"].data.set_index(["ending", "last_session"])
    # dropouts end at sessions 2 and 4, planned endings at 2, 2 and 4: each bin's protected
    # count over the protected total of its ending
    last = run(ctx, "dropout_last_session", last_number=13).set_index(["ending", "last_session"])
    planned_key = last.loc["planned", "episodes_cellkey"].sum()
    for ending, name, total, total_key in (
        ("dropout", "Dropout", 2, keys[1]),
        ("planned", "Planned ending", 3, planned_key),
    ):
        shown_total = noisy(ctx, total, total_key)
        row = last.loc[(ending, "2")]
        want = noisy(ctx, row["episodes"], row["episodes_cellkey"]) / shown_total
        assert when.loc[(name, "2"), "share"] == pytest.approx(want)
        assert when.loc[(name, "2"), "ended_by"] == pytest.approx(want)


def test_too_small_selection_gets_a_notice_not_numbers(hand_con):
    v = dropout.build(hand_ctx(hand_con, k=11))  # 6 clients < 11
    assert v.notice and "fewer than 11 clients" in v.notice
    assert not v.tiles and not v.panels


def test_statistics_are_withheld_when_the_dropouts_are_too_few(hand_con):
    v = dropout.build(hand_ctx(hand_con, k=3))  # 6 clients, but only 2 dropouts with early SRS
    assert v.notice is None
    tiles = {t.key: t for t in v.tiles}
    for key in ("alliance_dropout_d", "dropout_or_per_sd_lower", "dropout_point_biserial_r"):
        assert tiles[key].withheld and tiles[key].value is None
        assert tiles[key].value_text("n < 3") == "n < 3"
    panels = {p.key: p for p in v.panels}
    assert panels["dropout_curve"].figure is None and "withheld" in panels["dropout_curve"].message
    d_row = panels["dropout_d"].data.iloc[0]
    assert d_row["suppressed"] and np.isnan(d_row["d"])


def test_empty_selection_gives_a_message(demo_con):
    nothing = Filters(
        first_month=D(2024, 1, 1), last_month=D(2024, 6, 1), site="Westbrook (opened 2026)"
    )
    v = dropout.build(Context(demo_con, nothing, Settings()))
    assert v.notice and "No episodes ended" in v.notice


def test_demo_clinic_recovers_its_parameters(demo_con):
    """The demo draws dropout from a logistic model with OR ≈ 1.7 per SD (d ≈ .55), ≈ 20%."""
    ctx = Context(demo_con, FULL_DEMO, Settings())
    s = metrics.summary(ctx)
    lo, hi = wilson_interval(s["dropouts"], s["ended"])
    assert 0.15 < s["dropout_rate"] < 0.25
    assert lo[0] < 0.207 and hi[0] > 0.187  # overlaps Swift & Greenberg's 18.7-20.7%
    stats = dropout_stats.dropout_alliance_stats(ctx)
    assert stats["n"] > 2500
    d_lo, d_hi = stats["alliance_dropout_d_ci"]
    assert 0.4 < stats["alliance_dropout_d"] < 0.7 and d_lo < 0.7 and d_hi > 0.4
    or_lo, or_hi = stats["dropout_or_per_sd_lower_ci"]
    assert or_lo <= 1.7 <= or_hi
    r_lo, r_hi = stats["dropout_point_biserial_r_ci"]
    assert r_lo < stats["dropout_point_biserial_r"] < r_hi < 0


def test_view_runs_on_the_demo_clinic(demo_ctx):
    v = dropout.build(demo_ctx)
    assert v.notice is None
    assert [p.key for p in v.panels] == [
        "dropout_spc",
        "dropout_bands",
        "dropout_curve",
        "dropout_d",
        "dropout_when",
    ]
    for p in v.panels:
        assert p.figure is not None, p.key
        layout = p.figure.layout
        assert layout.title.text and "n = " in layout.title.subtitle.text, p.key
        assert p.reading, p.key
    tiles = {t.key: t for t in v.tiles}
    assert tiles["alliance_dropout_d"].value == pytest.approx(
        dropout_stats.dropout_alliance_stats(demo_ctx)["alliance_dropout_d"]
    )
    assert "published" in tiles["alliance_dropout_d"].n_text
    curve = {p.key: p for p in v.panels}["dropout_curve"].data
    # lower early alliance, higher fitted chance of dropout
    assert curve["fitted_dropout_chance"].is_monotonic_decreasing


# --------------------------------------------------------------------------- the page


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)


def test_dropout_page_renders_and_follows_a_filter(app_env):
    at = _app().run()
    at.switch_page("pages/dropout.py").run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Dropout"]
    labels = [m.label for m in at.metric]
    assert "Dropout rate" in labels and "Alliance gap, Cohen's d" in labels
    charts = at.get("plotly_chart")
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts]
    assert len(charts) == 5 and "Dropout rate by month: control chart" in titles
    before = [m.value for m in at.metric]
    at.selectbox(key="f_site").set_value("Riverside").run()
    assert not at.exception
    assert [m.value for m in at.metric] != before
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "Site: Riverside" in spec["layout"]["title"]["subtitle"]["text"]
