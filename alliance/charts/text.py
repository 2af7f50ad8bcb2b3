"""Names from the data written safely into Plotly text (titles, axis categories, hover labels)."""

from __future__ import annotations

import html

import pandas as pd


def chart_text(value: object) -> str:
    """A name from the data as Plotly text (a title, an axis category, a hover label).

    Plotly reads a few HTML tags in its text (<a href>, <b>, <br>...): a site called
    '<a href="http://x">North</a>' would be a link inside the chart. With < > & written as
    entities it shows as written (checked in Chromium). Tables keep the plain name.
    """
    return html.escape(str(value), quote=False)


def chart_texts(values: pd.Series) -> pd.Series:
    """`chart_text` of every value, escaping each distinct value once (a chart's thousands of
    points share a few dozen names)."""
    return values.map({v: chart_text(v) for v in values.unique()})
