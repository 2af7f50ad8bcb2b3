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
from alliance.charts.text import chart_text


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


def funnel_item(which: str, points: pd.DataFrame, limits: pd.DataFrame, target: float) -> dict:
    """The rupture ('rupture') or repair rate's funnel as dimension_grids.funnel_grid takes it,
    each with its own value axis."""
    rupture = which == "rupture"
    return {
        "name": "Ruptures per 100 SRS" if rupture else "Repair rate",
        # site names as text in the chart, never markup
        "points": points.assign(unit=points["unit"].map(chart_text)),
        "limits": limits,
        "target": target,
        "x_label": "SRS with a previous SRS" if rupture else "Ruptures with a known fate",
        "y_label": "Ruptures per 100 SRS" if rupture else "Repair rate",
        "value_format": "num1" if rupture else "pct",
        "own_axis": True,
    }
