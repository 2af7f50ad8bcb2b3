"""Client demographics (equity): do alliance, dropout and outcomes differ between client groups?

Every headline metric (mean SRS, SRS below-cutoff rate, dropout rate, reliable improvement and
recovery for the chosen outcome measure) by age band, gender or race/ethnicity, each with its 95%
interval and its difference from the clinic-wide value, plus dropout by group x site.

The numbers, their intervals and the protected step are alliance/metrics/demographics.py; the
figures alliance/charts/demographics.py; the words views/demographics_text.py. Withheld groups
are labelled "n < 11", never dropped or shown as 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance import privacy
from alliance.charts.demographics import group_dots, group_site_heatmap
from alliance.metrics import demographics as m
from alliance.panel import Context, Panel, View, empty_panel
from alliance.views import demographics_text as text
from alliance.views.common import n_text, noise_note, subtitle, too_small_notice
from alliance.views.demographics_text import (  # noqa: F401 (the page's)
    DEFAULT_DIMENSION,
    DIMENSIONS,
    EQUITY_NOTE,
    QUESTION,
    TITLE,
)


def build(ctx: Context, dimension: str = DEFAULT_DIMENSION) -> View:
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; choose one of {list(DIMENSIONS)}")
    t = m.tables(ctx, dimension)
    n_clients = t.n_clients
    if n_clients == 0 or privacy.cohort_too_small(n_clients, ctx.policy):
        return View(TITLE, QUESTION, notice=too_small_notice(ctx, n_clients), n_clients=n_clients)
    grid = m.protect_grid(ctx, t.dropout, dimension)
    words = text.metrics(ctx, dimension)
    outcomes = m.outcomes(ctx, t.outcomes)
    panels = [
        _dots_panel(ctx, words["mean_srs"], m.srs_mean(ctx, t.srs), dimension),
        _dots_panel(ctx, words["srs_below"], m.srs_below(ctx, t.srs), dimension),
        _dots_panel(ctx, words["dropout"], m.dropout(ctx, grid, t.dropout), dimension),
        *(
            _dots_panel(ctx, words[key], outcomes[key], dimension)
            if outcomes is not None
            else empty_panel(key, words[key].title, words[key].empty)
            for key in m.OUTCOMES
        ),
        _site_panel(ctx, grid, t.dropout, dimension),
    ]
    return View(TITLE, QUESTION, panels=panels, n_clients=n_clients)


# --------------------------------------------------------------------------- panels


def _dots_panel(
    ctx: Context, metric: text.Metric, est: m.Estimates | None, dimension: str
) -> Panel:
    """Group estimates with intervals against the clinic-wide value; the groups of the
    dimension are one partition of the privacy step (they split the clinic).

    Below k clients the clinic-wide value itself is withheld, and with it the panel (each
    group is part of it).
    """
    key, section = f"demo_{metric.key}", DIMENSIONS[dimension]
    if est is None:
        message = text.none_here(metric) if metric.key in m.OUTCOMES else metric.empty
        return empty_panel(metric.key, metric.title, message)
    if est.overall is None or est.table is None:
        return empty_panel(key, metric.title, text.clinic_withheld(ctx, metric), section=section)
    overall = est.overall
    if privacy.cohort_too_small(est.clients, ctx.policy):
        message = text.too_few_clients(ctx, metric.unit)
        return empty_panel(key, metric.title, message, section=section)
    table = est.table[est.table["n_clients"].fillna(1) > 0]
    safe = m.ordered(table, dimension)  # protected by `m.protect_groups`, `m.protect_grid`
    safe = safe.assign(group=text.display_groups(safe["client_group"]))
    ref_text = f"{overall:.1%}" if metric.rate else f"{overall:.1f}"
    visible = safe[~safe["suppressed"]]
    fig = group_dots(
        safe,
        title=metric.title,
        subtitle=subtitle(
            ctx,
            metric.definition,
            n_text=n_text(ctx, est.count, metric.unit, est.clients)
            + f" · {len(visible)} of {len(safe)} groups shown",
        ),
        x_label=text.x_label(metric),
        reference=overall,
        reference_label=f"clinic-wide {ref_text}",
        value_format="pct" if metric.rate else "num1",
        suppressed_label=ctx.policy.label,
    )
    return Panel(
        key=key,
        title=metric.title,
        subtitle="",
        reading=text.reading(ctx, metric, visible, safe, dimension) + noise_note(ctx),
        figure=fig,
        data=text.data_table(safe, metric, dimension),
        withheld=bool(safe["suppressed"].any()),
        section=section,
        stats={"clinic": overall},
    )


def _site_panel(ctx: Context, grid: pd.DataFrame, raw: pd.DataFrame, dimension: str) -> Panel:
    dim = DIMENSIONS[dimension]
    title = f"Dropout rate by {dim.lower()} and site"
    if grid[grid["site"] != m.ALL_SITES].empty:
        return empty_panel("demo_site", title, "No episodes ended in this selection.")
    clinic = raw[raw["level"] == "clinic"]
    _, clinic_clients = m.clinic_total(clinic, "ended")  # exact: only to judge
    if privacy.cohort_too_small(clinic_clients, ctx.policy):
        message = text.too_few_clients(ctx, "ended episodes", "table")
        return empty_panel("demo_site", title, message, section=dim)
    full, groups, sites = m.site_cells(grid, dimension)
    cell_text = np.where(
        full["suppressed"].fillna(False).astype(bool),
        ctx.policy.label,
        np.where(
            full["dropout_rate"].notna(),
            full["dropout_rate"].map(lambda v: f"{v:.0%}" if pd.notna(v) else ""),
            "–",
        ),
    )
    full = full.assign(text=cell_text, group=text.display_groups(full["client_group"]))
    fig = group_site_heatmap(
        full,
        rows=text.display_groups(pd.Series(groups)).tolist(),
        cols=sites,
        title=title,
        subtitle=subtitle(
            ctx,
            "Dropouts / ended episodes (finished in the period) by the site of the first session",
            text.site_legend(ctx),
            n_text=n_text(ctx, m.clinic_shown_n(ctx, clinic), "ended episodes", clinic_clients),
        ),
    )
    shown = m.ordered(grid[grid["site"] != m.ALL_SITES].copy(), dimension)
    data = pd.DataFrame(
        {
            dim: text.display_groups(shown["client_group"]).to_numpy(),
            "site": shown["site"].to_numpy(),
            "n_clients": shown["n_clients"].to_numpy(),
            "ended episodes": shown["ended"].to_numpy(),
            "dropouts": shown["dropouts"].to_numpy(),
            "dropout rate %": (shown["dropout_rate"] * 100).to_numpy(),
            "suppressed": shown["suppressed"].to_numpy(),
            "suppression": shown["suppression"].to_numpy(),
        }
    )
    withheld = int(shown["suppressed"].sum())
    return Panel(
        key="demo_site",
        title=title,
        subtitle="",
        reading=text.site_reading(ctx, withheld, len(shown)) + noise_note(ctx),
        figure=fig,
        data=data,
        withheld=withheld > 0,
        section=dim,
    )
