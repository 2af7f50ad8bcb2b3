"""alliance.figure_edit gives exactly the figure plotly's own update/add calls give."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from alliance import charts, figure_edit


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
]


@pytest.mark.parametrize("props", AXIS_CASES)
@pytest.mark.parametrize("subplots", [False, True])
def test_update_axes_give_plotlys_figure(props: dict, subplots: bool) -> None:
    def make() -> go.Figure:
        fig = make_subplots(rows=1, cols=3) if subplots else _figure()
        fig.layout.xaxis.title = {"text": "before", "font": {"size": 10}}
        fig.layout.yaxis.tickformat = ".1f"
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


@pytest.mark.parametrize("kwargs", LINE_CASES)
@pytest.mark.parametrize("kind", ["add_vline", "add_hline"])
def test_spanning_lines_give_plotlys_figure(kwargs: dict, kind: str) -> None:
    mine, theirs = _figure(), _figure()
    getattr(figure_edit, kind)(mine, 2.5, **kwargs)
    getattr(theirs, kind)(2.5, **kwargs)
    assert _drawn(mine) == _drawn(theirs)
