"""The Alliance profile page's sentences: what a scale measures, how a mean is weighted, and
each panel's reading (the view fills in its numbers)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from alliance import protected
from alliance.metrics.profile import LABELS, dimensions, item_names
from alliance.panel import Context
from alliance.views.common import SMALL_N_NOTE, noise_note, withheld_note


def scale_text(ctx: Context) -> str:
    if ctx.filters.alliance_measure == "wai":
        return "WAI-SR subscale mean item score (1–5)"
    return "SRS item score (0–10)"


def items_caption(ctx: Context, dims: Iterable[str] | None = None) -> str:
    """'Felt heard and respected = SRS item “Relationship” …' for the chart captions."""
    names = item_names(ctx)
    return "; ".join(f"{LABELS[d]} = {names[d]}" for d in (dims or dimensions(ctx)))


def weighting_text() -> str:
    return "mean over episodes of each episode's mean item score in the period"


def tile_help(ctx: Context, d: str) -> str:
    return f"{item_names(ctx)[d]}: {weighting_text()} ({scale_text(ctx)})."


def no_scores_notice(ctx: Context) -> str:
    what = "WAI-SR" if ctx.filters.alliance_measure == "wai" else "SRS item"
    return (
        f"No {what} scores in this selection: alliance dimensions need item-level "
        "scores, which only some sites record. Widen the period, clear a filter, or "
        "switch the alliance measure."
    )


def side_by_side_reading(ctx: Context, noun: str, safe: pd.DataFrame) -> str:
    return (
        f"Each dot is a dimension's mean for the {noun}, with its 95% interval. Compare "
        f"colours within a {noun} to see its weakest part, and the same colour across "
        f"{noun}s to see where a part is weaker. {items_caption(ctx)}. {SMALL_N_NOTE}"
        + noise_note(ctx)
        + withheld_note(ctx, safe)
    )


def weakest_reading(ctx: Context, safe: pd.DataFrame) -> str:
    weakest = safe[safe["weakest"]]
    summary = "; ".join(
        f"{r}: {LABELS[d]}" for r, d in zip(weakest["row"], weakest["dimension"], strict=True)
    )
    return (
        "Each cell is how far a site's or program's mean lies above (blue) or below "
        "(orange-red) the clinic's own mean of that dimension; * marks a gap whose 95% "
        "interval excludes zero, ◀ the row's lowest such dimension below the clinic. "
        "Items differ in level everywhere "
        "(approach usually scores lowest), so the comparison is with the clinic's value "
        "of the same item. Small gaps without * are noise. "
        + (
            f"Clearly below the clinic: {summary}."
            if summary
            else "No site or program is clearly below the clinic on any dimension."
        )
        + withheld_note(ctx, safe)
        + noise_note(ctx)
    )


def monthly_reading(ctx: Context, safe: pd.DataFrame) -> str:
    return (
        "One line per dimension; bands are 95% intervals. Lines moving together mean the "
        "whole alliance moved; one line moving alone points at that part. Month-to-month "
        "wiggles inside the bands are noise." + withheld_note(ctx, safe) + noise_note(ctx)
    )


def no_funnel_message(ctx: Context) -> str:
    return (
        "Fewer than two therapists with at least "
        f"{protected.min_clients(ctx.policy)} clients: no funnel."
    )


def overdispersion_text(methods: Iterable[str]) -> str:
    widened = sorted(m for m in methods if m != "none")
    return (
        f"limits widened for overdispersion ({', '.join(widened)}) where significant"
        if widened
        else "no significant overdispersion"
    )


def funnel_reading(ctx: Context, table: pd.DataFrame, safe: pd.DataFrame) -> str:
    flagged = table[table["flag"].notna() & (table["flag"] != "within")]
    by_ther = flagged.groupby("therapist", sort=True)
    outside = (
        "Outside the 95% limits: "
        + "; ".join(
            f"{t} on "
            + ", ".join(
                f"“{d}” ({f.split()[0]})" for d, f in zip(g["dimension"], g["flag"], strict=True)
            )
            for t, g in by_ther
        )
        + ". "
        if len(flagged)
        else "No therapist lies outside the 95% limits. "
    )
    return (
        "One funnel per dimension. Each dot is a therapist's mean against their number of "
        "episodes; the line is the clinic's mean, the funnels are 95% and 99.8% limits. "
        "Dots inside the funnel differ from the clinic by no more than chance would; "
        f"this is not a ranking. {outside}Who a therapist sees (case mix) is not "
        f"adjusted for. {items_caption(ctx)}." + withheld_note(ctx, safe) + noise_note(ctx)
    )


def background_reading(ctx: Context, safe: pd.DataFrame) -> str:
    return (
        "Each dot is how far a group's mean lies from the clinic-wide value of the "
        "same dimension, with its 95% interval; an interval crossing the dotted line "
        "is no clear difference. A gap on “Approach fit me” but not on “Felt heard” "
        "suggests the way of working, not the relationship, fits that group less. "
        "Groups differ in other ways too: an association, not a cause."
        + withheld_note(ctx, safe)
        + noise_note(ctx)
    )


def no_gap_message(ctx: Context) -> str:
    return (
        f"No therapist has at least {protected.min_clients(ctx.policy)} clients both in and "
        "outside a group, so no within-caseload gap can be shown."
    )


def gap_population(ctx: Context) -> str:
    return f"therapists with ≥ {protected.min_clients(ctx.policy)} clients in and outside the group"


def gap_reading(ctx: Context, gaps: dict) -> str:
    differ, stats_rows, safe = gaps["differ"], gaps["stats_rows"], gaps["safe"]
    differ_text = (
        "Gaps that differ between therapists (p < .05): "
        + "; ".join(
            f"{r} on “{LABELS[d]}” (between-therapist SD {t:.2f})"
            for r, d, t in zip(differ["row"], differ["dimension"], differ["tau"], strict=True)
        )
        + "."
        if len(differ)
        else "No group's gap differs clearly between therapists (no p < .05)."
    )
    return (
        "Each short tick is one therapist: how their clients in the group rate that "
        "dimension compared with their other clients, shrunk toward the average gap (the "
        "diamond) in proportion to how little data the therapist has, so a few clients "
        "cannot make an extreme. Ticks bunched at the diamond: the gap is much the same with "
        f"every therapist; spread out: it depends on the therapist. {differ_text} With "
        f"{len(stats_rows)} group-and-dimension tests, about one in twenty crosses p < .05 "
        "by chance alone." + withheld_note(ctx, safe) + noise_note(ctx)
    )
