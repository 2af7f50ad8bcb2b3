"""alliance.figure_edit gives exactly the figure plotly's own update/add calls give."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from alliance import charts
from alliance.charts import figure_edit


def _drawn(fig: go.Figure) -> dict:
    """The figure as plotly.js gets it, empty objects left out: plotly's update turns
    `title=None` into an empty title object where ours leaves none; both draw no title."""

    def prune(value):
        if isinstance(value, dict):
            kept = {k: prune(v) for k, v in value.items()}
            return {k: v for k, v in kept.items() if v != {}}
        if isinstance(value, list | tuple):
            return [prune(v) for v in value]
        return value

    return prune(fig.to_plotly_json())


def _figure() -> go.Figure:
    fig = go.Figure()
    for i in range(3):
        fig.add_trace(go.Scatter(x=[1, 2, 3], y=[i, i + 1, i + 3], name=f"t{i}"))
    fig.layout.margin = {"l": 50, "b": 30}
    fig.layout.title = {"text": "old", "font": {"size": 11}}
    fig.add_annotation(x=1, y=1, text="first")
    return fig


LAYOUT_CASES = [
    {"margin": {"t": 80}},  # merges: l and b stay
    {"title": {"subtitle": {"text": "sub"}, "x": 0.0}},  # nested merge, font stays
    {"title_text": "new", "title_font_color": "#123456"},  # magic underscores
    {"title": "plain text"},  # a string for a compound: plotly's shorthand
    {"height": 500, "showlegend": False, "barmode": "stack", "bargap": 0.05},
    {"legend": {"orientation": "h", "y": -0.2}, "margin": {"l": 90, "r": 10}},
    {"xaxis2": {"title": {"text": "second"}}},  # a subplot axis not there yet
    {"annotations": [{"text": "changed"}]},  # element-wise into the existing list
    {"shapes": [{"type": "line", "x0": 0, "x1": 1, "y0": 0, "y1": 1}]},  # list not there yet
    {"margin": {"t": 80}, "margin_b": 5},  # a path and a dict meeting
    {"paper_bgcolor": "white", "plot_bgcolor": "#eee"},  # names with an underscore
    {"xaxis_title_font_size": 9, "legend_title_text": "who"},
    # handed to plotly whole: shorthand then a longer path, lists onto set lists, odd keys
    {"title": "x", "title_font_size": 20},
    {"annotations": []},
    {"annotations": ()},
    {"annotations": [go.layout.Annotation(text="c")]},
    {"annotations": {0: {"text": "by index"}}},
    {"xaxis": {"rangebreaks": [{"bounds": ["sat", "mon"]}]}},
    {"title": charts.theme_layout(title="T", subtitle="a<br>b")["title"], "height": 420},
]


@pytest.mark.parametrize("props", LAYOUT_CASES)
def test_update_layout_gives_plotlys_figure(props: dict) -> None:
    mine, theirs = _figure(), _figure()
    figure_edit.update_layout(mine, **props)
    theirs.update_layout(**props)
    assert _drawn(mine) == _drawn(theirs)


AXIS_CASES = [
    {"title": "Month", "tickformat": ".0%"},
    {"title": {"text": "x"}, "rangemode": "tozero"},
    {"type": "category", "categoryorder": "array", "categoryarray": ["b", "a"]},
    {"autorange": "reversed", "showgrid": False, "title": None},
    {"title_font_size": 9, "ticks": ""},
    {"title": "Month", "title_standoff": 4},  # shorthand, then a path into it: plotly's
    {"tickvals": [1, 2], "ticktext": ["a", "b"]},  # onto set tick arrays
    {"rangebreaks": [{"bounds": ["sat", "mon"]}]},
]


@pytest.mark.parametrize("props", AXIS_CASES)
@pytest.mark.parametrize("subplots", [False, True])
def test_update_axes_give_plotlys_figure(props: dict, subplots: bool) -> None:
    def make() -> go.Figure:
        fig = make_subplots(rows=1, cols=3) if subplots else _figure()
        fig.layout.xaxis.title = {"text": "before", "font": {"size": 10}}
        fig.layout.yaxis.tickformat = ".1f"
        fig.layout.xaxis.tickvals = [0, 5]
        fig.layout.xaxis.rangebreaks = [{"bounds": [1, 2]}]
        return fig

    for name in ("update_xaxes", "update_yaxes"):
        mine, theirs = make(), make()
        getattr(figure_edit, name)(mine, **props)
        getattr(theirs, name)(**props)
        assert _drawn(mine) == _drawn(theirs), name


def test_underscore_names_are_plotlys() -> None:
    from plotly.basedatatypes import BaseFigure

    assert set(figure_edit.UNDERSCORE_NAMES) == set(BaseFigure._valid_underscore_properties)


LINE_CASES = [
    {"line": {"color": charts.GREY, "width": 1}},
    {"line": {"color": "#999", "dash": "dot", "width": 2}, "annotation_text": "published .55"},
    {
        "line": {"color": "#999", "dash": "dash", "width": 1.8},
        "annotation_text": "cutoff",
        "annotation_position": "top left",
        "annotation_font_size": 12,
    },
    {"line_color": "red", "annotation_text": "x", "annotation_position": "bottom right"},
    {"line": {"width": 1}, "layer": "below", "opacity": 0.5},
]


def _grid(traces: bool) -> go.Figure:
    fig = make_subplots(rows=1, cols=2)
    if traces:
        fig.add_trace(go.Scatter(x=[1, 2], y=[1, 2]), row=1, col=1)
        fig.add_trace(go.Scatter(x=[1, 2], y=[2, 1]), row=1, col=2)
    return fig


@pytest.mark.parametrize("kwargs", LINE_CASES)
@pytest.mark.parametrize("kind", ["add_vline", "add_hline"])
@pytest.mark.parametrize("make", [_figure, lambda: _grid(True), lambda: _grid(False)])
def test_spanning_lines_give_plotlys_figure(kwargs: dict, kind: str, make) -> None:
    """On one plot and on a subplot grid (a line per non-empty subplot, as plotly draws)."""
    mine, theirs = make(), make()
    getattr(figure_edit, kind)(mine, 2.5, **kwargs)
    getattr(theirs, kind)(2.5, **kwargs)
    assert _drawn(mine) == _drawn(theirs)


@pytest.mark.parametrize("kwargs", [{"row": 1, "col": 2}, {"annotation": {"text": "a"}}])
def test_spanning_line_arguments_beyond_one_plot_are_plotlys(kwargs: dict) -> None:
    mine, theirs = _grid(True), _grid(True)
    figure_edit.add_vline(mine, 1.5, **kwargs)
    theirs.add_vline(1.5, **kwargs)
    assert _drawn(mine) == _drawn(theirs)


def test_shorthand_then_path_keeps_the_title() -> None:
    """The case a plain merge gets wrong: plotly expands title="Month" to its text first."""
    fig = _figure()
    figure_edit.update_xaxes(fig, title="Month", title_standoff=4)
    assert fig.layout.xaxis.title.text == "Month" and fig.layout.xaxis.title.standoff == 4
    figure_edit.update_layout(fig, annotations=[])
    assert [a.text for a in fig.layout.annotations] == ["first"]  # plotly ignores an empty list
