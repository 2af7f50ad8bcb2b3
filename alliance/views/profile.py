"""Alliance profile: the alliance in the clinic's own terms, dimension by dimension.

The clinic talks about trust and feeling heard, goals set together and an approach that fits the
person. The alliance measures carry these as items (metrics.md "Alliance dimensions"): SRS
relationship / goals and topics / approach or method / overall (0-10), WAI-SR Bond / Goal / Task
(mean item 1-5). The numbers are alliance.metrics.profile (tables, gaps, the protected step),
profile_panels and profile_therapists; the charts alliance.charts.dimensions and
dimension_grids; the sentences alliance.views.profile_text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pandas as pd

from alliance import privacy
from alliance.charts.dimension_grids import funnel_grid, strip_figure
from alliance.charts.dimensions import dimension_lines, dot_figure, gap_heatmap
from alliance.metrics import profile_panels as mp
from alliance.metrics import profile_therapists as mt
from alliance.metrics.profile import (
    DEMOGRAPHICS,
    LABELS,
    NOT_A_GROUP,
    SECTION_GROUPINGS,
    dimension_scores,
    dimensions,
    order_dims,
    profile_table,
)
from alliance.panel import Context, Panel, Tile, View, empty_panel, with_delta_rule
from alliance.views import profile_text as text
from alliance.views.common import (
    any_withheld,
    chosen_sections,
    gather,
    mark_all_withheld,
    n_text,
    subtitle,
    too_small_notice,
)

TITLE = "Alliance profile"
QUESTION = (
    "Which part of the alliance is weakest (feeling heard, working on the client's goals, an "
    "approach that fits), and for whom?"
)
# The page shows one section at a time (a filter change builds only the section in view); a
# report builds them all (the groupings each computes: metrics.profile.SECTION_GROUPINGS).
SECTIONS = {
    "where": "Sites, programs and months",
    "therapists": "Therapists",
    "background": "Client background",
}
NOT_FOR_ROLE = "Therapist-level comparisons are not available for your role."
DIM_TABLE = ["unit", "label", "n_clients", "episodes", "mean_score", "low", "high", "suppressed"]


def _n_text(ctx: Context, clinic: pd.DataFrame) -> str:
    """The clinic's episodes with items recorded (the largest dimension), or the label."""
    if clinic.empty:
        return ""
    shown = mp.clinic_shown(ctx, clinic)
    return n_text(ctx, shown["episodes"].max(), "episodes", int(clinic["n_clients"].max()))


def _tiles(ctx: Context, clinic: pd.DataFrame, before: pd.DataFrame) -> list[Tile]:
    tiles = []
    for t in mp.tile_rows(ctx, clinic, before):
        row, d = t["row"], t["row"]["dimension"]
        shown_n = ""
        if not row["suppressed"]:
            ci = f"95% CI {row['low']:.2f}–{row['high']:.2f} · " if pd.notna(row["low"]) else ""
            shown_n = f"{ci}n = {int(row['episodes']):,} episodes"
        help_text = text.tile_help(ctx, d)
        tiles.append(
            Tile(
                key=f"dim_{d}",
                label=LABELS[d],
                value=t["value"],
                fmt=".2f",
                n_text=shown_n,
                help=with_delta_rule(help_text) if t["delta"] is not None else help_text,
                delta=t["delta"],
                delta_significant=t["significant"],
                delta_fmt="+.2f",
                higher_is_better=True,
                withheld=bool(row["suppressed"]),
            )
        )
    return tiles


def _side_by_side(
    ctx: Context, clinic: pd.DataFrame, by: pd.DataFrame, group_by: str, noun: str
) -> Panel:
    key, title = f"by_{group_by}", f"The alliance dimensions by {noun}"
    if by.empty:
        return empty_panel(key, title, f"No alliance items recorded for any {noun}.")
    safe = mp.side_by_side_rows(ctx, clinic, by)
    fig = dot_figure(
        safe,
        category="unit",
        value="mean_score",
        low="low",
        high="high",
        title=title,
        subtitle_text=subtitle(
            ctx,
            f"{text.scale_text(ctx)}, {text.weighting_text()}",
            "95% CI",
            n_text=_n_text(ctx, clinic),
        ),
        axis_label="Mean item score",
        horizontal=False,
        suppressed_label=ctx.policy.label,
        categories=["Whole clinic", *sorted(by["unit"].unique())],
    )
    table = safe[DIM_TABLE].rename(columns={"unit": noun, "label": "dimension"})
    reading = text.side_by_side_reading(ctx, noun, safe)
    return Panel(key, title, "", reading, fig, table, withheld=any_withheld(safe))


