"""Room for a chart's title block: shared by the funnel and dot charts of several pages."""

from __future__ import annotations

import plotly.graph_objects as go

from alliance.charts import figure_edit


def fit_header(fig: go.Figure, extra: int = 0) -> None:
    """Make room above the plot for the title and every line of the subtitle."""
    sub = fig.layout.title.subtitle.text or ""
    lines = sub.count("<br>") + 1 if sub else 0
    figure_edit.update_layout(
        fig,
        title={"yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": 14}},
        margin={"t": 58 + 18 * lines + extra},
    )
