"""Margins for drawing a figure in the dashboard (not in exports), so the browser draws it once.

Streamlit's chart theme draws y tick labels at 12 px and axis titles at 14 px, and sets the left
margin to 0, so that plotly's automargin widens it to fit the labels. Automargin widens a margin
by drawing the whole chart, measuring its labels and drawing it all again: every chart was drawn
twice on every filter change (about 40% of the browser's plotly work). Given a left margin at
least as wide as the one plotly arrives at, it draws once. `ui.render_panel` sets these margins
only while handing the figure to Streamlit; tests/test_browser.py checks in Chromium that plotly
widens no chart's margins.
"""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance.charts import TRACE_TYPES

# Widths of 12 px text, fitted to what Chromium measured for the dashboard's labels (within 5 px
# on labels of 50-250 px); a label wider than estimated only brings back the second drawing.
_NARROW = frozenset("ijlt.,:;!'|rf")
_BRACKETS = frozenset("()-/[]")
_TAG = re.compile(r"<[^>]*>")
_LABEL_PAD_PX = 16  # tick length and Streamlit's margin pad, beyond the widest label
_TITLE_PX = 34  # a rotated 14 px axis title and its standoff
_MINUS = "\u2212"


def label_px(text: str) -> float:
    """Estimated width in pixels of `text` as a 12 px y-axis tick label (markup removed)."""
    width = 0.0
    for c in _TAG.sub("", str(text)):
        if c.isdigit():
            width += 5.9
        elif c == " ":
            width += 3.0
        elif c in _NARROW:
            width += 3.3
        elif c in _BRACKETS:
            width += 3.8
        elif c == "%":
            width += 10.5
        elif c in "mwMW":
            width += 9.0
        elif c.isupper():
            width += 7.0
        elif c.islower():
            width += 6.0
        else:
            width += 6.5
    return width


def _nice_ceiling(x: float) -> float:
    """The round number plotly's last tick can reach above `x` (36.8 -> 40, 0.95 -> 1)."""
    if x <= 0:
        return 0.0
    step = 10 ** np.floor(np.log10(x))
    return float(np.ceil(x / step - 1e-9) * step)


def _numeric_labels(values: np.ndarray, tickformat: str) -> list[str]:
    """The longest tick labels a numeric axis over `values` can show, in its tick format."""
    top = _nice_ceiling(float(np.max(np.abs(values))))
    negative = bool(np.min(values) < 0)
    match = re.fullmatch(r"\+?\.(\d)([f%])", tickformat or "")
    if match:
        digits, kind = int(match.group(1)), match.group(2)
        text = f"{top * 100:.{digits}f}%" if kind == "%" else f"{top:.{digits}f}"
        if tickformat.startswith("+"):
            text = "+" + text
    else:  # plotly's own format: one decimal more than the step needs, at most
        span = float(np.max(values) - np.min(values)) or top or 1.0
        digits = max(0, 1 - int(np.floor(np.log10(span))))
        text = f"{top:.{digits}f}"
    return [(_MINUS + text) if negative else text]


def _array(values: object) -> np.ndarray:
    """A trace's values as an object array, decoding plotly's typed-array form ({dtype, bdata})."""
    if isinstance(values, dict) and "bdata" in values:
        raw = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return raw.astype(object)
    return np.asarray(values, dtype=object)


def _axis_labels(fig: go.Figure, name: str) -> list[str]:
    """The tick labels the y axis `name` ('yaxis', 'yaxis2', ...) can show."""
    axis = fig.layout[name]
    if axis.ticktext is not None:
        return [str(t) for t in axis.ticktext]
    ref = "y" + name.removeprefix("yaxis")
    texts: list[str] = []
    numbers: list[np.ndarray] = []
    for trace in fig.data:
        if (getattr(trace, "yaxis", None) or "y") != ref or getattr(trace, "y", None) is None:
            continue
        values = _array(trace.y).ravel()
        values = values[pd.notna(values)]
        if axis.type == "category" or any(isinstance(v, str) for v in values):
            texts += [str(v) for v in values]
        elif len(values):
            numbers.append(values.astype(float))
    if axis.categoryarray is not None:
        texts += [str(v) for v in axis.categoryarray]
    if numbers:
        values = np.concatenate(numbers + ([np.asarray(axis.range, float)] if axis.range else []))
        values = values[np.isfinite(values)]
        if len(values):
            texts += _numeric_labels(values, axis.tickformat or "")
    return texts


# a colour bar beside a heatmap: its ticks, title and padding (109-121 px measured). Other
# charts keep Streamlit's right margin of 0: padding it shifts their x ticks, and the ticks'
# overhang then widens the margins again.
_COLORBAR_PX = 140


def screen_margins(fig: go.Figure) -> dict[str, int]:
    """Left and right margins (px) for drawing `fig` in the dashboard: wide enough for the tick
    labels and title of every y axis on the figure's left edge, and on the right for a colour
    bar. A margin the figure sets itself is left to it."""
    out: dict[str, int] = {}
    if any(t.type not in TRACE_TYPES for t in fig.data):
        return out  # drawn by rules not estimated here: plotly sizes the margins itself
    widest = 0.0
    for name in [k for k in fig.layout if k.startswith("yaxis")]:
        axis = fig.layout[name]
        if axis.visible is False:
            continue
        if axis.side == "right" or axis.overlaying:
            continue
        anchor = "xaxis" + (axis.anchor or "x").removeprefix("x")
        if anchor not in fig.layout or fig.layout[anchor] is None:
            return out  # a free-standing axis
        domain = fig.layout[anchor].domain
        if domain is not None and domain[0] > 0:
            continue  # a subplot's axis inside the figure, not at its edge
        if axis.type in ("date", "log", "multicategory"):
            return {}  # labels not estimated: plotly sizes the margins itself, as before
        try:
            labels = [] if axis.showticklabels is False else _axis_labels(fig, name)
        except (TypeError, ValueError):  # values that are neither text nor numbers (dates)
            return {}
        width = max((label_px(t) for t in labels), default=0.0) * 1.06 + 4
        title = axis.title.text if axis.title else None
        if title:
            width += _TITLE_PX * (1 + title.count("<br>"))
        widest = max(widest, width)
    if fig.layout.margin.l is None:
        out["l"] = int(np.ceil(widest + _LABEL_PAD_PX))
    colorbar = any(t.type == "heatmap" and t.showscale is not False for t in fig.data)
    if fig.layout.margin.r is None and colorbar:
        out["r"] = _COLORBAR_PX
    return out