def _weakest(ctx: Context, clinic: pd.DataFrame, by_site: pd.DataFrame, by_prog: pd.DataFrame):
    key, title = "weakest", "Which dimension is weakest, for whom"
    safe = mp.weakest_rows(ctx, clinic, by_site, by_prog)
    if safe is None:
        return empty_panel(key, title, "No alliance items recorded in this selection.")
    fig = gap_heatmap(
        safe,
        rows=list(dict.fromkeys(safe["row"])),
        dims=dimensions(ctx),
        title=title,
        subtitle_text=subtitle(
            ctx,
            f"{text.scale_text(ctx)}: site or program mean minus the clinic's mean of the same "
            "dimension (points)",
            "* = 95% CI excludes 0",
            n_text=_n_text(ctx, clinic),
        ),
        suppressed_label=ctx.policy.label,
    )
    cols = ["kind", "unit", "label", "n_clients", "episodes", "mean_score"]
    cols += ["gap", "gap_low", "gap_high", "weakest", "suppressed"]
    table = safe[cols].rename(columns={"label": "dimension"})
    reading = text.weakest_reading(ctx, safe)
    return Panel(key, title, "", reading, fig, table, withheld=any_withheld(safe))


def _monthly(ctx: Context, monthly: pd.DataFrame, clinic: pd.DataFrame) -> Panel:
    key, title = "by_month", "The alliance dimensions by month"
    if monthly.empty:
        return empty_panel(key, title, "No alliance items recorded in this selection.")
    safe = mp.monthly_rows(ctx, monthly)
    administrations = mp.clinic_shown(ctx, clinic)["administrations"].max()
    fig = dimension_lines(
        order_dims(safe),
        title=title,
        subtitle_text=subtitle(
            ctx,
            f"{text.scale_text(ctx)}, episodes' mean item score within each calendar month",
            "95% CI band",
            n_text=n_text(ctx, administrations, "administrations", int(clinic["n_clients"].max())),
        ),
        scale="wai" if ctx.filters.alliance_measure == "wai" else "srs_item",
    )
    if safe["mean_score"].isna().all():
        mark_all_withheld(fig, ctx, "month")
    table = safe[DIM_TABLE].rename(columns={"unit": "month", "label": "dimension"})
    reading = text.monthly_reading(ctx, safe)
    return Panel(key, title, "", reading, fig, table, withheld=any_withheld(safe))


def _funnels(ctx: Context, clinic: pd.DataFrame, by_ther: pd.DataFrame) -> list[Panel]:
    """One panel: a funnel plot per dimension, side by side (small multiples)."""
    key, title = "funnel_dimensions", "The alliance dimensions by therapist"
    if not ctx.therapist_level:
        return [empty_panel(key, title, NOT_FOR_ROLE)]
    if by_ther.empty:
        return [empty_panel(key, title, "No therapist has alliance items recorded.")]
    names = mt.therapist_names(ctx, by_ther)
    got = mt.dimension_funnels(ctx, clinic, by_ther, names)
    if got is None:
        return [empty_panel(key, title, text.no_funnel_message(ctx))]
    funnels, safe = got["funnels"], got["safe"]
    n_shown = pd.concat([f["points"]["unit"] for f in funnels]).nunique()
    episodes = got["clinic_shown"]["episodes"].max()
    fig = funnel_grid(
        funnels,
        title=title,
        subtitle_text=subtitle(
            ctx,
            f"{text.scale_text(ctx)}, {text.weighting_text()}",
            "95% and 99.8% limits μ0 ± z·σ/√n around the clinic's mean",
            "σ = pooled within-therapist SD, by panel " + " / ".join(got["sigmas"]),
            text.overdispersion_text(got["methods"]),
            n_text=n_text(ctx, episodes, "episodes", int(clinic["n_clients"].max()))
            + f", {n_shown} therapists shown",
        ),
    )
    table = pd.concat(got["tables"], ignore_index=True)[
        ["label", "therapist", "n_clients", "episodes", "mean_score", "flag", "suppressed"]
    ].rename(columns={"label": "dimension"})
    reading = text.funnel_reading(ctx, table, safe)
    return [Panel(key, title, "", reading, fig, table, withheld=any_withheld(safe))]


def _demographic_gaps(ctx: Context, clinic: pd.DataFrame, scores: pd.DataFrame) -> list[Panel]:
    panels = []
    section = SECTIONS["background"]
    for attr, label in DEMOGRAPHICS.items():
        key, title = f"gap_{attr}", f"The alliance dimensions by {label.lower()}"
        df = dimension_scores(ctx, attr, table=scores)
        if df.empty:
            panels.append(empty_panel(key, title, "No alliance items recorded.", section))
            continue
        safe = mp.background_gap_rows(ctx, clinic, df)
        fig = dot_figure(
            safe,
            category="unit",
            value="gap",
            low="gap_low",
            high="gap_high",
            title=title,
            subtitle_text=subtitle(
                ctx,
                f"Group mean minus clinic-wide mean of the same dimension ({text.scale_text(ctx)})",
                "95% CI",
                n_text=_n_text(ctx, clinic),
            ),
            axis_label="Points above (+) or below (−) the clinic-wide value",
            horizontal=True,
            reference=0.0,
            reference_label="clinic-wide",
            suppressed_label=ctx.policy.label,
            value_format="+.2f",
            categories=mp.background_order(safe),
        )
        cols = ["unit", "label", "n_clients", "episodes", "mean_score"]
        cols += ["gap", "gap_low", "gap_high", "suppressed"]
        table = safe[cols].rename(columns={"unit": label.lower(), "label": "dimension"})
        reading = text.background_reading(ctx, safe)
        withheld = any_withheld(safe)
        panels.append(
            Panel(key, title, "", reading, fig, table, withheld=withheld, section=section)
        )
    return panels


