"""The Therapists page's figures: a funnel plot with the selected therapist ringed, and the
therapist share of outcome variance (ICC) as one estimate with its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import charts
from alliance.charts import figure_edit
from alliance.charts.layout import fit_header


def therapist_funnel(
    points: pd.DataFrame,
    limits: pd.DataFrame,
    *,
    target: float,
    title: str,
    subtitle: str,
    x_label: str,
    y_label: str,
    value_format: str,
    selected: pd.DataFrame | None = None,
) -> go.Figure:
    """`charts.funnel_plot` (points: unit, n, value, flag) with the legend under the plot and
    the `selected` points (unit, n, value: the therapist the dashboard is filtered to) ringed."""
    fig = charts.funnel_plot(
        points,
        limits,
        target=target,
        title=title,
        subtitle=subtitle,
        x_label=x_label,
        y_label=y_label,
        value_format=value_format,
    )
    if selected is not None and not selected.empty:
        fig.add_trace(
            go.Scatter(
                x=selected["n"],
                y=selected["value"],
                mode="markers",
                name=f"selected: {selected['unit'].iloc[0]}",
                customdata=selected[["unit"]].to_numpy(),
                marker={
                    "size": 24,
                    "symbol": "circle-open",
                    "color": charts.BLACK,
                    "line": {"width": 3, "color": charts.BLACK},
                },
                hoverinfo="skip",
            )
        )
    fit_header(fig)
    figure_edit.update_layout(
        fig, legend={"orientation": "h", "yanchor": "top", "y": -0.3, "xanchor": "left", "x": 0.0}
    )
    figure_edit.update_layout(fig, margin={"b": 120})
    # Canonical key order: the figure a cache hit returns (a pickled copy) must serialise exactly
    # like the one built on the miss, or Streamlit sees a new chart and drops the first click.
    return go.Figure(fig.to_dict())


def share_estimate(
    df: pd.DataFrame,
    *,
    title: str,
    subtitle: str,
    x_label: str,
    reference: float,
    reference_label: str,
    suppressed_label: str,
) -> go.Figure:
    """One share (column icc, with low and high) by `estimate`, on a short chart whose axis
    starts at 0 and reaches past the interval and 8%."""
    fig = charts.interval_dots(
        df,
        category="estimate",
        value="icc",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle,
        x_label=x_label,
        reference=reference,
        reference_label=reference_label,
        value_format="pct1",
        suppressed_label=suppressed_label,
    )
    high = float(df["high"].iloc[0])
    figure_edit.update_layout(fig, height=300, showlegend=False)
    figure_edit.update_xaxes(fig, range=[0.0, max(0.08, 1.15 * high if np.isfinite(high) else 0.0)])
    fit_header(fig)
    return fig
