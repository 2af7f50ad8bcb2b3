"""The house template is kept to what the pages draw (alliance/charts.py, TRACE_TYPES).

plotly validates and copies the template whenever a figure is built from a dict, and every chart
ships it to the browser, so it carries defaults only for the trace types the dashboard uses. A
page that starts drawing another trace type would lose plotly_white's defaults for it without
notice: this test names it instead.
"""

from __future__ import annotations

import importlib

import plotly.io as pio
import pytest

from alliance import bench, charts


@pytest.mark.parametrize("page", list(bench.PAGES))
def test_every_trace_a_page_draws_has_its_template_defaults(page: str, demo_ctx) -> None:
    view = importlib.import_module(bench.PAGES[page]).build(demo_ctx)
    figures = [p.figure for p in view.panels if p.figure is not None]
    assert figures, page
    for fig in figures:
        types = {trace.type for trace in fig.data}
        assert types <= charts.TRACE_TYPES, (page, types - charts.TRACE_TYPES)
        template = fig.layout.template.to_plotly_json()
        assert set(template["data"]) == set(charts.TRACE_TYPES)
        assert not set(template["layout"]) & charts.UNUSED_LAYOUT


def test_the_template_keeps_plotly_whites_look_for_those_types() -> None:
    white = pio.templates["plotly_white"].to_plotly_json()
    ours = pio.templates["alliance"].to_plotly_json()
    for kind in charts.TRACE_TYPES:
        assert ours["data"][kind] == white["data"][kind], kind
    assert ours["layout"]["plot_bgcolor"] == white["layout"]["plot_bgcolor"]
    assert ours["layout"]["colorway"] == charts.PALETTE


def test_the_house_template_stays_the_default_once_streamlit_is_imported() -> None:
    """Importing streamlit makes its theme plotly's default; the Streamlit layer (ui) makes the
    house template the default again, whichever of the two was imported first."""
    import streamlit  # noqa: F401

    from alliance import ui  # noqa: F401

    assert pio.templates.default == "alliance"
