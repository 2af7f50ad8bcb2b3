"""The alliance dimensions' grids of small charts: the therapists' shrunken gaps as a strip per
client group (`strip_figure`) and funnel plots side by side (`funnel_grid`), shared by the
Alliance profile and Ruptures & repair pages.

Chart builders only: they take aggregates that have already passed the privacy step.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import charts
from alliance.charts.dimensions import COLOURS, DIMENSIONS, LABELS, fitted
from alliance.charts.text import chart_text, chart_texts


def strip_figure(
    points: pd.DataFrame,
    centres: pd.DataFrame,
    *,
    rows: list[str],
    title: str,
    subtitle_text: str,
    axis_label: str,
) -> go.Figure:
    """Therapists' shrunken gaps as short ticks (a rug) per group row, one lane per dimension,
    the average gap as an open diamond on the lane.

    Each dimension's ticks are one line trace broken between ticks: one SVG path however many
    therapists. Hundreds of dots were each an element of their own, which took the browser
    about half a second to composite on every redraw. Hovering a tick names the therapist.

    points: row, dimension, therapist, shrunk (NaN rows are not drawn).
    centres: row, dimension, centre.
    """
    rows = [chart_text(r) for r in rows]  # group names as text, never markup
    position = {r: float(i) for i, r in enumerate(rows)}
    points = points.assign(row=chart_texts(points["row"]))
    centres = centres.assign(row=chart_texts(centres["row"]))
    points = points[points["shrunk"].notna()]
    drawn = [
        d
        for d in DIMENSIONS
        if (points["dimension"] == d).any() or (centres["dimension"] == d).any()
    ]
    # each dimension's lane within a row, in the dimensions' order, top to bottom
    lane = {d: (j - (len(drawn) - 1) / 2) * 0.2 for j, d in enumerate(drawn)}
    half = 0.08  # half a tick's height (rows are 1 apart)
    # traces and layout as plain dicts, validated once by one constructor call
    traces: list[dict] = []
    for dim in drawn:
        part = points[points["dimension"] == dim]
        cen = centres[centres["dimension"] == dim]
        if not cen.empty:
            traces.append(
                {
                    "type": "scatter",
                    "x": cen["centre"],
                    "y": cen["row"].map(position) + lane[dim],
                    "mode": "markers",
                    "name": f"{LABELS[dim]}: average",
                    "legendgroup": dim,
                    "showlegend": False,
                    "marker": {
                        "size": 15,
                        "symbol": "diamond-open",
                        "color": COLOURS[dim],
                        "line": {"width": 3, "color": COLOURS[dim]},
                    },
                    "customdata": cen[["row"]].to_numpy(),
                    "hovertemplate": (
                        f"{LABELS[dim]} · %{{customdata[0]}}: average gap %{{x:+.2f}}"
                        "<extra></extra>"
                    ),
                }
            )
        if not part.empty:
            y = part["row"].map(position).to_numpy(dtype=float) + lane[dim]
            x = np.repeat(part["shrunk"].to_numpy(dtype=float), 3)
            x[2::3] = np.nan  # a break between ticks
            ys = np.column_stack([y - half, y + half, np.full(len(y), np.nan)]).ravel()
            traces.append(
                {
                    "type": "scatter",
                    "x": x,
                    "y": ys,
                    "mode": "lines",
                    "name": LABELS[dim],
                    "legendgroup": dim,
                    "line": {"color": COLOURS[dim], "width": 2.5},
                    "opacity": 0.75,
                    # one text per vertex (three per tick): "<therapist> · <group>"
                    "customdata": np.repeat(
                        (part["therapist"].astype(str) + " · " + part["row"]).to_numpy(
                            dtype=object
                        ),
                        3,
                    ),
                    "hovertemplate": (
                        f"%{{customdata}} · {LABELS[dim]}: %{{x:+.2f}} (shrunken)<extra></extra>"
                    ),
                }
            )
    height = max(420, 200 + 46 * len(rows))
    layout = {
        # no difference from the average gap of the same therapist's other clients: x = 0
        "shapes": [
            {
                "type": "line",
                "line": {"color": charts.GREY, "dash": "dot", "width": 2},
                "x0": 0,
                "x1": 0,
                "xref": "x",
                "y0": 0,
                "y1": 1,
                "yref": "y domain",
            }
        ],
        "yaxis": {
            "tickmode": "array",
            "tickvals": list(range(len(rows))),
            "ticktext": rows,
            "range": [len(rows) - 0.5, -0.5],  # the first row on top
            "zeroline": False,
        },
        "xaxis": {"title": {"text": axis_label}, "tickformat": "+.2f", "zeroline": False},
        "hovermode": "closest",
        **charts.theme_layout(title=title, subtitle=subtitle_text, height=height),
    }
    return go.Figure(data=traces, layout=fitted(layout))


@functools.cache
def _grid_layout(rows: int, cols: int) -> dict:
    """make_subplots' axes (domains, anchors) and subplot-title annotations for a grid, once
    per shape (plain dicts, without the template: the figure takes the default)."""
    from plotly.subplots import make_subplots

    grid = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[str(i) for i in range(rows * cols)],
        horizontal_spacing=0.09,
        vertical_spacing=0.16 if rows > 1 else 0.1,
    )
    layout = grid.layout.to_plotly_json()
    layout.pop("template", None)
    return layout


def funnel_grid(items: list[dict], *, title: str, subtitle_text: str) -> go.Figure:
    """Small multiples of charts.funnel_plot sharing one legend, two per row.

    items: dicts with name (subplot title), points, limits, target, x_label, y_label and
    value_format ('num1', 'num2', 'pct'), as charts.funnel_plot takes them.
    """
    cols = 2
    rows = -(-len(items) // cols)
    base = copy.deepcopy(_grid_layout(rows, cols))
    # one title per subplot drawn (make_subplots adds none for an empty cell)
    base["annotations"] = [
        {**a, "text": it["name"]} for a, it in zip(base["annotations"], items, strict=False)
    ]
    seen: set[str] = set()
    ticks = {"num1": ".1f", "num2": ".1f", "pct": ".0%"}
    # every subplot's traces, clinic line and axes as plain dicts, validated once by one
    # constructor call (make_subplots' add_trace, add_hline and update_*axes each re-walk it)
    traces: list[dict] = []
    shapes: list[dict] = []
    for i, it in enumerate(items):
        r, c = i // cols + 1, i % cols + 1
        pts, lim, target = it["points"], it["limits"], it["target"]
        suffix = "" if i == 0 else str(i + 1)  # make_subplots numbers axes row by row
        for tr in charts.funnel_traces(
            pts, lim, x_label=it["x_label"], y_label=it["y_label"], value_format=it["value_format"]
        ):
            name = tr.get("name") or ""
            tr["legendgroup"] = name
            tr["showlegend"] = tr.get("showlegend") is not False and name not in seen
            if tr["showlegend"]:
                seen.add(name)
            traces.append({**tr, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"})
        shapes.append(
            {
                "type": "line",
                "line": {"color": charts.BLACK, "width": 1.5},
                "x0": 0,
                "x1": 1,
                "xref": f"x{suffix} domain",
                "y0": target,
                "y1": target,
                "yref": f"y{suffix}",
            }
        )
        n_min = float(pts["n"].min())
        near = lim[lim["n"] >= 0.6 * n_min]
        vals = pd.concat([pts["value"], near["low_998"], near["high_998"]]).dropna()
        pad = max(float(vals.max() - vals.min()) * 0.06, 1e-3)
        base[f"yaxis{suffix}"].update(
            {
                "range": [float(vals.min()) - pad, float(vals.max()) + pad],
                "tickformat": ticks.get(it["value_format"], ".1f"),
                "title": it["y_label"] if c == 1 or it.get("own_axis") else None,
            }
        )
        base[f"xaxis{suffix}"].update(
            {"rangemode": "tozero", "title": it["x_label"] if r == rows else None}
        )
    layout = {
        **base,
        "shapes": shapes,
        **charts.theme_layout(title=title, subtitle=subtitle_text, height=340 * rows + 160),
    }
    return go.Figure(data=traces, layout=fitted(layout))
