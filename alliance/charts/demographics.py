"""The Client demographics page's figures: group estimates with intervals against the
clinic-wide value, and the group x site heatmap of dropout rates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import charts
from alliance.charts import figure_edit
from alliance.charts.layout import fit_header
from alliance.charts.text import chart_text


def group_dots(
    df: pd.DataFrame,
    *,
    title: str,
    subtitle: str,
    x_label: str,
    reference: float,
    reference_label: str,
    value_format: str,
    suppressed_label: str,
) -> go.Figure:
    """`charts.interval_dots` of value (low, high) by group, the groups in the frame's order,
    names as text (never markup), the clinic-wide label above the plot."""
    plot = df.assign(group=df["group"].map(chart_text))
    fig = charts.interval_dots(
        plot,
        category="group",
        value="value",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle,
        x_label=x_label,
        reference=reference,
        reference_label=reference_label,
        value_format=value_format,
        suppressed_label=suppressed_label,
    )
    figure_edit.update_yaxes(fig, categoryorder="array", categoryarray=plot["group"].tolist())
    fit_header(fig, extra=22)  # the clinic-wide label sits above the plot
    return fig


def group_site_heatmap(
    df: pd.DataFrame, *, rows: Sequence[str], cols: Sequence[str], title: str, subtitle: str
) -> go.Figure:
    """Group x site heatmap with the value printed in each cell (withheld cells labelled)."""
    # group and site names as text in the chart, never markup
    df = df.assign(group=df["group"].map(chart_text), site=df["site"].map(chart_text))
    rows, cols = [chart_text(r) for r in rows], [chart_text(c) for c in cols]
    z = df.pivot(index="group", columns="site", values="dropout_rate").reindex(
        index=rows, columns=cols
    )
    text = df.pivot(index="group", columns="site", values="text").reindex(index=rows, columns=cols)
    ended = df.pivot(index="group", columns="site", values="ended").reindex(
        index=rows, columns=cols
    )
    zmax = max(
        0.4,
        float(np.nanmax(z.to_numpy(dtype=float)))
        if np.isfinite(z.to_numpy(dtype=float)).any()
        else 0.4,
    )
    fig = go.Figure(
        go.Heatmap(
            z=z.to_numpy(dtype=float),
            x=list(cols),
            y=list(rows),
            text=text.to_numpy(),
            texttemplate="%{text}",
            textfont={"size": 14, "color": "#111"},
            customdata=ended.to_numpy(dtype=float),
            colorscale=[[0.0, "#f4f8fb"], [1.0, charts.SKY]],
            zmin=0.0,
            zmax=zmax,
            xgap=3,
            ygap=3,
            colorbar={"title": {"text": "Dropout rate"}, "tickformat": ".0%"},
            hovertemplate="%{y} · %{x}: %{text} of %{customdata:.0f} ended episodes<extra></extra>",
            hoverongaps=False,
        )
    )
    figure_edit.update_xaxes(fig, showgrid=False, title=None, tickangle=0, showline=False, ticks="")
    figure_edit.update_yaxes(
        fig, autorange="reversed", showgrid=False, title=None, showline=False, ticks=""
    )
    height = max(340, 190 + 42 * len(rows))
    fig = charts.themed(fig, title=title, subtitle=subtitle, height=height)
    fit_header(fig)
    return fig
