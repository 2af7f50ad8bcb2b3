"""Charts that never mislead (issue 20, findings 1-4): bands break where their series breaks,
a change is coloured only when it is beyond chance, value axes are not zoomed into noise, and
the control-chart rules judge the months after a baseline against the line that is drawn."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from alliance import charts, report, spc
from alliance.charts import control
from alliance.filters import Filters
from alliance.noise import NoiseParams
from alliance.panel import Context, Panel, Tile, delta_interval
from alliance.settings import Settings
from alliance.views import alliance_page, outcomes, overview

NAN = np.nan

# sparse, gappy and single-point series (NaN = a withheld or missing month)
SERIES = {
    "gappy": [35.0, 35.5, NAN, 36.0, 36.2, 36.1, NAN, NAN, 35.8, 35.9],
    "lone points": [35.0, NAN, 35.4, NAN, 36.0, 36.1, NAN, 35.0],
    "single point": [NAN, NAN, 36.0, NAN],
    "sparse": [NAN, 34.0, 34.5, NAN, NAN, NAN, NAN, NAN, 35.0, 35.2],
    "complete": [35.0, 35.2, 35.1, 35.3],
}


def _frame(values: list[float], x_kind: str = "month") -> pd.DataFrame:
    y = np.asarray(values, dtype=float)
    x = (
        pd.date_range("2026-01-01", periods=len(y), freq="MS")
        if x_kind == "month"
        else np.arange(1, len(y) + 1)
    )
    return pd.DataFrame({"x": x, "y": y, "low": y - 0.8, "high": y + 0.8})


def _polygons(trace) -> list[tuple[list, list]]:
    """A fill="toself" trace's parts (separated by None)."""
    parts, xs, ys = [], [], []
    for xv, yv in zip(trace.x, trace.y, strict=True):
        if xv is None or yv is None:
            if xs:
                parts.append((xs, ys))
            xs, ys = [], []
        else:
            xs.append(xv)
            ys.append(yv)
    if xs:
        parts.append((xs, ys))
    return parts


def _check_bands(fig, frames: dict[str, pd.DataFrame]) -> None:
    """Each band polygon covers one contiguous run of points with a value, holds no NaN, and
    is the upper edge forward and the lower edge back (it cannot cross itself); the line is
    inside its band; bands draw no markers; a lone point shows its interval as a whisker."""
    traces = list(fig.data)
    for i, tr in enumerate(traces):
        if getattr(tr, "fill", None) != "toself":
            continue
        assert tr.mode == "lines", "a band draws no markers (stray dots)"
        line = traces[i + 1]
        d = frames[line.name]
        runs = [r for r in charts.runs(d["y"], d["low"], d["high"]) if len(r) >= 2]
        parts = _polygons(tr)
        assert len(parts) == len(runs)
        for (px, py), run in zip(parts, runs, strict=True):
            assert not any(pd.isna(v) for v in py)
            xs = list(d["x"].to_numpy()[run])
            m = len(run)
            assert [
                pd.Timestamp(v) if isinstance(v, np.datetime64 | pd.Timestamp) else v
                for v in px[:m]
            ] == [pd.Timestamp(v) if isinstance(v, np.datetime64) else v for v in xs]
            assert py[:m] == pytest.approx(list(d["high"].to_numpy()[run]))
            assert py[m : 2 * m] == pytest.approx(list(d["low"].to_numpy()[run][::-1]))
            # the line inside its band at every point of the run
            vals = d["y"].to_numpy()[run]
            assert (vals >= d["low"].to_numpy()[run]).all()
            assert (vals <= d["high"].to_numpy()[run]).all()
        lone = [r[0] for r in charts.runs(d["y"], d["low"], d["high"]) if len(r) == 1]
        if lone:
            err = line.error_y
            assert err is not None and err.array is not None
            for j in lone:
                assert err.array[j] == pytest.approx(d["high"].iloc[j] - d["y"].iloc[j])


@pytest.mark.parametrize("name", list(SERIES))
@pytest.mark.parametrize("x_kind", ["month", "session"])
def test_lines_bands_break_where_the_series_breaks(name, x_kind):
    d = _frame(SERIES[name], x_kind)
    fig = charts.lines(
        d,
        x="x",
        y="y",
        group=None,
        title="t",
        subtitle="s",
        x_label="x",
        y_label="Mean SRS",
        low="low",
        high="high",
        scale="srs",
    )
    _check_bands(fig, {"Mean SRS": d})


def test_grouped_bands_do_not_cross_between_or_within_groups():
    a, b = _frame(SERIES["gappy"], "session"), _frame(SERIES["lone points"], "session")
    d = pd.concat(
        [a.assign(g="A"), b.assign(g="B", y=b["y"] - 10, low=b["low"] - 10, high=b["high"] - 10)]
    )
    fig = charts.lines(
        d,
        x="x",
        y="y",
        group="g",
        title="t",
        subtitle="s",
        x_label="x",
        y_label="ORS",
        low="low",
        high="high",
        scale="ors",
    )
    _check_bands(fig, {"A": d[d["g"] == "A"], "B": d[d["g"] == "B"]})


