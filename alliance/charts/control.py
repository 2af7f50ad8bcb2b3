"""The control chart's frame, layout and captions: what `charts.spc_chart` draws and the
sentences beside it, shared by every page with a monthly control chart (Alliance, Dropout).

The rules themselves (shift, trend, beyond the limits; judged after a baseline) are alliance.spc.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from numpy.typing import ArrayLike

from alliance.charts import figure_edit
from alliance.spc import MIN_JUDGED, judged_rules, separate_baseline


def baseline_mask(values: pd.Series, months: int) -> np.ndarray:
    """The SPC baseline: the first `months` points of the shown range that have a value.

    Counting points with data (not calendar months) keeps a chart usable when a site opened, or
    cells were withheld, early in the range. A baseline judges the months after it: when fewer
    than `months` + 6 points have a value (spc.MIN_JUDGED), the period is too short for a
    separate baseline and every point with a value is the baseline of a run chart.
    """
    has = values.notna().to_numpy()
    base = has & (np.cumsum(has) <= months)
    if not separate_baseline(values, base):
        return has
    return base


def spc_frame(
    month: pd.Series,
    value: ArrayLike,
    centre: ArrayLike,
    lcl: ArrayLike,
    ucl: ArrayLike,
    baseline: np.ndarray,
) -> pd.DataFrame:
    """The frame charts.spc_chart draws: values, control lines and the IHI run-chart rules.

    The rules (shift: 6+ points on one side, trend: 5+ rising or falling, astronomical: outside
    the 3-sigma limits) judge the months after the baseline against the centre line that is
    drawn (spc.judged_rules); the baseline months are never flagged. When fewer than 6 months
    with a value follow the baseline the chart is a run chart (`run_chart`): the centre line over
    the whole period, no limits and no flags. Missing (withheld) points are skipped and never
    flagged, and have no centre line or limits (NaN): a month's limits solve back to its count.
    """
    v = pd.Series(value, dtype="float64").to_numpy(na_value=np.nan)
    shown = np.isfinite(v)
    baseline = np.asarray(baseline, dtype=bool) & shown
    run_chart = not separate_baseline(v, baseline)

    def line(values: ArrayLike) -> np.ndarray:
        return np.where(shown, np.asarray(values, dtype=float), np.nan)

    centre_line = line(centre)
    if run_chart:
        lcl_line = ucl_line = np.full(v.size, np.nan)
    else:
        lcl_line, ucl_line = line(lcl), line(ucl)
    rules = judged_rules(v, centre_line, lcl_line, ucl_line, baseline)
    return pd.DataFrame(
        {
            "month": pd.to_datetime(month).to_numpy(),
            "value": v,
            "centre": centre_line,
            "lcl": lcl_line,
            "ucl": ucl_line,
            "baseline": baseline,
            "judged": rules["judged"].to_numpy(),
            "run_chart": run_chart,
            "shift": rules["shift"].to_numpy(),
            "trend": rules["trend"].to_numpy(),
            "astronomical": rules["astronomical"].to_numpy(),
        }
    )


def fit_layout(fig: go.Figure, *, rate_axis: str | None = None) -> go.Figure:
    """Room for a multi-line subtitle, the legend under the plot, bands without markers.

    charts.themed leaves room for a two-line subtitle and puts the legend on the plot's top
    edge, where a longer subtitle runs into it. `rate_axis` ("x" or "y") starts a rate axis at
    0 so that small differences between rates are not magnified.
    """
    sub = fig.layout.title.subtitle.text or ""
    lines = sub.count("<br>") + 1
    top = 72 + 20 * lines + (14 if fig.layout.annotations or fig.layout.shapes else 0)
    legend = any(tr.showlegend is not False for tr in fig.data) and len(fig.data) > 1
    bottom = 125 if legend else 60
    height = (fig.layout.height or 430) + (top - 95) + (bottom - 60)
    figure_edit.update_layout(
        fig,
        margin={"t": top, "b": bottom},
        height=height,
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0},
    )
    fig.update_traces(mode="lines", selector={"fill": "toself"})
    if fig.layout.yaxis.type == "category":  # dot-and-whisker rows: half a row of air around
        rows = list(dict.fromkeys(y for tr in fig.data if tr.y is not None for y in tr.y))
        figure_edit.update_yaxes(fig, autorange=False, range=[len(rows) - 0.5, -0.5])
    if rate_axis == "x":
        figure_edit.update_xaxes(fig, rangemode="tozero")
    elif rate_axis == "y":
        figure_edit.update_yaxes(fig, rangemode="tozero")
    return fig


def spc_baseline_text(frame: pd.DataFrame) -> str:
    months = frame.loc[frame["baseline"], "month"]
    if months.empty:
        return "no baseline"
    a, b = months.min().strftime("%b %Y"), months.max().strftime("%b %Y")
    return f"baseline {a} – {b} ({len(months)} months)"


def spc_method_text(frame: pd.DataFrame, months: int, with_data: str) -> list[str]:
    """The subtitle parts saying how the chart is judged: a baseline and the months after it,
    or (too short a period) a run chart without rules."""
    if is_run_chart(frame):
        shown = int(frame["baseline"].sum())
        return [
            f"too short for a separate baseline (a baseline of {months} months needs at least "
            f"{months + MIN_JUDGED} months {with_data}, this period has {shown}): run chart "
            "around the period's mean, no limits, no rules applied"
        ]
    return [
        f"centre line and 3-sigma limits from the {spc_baseline_text(frame)}: the first "
        f"{months} months {with_data} (a setting)",
        "the months after it judged: shift = 6+ on one side of the centre line, "
        "trend = 5+ rising or falling",
    ]


def is_run_chart(frame: pd.DataFrame) -> bool:
    return bool(frame["run_chart"].any()) if "run_chart" in frame else False


def spc_centre_label(frame: pd.DataFrame) -> str:
    return "mean of the period" if is_run_chart(frame) else "centre line (baseline)"


def spc_baseline_end(frame: pd.DataFrame) -> pd.Timestamp | None:
    months = frame.loc[frame["baseline"], "month"]
    if months.empty or is_run_chart(frame) or bool(frame["baseline"].all()):
        return None  # the whole range is the baseline: nothing to shade apart
    return months.max() + pd.Timedelta(days=15)


def spc_note(frame: pd.DataFrame) -> str:
    """Plain sentence on what the run-chart rules found."""
    if is_run_chart(frame):
        return (
            "The period is too short for a separate baseline, so no month is judged: a "
            "baseline judges the months after it, never itself. Widen the period to see "
            "control limits and signals."
        )
    found = []
    for col, text in (
        ("astronomical", "outside the limits"),
        ("shift", "in a shift (6+ months on one side of the centre line)"),
        ("trend", "in a trend (5+ months rising or falling)"),
    ):
        hit = frame.loc[frame[col].fillna(False).astype(bool), "month"]
        if len(hit):
            found.append(f"{len(hit)} month(s) {text}, first {hit.min():%b %Y}")
    if not found:
        return (
            "No run-chart rule fires after the baseline: the months vary no more than chance "
            "would make them (common-cause variation)."
        )
    return (
        "Signals after the baseline: "
        + "; ".join(found)
        + ". A signal says something changed, not what: check what happened then."
    )
