"""Issue 19, findings 4, 5 and 6: derived lines, complements and statistics that gave withheld
cells away.

4. Control-chart lines: a withheld month keeps no centre line, no limits (they solve back to its
   exact denominator) and no flags, on screen, in hover text, in PNG/SVG and in the data table;
   the baseline holds shown months only.
5. Complementary suppression judges the withheld months by the distinct clients of their union
   (a client is seen in several months), not by the sum of their counts.
6. (a) One release rule for d, OR and r, used by the page, the report pack and the exports; the
   `summary` command prints exact figures and says so. (b) Band labels never carry a client's
   value: cut points rounded to whole points, and only between two groups of at least k clients.

Every test runs on the real demo clinic (tests/conftest.py) or on real suppress() tables, and
each failed on the code before these changes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from alliance import privacy, queries, report, spc
from alliance.filters import Filters
from alliance.metrics import dropout as dropout_metrics
from alliance.metrics import dropout_stats
from alliance.metrics import ruptures as rupture_metrics
from alliance.panel import Context, Panel
from alliance.privacy import PrivacyPolicy
from alliance.settings import Settings
from alliance.views import alliance_page, dropout, outcomes, ruptures
from tests.conftest import ROOT

D = dt.date
K = 11
YEAR = (D(2025, 11, 1), D(2026, 10, 1))
THREE_YEARS = (D(2023, 11, 1), D(2026, 10, 1))
POLICY = PrivacyPolicy(k=K)


def _ctx(con, period=YEAR, **filters) -> Context:
    return Context(
        con=con,
        filters=Filters(first_month=period[0], last_month=period[1], **filters),
        settings=Settings(),
    )


def _therapists(con) -> list[str]:
    return [r[0] for r in con.execute("select code from therapists order by code").fetchall()]


def _panel(view, key: str) -> Panel | None:
    return next((p for p in view.panels if p.key == key), None)


# --------------------------------------------------------------------------- 4. chart lines


def test_p_and_xbar_charts_draw_no_line_at_a_point_without_a_value():
    """A withheld point (NaN) has no centre and no limits, and is not in the baseline."""
    events = [10.0, np.nan, 30.0, 12.0]
    n = [100.0, np.nan, 200.0, 100.0]
    chart = spc.p_chart(events, n)
    assert chart.loc[1, ["p", "centre", "lcl", "ucl"]].isna().all()
    assert chart.loc[0, "centre"] == pytest.approx(52 / 400)  # the shown points only
    assert chart.loc[[0, 2, 3], ["centre", "lcl", "ucl"]].notna().all().all()
    xbar = spc.xbar_chart([30.0, np.nan, 32.0], [4.0, np.nan, 4.0], [20.0, np.nan, 20.0])
    assert xbar.loc[1, ["mean", "centre", "lcl", "ucl"]].isna().all()
    assert xbar.loc[0, "centre"] == pytest.approx(31.0)
    # a month with no denominator at all has no lines either
    assert spc.p_chart([0.0, 5.0], [0.0, 50.0]).loc[0, ["centre", "lcl", "ucl"]].isna().all()


def _trace_y(fig, name: str) -> dict:
    """x (as a timestamp) -> y of the named trace of a control chart ({} when not drawn: a run
    chart has no limits)."""
    tr = next((t for t in fig.data if t.name == name), None)
    if tr is None:
        return {}
    return {pd.Timestamp(x): y for x, y in zip(tr.x, tr.y, strict=True)}


def _missing(y) -> bool:
    return y is None or (isinstance(y, float) and math.isnan(y))


def _assert_no_lines_at_withheld(panel: Panel, value_col: str) -> int:
    """Every withheld month: no value, centre, limits or flags in the data, and no point on any
    trace of the figure (so no hover, no segment, nothing in PNG/SVG). Returns the number of
    withheld months."""
    d = panel.data
    hidden = d[d["suppressed"].astype(bool)]
    lines = ["centre", "lcl", "ucl", value_col]
    assert hidden[lines].isna().all().all(), (panel.key, hidden[lines])
    for flag in ("shift", "trend", "astronomical"):
        if flag in hidden:
            assert not hidden[flag].fillna(False).astype(bool).any(), (panel.key, flag)
    months = {pd.Timestamp(m) for m in pd.to_datetime(hidden["month"])}
    names = ("3-sigma limits", "lower limit", "centre line (baseline)", "mean of the period")
    for name in (*names, "monthly value"):
        ys = _trace_y(panel.figure, name)
        assert all(_missing(ys.get(m)) for m in months), (panel.key, name)
    for tr in panel.figure.data:  # flag markers: none at a withheld month
        if tr.mode == "markers":
            assert not months & {pd.Timestamp(x) for x in tr.x}, (panel.key, tr.name)
    return len(hidden)


def test_ruptures_control_charts_keep_no_line_for_a_withheld_month(demo_con):
    """The rupture and repair p-charts of every therapist: the limits of a withheld month would
    solve back to its exact denominator (p̄ ± 3·sqrt(p̄(1−p̄)/n)); they are withheld with it, and
    the centre line comes from the shown baseline months alone. Since the protected step
    (numerator rule) nearly every therapist's month is withheld, so each site's months over one
    and three years are looked at too (tests/test_protected_ruptures.py: the protected values)."""
    withheld = shown_with_lines = 0
    sites = [r[0] for r in demo_con.execute("select name from sites order by 1").fetchall()]
    cases = [(code, _ctx(demo_con, therapist=code)) for code in _therapists(demo_con)] + [
        (site, _ctx(demo_con, period, site=site))
        for site in sites
        for period in (YEAR, THREE_YEARS)
    ]
    for code, ctx in cases:
        for panel in ruptures.build(ctx, "time").panels:
            if panel.figure is None or "suppressed" not in panel.data:
                continue
            value = "rate_per_100" if panel.key == "rupture_monthly" else "repair_rate"
            withheld += _assert_no_lines_at_withheld(panel, value)
            d = panel.data
            shown = d[~d["suppressed"].astype(bool)]
            shown_with_lines += int(shown["centre"].notna().sum())
            # the centre line is the shown baseline months' pooled rate
            events, n = ("ruptures", "with_previous")
            if panel.key == "repair_monthly":
                events, n = ("repaired", "fate_known")
            first = pd.Timestamp(ctx.filters.first_month)
            base_end = first + pd.DateOffset(months=ctx.settings.spc_baseline_months)
            base = shown[pd.to_datetime(shown["month"]) < base_end]
            if len(base) and shown["centre"].notna().any():
                scale = 100.0 if panel.key == "rupture_monthly" else 1.0
                want = scale * base[events].astype(float).sum() / base[n].astype(float).sum()
                assert shown["centre"].dropna().iloc[0] == pytest.approx(want), (code, panel.key)
    assert withheld > 50 and shown_with_lines > 50  # both kinds of month were looked at


def test_dropout_and_alliance_control_charts_keep_no_line_for_a_withheld_month(demo_con):
    """The Dropout page's p-chart and the Alliance page's X-bar chart follow the same rule."""
    withheld = 0
    for code in _therapists(demo_con):
        ctx = _ctx(demo_con, therapist=code)
        p = _panel(dropout.build(ctx), "dropout_spc")
        if p is not None and p.figure is not None:
            withheld += _assert_no_lines_at_withheld(p, "value")
        a = _panel(alliance_page.build(ctx), "alliance_spc")
        if a is not None and a.figure is not None:
            withheld += _assert_no_lines_at_withheld(a, "value")
    assert withheld > 10


# --------------------------------------------------------------------------- 5. complements


def _months(n: list[int], ids: list[list[int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "month": [f"2026-0{i + 1}" for i in range(len(n))],
            "n_clients": n,
            "rate": [0.1] * len(n),
            "ids": ids,
        }
    )


def _overlap() -> pd.DataFrame:
    """Months 1 and 2 share 6 clients: 6 + 9 = 15 by their counts, 9 distinct clients."""
    ids = [list(range(6)), [0, 1, 2, 3, 4, 5, 6, 7, 99], list(range(100, 150)), []]
    ids[3] = list(range(200, 260))
    return _months([6, 9, 50, 60], ids)


def test_withheld_months_are_judged_by_their_distinct_clients():
    df = _overlap()
    by_sum = privacy.suppress(df, policy=POLICY, value_cols=["rate"], clients_col=None)
    assert by_sum["suppressed"].tolist() == [True, True, False, False]  # unchanged default
    by_clients = privacy.suppress(df, policy=POLICY, value_cols=["rate"], clients_col="ids")
    assert by_clients["suppressed"].tolist() == [True, True, True, False]
    assert by_clients["suppression"].tolist() == ["primary", "primary", "complementary", ""]
    assert "ids" not in by_clients  # client ids are never shown or exported
    # unknown client sets: as small as the largest withheld cell (conservative)
    unknown = df.assign(ids=[df["ids"][0], None, None, None])
    judged = privacy.suppress(unknown, policy=POLICY, value_cols=["rate"], clients_col="ids")
    assert judged["suppressed"].tolist() == [True, True, True, False]
    overlapping = privacy.suppress(df, policy=POLICY, value_cols=["rate"], overlapping=True)
    assert overlapping["suppressed"].tolist() == [True, True, True, False]


def test_client_sets_are_read_lazily_and_checked():
    calls: list[int] = []

    def ids(frame: pd.DataFrame) -> list[object]:
        calls.append(len(frame))
        return list(_overlap()["ids"])

    big = _months([20, 30], [list(range(20)), list(range(30))]).drop(columns="ids")
    privacy.suppress(big, policy=POLICY, value_cols=["rate"], clients_col=ids)
    assert calls == []  # nothing withheld: no client ids fetched
    out = privacy.suppress(
        _overlap().drop(columns="ids"), policy=POLICY, value_cols=["rate"], clients_col=ids
    )
    assert calls == [4] and out["suppressed"].sum() == 3
    bad = _overlap().assign(ids=[[1, 2], [], [], []])  # 2 ids for a cell of 6 clients
    with pytest.raises(ValueError, match="distinct client ids"):
        privacy.suppress(bad, policy=POLICY, value_cols=["rate"], clients_col="ids")


def _distinct_previous(con, filters: dict, months: list[str]) -> int:
    """Ground truth from the rollup: distinct clients with an SRS that has a previous SRS."""
    where = " and ".join(f"{k} = ?" for k in filters)
    sql = (
        "select count(distinct client_id) from srs_month_cells "
        f"where n_srs_prev > 0 and {where} and strftime(month, '%Y-%m') in "
        f"({', '.join('?' for _ in months)})"
    )
    return con.execute(sql, [*filters.values(), *months]).fetchall()[0][0]


# selections with some months withheld and some shown (the numerator rule now withholds every
# month of T-2324 and of non-binary clients in the year, the cases this test used before)
CASES = [
    (YEAR, {"program": "Couples"}),
    (YEAR, {"race_ethnicity": "Asian"}),
    (THREE_YEARS, {"site": "Northside"}),
    (THREE_YEARS, {"race_ethnicity": "Black or African American"}),
]


@pytest.mark.parametrize("period, filters", CASES, ids=[str(c[1]) for c in CASES])
def test_ruptures_withheld_months_describe_k_distinct_clients(demo_con, period, filters):
    ctx = _ctx(demo_con, period, **filters)
    panel = _panel(ruptures.build(ctx, "time"), "rupture_monthly")
    d = panel.data
    hidden = d[d["suppressed"].astype(bool)]
    assert 0 < len(hidden) < len(d)
    assert _distinct_previous(demo_con, filters, hidden["month"].tolist()) >= K


def test_month_client_lists_match_the_counts_of_the_rupture_table(demo_con):
    for code in [None, *_therapists(demo_con)[:6]]:
        ctx = _ctx(demo_con, THREE_YEARS, therapist=code)
        lists = queries.run(
            demo_con, "rupture_month_clients", **ctx.params(), **rupture_metrics.rupture_params(ctx)
        ).set_index("month")
        counts = rupture_metrics.rupture_counts(ctx, "month")
        for row in counts.itertuples():
            prev = lists["previous_clients"].get(row.unit, [])
            fate = lists["fate_clients"].get(row.unit, [])
            assert len(set(prev)) == len(prev) == row.n_clients, (code, row.unit)
            assert len(set(fate)) == len(fate) == row.fate_clients, (code, row.unit)


def test_repair_chart_withheld_months_describe_k_distinct_clients(demo_con):
    """Therapists over three years, and (since the numerator rule withholds most of a
    therapist's repair months) sites and programs over one and three years."""
    checked = 0
    sites = [r[0] for r in demo_con.execute("select name from sites order by 1").fetchall()]
    programs = [r[0] for r in demo_con.execute("select name from programs order by 1").fetchall()]
    scopes = [(THREE_YEARS, {"therapist": code}) for code in _therapists(demo_con)]
    scopes += [
        (period, {key: name})
        for period in (YEAR, THREE_YEARS)
        for key, names in (("site", sites), ("program", programs))
        for name in names
    ]
    for period, filters in scopes:
        ctx = _ctx(demo_con, period, **filters)
        code = str(filters)
        panel = _panel(ruptures.build(ctx, "time"), "repair_monthly")
        if panel is None or panel.figure is None:
            continue
        d = panel.data
        hidden = d[d["suppressed"].astype(bool)]
        if hidden.empty or len(hidden) == len(d):
            continue
        lists = queries.run(
            demo_con, "rupture_month_clients", **ctx.params(), **rupture_metrics.rupture_params(ctx)
        )
        lists = lists.assign(month=lists["month"].str[:7]).set_index("month")["fate_clients"]
        union = set().union(*(set(lists[m]) for m in hidden["month"]))
        assert len(union) >= K, code
        checked += 1
    assert checked >= 2  # most units' repair months are all withheld or all shown


# --------------------------------------------------------------------------- 6a. one rule


def _small_dropout_group(con) -> list[Context]:
    """Therapists (12 months) whose dropouts with an early SRS are 1 .. k-1 clients."""
    out = []
    for code in _therapists(con):
        ctx = _ctx(con, therapist=code)
        s = dropout_metrics.summary(ctx)
        if s["n_clients"] >= K and 0 < s["early_dropout_clients"] < K:
            out.append(ctx)
    return out


def test_statistic_release_rule():
    assert privacy.statistic_released(POLICY, 11, 40)
    assert not privacy.statistic_released(POLICY, 3, 40)
    assert not privacy.statistic_released(POLICY, 0, 40)  # rests on nobody
    assert privacy.statistic_released(PrivacyPolicy(k=3), 3)
    with pytest.raises(ValueError):
        privacy.statistic_released(POLICY)


def test_page_pack_and_exports_withhold_d_or_r_of_a_small_dropout_group(demo_con):
    """The Dropout page, its panels' data and figures (what the exports write) and the report
    pack's headlines: no d, OR or r where the dropouts are 3 clients."""
    cases = _small_dropout_group(demo_con)
    assert len(cases) >= 3
    for ctx in cases:
        stats = dropout_stats.dropout_alliance_stats(ctx)
        view = dropout.build(ctx)
        tiles = {t.key: t for t in view.tiles}
        secrets = []
        for key in ("alliance_dropout_d", "dropout_or_per_sd_lower", "dropout_point_biserial_r"):
            assert tiles[key].withheld and tiles[key].value is None
            if np.isfinite(stats[key]):
                secrets += [repr(float(stats[key])), f"{stats[key]:.2f}"]
        d_panel = _panel(view, "dropout_d")
        assert "alliance_dropout_d" not in d_panel.stats
        clinic = d_panel.data.iloc[0]
        assert pd.isna(clinic["d"]) and pd.isna(clinic["low"]) and pd.isna(clinic["high"])
        assert _panel(view, "dropout_curve").figure is None
        for panel in view.panels:
            text = panel.data.to_csv() + (panel.figure.to_json() if panel.figure else "")
            for secret in secrets[::2]:  # full precision: not in any table or figure
                assert secret not in text, (panel.key, secret)
            sentence = report.headline("dropout", panel, view, ctx, dropout)
            for secret in secrets[1::2]:
                assert secret not in sentence, (panel.key, sentence)
        assert stats["released"] is False  # and the one rule says why


def test_one_function_decides_for_the_page_and_the_summary(demo_con, monkeypatch):
    """Every caller asks privacy.statistic_released: refusing everything there withholds the
    clinic-wide d, OR and r on the page and lists them in the summary's app_withholds."""
    from alliance import summary

    ctx = _ctx(demo_con)
    assert dropout_stats.dropout_alliance_stats(ctx)["released"]
    monkeypatch.setattr(privacy, "statistic_released", lambda policy, *groups: False)
    view = dropout.build(ctx)
    assert all(t.withheld for t in view.tiles if t.key != "dropout_rate")
    assert _panel(view, "dropout_d").data["d"].isna().all()
    out = summary.compute(ctx)
    assert out["app_withholds"] == list(summary.EFFECT_KEYS)
    assert out["alliance_dropout_d"] is not None  # exact, by design, and it says so


def test_summary_prints_exact_figures_and_says_so(demo_db, demo_con):
    code = _small_dropout_group(demo_con)[0].filters.therapist
    cmd = [sys.executable, "-m", "alliance", "summary", "--db", str(demo_db)]
    period = ["--from", "2025-11", "--to", "2026-10", "--therapist", code]
    out = subprocess.run(
        [*cmd, *period, "--json"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    s = json.loads(out.stdout)
    assert s["exact"] is True and "not protected" in s["privacy"]
    assert "data staff" in s["privacy"]
    assert s["alliance_dropout_d"] is not None  # the exact figure, for data staff
    assert set(s["app_withholds"]) == {
        "alliance_dropout_d",
        "dropout_or_per_sd_lower",
        "dropout_point_biserial_r",
    }
    table = subprocess.run([*cmd, *period], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "Exact figures, not protected" in table.stdout
    assert "withheld in the app" in table.stdout


# --------------------------------------------------------------------------- 6b. labels

DECIMAL = re.compile(r"\d\.\d")
NUMBER = re.compile(r"(?<![Q\d])\d+(?:\.\d+)?")


def _label_numbers(label: str) -> list[float]:
    return [float(x) for x in NUMBER.findall(label.replace("Q1", "").replace("Q2", ""))]


def _early_srs_values(con, ctx: Context) -> set[float]:
    df = queries.run(con, "dropout_early_srs", **ctx.params())
    return {round(float(x), 1) for x in df["early_srs"]}


def test_cut_point_labels():
    names = ["low", "mid", "high"]
    labels = privacy.cut_point_labels(names, [30.4, 34.6], [20, 20, 20], policy=POLICY)
    assert labels == ["low (up to ≈ 30)", "mid (≈ 30 to ≈ 35)", "high (above ≈ 35)"]
    small = privacy.cut_point_labels(names, [30.4, 34.6], [20, 5, 20], policy=POLICY)
    assert small == ["low", "mid", "high"]
    hidden = privacy.cut_point_labels(
        names, [30.4, 34.6], [20, 20, 20], policy=POLICY, withheld=[False, False, True]
    )
    assert hidden == ["low (up to ≈ 30)", "mid (above ≈ 30)", "high"]
    same = privacy.cut_point_labels(names, [30.4, 29.6], [20, 20, 20], policy=POLICY)
    assert same[1] == "mid (≈ 30)"


def test_quintile_labels_carry_no_clients_value(demo_con):
    """Every quintile label of the Dropout page: whole SRS points only, and none at all where
    the quintiles it bounds are withheld (a therapist's 12 months: every quintile withheld)."""
    seen_values = seen_bare = 0
    for code in [None, *_therapists(demo_con)]:
        ctx = _ctx(demo_con, therapist=code)
        view = dropout.build(ctx)
        bands = _panel(view, "dropout_bands")
        if bands is None or bands.figure is None:
            continue
        q = bands.data[bands.data["split"] == "Early-SRS quintile"]
        for row in q.itertuples():
            assert not DECIMAL.search(row.group), row.group  # no client's 34.17
            nums = _label_numbers(row.group)
            assert all(x == round(x) for x in nums), row.group
            seen_values += bool(nums)
        if q["suppressed"].all():
            assert all(not _label_numbers(g) for g in q["group"]), list(q["group"])
            seen_bare += 1
        curve = _panel(view, "dropout_curve")
        text = bands.figure.to_json() + (curve.figure.to_json() if curve.figure else "")
        assert not re.search(r"Q\d[^\"]*\d\.\d", text)
    assert seen_values and seen_bare >= 3


def test_quintile_membership_is_unchanged(demo_con):
    """The groups still cut at the exact (discrete) percentiles: the same episodes per quintile
    as pandas finds with those cut points, so no number changes."""
    ctx = _ctx(demo_con, THREE_YEARS)
    q = queries.run(demo_con, "dropout_by_quintile", **ctx.params()).set_index("quintile")
    e = demo_con.execute(
        "select early_srs from episode_facts where ended and early_srs is not null "
        "and end_date >= ? and end_date < ?",
        [THREE_YEARS[0], D(2026, 11, 1)],
    ).df()["early_srs"]
    cuts = [np.quantile(e, f, method="inverted_cdf") for f in (0.2, 0.4, 0.6, 0.8)]
    groups = 1 + sum((e > c).astype(int) for c in cuts)
    assert q["episodes"].tolist() == groups.value_counts().sort_index().tolist()
    assert q["label_high"].dropna().tolist() == [
        round(np.quantile(e, f)) for f in (0.2, 0.4, 0.6, 0.8)
    ]


def test_outcome_band_labels_carry_no_clients_value(demo_con):
    """The Outcomes page's early-alliance thirds and bins: the same rule."""
    seen_bare = 0
    for code in [None, *_therapists(demo_con)[:20]]:
        ctx = _ctx(demo_con, therapist=code)
        view = outcomes.build(ctx)
        traj = _panel(view, "trajectory")
        bins = _panel(view, "alliance_outcome")
        labels = []
        if traj is not None and traj.figure is not None:
            labels += list(traj.data["early_srs_third"].unique())
        if bins is not None and bins.figure is not None:
            labels += list(bins.data["group"])
            hidden = bins.data[bins.data["suppressed"].astype(bool)]
            for g in hidden["group"]:
                assert not _label_numbers(g), g
                seen_bare += 1
        for label in labels:
            assert not DECIMAL.search(label), (code, label)
            assert all(x == round(x) for x in _label_numbers(label)), (code, label)
    assert seen_bare