@pytest.fixture(scope="module")
def gappy_ctx(demo_con):
    """Northside's couples program: months withheld between shown ones (demo clinic)."""
    f = Filters(dt.date(2025, 11, 1), dt.date(2026, 10, 1), site="Northside", program="Couples")
    return Context(demo_con, f, Settings())


def _panel(view, key: str) -> Panel:
    return {p.key: p for p in view.panels}[key]


def test_page_bands_on_a_gappy_selection(gappy_ctx, demo_con):
    """Every band-drawing chart of the pages, on a selection with withheld months."""
    checked = 0
    sites = [None, "Westbrook (opened 2026)"]
    for site in sites:
        ctxs = (
            [gappy_ctx]
            if site is None
            else [
                Context(
                    demo_con,
                    Filters(dt.date(2025, 11, 1), dt.date(2026, 10, 1), site=site),
                    Settings(),
                )
            ]
        )
        for ctx in ctxs:
            for view in (overview.build(ctx), alliance_page.build(ctx), outcomes.build(ctx)):
                for p in view.panels:
                    if p.figure is None:
                        continue
                    for i, tr in enumerate(p.figure.data):
                        if getattr(tr, "fill", None) != "toself":
                            continue
                        assert tr.mode == "lines", p.key
                        for px, py in _polygons(tr):
                            assert not any(pd.isna(v) for v in py), p.key
                            m = (len(px) - 1) // 2
                            # upper edge forward, lower edge back: each x twice, mirrored
                            assert px[:m] == px[m : 2 * m][::-1], p.key
                            assert all(
                                hi >= lo for hi, lo in zip(py[:m], py[m : 2 * m][::-1], strict=True)
                            ), p.key
                            line = p.figure.data[i + 1]
                            on_line = dict(zip(line.x, line.y, strict=True))
                            for xv, hi, lo in zip(px[:m], py[:m], py[m : 2 * m][::-1], strict=True):
                                assert lo - 1e-9 <= on_line[xv] <= hi + 1e-9, p.key
                        checked += 1
    assert checked >= 4


# --------------------------------------------------------------------------- 3: value axes


@pytest.mark.parametrize(
    ("scale", "values", "span"),
    [
        ("srs", [36.7, 37.0, 37.4], 4.0),
        ("wai", [4.1, 4.15, 4.2], 0.5),
        ("rate", [0.18, 0.19, 0.2], 0.10),
        ("ors", [25.0, 25.3], 4.0),
    ],
)
def test_value_range_spans_at_least_the_scale_minimum(scale, values, span):
    lo, hi = charts.value_range(
        np.array(values), min_span=charts.MIN_SPAN[scale], bounds=charts.BOUNDS[scale]
    )
    assert hi - lo >= span - 1e-9
    assert lo <= min(values) and hi >= max(values)
    assert (lo + hi) / 2 == pytest.approx((min(values) + max(values)) / 2)


def test_value_range_stays_inside_the_scale_and_keeps_wide_data():
    lo, hi = charts.value_range(np.array([39.5, 39.9]), min_span=4.0, bounds=(0.0, 40.0))
    assert hi == 40.0 and hi - lo >= 4.0
    lo, hi = charts.value_range(np.array([20.0, 30.0]), min_span=4.0, bounds=(0.0, 40.0))
    assert lo <= 20.0 and hi >= 30.0
    assert charts.value_range(np.array([NAN]), min_span=4.0) is None


def test_monthly_srs_chart_is_not_zoomed(demo_con):
    f = Filters(dt.date(2025, 11, 1), dt.date(2026, 10, 1))
    ctx = Context(demo_con, f, Settings())
    ov, al = overview.build(ctx), alliance_page.build(ctx)
    for p in (_panel(ov, "alliance_trend"), _panel(al, "alliance_spc"), _panel(al, "by_session")):
        rng = p.figure.layout.yaxis.range
        assert rng is not None and rng[1] - rng[0] >= 4.0, p.key


# --------------------------------------------------------------------------- 2: delta colour


def test_delta_interval_for_rates_means_and_r():
    noise = NoiseParams()
    # 20% of 1000 against 10% of 1000: clearly beyond chance
    lo, hi = delta_interval("rate", (0.20, 1000), (0.10, 1000), noise)
    assert lo > 0
    # 20% of 50 against 18% of 50: not
    lo, hi = delta_interval("rate", (0.20, 50), (0.18, 50), noise)
    assert lo < 0 < hi
    # means from their SEs (sd 5): 37.0 vs 36.9 over 200 each is noise; 37 vs 35 is not
    lo, hi = delta_interval("mean", (37.0, 200, 5.0), (36.9, 200, 5.0), noise, record_range=40)
    assert lo < 0 < hi
    lo, hi = delta_interval("mean", (37.0, 200, 5.0), (35.0, 200, 5.0), noise, record_range=40)
    assert lo > 0
    # r: Fisher z difference
    lo, hi = delta_interval("r", (0.25, 300), (0.26, 300), noise)
    assert lo < 0 < hi
    lo, hi = delta_interval("r", (0.5, 500), (0.1, 500), noise)
    assert lo > 0


