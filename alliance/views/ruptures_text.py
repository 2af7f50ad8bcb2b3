"""The Ruptures & repair page's sentences: the definitions in force, the tiles' help, and each
panel's subtitle parts and reading (the view fills in its numbers)."""

from __future__ import annotations

import math

import pandas as pd

from alliance import protected
from alliance.metrics.dimensions import LABELS
from alliance.metrics.profile import SRS_ITEMS
from alliance.panel import Context
from alliance.settings import Measure
from alliance.spc import MIN_JUDGED
from alliance.views.common import CORRELATION_NOTE, SMALL_N_NOTE, noise_note, withheld_note

DROPOUT_MEASURE = "Dropout rate of ended episodes (≥ 2 SRS) by their ruptures, 95% Wilson intervals"
ITEMS_MEASURE = (
    "Mean drop of each SRS item (0–10) from the previous SRS at ruptures where items were "
    "recorded, 95% CI"
)


def improvement_measure(m: Measure) -> str:
    """The improvement chart's measure (what it subtracts, and from which episodes)."""
    direction = "last − first" if m.higher_is_better else "first − last"
    return (
        f"Mean {m.label} improvement ({direction}, points, positive = better) of ended "
        "episodes (≥ 2 SRS, ≥ 2 scores) by their ruptures, 95% CI"
    )


def definition_text(ctx: Context) -> str:
    """The settings in force, printed on every chart that uses them."""
    s = ctx.settings
    n = int(s.repair_window)
    return (
        f"rupture = SRS total ≥ {s.rupture_threshold:g} points below the episode's previous SRS; "
        f"repaired = back at or above that SRS within the next {n} SRS administration"
        f"{'s' if n != 1 else ''}"
    )


def rate_help(ctx: Context, rule: str) -> str:
    return (
        "Ruptures per 100 SRS administrations that have a previous SRS in the episode; "
        f"{definition_text(ctx)}. Clients report tensions in 19–42% of sessions "
        "(Eubanks, Muran & Safran 2018)." + noise_note(ctx) + rule
    )


def repair_help(ctx: Context, rule: str) -> str:
    return (
        "Repaired / (repaired + unrepaired) ruptures; ruptures still inside their "
        f"window are left out. {definition_text(ctx)}." + noise_note(ctx) + rule
    )


def unrepaired_help(ctx: Context) -> str:
    return (
        "Ruptures whose repair window passed, or whose episode ended, without an SRS "
        "back at the level before the rupture." + noise_note(ctx)
    )


def open_help(ctx: Context) -> str:
    return (
        "Ruptures in ongoing episodes whose repair window has not passed yet; they join "
        "the repair rate once their fate is known." + noise_note(ctx)
    )


def monthly_measure(ctx: Context, rupture: bool, got: dict) -> str:
    """The monthly chart's first subtitle part: what it shows, and which kind of chart."""
    what = (
        "Ruptures per 100 SRS administrations with a previous SRS"
        if rupture
        else "Repaired / ruptures with a known fate (month of the rupture)"
    )
    months = int(ctx.settings.spc_baseline_months)
    if got["run_chart"]:
        return (
            f"{what}; too short for a separate baseline (a baseline of "
            f"{months} months needs "
            f"{months + MIN_JUDGED} or more): run chart "
            "around the period's rate, no limits, no rules applied"
        )
    return (
        f"{what}; p-chart, 3-sigma limits from the first "
        f"{months} months"
        + (" (withheld months left out)" if (got["calendar_base"] & got["withheld"]).any() else "")
        + "; the months after them judged against the centre line"
    )


def monthly_reading(ctx: Context, rupture: bool, got: dict) -> str:
    safe, withheld, base = got["safe"], got["withheld"], got["base"]
    flagged = int(safe[["shift", "trend", "astronomical"]].fillna(False).any(axis=1).sum())
    reading = (
        "Each point is a month; the dashed lines are the limits within which months vary by "
        "chance alone. Marked points follow the run-chart rules (a shift, a trend or a point "
        "outside the limits) and are worth a look; the rest is noise. "
    )
    if not rupture:
        reading += (
            "Ruptures of the last weeks are partly still open, so recent months rest on fewer "
            "ruptures. "
        )
    reading += f"{flagged} month(s) flagged."
    if got["run_chart"]:
        reading += (
            " The period is too short for a separate baseline, so no month is judged: a "
            "baseline judges the months after it, never itself."
        )
    if withheld.any():
        reading += (
            " A withheld month has no centre line, limits or flags, and is left out of the "
            "baseline: its limits would give its count away."
        )
        if not base.any() and not withheld.all():
            reading += " Every baseline month is withheld, so no limits are drawn."
    return reading + withheld_note(ctx, safe) + noise_note(ctx)


