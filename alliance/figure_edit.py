"""Layout edits of a plotly figure with plotly's meaning, at a tenth of its cost.

`fig.update_layout(...)`, `update_xaxes` / `update_yaxes` and `add_vline` / `add_hline` run
plotly's batch-update machinery: every call re-walks the property paths it touches, diffs them
for FigureWidget listeners and re-applies them, 5-15 ms a call on a chart of a few traces. A page
makes 5-10 such calls per chart, about a sixth of its build time at scale. The functions here
give the same figure (tests/test_figure_edit.py compares the JSON with plotly's own calls) by
merging each top-level layout property as plain data and assigning it once, which plotly
validates as it does any assignment.

What they take is a subset of plotly's: keyword properties, with plotly's "magic underscore"
paths (``title_text=...``); nested dicts merge into what is set; a list of dicts given for a
non-empty list property (annotations, shapes) is left to plotly's own update, which merges it
element-wise. Lines span one plot (no subplot grid), as every chart here that uses them does.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly import shapeannotation

__all__ = ["add_hline", "add_vline", "update_layout", "update_xaxes", "update_yaxes"]


# the property names that contain an underscore themselves (plotly's own list:
# BaseFigure._valid_underscore_properties, which tests/test_figure_edit.py compares)
UNDERSCORE_NAMES = (
    "error_x",
    "error_y",
    "error_z",
    "copy_xstyle",
    "copy_ystyle",
    "copy_zstyle",
    "paper_bgcolor",
    "plot_bgcolor",
)


def _path(key: str) -> list[str]:
    """'title_font_size' -> ['title', 'font', 'size']; 'paper_bgcolor' stays whole."""
    for name in UNDERSCORE_NAMES:
        key = key.replace(name, name.replace("_", "-"))
    return [part.replace("-", "_") for part in key.split("_")]


def _nest(props: dict[str, Any]) -> dict[str, Any]:
    """Plotly's magic underscores spelled out: {'title_text': 'a'} -> {'title': {'text': 'a'}}.
    Later keys win where paths meet, as in plotly."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        head, *rest = _path(key)
        for part in reversed(rest):
            value = {part: value}
        if isinstance(value, dict) and isinstance(out.get(head), dict):
            value = _merge(out[head], value)
        out[head] = value
    return out


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new` merged into a copy of `base`: nested dicts recursively, anything else replaced."""
    out = dict(base)
    for key, value in _nest(new).items():
        old = out.get(key)
        out[key] = (
            _merge(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
        )
    return out


def _update(obj: Any, props: dict[str, Any]) -> None:
    """Merge `props` into a layout object (the layout, an axis) with update()'s meaning."""
    for key, value in _nest(props).items():
        known = key in obj  # plotly objects have no .get()
        current = obj[key] if known else None
        if isinstance(value, dict) and hasattr(current, "to_plotly_json"):
            obj[key] = _merge(current.to_plotly_json(), value)
        elif (
            isinstance(value, list | tuple) and current and any(isinstance(v, dict) for v in value)
        ):
            obj.update({key: value})  # element-wise merge into existing items: plotly's own
        else:
            obj[key] = value


def update_layout(fig: go.Figure, **props: Any) -> go.Figure:
    """`fig.update_layout(**props)`, cheaply."""
    _update(fig.layout, props)
    return fig


def _update_axes(fig: go.Figure, prefix: str, props: dict[str, Any]) -> go.Figure:
    names = [k for k in fig.layout if k.startswith(prefix) and fig.layout[k] is not None]
    for name in names:
        _update(fig.layout[name], props)
    return fig


def update_xaxes(fig: go.Figure, **props: Any) -> go.Figure:
    """`fig.update_xaxes(**props)` (every x axis), cheaply."""
    return _update_axes(fig, "xaxis", props)


def update_yaxes(fig: go.Figure, **props: Any) -> go.Figure:
    """`fig.update_yaxes(**props)` (every y axis), cheaply."""
    return _update_axes(fig, "yaxis", props)


def _spanning_line(fig: go.Figure, kind: str, at: float, kwargs: dict[str, Any]) -> go.Figure:
    shape_kwargs, annotation_kwargs = shapeannotation.split_dict_by_key_prefix(
        kwargs, "annotation_"
    )
    if kind == "vline":
        span = {"x0": at, "x1": at, "y0": 0, "y1": 1}
        refs = {"xref": "x", "yref": "y domain"}
    else:
        span = {"x0": 0, "x1": 1, "y0": at, "y1": at}
        refs = {"xref": "x domain", "yref": "y"}
    annotation = shapeannotation.axis_spanning_shape_annotation(None, kind, span, annotation_kwargs)
    fig.add_shape(type="line", **span, **refs, **shape_kwargs)
    if annotation is not None:
        fig.add_annotation({**dict(annotation), **refs})
    return fig


def add_vline(fig: go.Figure, x: float, **kwargs: Any) -> go.Figure:
    """`fig.add_vline(x, **kwargs)` on a figure without subplots (annotation_* included)."""
    return _spanning_line(fig, "vline", x, kwargs)


def add_hline(fig: go.Figure, y: float, **kwargs: Any) -> go.Figure:
    """`fig.add_hline(y, **kwargs)` on a figure without subplots (annotation_* included)."""
    return _spanning_line(fig, "hline", y, kwargs)
