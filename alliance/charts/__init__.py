"""Chart builders: pure functions from small aggregate DataFrames to plotly figures.

One theme for the pages and every export: the Okabe-Ito colour-blind-safe palette, font sizes
readable when projected, a title with a subtitle stating measure, definition, period and n.
Builders never mutate their input and never see a raw row: only suppressed aggregates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from alliance.charts import figure_edit

# Okabe & Ito (2008), safe for the common colour-vision deficiencies
BLUE = "#0072B2"
ORANGE = "#E69F00"
GREEN = "#009E73"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
SKY = "#56B4E9"
YELLOW = "#F0E442"
BLACK = "#000000"
GREY = "#6B6B6B"
PALETTE = [BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, BLACK]
FONT = "Source Sans Pro, Arial, sans-serif"
BASE_FONT_SIZE = 15


# The trace types the charts use (tests/test_charts_template.py checks every figure the pages
# build against this list) and the parts of plotly_white's layout for maps, polar, ternary and
# 3-D plots, which the dashboard never draws.
TRACE_TYPES = frozenset({"scatter", "bar", "heatmap"})
UNUSED_LAYOUT = frozenset({"geo", "polar", "ternary", "scene", "mapbox", "map"})


def register_template() -> None:
    """The house theme as a plotly template, registered as the process default (at import, and
    again by ui after Streamlit, whose import makes its own theme the default).

    Built on plotly_white, kept to the trace types and layout parts the dashboard draws
    (TRACE_TYPES; cartesian axes only): plotly validates and copies the template whenever a
    figure is built from a dict or copied, and ships it with every chart to the browser, so the
    defaults for two dozen unused trace types and for geo/polar/3-D layouts cost time on every
    chart and change nothing on screen.
    """
    white = pio.templates["plotly_white"].to_plotly_json()
    template = go.layout.Template(
        data={k: v for k, v in white["data"].items() if k in TRACE_TYPES},
        layout={k: v for k, v in white["layout"].items() if k not in UNUSED_LAYOUT},
    )
    axis = {
        "showline": True,
        "linecolor": "#999",
        "ticks": "outside",
        "gridcolor": "#eee",
        "title": {"standoff": 8},
    }
    template.layout.update(
        colorway=PALETTE,
        font={"family": FONT, "size": BASE_FONT_SIZE, "color": "#222"},
        margin={"l": 70, "r": 30, "t": 95, "b": 100},
        hoverlabel={"font_size": 14},
        xaxis=axis,
        yaxis=axis,
    )
    pio.templates["alliance"] = template
    pio.templates.default = "alliance"


register_template()


def theme_layout(*, title: str, subtitle: str, height: int = 430) -> dict:
    """The house layout of a chart's title and subtitle (measure · definition · period · n),
    margins, legend and height, as plotly layout properties."""
    lines = subtitle.count("<br>") + 1 if subtitle else 0
    return {
        "title": {
            "text": title,
            "x": 0.0,
            "xanchor": "left",
            "y": 0.98,
            "yanchor": "top",
            "yref": "container",
            "font": {"size": 20},
            "subtitle": {"text": subtitle, "font": {"size": 13, "color": GREY}},
        },
        # room for every subtitle line, so the subtitle never runs into the plot
        "margin": {"t": 62 + 17 * lines},
        # the legend sits under the plot, clear of the title and subtitle
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0.0},
        "height": height + 17 * max(lines - 2, 0),
    }


def themed(fig: go.Figure, *, title: str, subtitle: str, height: int = 430) -> go.Figure:
    """Title and subtitle (measure · definition · period · n) on the house theme."""
    figure_edit.update_layout(fig, **theme_layout(title=title, subtitle=subtitle, height=height))
    return fig


def wrap_subtitle(parts: list[str], width: int = 120) -> str:
    """Join subtitle parts with ' · ', breaking lines so long subtitles stay inside the chart."""
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current} · {part}" if current else part
        if len(candidate) > width and current:
            lines.append(current)
            current = part
        else:
            current = candidate
    if current:
        lines.append(current)
    return "<br>".join(lines)


def _fmt(fmt: str) -> str:
    return {"pct": ".0%", "pct1": ".1%", "num1": ".1f", "num2": ".2f"}.get(fmt, fmt)


def spc_chart(
    df: pd.DataFrame,
    *,
    title: str,
    subtitle: str,
    y_label: str,
    value_format: str = "num1",
    baseline_end: pd.Timestamp | None = None,
    scale: str | None = None,
    centre_label: str = "centre line (baseline)",
) -> go.Figure:
    """Run / control chart. df: month, value, centre, lcl, ucl, shift, trend, astronomical.

    The rules' flags are judged against the centre line drawn here. Without limits (a run chart:
    the period too short for a separate baseline) no limit lines are drawn. ``scale`` sets the
    value axis by :func:`value_range`.
    """
    fig = go.Figure()
    x = pd.to_datetime(df["month"])
    has_limits = bool(pd.to_numeric(df["ucl"], errors="coerce").notna().any())
    if has_limits:
        _limit_traces(fig, x, df)
    _spc_rest(fig, x, df, value_format, centre_label)
    if scale is not None:
        set_value_range(
            fig,
            df["value"],
            df["lcl"] if has_limits else None,
            df["ucl"] if has_limits else None,
            scale=scale,
        )
    if baseline_end is not None:
        fig.add_vrect(
            x0=x.min(),
            x1=baseline_end,
            fillcolor="#e8eef5",
            opacity=0.5,
            line_width=0,
            layer="below",
            annotation_text="baseline",
            annotation_position="top left",
        )
    figure_edit.update_yaxes(fig, title=y_label, tickformat=_fmt(value_format))
    figure_edit.update_xaxes(
        fig, title="Month", dtick="M1" if len(df) <= 14 else "M3", tickformat="%b %Y"
    )
    return themed(fig, title=title, subtitle=subtitle)


def _limit_traces(fig: go.Figure, x: pd.Series, df: pd.DataFrame) -> None:
    fig.add_trace(
        go.Scatter(
            x=x,
            y=df["ucl"],
            name="3-sigma limits",
            mode="lines",
            line={"color": GREY, "dash": "dash", "width": 1.5, "shape": "hv"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=df["lcl"],
            name="lower limit",
            mode="lines",
            showlegend=False,
            line={"color": GREY, "dash": "dash", "width": 1.5, "shape": "hv"},
        )
    )


def _spc_rest(
    fig: go.Figure, x: pd.Series, df: pd.DataFrame, value_format: str, centre_label: str
) -> None:
    fig.add_trace(
        go.Scatter(
            x=x,
            y=df["centre"],
            name=centre_label,
            mode="lines",
            line={"color": BLACK, "width": 1.5},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=df["value"],
            name="monthly value",
            mode="lines+markers",
            line={"color": BLUE, "width": 2.5},
            marker={"size": 8},
            hovertemplate=f"%{{x|%b %Y}}: %{{y:{_fmt(value_format)}}}<extra></extra>",
        )
    )
    flags = (
        ("astronomical", "outside the limits", VERMILLION, "diamond", 15),
        ("shift", "shift (6+ on one side of the centre line)", ORANGE, "circle-open", 16),
        ("trend", "trend (5+ rising or falling)", PURPLE, "triangle-up-open", 16),
    )
    for col, label, colour, symbol, size in flags:
        if col in df and bool(df[col].fillna(False).any()):
            hit = df[df[col].fillna(False).astype(bool)]
            fig.add_trace(
                go.Scatter(
                    x=pd.to_datetime(hit["month"]),
                    y=hit["value"],
                    mode="markers",
                    name=label,
                    marker={
                        "color": colour,
                        "symbol": symbol,
                        "size": size,
                        "line": {"width": 2.5, "color": colour},
                    },
                )
            )


def interval_dots(
    df: pd.DataFrame,
    *,
    category: str,
    value: str,
    low: str,
    high: str,
    title: str,
    subtitle: str,
    x_label: str,
    reference: float | None = None,
    reference_label: str = "clinic-wide",
    value_format: str = "pct",
    colour_by: str | None = None,
    suppressed_label: str = "n < 11",
) -> go.Figure:
    """Dot-and-whisker chart of group estimates with intervals; withheld groups are labelled."""
    d = df.copy()
    shown = d[value].notna()
    fig = go.Figure()
    groups = [(None, d)] if colour_by is None else list(d.groupby(colour_by, sort=False))
    for i, (name, part) in enumerate(groups):
        vis = part[part[value].notna()]
        fig.add_trace(
            go.Scatter(
                x=vis[value],
                y=vis[category],
                mode="markers",
                name=str(name) if name is not None else x_label,
                showlegend=name is not None,
                marker={"size": 12, "color": PALETTE[i % len(PALETTE)]},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": vis[high] - vis[value],
                    "arrayminus": vis[value] - vis[low],
                    "thickness": 2,
                    "width": 6,
                },
                hovertemplate=f"%{{y}}: %{{x:{_fmt(value_format)}}}<extra></extra>",
            )
        )
    hidden = d[~shown]
    if len(hidden):
        xpos = reference if reference is not None else 0
        fig.add_trace(
            go.Scatter(
                x=[xpos] * len(hidden),
                y=hidden[category],
                mode="text",
                text=[suppressed_label] * len(hidden),
                textposition="middle right",
                textfont={"color": GREY, "size": 13},
                name="withheld (privacy)",
                showlegend=False,
                hoverinfo="skip",
            )
        )
    if reference is not None:
        figure_edit.add_vline(
            fig,
            x=reference,
            line={"color": GREY, "dash": "dot", "width": 2},
            annotation_text=reference_label,
            annotation_position="top",
        )
    figure_edit.update_xaxes(fig, title=x_label, tickformat=_fmt(value_format))
    figure_edit.update_yaxes(fig, autorange="reversed", type="category")
    height = max(320, 120 + 34 * d[category].nunique())
    return themed(fig, title=title, subtitle=subtitle, height=height)


def bars(
    df: pd.DataFrame,
    *,
    x: str,
    y: str,
    title: str,
    subtitle: str,
    x_label: str,
    y_label: str,
    low: str | None = None,
    high: str | None = None,
    colour: str = BLUE,
    value_format: str = "pct",
    highlight: pd.Series | None = None,
    suppressed_label: str = "n < 11",
) -> go.Figure:
    """Vertical bars (optionally with intervals); withheld bars are labelled, never zero."""
    d = df.copy()
    colours = [colour] * len(d)
    if highlight is not None:
        colours = [ORANGE if h else colour for h in highlight.to_numpy()]
    error = None
    if low and high:
        error = {
            "type": "data",
            "symmetric": False,
            "array": d[high] - d[y],
            "arrayminus": d[y] - d[low],
            "thickness": 1.8,
            "color": "#333",
        }
    fig = go.Figure(
        go.Bar(
            x=d[x].astype(str),
            y=d[y],
            marker_color=colours,
            error_y=error,
            hovertemplate=f"%{{x}}: %{{y:{_fmt(value_format)}}}<extra></extra>",
        )
    )
    hidden = d[d[y].isna()]
    for label in hidden[x].astype(str):
        fig.add_annotation(
            x=label,
            y=0,
            text=suppressed_label,
            showarrow=False,
            yshift=12,
            font={"color": GREY, "size": 12},
            textangle=-90,
        )
    figure_edit.update_xaxes(fig, title=x_label, type="category")
    figure_edit.update_yaxes(fig, title=y_label, tickformat=_fmt(value_format), rangemode="tozero")
    return themed(fig, title=title, subtitle=subtitle)


def runs(*columns: pd.Series | np.ndarray) -> list[np.ndarray]:
    """The positions of each contiguous run of points at which every column has a value.

    A withheld or missing point (NaN) ends a run: a band drawn per run breaks where its series
    breaks and never joins the points on either side of a gap.
    """
    ok = np.ones(len(columns[0]), dtype=bool)
    for c in columns:
        ok &= np.isfinite(pd.to_numeric(pd.Series(c), errors="coerce").to_numpy(dtype=float))
    out: list[np.ndarray] = []
    start = None
    for i, good in enumerate(np.append(ok, False)):
        if good and start is None:
            start = i
        elif not good and start is not None:
            out.append(np.arange(start, i))
            start = None
    return out


def band_polygons(
    x: pd.Series | np.ndarray,
    y: pd.Series | np.ndarray,
    low: pd.Series | np.ndarray,
    high: pd.Series | np.ndarray,
) -> tuple[list, list]:
    """The outline of a 95% band: one closed polygon per run of two or more points with a
    value and both limits (upper edge forward, lower edge back), polygons separated by None
    (plotly fills each part of a ``fill="toself"`` trace on its own). A lone point gets no
    polygon: :func:`lines` draws its interval as a whisker."""
    xs_all = np.asarray(x, dtype=object)
    lo = pd.to_numeric(pd.Series(low), errors="coerce").to_numpy(dtype=float)
    hi = pd.to_numeric(pd.Series(high), errors="coerce").to_numpy(dtype=float)
    bx: list = []
    by: list = []
    for run in runs(y, low, high):
        if len(run) < 2:
            continue
        if bx:
            bx.append(None)
            by.append(None)
        bx += list(xs_all[run]) + list(xs_all[run][::-1]) + [xs_all[run][0]]
        by += list(hi[run]) + list(lo[run][::-1]) + [hi[run][0]]
    return bx, by


# The smallest span of a value axis, per scale: a clinically meaningful difference fills at
# most a quarter of the axis (SRS and ORS 1 point of 0-40, WAI-SR 0.125 of 1-5 per item), and a
# rate axis spans at least 10 percentage points.
MIN_SPAN = {
    "srs": 4.0,
    "ors": 4.0,
    "phq9": 4.0,
    "gad7": 4.0,
    "wai": 0.5,
    "srs_item": 1.0,
    "rate": 0.10,
    "per100": 10.0,
}
BOUNDS = {
    "srs": (0.0, 40.0),
    "ors": (0.0, 40.0),
    "phq9": (0.0, 27.0),
    "gad7": (0.0, 21.0),
    "wai": (1.0, 5.0),
    "srs_item": (0.0, 10.0),
    "rate": (0.0, 1.0),
    "per100": (0.0, 100.0),
}


def value_range(
    values: pd.Series | np.ndarray,
    low: pd.Series | np.ndarray | None = None,
    high: pd.Series | np.ndarray | None = None,
    *,
    min_span: float,
    bounds: tuple[float, float] | None = None,
    pad: float = 0.05,
) -> list[float] | None:
    """The value axis of a chart: the data (values and their interval limits) with a little
    air, widened to at least ``min_span`` centred on the data, and kept inside ``bounds``
    (the scale's range; shifted, not shrunk, where the data sit near an end). None without data.

    The one rule behind every line, control and session-number chart: the drawing never makes
    a change that the statistics call noise look like a cliff.
    """
    parts = [values] + [c for c in (low, high) if c is not None]
    arr = np.concatenate(
        [
            pd.to_numeric(pd.Series(np.asarray(c).ravel()), errors="coerce").to_numpy(float)
            for c in parts
        ]
    )
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return None
    lo, hi = float(arr.min()), float(arr.max())
    span = hi - lo
    lo, hi = lo - pad * span, hi + pad * span
    if hi - lo < min_span:
        centre = (lo + hi) / 2
        lo, hi = centre - min_span / 2, centre + min_span / 2
    if bounds is not None:
        b0, b1 = bounds
        if hi - lo > b1 - b0:
            lo, hi = b0, b1
        elif lo < b0:
            lo, hi = b0, hi + (b0 - lo)
        elif hi > b1:
            lo, hi = lo - (hi - b1), b1
    return [lo, hi]


def set_value_range(
    fig: go.Figure,
    values: pd.Series | np.ndarray,
    low: pd.Series | np.ndarray | None = None,
    high: pd.Series | np.ndarray | None = None,
    *,
    scale: str | None = None,
    min_span: float | None = None,
    bounds: tuple[float, float] | None = None,
    axis: str = "y",
) -> go.Figure:
    """Fix a figure's value axis by :func:`value_range` (the scale's MIN_SPAN and BOUNDS
    unless given)."""
    span = min_span if min_span is not None else MIN_SPAN.get(scale or "")
    if span is None:
        return fig
    rng = value_range(values, low, high, min_span=span, bounds=bounds or BOUNDS.get(scale or ""))
    if rng is None:
        return fig
    update = figure_edit.update_yaxes if axis == "y" else figure_edit.update_xaxes
    update(fig, range=rng, autorange=False)
    return fig


def lines(
    df: pd.DataFrame,
    *,
    x: str,
    y: str,
    group: str | None,
    title: str,
    subtitle: str,
    x_label: str,
    y_label: str,
    low: str | None = None,
    high: str | None = None,
    value_format: str = "num1",
    dash_groups: dict[str, str] | None = None,
    scale: str | None = None,
) -> go.Figure:
    """One line per group (with an optional interval band).

    A band is drawn per run of points with a value and both limits (:func:`band_polygons`): it
    breaks where the series breaks (a withheld month) and never joins across a gap; a lone
    point between gaps shows its interval as a whisker. ``scale`` ("srs", "ors", "wai", "rate")
    sets the value axis by :func:`value_range`.
    """
    fig = go.Figure()
    groups = [(y_label, df)] if group is None else list(df.groupby(group, sort=False))
    for i, (name, part) in enumerate(groups):
        colour = PALETTE[i % len(PALETTE)]
        whisker = None
        if low and high:
            bx, by = band_polygons(part[x], part[y], part[low], part[high])
            fig.add_trace(
                go.Scatter(
                    x=bx,
                    y=by,
                    mode="lines",
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.15,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
            lone = np.zeros(len(part), dtype=bool)
            for run in runs(part[y], part[low], part[high]):
                if len(run) == 1:
                    lone[run] = True
            if lone.any():
                yv = pd.to_numeric(part[y], errors="coerce").to_numpy(float)
                up = np.where(lone, part[high].to_numpy(float) - yv, np.nan)
                down = np.where(lone, yv - part[low].to_numpy(float), np.nan)
                whisker = {
                    "type": "data",
                    "symmetric": False,
                    "array": up,
                    "arrayminus": down,
                    "color": colour,
                    "thickness": 1.5,
                    "width": 5,
                }
        fig.add_trace(
            go.Scatter(
                x=part[x],
                y=part[y],
                mode="lines+markers",
                name=str(name),
                line={
                    "color": colour,
                    "width": 2.5,
                    "dash": (dash_groups or {}).get(str(name), "solid"),
                },
                marker={"size": 7},
                error_y=whisker,
                hovertemplate=f"{name}: %{{y:{_fmt(value_format)}}}<extra></extra>",
            )
        )
    figure_edit.update_xaxes(fig, title=x_label)
    figure_edit.update_yaxes(fig, title=y_label, tickformat=_fmt(value_format))
    if scale is not None:
        set_value_range(
            fig,
            df[y],
            df[low] if low else None,
            df[high] if high else None,
            scale=scale,
        )
    return themed(fig, title=title, subtitle=subtitle)


def funnel_traces(
    points: pd.DataFrame,
    limits: pd.DataFrame,
    *,
    x_label: str,
    y_label: str,
    value_format: str = "pct",
) -> list[dict]:
    """The traces of a funnel plot: the 99.8% and 95% limit lines, then the units by flag.

    points: unit, n, value, flag. limits: n, low_95, high_95, low_998, high_998. Plain trace
    dicts: plotly validates them once, in the figure they are added to.
    """
    traces = []
    for level, dash, label in (("998", "dash", "99.8% limits"), ("95", "dot", "95% limits")):
        for side in ("low", "high"):
            traces.append(
                {
                    "type": "scatter",
                    "x": limits["n"],
                    "y": limits[f"{side}_{level}"],
                    "mode": "lines",
                    "name": label,
                    "showlegend": side == "high",
                    "line": {"color": GREY, "dash": dash, "width": 1.6},
                    "hoverinfo": "skip",
                }
            )
    colours = {
        "within": BLUE,
        "above 95%": ORANGE,
        "below 95%": ORANGE,
        "above 99.8%": VERMILLION,
        "below 99.8%": VERMILLION,
    }
    for flag, part in points.groupby("flag", sort=False):
        traces.append(
            {
                "type": "scatter",
                "x": part["n"],
                "y": part["value"],
                "mode": "markers",
                "name": str(flag),
                "customdata": part[["unit"]].to_numpy(),
                "marker": {
                    "size": 11,
                    "color": colours.get(str(flag), BLUE),
                    "line": {"width": 1, "color": "white"},
                },
                "hovertemplate": (
                    f"%{{customdata[0]}}<br>{x_label}: %{{x}}<br>"
                    f"{y_label}: %{{y:{_fmt(value_format)}}}<extra></extra>"
                ),
            }
        )
    return traces


def funnel_plot(
    points: pd.DataFrame,
    limits: pd.DataFrame,
    *,
    target: float,
    title: str,
    subtitle: str,
    x_label: str,
    y_label: str,
    value_format: str = "pct",
) -> go.Figure:
    """Funnel plot: units (by code) against volume, with 95% and 99.8% limits around the target.

    points: unit, n, value, flag. limits: n, low_95, high_95, low_998, high_998.
    """
    traces = funnel_traces(
        points, limits, x_label=x_label, y_label=y_label, value_format=value_format
    )
    # one constructor call: plotly validates the traces and layout once (add_hline and the
    # update_* calls would each walk the whole figure again)
    layout = {
        # the clinic-wide line across the plot, labelled at its right end
        "shapes": [
            {
                "type": "line",
                "line": {"color": BLACK, "width": 1.5},
                "x0": 0,
                "x1": 1,
                "xref": "x domain",
                "y0": target,
                "y1": target,
                "yref": "y",
            }
        ],
        "annotations": [
            {
                "showarrow": False,
                "text": "clinic-wide",
                "x": 1,
                "xanchor": "right",
                "xref": "x domain",
                "y": target,
                "yanchor": "top",
                "yref": "y",
            }
        ],
        "xaxis": {"title": {"text": x_label}, "rangemode": "tozero"},
        "yaxis": {"title": {"text": y_label}, "tickformat": _fmt(value_format)},
        **theme_layout(title=title, subtitle=subtitle, height=480),
    }
    return go.Figure(data=traces, layout=layout)


def histogram_bins(
    df: pd.DataFrame,
    *,
    bin_col: str,
    count_col: str,
    title: str,
    subtitle: str,
    x_label: str,
    y_label: str = "Share",
    cutoff: float | None = None,
    cutoff_label: str = "cutoff",
    suppressed_label: str = "n < 11",
) -> go.Figure:
    """A histogram from SQL-binned counts (no raw rows reach the browser); shows shares."""
    d = df.copy()
    total = d[count_col].sum(skipna=True)
    d["share"] = d[count_col] / total if total else np.nan
    fig = go.Figure(
        go.Bar(
            x=d[bin_col],
            y=d["share"],
            marker_color=BLUE,
            hovertemplate=f"{x_label} %{{x}}: %{{y:.1%}}<extra></extra>",
        )
    )
    if cutoff is not None:
        figure_edit.add_vline(
            fig,
            x=cutoff,
            line={"color": VERMILLION, "dash": "dash", "width": 2},
            annotation_text=cutoff_label,
            annotation_position="top left",
        )
    hidden = d[d[count_col].isna()]
    if len(hidden):
        fig.add_annotation(
            xref="paper",
            yref="paper",
            x=0.01,
            y=0.98,
            showarrow=False,
            text=f"{len(hidden)} bin(s) withheld ({suppressed_label})",
            font={"color": GREY, "size": 12},
        )
    figure_edit.update_xaxes(fig, title=x_label)
    figure_edit.update_yaxes(fig, title=y_label, tickformat=".0%")
    figure_edit.update_layout(fig, bargap=0.05)
    return themed(fig, title=title, subtitle=subtitle)