def overdispersion_text(methods: set[str]) -> str:
    """Whether the funnels' limits were widened for overdispersion, and by which method."""
    widened = sorted(methods - {"none"})
    return (
        f"limits widened for overdispersion ({', '.join(widened)}) where significant"
        if widened
        else "no significant overdispersion"
    )


def funnel_reason(ctx: Context, which: str, why: str) -> str:
    """Why a funnel is not drawn ('rupture rate: …')."""
    least = protected.min_clients(ctx.policy)
    text = {
        "empty": f"no {'SRS ratings' if which == 'rupture' else 'ruptures with a known fate'}",
        "target": f"the clinic's rate rests on fewer than {least} events or non-events",
        "few": f"fewer than two describe at least {least} clients",
    }[why]
    return f"{which} rate: {text}"


def funnel_reading(
    ctx: Context, noun: str, table: pd.DataFrame, reasons: list[str], safe: pd.DataFrame
) -> str:
    flagged = table[table["flag"].notna() & (table["flag"] != "within")]
    outside = (
        "Outside the 95% limits: "
        + "; ".join(
            f"{u} ({m.split(' (')[0].lower()}, {f})"
            for m, u, f in flagged[["measure", noun, "flag"]].to_numpy()
        )
        + ". "
        if len(flagged)
        else f"No {noun} lies outside the 95% limits. "
    )
    return (
        f"Left: how often the alliance broke down; right: how often a rupture was repaired. "
        f"Each dot is a {noun} against the number of SRS ratings (left) or ruptures (right) "
        "it rests on; the line is the clinic-wide value, the funnels the 95% and 99.8% "
        "limits. Dots inside the funnel differ from the clinic by no more than chance "
        f"would; this is not a ranking. {outside}"
        + (
            "Who a therapist sees (case mix) is not adjusted for."
            if noun == "therapist"
            else "Sites differ in who they see (case mix), which is not adjusted for."
        )
        + (f" Not shown: {'; '.join(reasons)}." if reasons else "")
        + withheld_note(ctx, safe)
        + noise_note(ctx)
    )


def dropout_reading(ctx: Context, stats: dict, safe: pd.DataFrame) -> str:
    note = ""
    if stats and math.isfinite(stats["risk_difference"]):
        note = (
            f"Dropout after an unrepaired rupture minus after repaired ones: "
            f"{stats['risk_difference'] * 100:+.1f} points (95% CI {stats['rd_low'] * 100:+.1f} "
            f"to {stats['rd_high'] * 100:+.1f}). "
        )
    caveat = (
        "Longer episodes have more chances of a rupture (mean sessions per group are in the "
        "data), and a rupture at an episode's last SRS can never be repaired, so part of the "
        "link between unrepaired ruptures and dropout is built into the definitions. "
    )
    return (
        "Ended episodes that had no rupture, ruptures that were all repaired, or at least "
        f"one unrepaired rupture, and how many of each ended in dropout. {note}"
        f"{CORRELATION_NOTE} {caveat}" + withheld_note(ctx, safe) + noise_note(ctx)
    )


def improvement_reading(ctx: Context, safe_i: pd.DataFrame) -> str:
    caveat_outcome = (
        "Longer episodes have more chances of a rupture and more time to improve (mean "
        "sessions per group are in the data); episodes that end soon after a rupture count as "
        "unrepaired and have had less time to improve. "
    )
    return (
        "Mean improvement per group with its 95% interval. Research finds repaired ruptures "
        "go with better outcomes than unrepaired ones (Eubanks, Muran & Safran 2018, "
        f"r ≈ .29). {CORRELATION_NOTE} {caveat_outcome}{SMALL_N_NOTE}"
        + withheld_note(ctx, safe_i)
        + noise_note(ctx)
    )


def item_labels(safe: pd.DataFrame) -> list[str]:
    """Each item's name, with how often it fell most where that share is shown."""
    return [
        f"{LABELS[d]} (fell most in {s:.0%})" if pd.notna(s) else LABELS[d]
        for d, s in zip(safe["dimension"], safe["largest_share"], strict=True)
    ]


def items_reading(ctx: Context, safe: pd.DataFrame) -> str:
    top = safe.dropna(subset=["mean_drop"])
    lead = ""
    if len(top):
        best = top.loc[top["mean_drop"].idxmax()]
        lead = (
            f"“{LABELS[best['dimension']]}” drops most on average "
            f"({best['mean_drop']:.2f} points). "
        )
    items = "; ".join(f"{LABELS[d]} = {SRS_ITEMS[d]}" for d in LABELS)
    return (
        f"{lead}How much each item fell, on average, when the total fell by at least "
        f"{ctx.settings.rupture_threshold:g} points, and how often it was the item that fell "
        f"most (ties count for each). {items}. Only sites that record the four items count."
        + withheld_note(ctx, safe)
        + noise_note(ctx)
    )