def test_tile_delta_is_neutral_unless_beyond_chance():
    t = Tile(
        key="k",
        label="L",
        value=0.2,
        fmt=".1%",
        n_text="",
        help="h",
        delta=0.001,
        delta_significant=False,
    )
    assert t.delta_colour() == "off"
    assert "no clear change" in t.delta_text()
    s = Tile(
        key="k",
        label="L",
        value=0.2,
        fmt=".1%",
        n_text="",
        help="h",
        delta=0.05,
        delta_significant=True,
        higher_is_better=False,
    )
    assert s.delta_colour() == "inverse"
    assert "no clear change" not in s.delta_text()


def test_page_tiles_say_whether_a_change_is_beyond_chance(demo_con):
    f = Filters(dt.date(2025, 11, 1), dt.date(2026, 10, 1))
    ctx = Context(demo_con, f, Settings())
    for view in (overview.build(ctx), outcomes.build(ctx)):
        with_delta = [t for t in view.tiles if t.delta is not None]
        assert with_delta
        for t in with_delta:
            if t.higher_is_better is not None:
                assert t.delta_significant is not None, t.key
            assert "95%" in t.help and "difference" in t.help, t.key


# --------------------------------------------------------------------------- 4: control charts


def test_a_baseline_never_judges_itself():
    months = pd.Series(pd.date_range("2025-01-01", periods=12, freq="MS"))
    # all 12 months are the baseline: the period is too short for a separate one
    values = np.array([37.0, 37.1, 37.2, 37.3, 37.1, 37.0, 36.9, 36.9, 36.9, 37.0, 36.9, 36.9])
    base = control.baseline_mask(pd.Series(values), 12)
    frame = control.spc_frame(months, values, 37.0, 36.0, 38.0, base)
    assert control.is_run_chart(frame)
    assert not frame[["shift", "trend", "astronomical"]].any().any()
    assert frame[["lcl", "ucl"]].isna().all().all()
    text = " ".join(control.spc_method_text(frame, 12, "with ratings"))
    assert "too short for a separate baseline" in text
    # a separate baseline: only the months after it can be flagged
    values = np.r_[np.full(6, 10.0) + np.arange(6) * 0.1, np.full(6, 12.0)]
    months = pd.Series(pd.date_range("2025-01-01", periods=12, freq="MS"))
    base = control.baseline_mask(pd.Series(values), 6)
    frame = control.spc_frame(months, values, 10.25, 9.0, 11.5, base)
    assert not control.is_run_chart(frame)
    assert not frame.loc[frame["baseline"], ["shift", "trend", "astronomical"]].any().any()
    assert frame.loc[~frame["baseline"], "shift"].all()


def test_rules_use_the_drawn_centre_line():
    # the drawn centre 11.5; six points at 11.2 (below it) then one at 12: below the drawn
    # line, not a shift above an undrawn median of 11
    values = np.r_[[12.0, 10.0, 13.0, 9.0, 12.0, 11.0], np.full(6, 11.2)]
    rules = spc.judged_rules(values, 11.5, None, None, np.r_[np.ones(6), np.zeros(6)] > 0)
    assert rules["shift"].to_numpy()[6:].all()
    months = pd.Series(pd.date_range("2025-01-01", periods=12, freq="MS"))
    frame = control.spc_frame(months, values, 11.5, 8.0, 15.0, np.r_[np.ones(6), np.zeros(6)] > 0)
    drawn = frame["centre"].to_numpy()
    shifted = frame["shift"].to_numpy()
    assert (frame["value"].to_numpy()[shifted] < drawn[shifted]).all()


def test_alliance_control_chart_on_twelve_months_flags_nothing(demo_con):
    f = Filters(dt.date(2025, 11, 1), dt.date(2026, 10, 1))
    p = _panel(alliance_page.build(Context(demo_con, f, Settings())), "alliance_spc")
    assert not p.data[["shift", "trend", "astronomical"]].any().any()
    assert "too short for a separate baseline" in p.figure.layout.title.subtitle.text
    assert report.spc_signals(p) == (
        "No signal judged: the period is too short for a separate baseline."
    )


def test_pack_headline_reports_only_a_signal_that_holds():
    months = pd.date_range("2026-01-01", periods=12, freq="MS")
    data = pd.DataFrame(
        {
            "month": months,
            "value": [1.0] * 12,  # on the centre line: no shift holds
            "centre": 1.0,
            "lcl": 0.5,
            "ucl": 1.5,
            "baseline": [True] * 6 + [False] * 6,
            "shift": True,
            "trend": False,
            "astronomical": False,
        }
    )
    panel = Panel(key="x_spc", title="X", subtitle="", reading="", figure=None, data=data)
    assert report.spc_signals(panel) == "No special-cause signal."
    held = data.assign(value=[1.0] * 6 + [1.2] * 6)
    panel = Panel(key="x_spc", title="X", subtitle="", reading="", figure=None, data=held)
    assert report.spc_signals(panel) == "Signals: shift (Jul 2026 – Dec 2026)."
