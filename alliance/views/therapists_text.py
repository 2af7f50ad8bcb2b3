"""The Therapists page's words: notices, captions, readings and the limits' description."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from alliance import privacy
from alliance.panel import Context
from alliance.views.common import n_text

QUESTION = (
    "Do therapists differ more than chance would explain, once their caseloads are allowed for? "
    "Compared with funnel plots, never ranked."
)
ROLE_NOTICE = (
    "Therapist-level data is not available for your role. Clinic-, site- and group-level views "
    "are on the other pages; ask a director or supervisor if you need therapist comparisons."
)
PUBLISHED_ICC = 0.05  # Wampold & Brown 2005; Johns et al. 2019 (routine practice about 5%)
SELECTION_HINT = "Select a therapist's dot to filter the whole dashboard to that therapist."
POSITION_TEXT = {
    "within": "inside the 95% limits",
    "above 95%": "above the 95% limit",
    "below 95%": "below the 95% limit",
    "above 99.8%": "above the 99.8% limit",
    "below 99.8%": "below the 99.8% limit",
}
FUNNEL_NOTE = (
    "A dot outside the limits is a prompt to look at case mix and context, not a verdict; "
    "the position of dots inside the funnel is chance, not a ranking."
)
TOO_FEW = "Fewer than two therapists have data here: a funnel plot needs several to compare."
NO_ICC = (
    "Not enough therapists or episodes with two or more scores here to estimate the "
    "therapist share of outcome variance."
)


EMPTY = {  # why a funnel has nothing to draw (alliance.metrics.therapists)
    "no_units": "No ended episodes with an early {label} here.",
    "no_spread": "Too few episodes {per}to estimate the spread of {spread}.",
    "too_few": "Fewer than two therapists have ended episodes with two or more {label} scores "
    "here: there is nothing to compare.",
}


def dropout_words() -> dict[str, str]:
    """The dropout funnel's title, definition, axes, names and reading."""
    return {
        "title": "Dropout rate by therapist",
        "definition": "Dropouts / ended episodes (finished in the period), by main therapist",
        "unit": "ended episodes",
        "x_label": "Ended episodes",
        "y_label": "Dropout rate",
        "value_name": "dropout rate",
        "n_name": "ended episodes",
        "reading": "Each dot is one therapist's dropout rate against their number of ended "
        "episodes; the funnel narrows as numbers grow because small caseloads swing by chance. "
        "Dropout depends on who is referred (age, circumstances) as well as on the therapist.",
    }


def alliance_words(wai: bool, sigma: float | None) -> dict[str, str]:
    """The early-alliance funnel's words (σ: the pooled within-therapist SD)."""
    label = "WAI-SR" if wai else "SRS"
    scale = "WAI-SR mean item score (1–5)" if wai else "SRS total (0–40)"
    return {
        "title": f"Early alliance ({label}) by therapist",
        "label": label,
        "per": "per therapist ",
        "spread": "early alliance",
        "definition": f"Mean of each ended episode's first three {label} scores ({scale}), by "
        f"main therapist · σ = pooled within-therapist SD {sigma or 0:.2f}",
        "unit": f"ended episodes with an early {label}",
        "x_label": f"Episodes with an early {label}",
        "y_label": f"Mean early {label}",
        "value_name": f"mean early {label}",
        "n_name": "episodes",
        "reading": f"Each dot is the mean early {label} of one therapist's clients. Clients rate "
        "the alliance, and some client groups rate higher than others, so a therapist's "
        "caseload shapes the dot as well as their work.",
    }


def outcome_words(label: str, sigma: float | None) -> dict[str, str]:
    """The case-mix adjusted improvement funnel's words (σ: the pooled residual SD)."""
    return {
        "title": f"Case-mix adjusted {label} improvement by therapist",
        "label": label,
        "per": "",
        "spread": "improvement",
        "definition": f"Clinic mean + therapist's mean residual of {label} improvement ~ intake "
        f"+ age band + program (positive = better) · σ = pooled residual SD {sigma or 0:.2f}",
        "unit": f"ended episodes with ≥ 2 {label} scores",
        "x_label": f"Ended episodes with ≥ 2 {label} scores",
        "y_label": f"Adjusted {label} improvement (points)",
        "value_name": "adjusted improvement (points)",
        "n_name": "episodes",
        "reading": "Each dot is one therapist's mean improvement after allowing for how unwell "
        "their clients were at intake, their age bands and programs. Other differences between "
        "caseloads are not adjusted for, and clients who start low improve more partly by "
        "regression to the mean.",
    }


