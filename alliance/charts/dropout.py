"""The Dropout page's figures, each made in one call from its frame: the monthly p-chart, dropout
by early-alliance band and quintile, the fitted logistic curve with the observed quintiles,
Cohen's d by site, and when dropouts and planned endings leave."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go

from alliance import charts
from alliance.charts import figure_edit
from alliance.charts.control import fit_layout, spc_baseline_end, spc_centre_label
from alliance.charts.text import chart_text


def control_chart(frame: pd.DataFrame, *, title: str, subtitle: str) -> go.Figure:
    """The monthly dropout rate as a p-chart (alliance.charts.control's frame)."""
    fig = charts.spc_chart(
        frame,
        title=title,
        subtitle=subtitle,
        y_label="Dropout rate",
        value_format="pct",
        baseline_end=spc_baseline_end(frame),
        scale="rate",
        centre_label=spc_centre_label(frame),
    )
    return fit_layout(fig, rate_axis="y")


def by_early_alliance(
    safe: pd.DataFrame,
    *,
    title: str,
    subtitle: str,
    overall: float | None,
    suppressed_label: str,
) -> go.Figure:
    """Dropout rate with its interval for each early-SRS band and quintile, one colour each."""
    fig = charts.interval_dots(
        safe,
        category="group",
        value="dropout_rate",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle,
        x_label="Dropout rate",
        reference=overall,
        reference_label="all these episodes",
        value_format="pct",
        colour_by="split",
        suppressed_label=suppressed_label,
    )
    return fit_layout(fig, rate_axis="x")


def logistic_curve(
    curve: pd.DataFrame, quintiles: pd.DataFrame, *, title: str, subtitle: str
) -> go.Figure:
    """The fitted chance of dropout (x, p, low, high) with its band, and the quintiles' observed
    rates (mean_early_srs, dropout_rate, low, high, group) as dots with whiskers."""
    fig = charts.lines(
        curve,
        x="x",
        y="p",
        group=None,
        low="low",
        high="high",
        title=title,
        subtitle=subtitle,
        x_label="Early SRS (mean of the first 3 rated sessions, 0–40)",
        y_label="Chance of dropout",
        value_format="pct",
    )
    fig.update_traces(name="fitted chance of dropout", selector={"mode": "lines+markers"})
    fig.update_traces(mode="lines", selector={"mode": "lines+markers"})
    vis = quintiles.dropna(subset=["dropout_rate", "mean_early_srs"])
    if len(vis):
        fig.add_trace(
            go.Scatter(
                x=vis["mean_early_srs"],
                y=vis["dropout_rate"],
                mode="markers",
                name="observed, by quintile",
                marker={"size": 10, "color": charts.ORANGE, "symbol": "diamond"},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": vis["high"] - vis["dropout_rate"],
                    "arrayminus": vis["dropout_rate"] - vis["low"],
                    "thickness": 1.5,
                    "color": charts.ORANGE,
                },
                customdata=vis[["group"]].to_numpy(),
                hovertemplate="%{customdata[0]}: %{y:.1%}<extra></extra>",
            )
        )
    figure_edit.update_yaxes(fig, rangemode="tozero")
    figure_edit.update_layout(fig, showlegend=True)
    return fit_layout(fig)


def effect_by_site(
    safe: pd.DataFrame,
    *,
    title: str,
    subtitle: str,
    reference: float,
    reference_label: str,
    suppressed_label: str,
) -> go.Figure:
    """Cohen's d with its interval for the clinic and each site, the published d dotted."""
    fig = charts.interval_dots(
        safe.assign(group=safe["group"].map(chart_text)),  # site names as text in the chart
        category="group",
        value="d",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle,
        x_label="Cohen's d (early SRS, other endings minus dropouts)",
        reference=reference,
        reference_label=reference_label,
        value_format="num2",
        suppressed_label=suppressed_label,
    )
    figure_edit.add_vline(fig, x=0, line={"color": charts.GREY, "width": 1})
    return fit_layout(fig)


def when_they_leave(
    plot: pd.DataFrame,
    *,
    title: str,
    subtitle: str,
    mark_withheld: Callable[[go.Figure], object] | None = None,
) -> go.Figure:
    """The running share of each ending (ended_by) by last session, sessions in their order;
    `mark_withheld` says on the chart why it is empty when every point is withheld."""
    fig = charts.lines(
        plot,
        x="last_session",
        y="ended_by",
        group="ending",
        title=title,
        subtitle=subtitle,
        x_label="Session number",
        y_label="Share ended by this session",
        value_format="pct",
    )
    # sessions in their order (a line that starts later must not reorder the axis)
    order = plot.sort_values("bin_order")["last_session"].drop_duplicates().tolist()
    figure_edit.update_xaxes(fig, type="category", categoryorder="array", categoryarray=order)
    figure_edit.update_yaxes(fig, range=[0, 1.02])
    if mark_withheld is not None:
        mark_withheld(fig)
    return fit_layout(fig)
