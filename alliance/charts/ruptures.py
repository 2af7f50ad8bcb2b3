"""The Ruptures & repair page's figures: the monthly p-charts, the bars by an episode's
ruptures and the SRS items' drops, each in one call from a protected frame (the funnels are
alliance.charts.dimension_grids.funnel_grid)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from alliance import charts
from alliance.charts import figure_edit
from alliance.charts.dimensions import fit_layout


def rate_chart(df: pd.DataFrame, **options: Any) -> go.Figure:
    """A monthly control chart (charts.spc_chart's options) with room for a long subtitle and
    the legend below the plot."""
    return fit_layout(charts.spc_chart(df, **options))


def group_bars(df: pd.DataFrame, **options: Any) -> go.Figure:
    """Bars with intervals by group (charts.bars' options), room for a long subtitle."""
    return fit_layout(charts.bars(df, **options), legend_below=False)


def item_drops(df: pd.DataFrame, **options: Any) -> go.Figure:
    """Each item's mean drop with its interval (charts.interval_dots' options), from zero."""
    fig = charts.interval_dots(df, **options)
    figure_edit.update_xaxes(fig, rangemode="tozero")
    return fit_layout(fig, legend_below=False)
