"""screen_margins.screen_margins: the margins a chart is drawn with in the dashboard, wide enough that
plotly's automargin never widens them (which draws the whole chart a second time).
tests/test_browser.py checks the same on every page in Chromium."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from alliance.charts import screen_margins

# Widths Chromium measured (getBBox) for y tick labels at Streamlit's 12 px, on the 10 M clinic
MEASURED_PX = {
    "Native Hawaiian or Pacific Islander": 174,
    "Race/ethnicity: Native Hawaiian or Pacific Islander": 251,
    "Felt heard and respected (fell most in 17%)": 216,
    "Program: Intensive outpatient": 153,
    "This clinic (ORS improvement)": 151,
    "Westbrook (opened 2026)": 128,
    "With a drop of 2+ points": 118,
    "Q5 highest: above 39.5": 113,
    "All sites in view": 76,
    "non-binary": 56,
    "45-64": 28,
    "100%": 28,
    "36.8": 21,
    "0.0": 15,
}


def _room(text: str) -> float:
    return screen_margins.label_px(text) * 1.06 + 4  # as screen_margins allows for a label


@pytest.mark.parametrize(("text", "measured"), MEASURED_PX.items())
def test_room_for_a_label_is_never_short_and_at_most_25_px_wide(text, measured):
    assert measured <= _room(text) <= measured + 25


def _bars(labels, **layout) -> go.Figure:
    fig = go.Figure(go.Bar(x=np.arange(len(labels)), y=labels, orientation="h"))
    fig.update_layout(**layout)
    return fig


def test_left_margin_fits_the_longest_category_and_the_title():
    labels = ["Asian", "Native Hawaiian or Pacific Islander", "White"]
    widest = _room("Native Hawaiian or Pacific Islander")
    assert screen_margins.screen_margins(_bars(labels)) == {"l": math.ceil(widest + 16)}
    titled = _bars(labels, yaxis_title="Group")
    assert screen_margins.screen_margins(titled) == {"l": math.ceil(widest + 34 + 16)}


def test_numeric_axes_allow_for_the_round_tick_above_the_data():
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[0.12, 0.55, 0.95]))
    fig.update_yaxes(tickformat=".0%")
    assert screen_margins.screen_margins(fig) == {"l": math.ceil(_room("100%") + 16)}
    fig = go.Figure(go.Scatter(x=[1, 2], y=[-3.2, 36.8]))
    fig.update_yaxes(tickformat=".1f")
    assert screen_margins.screen_margins(fig) == {"l": math.ceil(_room("\u221240.0") + 16)}


def test_typed_arrays_are_read_like_lists():
    values = np.array([1.5, 36.8])
    plain = go.Figure(go.Scatter(x=[1, 2], y=values.tolist()))
    typed = go.Figure(go.Scatter(x=[1, 2], y={"dtype": "f8", "bdata": _b64(values)}))
    assert isinstance(typed.data[0].y, dict)  # plotly keeps the typed form as given
    assert screen_margins.screen_margins(typed) == screen_margins.screen_margins(plain)


def _b64(values: np.ndarray) -> str:
    import base64

    return base64.b64encode(values.astype("f8").tobytes()).decode()


def test_only_the_axes_at_the_left_edge_count():
    fig = make_subplots(rows=1, cols=2)
    fig.add_trace(go.Bar(x=[1], y=["short"], orientation="h"), row=1, col=1)
    long = "a label far longer than anything in the first column"
    fig.add_trace(go.Bar(x=[1], y=[long], orientation="h"), row=1, col=2)
    assert screen_margins.screen_margins(fig) == {"l": math.ceil(_room("short") + 16)}


def test_a_colour_bar_gets_room_and_set_margins_are_kept():
    heat = go.Figure(go.Heatmap(z=[[1, 2]], x=["a", "b"], y=["row"]))
    assert screen_margins.screen_margins(heat)["r"] == 140
    assert "r" not in screen_margins.screen_margins(go.Figure(go.Heatmap(z=[[1]], showscale=False)))
    assert screen_margins.screen_margins(_bars(["x"], margin_l=55)) == {}


def test_axes_it_cannot_read_are_left_to_plotly():
    dates = go.Figure(
        go.Scatter(x=[1, 2], y=[np.datetime64("2026-01-01"), np.datetime64("2026-02-01")])
    )
    assert screen_margins.screen_margins(dates) == {}
    log = go.Figure(go.Scatter(x=[1, 2], y=[1, 1000]))
    log.update_yaxes(type="log")
    assert screen_margins.screen_margins(log) == {}
    blank = go.Figure(go.Scatter(x=[1, 2], y=[np.nan, np.inf]))
    assert screen_margins.screen_margins(blank) == {
        "l": 16 + 4
    }  # nothing to label: ticks and pad only
    assert screen_margins.screen_margins(go.Figure()) == {"l": 16 + 4}


def test_charts_it_does_not_know_are_left_to_plotly():
    assert screen_margins.screen_margins(go.Figure(go.Pie(values=[1, 2]))) == {}
    free = go.Figure(go.Scatter(x=[1], y=[1]))
    free.update_yaxes(anchor="free", position=0.1)
    assert screen_margins.screen_margins(free) == {}
