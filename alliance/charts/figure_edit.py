"""Layout edits of a plotly figure with plotly's meaning, without plotly's update machinery.

`fig.update_layout(...)`, `update_xaxes` / `update_yaxes` and `add_vline` / `add_hline` run
plotly's batch-update machinery: every call re-walks the property paths it touches and diffs them
for FigureWidget listeners. Measured on a chart of a few traces: the theme's `update_layout`
5-7 ms (here 0.4 ms), `add_vline` with a label 4-5 ms (here 0.7-1 ms), an axis update 0.7-1.7 ms
(here about half). A page makes 5-10 such calls per chart. The functions here give the same
figure (tests/test_figure_edit.py compares it with plotly's own calls) by merging each top-level
property as plain data and assigning it once, which plotly validates as any assignment.

The plain-data path takes keyword properties with plotly's "magic underscore" paths
(``title_text=...``) and nested dicts, merged into what is set. Anything else is handed whole to
plotly's own call, so the meaning never differs: a list for a list property that is already set
(annotations, shapes: plotly merges element-wise, ignores an empty list), a shorthand value that a
longer path then extends (``title="Month", title_standoff=4``), keys that are not names, and lines
on a figure with a subplot grid or with row / col / xref / yref / annotation= arguments.
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


class _PlotlyOwn(Exception):
    """An edit outside the plain-data path: plotly's own call gives its meaning."""


def _is_set_list(value: Any) -> bool:
    """A non-empty list, tuple or array (plotly keeps data arrays as numpy arrays)."""
    return hasattr(value, "__len__") and not isinstance(value, str | dict) and len(value) > 0


def _nest(props: dict[str, Any]) -> dict[str, Any]:
    """Plotly's magic underscores spelled out: {'title_text': 'a'} -> {'title': {'text': 'a'}};
    where paths meet, dicts merge and a later plain value wins, as in plotly."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not isinstance(key, str):
            raise _PlotlyOwn
        head, *rest = _path(key)
        for part in reversed(rest):
            value = {part: value}
        if head in out and isinstance(value, dict):
            if not isinstance(out[head], dict):
                raise _PlotlyOwn  # title="x", then title_font_size=...: plotly expands "x"
            value = _merge(out[head], value)
        out[head] = value
    return out


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new` merged into a copy of `base`: nested dicts recursively, plain values replaced."""
    out = dict(base)
    for key, value in _nest(new).items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = _merge(old, value)
        elif isinstance(value, dict) and old is not None:
            raise _PlotlyOwn  # a dict onto a shorthand value
        elif isinstance(value, list | tuple) and _is_set_list(old):
            raise _PlotlyOwn  # onto a set list: plotly merges element-wise
        else:
            out[key] = value
    return out


def _planned(obj: Any, props: dict[str, Any]) -> dict[str, Any]:
    """The new value of each top-level property `props` touches, or _PlotlyOwn."""
    planned = {}
    for key, value in _nest(props).items():
        known = key in obj  # plotly objects have no .get()
        current = obj[key] if known else None
        if isinstance(value, list | tuple) and _is_set_list(current):
            raise _PlotlyOwn  # onto a set list (annotations, shapes): element-wise in plotly
        if isinstance(value, dict) and isinstance(current, tuple):
            raise _PlotlyOwn  # {index: changes} for a list property
        if isinstance(value, dict) and hasattr(current, "to_plotly_json"):
            planned[key] = _merge(current.to_plotly_json(), value)
        else:
            planned[key] = value
    return planned


def _update(obj: Any, props: dict[str, Any]) -> None:
    """Merge `props` into a layout object (the layout, an axis) with update()'s meaning: all
    new values are formed first, so an edit handed to plotly finds the object untouched."""
    try:
        planned = _planned(obj, props)
    except _PlotlyOwn:
        obj.update(props)
        return
    for key, value in planned.items():
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


_LINE_ARGS_FOR_PLOTLY = {"row", "col", "annotation", "exclude_empty_subplots", "xref", "yref"}


def _spanning_line(fig: go.Figure, kind: str, at: float, kwargs: dict[str, Any]) -> go.Figure:
    # a subplot grid gets a line per subplot from plotly (and none on an empty one)
    has_grid = getattr(fig, "_has_subplots", lambda: True)()
    if has_grid or _LINE_ARGS_FOR_PLOTLY & kwargs.keys():
        return getattr(fig, f"add_{kind}")(at, **kwargs)
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
    """`fig.add_vline(x, **kwargs)` (annotation_* included)."""
    return _spanning_line(fig, "vline", x, kwargs)


def add_hline(fig: go.Figure, y: float, **kwargs: Any) -> go.Figure:
    """`fig.add_hline(y, **kwargs)` (annotation_* included)."""
    return _spanning_line(fig, "hline", y, kwargs)