def none_shown(ctx: Context) -> str:
    k = ctx.policy.k
    return (
        f"No therapist can be shown here: each has fewer than {k} clients (or "
        f"fewer than {k} events or non-events behind a rate), or showing them "
        "would reveal one who has."
    )


def total_text(ctx: Context, row: pd.Series, count: str, unit: str) -> str:
    """'n = 1,234 ended episodes' from a protected row (its exact clients only judge)."""
    if row["suppressed"] and not privacy.cohort_too_small(int(row["true_clients"]), ctx.policy):
        return ""
    shown = row[count]
    return n_text(ctx, 0 if pd.isna(shown) else shown, unit, int(row["true_clients"]))


def shown_text(ctx: Context, shown: int, withheld: int) -> str:
    """'12 therapists shown, 3 withheld (n < 11 clients)'."""
    return f"{shown} therapists shown" + (
        f", {withheld} withheld ({ctx.policy.label} clients)" if withheld else ""
    )


def outside_text(outside: int, shown: int) -> str:
    if outside:
        return f"{outside} of {shown} therapists shown lie outside the 99.8% limits. "
    return f"All {shown} therapists shown lie within the 99.8% limits. "


def data_headers(
    n_name: str, value_name: str, pct: bool, extra_cols: Mapping[str, str]
) -> dict[str, str]:
    """Column headers of a funnel's data a meeting can read; rates in percent (the headers say
    so). n_clients keeps its name: it is the privacy column of every table."""
    unit = " (%)" if pct else ""
    return {
        "n": n_name,
        "value": value_name + unit,
        "low_95": "95% limit, low" + unit,
        "high_95": "95% limit, high" + unit,
        "low_998": "99.8% limit, low" + unit,
        "high_998": "99.8% limit, high" + unit,
        "flag": "position",
        "z": "z score",
        **extra_cols,
    }


def limits_text(info: Mapping[str, object]) -> str:
    phi = float(info["phi"])  # type: ignore[arg-type]
    used = info["method_used"]
    exact = "exact binomial" if info["kind"] == "proportion" else "normal"
    if used == "additive":
        return (
            f"95% and 99.8% limits widened for overdispersion (φ = {phi:.2f}; additive, "
            f"τ = {np.sqrt(float(info['tau2'])):.3g})"  # type: ignore[arg-type]
        )
    if used == "multiplicative":
        return f"95% and 99.8% limits widened for overdispersion (φ = {phi:.2f}, multiplicative)"
    if info["significant"]:
        return f"95% and 99.8% {exact} limits (overdispersion φ = {phi:.2f}, not adjusted)"
    return f"95% and 99.8% {exact} limits (no significant overdispersion, φ = {phi:.2f})"


def withheld_caption(ctx: Context, primary: int, complementary: int) -> str:
    if not primary and not complementary:
        return ""
    k = ctx.policy.k
    text = (
        f"{primary} therapist{'s' if primary != 1 else ''} with fewer than {k} clients (or, "
        f"for a rate, fewer than {k} events or non-events) not shown"
    )
    if complementary:
        text += (
            f"; {complementary} more withheld with {'them' if primary != 1 else 'it'} so "
            "no withheld figure can be worked out from the clinic total"
        )
    return text


def method_text(method: str) -> str:
    if method == "reml":
        return "REML random-intercept model"
    if method == "anova":
        return "ANOVA (method of moments) estimate"
    return "not estimable"


def icc_basis(ctx: Context) -> str:
    return f"therapists with ≥ {ctx.policy.k} clients"


def icc_reading(ctx: Context, label: str, icc: float, low: float, high: float) -> str:
    return (
        f"Of the differences in {label} improvement left after allowing for intake "
        f"scores, {icc:.1%} (95% CI {low:.1%} to {high:.1%}) lies between "
        "therapists; the rest lies between clients and episodes of the same therapist. "
        "Published estimates for routine practice are about 5% (Wampold & Brown 2005; Johns "
        f"et al. 2019). It rests on the therapists with at least {ctx.policy.k} clients here, "
        "so that no small caseload stands behind it. "
    )


def tile_shown_text(ctx: Context, shown: float, withheld: float) -> str:
    if withheld:
        return (
            f"{int(shown)} shown in the funnels, {int(withheld)} "
            f"withheld (fewer than {ctx.policy.k} clients, events or non-events)"
        )
    return "all shown in the funnels"


def too_small(ctx: Context, n_clients: int) -> str:
    if n_clients == 0:
        return "No episodes ended in this selection. Widen the period or clear a filter."
    return (
        f"This selection describes fewer than {ctx.policy.k} clients, so no numbers are shown: "
        "with so few people, figures could identify individuals and would be too noisy to act "
        "on. Widen the period or clear a filter."
    )
