"""The alliance dimensions (feeling heard, goals, approach, overall): their colours and the
charts that show them, shared by the Alliance profile and Ruptures & repair pages (the grids of
small charts are alliance.charts.dimension_grids).

Chart builders only: they take aggregates that have already passed the privacy step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import charts
from alliance.charts import figure_edit
from alliance.charts.text import chart_text
from alliance.metrics.dimensions import DIMENSIONS, LABELS

COLOURS = {
    "heard": charts.BLUE,
    "goals": charts.GREEN,
    "approach": charts.VERMILLION,
    "overall": charts.GREY,
}


def dot_figure(
    df: pd.DataFrame,
    *,
    category: str,
    value: str,
    low: str,
    high: str,
    title: str,
    subtitle_text: str,
    axis_label: str,
    horizontal: bool,
    reference: float | None = None,
    reference_label: str = "",
    suppressed_label: str = "n < 11",
    value_format: str = ".2f",
    categories: list[str] | None = None,
) -> go.Figure:
    """Dots with 95% intervals, one colour per dimension, dodged within each category.

    df: category, dimension, value, low, high (value NaN = withheld: the category is labelled).
    """
    fig = go.Figure()
    cats = [chart_text(c) for c in categories or dict.fromkeys(df[category].astype(str))]
    df = df.assign(**{category: df[category].astype(str).map(chart_text)})  # names as text
    for dim in DIMENSIONS:
        part = df[(df["dimension"] == dim) & df[value].notna()]
        if part.empty:
            continue
        err = {
            "type": "data",
            "symmetric": False,
            "array": (part[high] - part[value]).fillna(0).to_numpy(),
            "arrayminus": (part[value] - part[low]).fillna(0).to_numpy(),
            "thickness": 2,
            "width": 4,
            "color": COLOURS[dim],
        }
        cat = part[category].astype(str).to_numpy()
        val = part[value].to_numpy()
        fig.add_trace(
            go.Scatter(
                x=val if horizontal else cat,
                y=cat if horizontal else val,
                mode="markers",
                name=LABELS[dim],
                offsetgroup=dim,
                orientation="h" if horizontal else "v",
                marker={"size": 11, "color": COLOURS[dim], "line": {"width": 1, "color": "white"}},
                error_x=err if horizontal else None,
                error_y=None if horizontal else err,
                customdata=np.column_stack(
                    [part["n_clients"].astype("float").to_numpy(), part[low], part[high]]
                ),
                hovertemplate=(
                    f"{LABELS[dim]}<br>%{{{'y' if horizontal else 'x'}}}: "
                    f"%{{{'x' if horizontal else 'y'}:{value_format}}} "
                    f"(95% CI %{{customdata[1]:{value_format}}} to "
                    f"%{{customdata[2]:{value_format}}})<br>%{{customdata[0]:,.0f}} clients"
                    "<extra></extra>"
                ),
            )
        )
    shown = set(df.loc[df[value].notna(), category].astype(str))
    hidden = [c for c in cats if c not in shown]
    for c in hidden:
        fig.add_annotation(
            x=(reference or 0) if horizontal else c,
            y=c if horizontal else 0.5,
            xref="x" if horizontal else "x",
            yref="y" if horizontal else "paper",
            text=suppressed_label,
            showarrow=False,
            font={"color": charts.GREY, "size": 13},
            xanchor="left" if horizontal else "center",
        )
    if reference is not None:
        line = {"color": charts.GREY, "dash": "dot", "width": 2}
        if horizontal:
            figure_edit.add_vline(fig, x=reference, line=line)
        else:
            figure_edit.add_hline(fig, y=reference, line=line)
        if reference_label:
            fig.add_annotation(
                x=reference if horizontal else 1.0,
                y=1.0 if horizontal else reference,
                xref="x" if horizontal else "paper",
                yref="paper" if horizontal else "y",
                text=reference_label,
                showarrow=False,
                yanchor="bottom",
                font={"color": charts.GREY, "size": 12},
            )
    figure_edit.update_layout(fig, scattermode="group", scattergap=0.35)
    cat_axis = {"type": "category", "categoryorder": "array", "categoryarray": cats}
    # a value range fitted to the intervals (grouped scatter would otherwise start at zero)
    ends = pd.concat([df[low], df[high], df[value]]).dropna()
    if reference is not None:
        ends = pd.concat([ends, pd.Series([reference])])
    span = None
    if len(ends):
        pad = max(float(ends.max() - ends.min()) * 0.08, 0.02)
        span = [float(ends.min()) - pad, float(ends.max()) + pad]
    if horizontal:
        figure_edit.update_yaxes(fig, **cat_axis, autorange="reversed")
        figure_edit.update_xaxes(
            fig, title=axis_label, tickformat=value_format, zeroline=False, range=span
        )
        height = max(420, 210 + 16 * len(cats) * max(1, df["dimension"].nunique()))
    else:
        figure_edit.update_xaxes(fig, **cat_axis)
        figure_edit.update_yaxes(fig, title=axis_label, tickformat=value_format, range=span)
        height = 480
    fig = charts.themed(fig, title=title, subtitle=subtitle_text, height=height)
    return fit_layout(fig)


def _fit_changes(subtitle: str, height: int | None, *, legend_below: bool) -> dict:
    sub = subtitle or ""
    lines = sub.count("<br>") + 1 if sub else 0
    height = height or 430
    top = 58 + 18 * lines
    changes: dict = {
        "margin": {"t": top},
        "height": height + max(0, top - 95),
        "title": {"yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": 14}},
    }
    if legend_below:
        changes["legend"] = {
            "orientation": "h",
            "yref": "container",
            "yanchor": "bottom",
            "y": 0.0,
            "xanchor": "left",
            "x": 0.0,
        }
        changes["margin"]["b"] = 115
        changes["height"] += 50
    return changes


def fit_layout(fig: go.Figure, *, legend_below: bool = True) -> go.Figure:
    """Room for a subtitle of several lines, and the legend under the plot, clear of it.

    The house theme leaves room for a two-line subtitle and puts the legend top right; these
    pages print definitions and settings on every chart, so subtitles run to three or four
    lines and the legends are long.
    """
    figure_edit.update_layout(
        fig,
        **_fit_changes(
            fig.layout.title.subtitle.text, fig.layout.height, legend_below=legend_below
        ),
    )
    return fig


def fitted(layout: dict, *, legend_below: bool = True) -> dict:
    """`fit_layout` on a layout dict, before the figure is built (one constructor call)."""
    changes = _fit_changes(
        layout["title"]["subtitle"]["text"], layout.get("height"), legend_below=legend_below
    )
    out = dict(layout)
    for key, value in changes.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def gap_heatmap(
    df: pd.DataFrame,
    *,
    rows: list[str],
    dims: tuple[str, ...],
    title: str,
    subtitle_text: str,
    suppressed_label: str,
) -> go.Figure:
    """Rows (site / program) x dimensions, coloured by the gap from the clinic's dimension mean.

    df: row, dimension, gap, gap_low, gap_high, weakest (bool). Withheld cells read "n < 11".
    """
    rows = [chart_text(r) for r in rows]  # site and program names as text, never markup
    df = df.assign(row=df["row"].map(chart_text))
    # the first row of each (row, dimension) cell, looked up once (not a filter per cell)
    first = df.drop_duplicates(["row", "dimension"], keep="first")
    cells = {
        (r, d): c
        for r, d, c in zip(first["row"], first["dimension"], first.to_dict("records"), strict=True)
    }
    z, text = [], []
    for r in rows:
        zr, tr = [], []
        for d in dims:
            c = cells.get((r, d))
            if c is None or pd.isna(c["gap"]):
                zr.append(None)
                tr.append(suppressed_label if c is not None else "–")
                continue
            clear = bool(c["gap_low"] > 0 or c["gap_high"] < 0)
            mark = "  ◀ weakest" if bool(c["weakest"]) else ""
            gap = 0.0 if abs(c["gap"]) < 0.005 else float(c["gap"])
            tr.append(f"{gap:+.2f}{'*' if clear else ''}{mark}")
            zr.append(float(c["gap"]))
        z.append(zr)
        text.append(tr)
    finite = [abs(v) for row in z for v in row if v is not None]
    span = max(finite) if finite else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[LABELS[d] for d in dims],
            y=rows,
            text=text,
            texttemplate="%{text}",
            textfont={"size": 14},
            zmin=-span,
            zmax=span,
            zmid=0,
            colorscale=[[0, charts.VERMILLION], [0.5, "#f7f7f7"], [1, charts.BLUE]],
            colorbar={"title": {"text": "points vs<br>clinic"}, "thickness": 14},
            hovertemplate="%{y} · %{x}: %{text}<extra></extra>",
            xgap=3,
            ygap=3,
        )
    )
    figure_edit.update_yaxes(fig, autorange="reversed", type="category", showgrid=False)
    figure_edit.update_xaxes(fig, side="top", showgrid=False, title=None)
    height = max(360, 170 + 40 * len(rows))
    fig = charts.themed(fig, title=title, subtitle=subtitle_text, height=height)
    fit_layout(fig, legend_below=False)
    figure_edit.update_layout(fig, margin={"t": fig.layout.margin.t + 40})
    return fig


def dimension_lines(df: pd.DataFrame, *, title: str, subtitle_text: str, scale: str) -> go.Figure:
    """One line per dimension over the months, each with its 95% band in the dimension's
    colour. df: month, mean_score, low, high, label (in the dimensions' order)."""
    fig = charts.lines(
        df,
        x="month",
        y="mean_score",
        group="label",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle_text,
        x_label="Month",
        y_label="Mean item score",
        value_format="num2",
        scale=scale,
    )
    fit_layout(fig)
    for tr in fig.data:
        name = getattr(tr, "name", None)
        for d in DIMENSIONS:
            if name == LABELS[d]:
                tr.line.color = COLOURS[d]
                tr.marker.color = COLOURS[d]
    # colour the bands like their lines (bands come just before their line)
    traces = list(fig.data)
    for i, tr in enumerate(traces[:-1]):
        if getattr(tr, "fill", None) == "toself":
            tr.fillcolor = traces[i + 1].line.color
    return fig
