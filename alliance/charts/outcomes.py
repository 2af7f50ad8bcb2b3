"""The Outcomes page's figures, each made in one call from its frame: the improvement histogram
coloured by reliable-change band, the monthly rates, the trajectories by early-alliance third and
the mean improvement by early-SRS group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import charts
from alliance.charts import figure_edit

BAND_COLOURS = {
    "reliable deterioration": charts.VERMILLION,
    "no reliable change": "#B9B9B9",
    "reliable improvement": charts.BLUE,
}


def fit_layout(fig: go.Figure, *, legend_below: bool = False) -> go.Figure:
    """Room for a long subtitle above the plot, and the legend under it where there is one."""
    sub = fig.layout.title.subtitle.text or ""
    lines = sub.count("<br>") + 1 if sub else 0
    extra = 19 * max(lines - 2, 0)  # the theme leaves room for a title and two subtitle lines
    margin = {"t": 95 + extra}
    if legend_below:
        margin["b"] = 120
        figure_edit.update_layout(
            fig,
            legend={
                "orientation": "h",
                "x": 0.0,
                "xanchor": "left",
                "y": -0.24,
                "yanchor": "top",
                "traceorder": "normal",
            },
        )
    figure_edit.update_layout(
        fig,
        margin=margin,
        height=int(fig.layout.height or 430) + extra + (40 if legend_below else 0),
        # pin the title to the top so a taller margin does not push it into the subtitle
        title={"yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": 14}},
    )
    return fig


def improvement_histogram(
    df: pd.DataFrame,
    *,
    rc: float,
    lowest: float,
    highest: float,
    bin_width: float,
    label: str,
    total: float,
    title: str,
    subtitle: str,
    suppressed_label: str,
) -> go.Figure:
    """Stacked bars of episode shares by improvement bin, coloured by reliable-change band.

    Shares are of `total` (all episodes, withheld cells included), so a withheld cell never
    inflates the others. The legend goes under the plot.
    """
    fig = go.Figure()
    for band, colour in BAND_COLOURS.items():
        part = df[df["band"] == band]
        if part.empty:
            continue
        share = part["episodes"] / total if total else part["episodes"] * np.nan
        fig.add_trace(
            go.Bar(
                x=part["bin"],
                y=share,
                name=band.capitalize(),
                marker_color=colour,
                width=bin_width * 0.95,
                customdata=np.column_stack([part["episodes"].to_numpy(dtype=float)]),
                hovertemplate=(
                    f"{band.capitalize()}<br>change %{{x:+g}} points: %{{y:.1%}} "
                    "(%{customdata[0]:,.0f} episodes)<extra></extra>"
                ),
            )
        )
    edge = rc - bin_width / 2  # the bar holding exactly ±rc lies outside these lines
    for x, text, pos in (
        (-edge, f"worse by ≥ {rc:g}", "top left"),
        (edge, f"better by ≥ {rc:g}", "top right"),
    ):
        figure_edit.add_vline(
            fig,
            x=x,
            line={"color": charts.GREY, "dash": "dash", "width": 1.8},
            annotation_text=text,
            annotation_position=pos,
            annotation_font={"color": charts.GREY, "size": 13},
        )
    hidden = df[df["suppressed"]] if "suppressed" in df else df.iloc[0:0]
    if len(hidden):
        fig.add_annotation(
            xref="paper",
            yref="paper",
            x=1.0,
            y=-0.24,
            xanchor="right",
            yanchor="top",
            showarrow=False,
            text=f"{len(hidden)} small cell(s) withheld ({suppressed_label})",
            font={"color": charts.GREY, "size": 13},
        )
    ticks = np.arange(lowest, highest + 0.1, rc)
    figure_edit.update_xaxes(
        fig,
        title=f"Improvement in {label} points (positive = better; end bars pool the tails)",
        tickvals=ticks,
        ticktext=[
            f"≤ −{-t:g}" if t == lowest else f"≥ {t:g}" if t == highest else f"{t:g}" for t in ticks
        ],
        range=[lowest - bin_width, highest + bin_width],
        zeroline=True,
        zerolinecolor="#999",
    )
    figure_edit.update_yaxes(fig, title="Share of episodes", tickformat=".0%", rangemode="tozero")
    figure_edit.update_layout(fig, barmode="stack", bargap=0.05)
    return fit_layout(charts.themed(fig, title=title, subtitle=subtitle), legend_below=True)


def monthly_rates(long: pd.DataFrame, *, title: str, subtitle: str) -> go.Figure:
    """Each rate's monthly line (month, rate_name, rate) with its 95% band (low, high)."""
    fig = charts.lines(
        long,
        x="month",
        y="rate",
        group="rate_name",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle,
        x_label="Month the episode ended",
        y_label="Share of episodes",
        value_format="pct",
        scale="rate",
    )
    figure_edit.update_yaxes(fig, rangemode="tozero")
    return fit_layout(fig, legend_below=True)


def trajectory(
    safe: pd.DataFrame,
    *,
    title: str,
    subtitle: str,
    y_label: str,
    scale: str,
    cutoff: float,
    cutoff_text: str,
    max_session: int,
) -> go.Figure:
    """Mean score by session number (session_number, mean_score, low, high) for each group,
    the clinical cutoff dotted, sessions from `max_session` on pooled ("12+")."""
    fig = charts.lines(
        safe.sort_values(["tercile", "session_number"]),
        x="session_number",
        y="mean_score",
        group="group",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle,
        x_label="Session number in the episode",
        y_label=y_label,
        value_format="num1",
        scale=scale,
    )
    figure_edit.add_hline(
        fig,
        y=cutoff,
        line={"color": charts.GREY, "dash": "dot", "width": 1.5},
        annotation_text=cutoff_text,
        annotation_position="bottom left",
        annotation_font={"color": charts.GREY, "size": 12},
    )
    fit_layout(fig, legend_below=True)
    figure_edit.update_xaxes(
        fig,
        tickvals=list(range(1, max_session + 1)),
        ticktext=[str(i) if i < max_session else f"{i}+" for i in range(1, max_session + 1)],
    )
    return fig


def alliance_bins(
    safe: pd.DataFrame,
    *,
    title: str,
    subtitle: str,
    x_label: str,
    y_label: str,
    suppressed_label: str,
    note: str | None,
) -> go.Figure:
    """Mean improvement with its interval for each early-SRS group (group, mean_improvement,
    low, high); `note` in a box at the top left (this clinic's r beside the published one)."""
    # the band's name above its cut points: nine or ten long labels side by side would be
    # turned on the page and push the chart's margin (the table keeps them on one line)
    fig = charts.bars(
        safe.assign(group=safe["group"].str.replace(" (", "<br>(", regex=False)),
        x="group",
        y="mean_improvement",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle,
        x_label=x_label,
        y_label=y_label,
        value_format="num1",
        suppressed_label=suppressed_label,
    )
    figure_edit.update_yaxes(fig, rangemode="normal", zeroline=True, zerolinecolor="#999")
    fit_layout(fig)
    if note is not None:
        fig.add_annotation(
            xref="paper",
            yref="paper",
            x=0.01,
            y=0.99,
            xanchor="left",
            yanchor="top",
            showarrow=False,
            align="left",
            bgcolor="rgba(255,255,255,0.9)",
            bordercolor="#bbb",
            borderpad=6,
            text=note,
            font={"size": 13},
        )
    return fig