def _therapist_gap_panel(ctx: Context, scores: pd.DataFrame) -> Panel:
    key, title = "therapist_gaps", "Does a group's gap differ between therapists?"
    section = SECTIONS["therapists"]
    if not ctx.therapist_level:
        return empty_panel(key, title, NOT_FOR_ROLE)
    gaps = mt.therapist_gap_rows(ctx, scores)
    if gaps is None:
        return empty_panel(key, title, "Not enough alliance items recorded by group.")
    if gaps["visible"].empty:
        return empty_panel(key, title, text.no_gap_message(ctx), section=section)
    visible, safe = gaps["visible"], gaps["safe"]
    fig = strip_figure(
        visible,
        gaps["centres"],
        rows=gaps["rows"],
        title=title,
        subtitle_text=subtitle(
            ctx,
            f"Group mean minus the same therapist's other clients ({text.scale_text(ctx)}), "
            "empirical-Bayes shrunken",
            text.gap_population(ctx),
            n_text=f"{visible['therapist'].nunique()} therapists shown",
        ),
        axis_label="Gap within a therapist's caseload (points)",
    )
    cols = ["attribute", "group", "dimension", "therapist", "n_clients", "n_group", "raw_gap"]
    cols += ["shrunk", "tau", "p_value", "suppressed"]
    table = safe.assign(therapist=safe["therapist"].map(gaps["names"]))[cols]
    reading = text.gap_reading(ctx, gaps)
    return Panel(key, title, "", reading, fig, table, withheld=any_withheld(safe), section=section)


def sections(ctx: Context) -> dict[str, str]:
    """The sections this role may see (therapist comparisons need therapist-level access)."""
    return {k: v for k, v in SECTIONS.items() if k != "therapists" or ctx.therapist_level}


def _where_panels(ctx: Context, clinic: pd.DataFrame, table: pd.DataFrame) -> list[Panel]:
    """The section on sites, programs and months."""
    by_site = dimension_scores(ctx, "site", table=table)
    by_prog = dimension_scores(ctx, "program", table=table)
    by_prog = by_prog[~by_prog["unit"].isin(NOT_A_GROUP)]
    monthly = dimension_scores(ctx, "month", table=table)
    where = [
        _side_by_side(ctx, clinic, by_site, "site", "site"),
        _weakest(ctx, clinic, by_site, by_prog),
        _side_by_side(ctx, clinic, by_prog, "program", "program"),
        _monthly(ctx, monthly, clinic),
    ]
    return [dataclasses.replace(p, section=SECTIONS["where"]) for p in where]


def _therapist_panels(ctx: Context, clinic: pd.DataFrame, table: pd.DataFrame) -> list[Panel]:
    """The section on therapists: the funnels and the gaps within caseloads."""
    by_ther = dimension_scores(ctx, "therapist", table=table)
    return [
        dataclasses.replace(p, section=SECTIONS["therapists"])
        for p in (*_funnels(ctx, clinic, by_ther), _therapist_gap_panel(ctx, table))
    ]


def build(ctx: Context, section: str | None = None) -> View:
    """The page's view: the tiles and one section's panels, or with section=None every
    section's (a report)."""
    chosen = chosen_sections(SECTIONS, section)
    groupings = [
        g
        for s in chosen
        for g in SECTION_GROUPINGS[s]
        if ctx.therapist_level or not g.startswith("therapist")
    ]
    table = profile_table(ctx, groupings=groupings)
    clinic = dimension_scores(ctx, "clinic", table=table)
    n_clients = int(clinic["n_clients"].max()) if len(clinic) else 0
    if n_clients == 0:
        return View(TITLE, QUESTION, notice=text.no_scores_notice(ctx))
    if privacy.cohort_too_small(n_clients, ctx.policy):
        return View(TITLE, QUESTION, notice=too_small_notice(ctx, n_clients), n_clients=n_clients)
    sections_built: list[Callable[[], list[Panel]]] = []
    if "where" in chosen:
        sections_built.append(lambda: _where_panels(ctx, clinic, table))
    if "therapists" in chosen:
        sections_built.append(lambda: _therapist_panels(ctx, clinic, table))
    if "background" in chosen:
        sections_built.append(lambda: _demographic_gaps(ctx, clinic, table))
    # the previous period's clinic means (the tiles' change) are queried while the panels are
    # built in Python: the period's query has had both cores to itself
    before, *built = gather(
        lambda: dimension_scores(ctx, "clinic", filters=ctx.filters.previous_period()),
        *sections_built,
    )
    panels = [p for part in built for p in part]
    return View(
        TITLE,
        QUESTION,
        tiles=_tiles(ctx, clinic, before),
        panels=panels,
        n_clients=n_clients,
    )
