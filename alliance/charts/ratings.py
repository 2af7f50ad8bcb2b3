"""The Alliance (trust) page's figures, each made in one call from a frame and its options: the
ratings' distribution, the monthly control chart, the alliance by session number and the
dot-and-whisker charts (WAI-SR subscales, dropout after a drop).

Layout (room for a long subtitle, the legend under the plot) is alliance.charts.control's
`fit_layout`, shared with the Dropout page's charts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from alliance import charts
from alliance.charts import figure_edit
from alliance.charts.control import fit_layout


def rating_histogram(
    plot: pd.DataFrame,
    *,
    tickvals: Sequence[float],
    ticktext: Sequence[str],
    **options: Any,
) -> go.Figure:
    """The share of ALL ratings in each bin (`x`, `n`, `share`, `bin` columns), so that a
    withheld bin does not inflate the others; ticks at the pooled bin, the scale's marks and the
    top score. `options` are charts.histogram_bins'."""
    fig = charts.histogram_bins(plot, bin_col="x", count_col="n", **options)
    # histogram_bins rescales the visible counts to sum to 1; show each bin's share of ALL
    # ratings instead
    fig.update_traces(
        y=plot["share"],
        customdata=plot[["bin"]].to_numpy(),
        hovertemplate="%{customdata[0]}: %{y:.1%} of ratings<extra></extra>",
        selector={"type": "bar"},
    )
    figure_edit.update_xaxes(fig, tickvals=list(tickvals), ticktext=list(ticktext))
    return fit_layout(fig)


def control_chart(frame: pd.DataFrame, **options: Any) -> go.Figure:
    """charts.spc_chart with the page layout (`options` are spc_chart's)."""
    return fit_layout(charts.spc_chart(frame, **options))


def session_lines(df: pd.DataFrame, **options: Any) -> go.Figure:
    """charts.lines with session numbers as categories ("12+" pools the later ones). Not yet
    laid out: the caller may mark it as all withheld, then calls `fit_layout`."""
    fig = charts.lines(df, **options)
    figure_edit.update_xaxes(fig, type="category")
    return fig


def dots(df: pd.DataFrame, *, rate_axis: str | None = None, **options: Any) -> go.Figure:
    """charts.interval_dots with the page layout; `rate_axis="x"` starts a rate axis at 0."""
    return fit_layout(charts.interval_dots(df, **options), rate_axis=rate_axis)
