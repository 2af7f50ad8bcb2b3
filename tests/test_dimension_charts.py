"""The alliance-dimension chart builders (alliance/charts/dimensions.py) on small,
hand-made inputs: which trace lands on which axis, lane and row, and what hovering shows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance.charts.dimension_grids import funnel_grid, strip_figure
from alliance.charts.dimensions import COLOURS, LABELS


def _funnel_item(name: str, target: float) -> dict:
    points = pd.DataFrame(
        {"unit": ["A", "B", "C"], "n": [10.0, 20.0, 30.0], "value": [7.5, 8.0, 8.6]}
    ).assign(flag=["within", "within", "above 95%"])
    limits = pd.DataFrame(
        {
            "n": [5.0, 30.0],
            "low_95": [7.0, 7.6],
            "high_95": [9.0, 8.4],
            "low_998": [6.5, 7.3],
            "high_998": [9.5, 8.7],
        }
    )
    return {
        "name": name,
        "points": points,
        "limits": limits,
        "target": target,
        "x_label": "Episodes",
        "y_label": "Mean item score",
        "value_format": "num2",
    }


def test_funnel_grid_puts_each_funnel_on_its_own_axes() -> None:
    items = [_funnel_item(f"“{n}”", t) for n, t in (("one", 8.0), ("two", 8.1), ("three", 8.2))]
    fig = funnel_grid(items, title="T", subtitle_text="S")
    # three funnels on a 2 x 2 grid: axes x/y, x2/y2, x3/y3; only three subplot titles
    axes = {(t.xaxis, t.yaxis) for t in fig.data}
    assert axes == {("x", "y"), ("x2", "y2"), ("x3", "y3")}
    assert [a.text for a in fig.layout.annotations] == ["“one”", "“two”", "“three”"]
    # each funnel's clinic line on its own axes, at its own target
    assert [(s.yref, s.y0) for s in fig.layout.shapes] == [("y", 8.0), ("y2", 8.1), ("y3", 8.2)]
    # the x title only under the bottom row, the y title only in the left column
    assert fig.layout.xaxis3.title.text == "Episodes" and fig.layout.xaxis.title.text is None
    assert (
        fig.layout.yaxis3.title.text == "Mean item score" and fig.layout.yaxis2.title.text is None
    )
    # one legend entry per kind of trace, however many funnels
    names = [t.name for t in fig.data if t.showlegend]
    assert len(names) == len(set(names))
    # the grid layout make_subplots gave is cached per shape and never changed by a build:
    # after four funnels on the same 2 x 2 grid, the fourth axes of a three-funnel grid are
    # still bare
    four = funnel_grid([*items, _funnel_item("“four”", 8.3)], title="T", subtitle_text="S")
    assert four.layout.yaxis4.range is not None
    again = funnel_grid(items, title="T", subtitle_text="S")
    assert again.layout.yaxis4.range is None and again.layout.xaxis4.title.text is None
    assert [a.text for a in again.layout.annotations] == ["“one”", "“two”", "“three”"]


def test_strip_draws_each_dimension_as_ticks_on_its_lane() -> None:
    rows = ["Age band: 18-25", "Gender: <b>x</b>"]
    points = pd.DataFrame(
        {
            "row": ["Age band: 18-25", "Age band: 18-25", "Gender: <b>x</b>", "Gender: <b>x</b>"],
            "dimension": ["heard", "goals", "heard", "approach"],
            "therapist": ["T1", "T1", "T2", "T3"],
            "shrunk": [0.1, -0.2, 0.05, np.nan],  # T3's approach gap is withheld: not drawn
        }
    )
    centres = pd.DataFrame(
        {
            "row": ["Age band: 18-25", "Age band: 18-25", "Gender: <b>x</b>"],
            "dimension": ["heard", "goals", "heard"],
            "centre": [0.0, -0.1, 0.02],
        }
    )
    fig = strip_figure(points, centres, rows=rows, title="T", subtitle_text="S", axis_label="A")
    ticks = {t.name: t for t in fig.data if t.mode == "lines"}
    assert set(ticks) == {LABELS["heard"], LABELS["goals"]}  # approach: nothing to draw
    heard = ticks[LABELS["heard"]]
    assert heard.line.color == COLOURS["heard"]
    # two ticks, each a vertical stroke at the gap, broken by a gap (NaN) before the next
    x, y = np.asarray(heard.x, dtype=float), np.asarray(heard.y, dtype=float)
    assert np.allclose(x[[0, 1, 3, 4]], [0.1, 0.1, 0.05, 0.05]) and np.isnan(x[[2, 5]]).all()
    # two dimensions drawn: lanes at -0.1 (heard) and +0.1 (goals) around each row's position
    assert np.allclose((y[0] + y[1]) / 2, 0 - 0.1) and np.allclose((y[3] + y[4]) / 2, 1 - 0.1)
    goals = ticks[LABELS["goals"]]
    assert np.allclose((goals.y[0] + goals.y[1]) / 2, 0 + 0.1)
    # hovering names the therapist and the group, as text (never markup)
    assert list(heard.customdata[:3]) == ["T1 · Age band: 18-25"] * 3
    assert heard.customdata[3] == "T2 · Gender: &lt;b&gt;x&lt;/b&gt;"
    # rows top to bottom in the order given, shown as text
    assert list(fig.layout.yaxis.ticktext) == ["Age band: 18-25", "Gender: &lt;b&gt;x&lt;/b&gt;"]
    assert list(fig.layout.yaxis.range) == [1.5, -0.5]
    diamonds = [t for t in fig.data if t.mode == "markers"]
    assert sorted(float(t.y[0]) for t in diamonds) == [-0.1, 0.1]
