"""The Outcomes page's own sentences: its question, the tiles' labels and help, the measure's
and cohort's wording, and the notices of an empty or too small selection."""

from __future__ import annotations

from alliance.panel import Context
from alliance.settings import MEASURES
from alliance.views.common import CORRELATION_NOTE, SMALL_N_NOTE

TITLE = "Outcomes"
QUESTION = (
    "Do clients get better on the chosen measure, how many change reliably or recover, "
    "and does a stronger early alliance go with more improvement?"
)

# Flückiger, Del Re, Wampold & Horvath (2018), Psychotherapy 55(4): adult individual therapy.
PUBLISHED_R = 0.278
PUBLISHED_R_CI = (0.256, 0.299)
PUBLISHED_R_TEXT = "published r ≈ .28 (95% CI .26–.30; Flückiger et al. 2018)"


def tile_specs(ctx: Context, measure: str) -> list[tuple[str, str, str, bool | None, str]]:
    """(key, label, format, higher is better, help) of each tile, in order."""
    m = MEASURES[measure]
    rc = ctx.settings.reliable_change(measure)
    definition = ctx.settings.outcome_definition(measure)
    episodes = f"ended episodes with ≥ 2 {m.label} scores"
    clinical = f"of them starting in the clinical range ({clinical_text(ctx, measure)})"
    specs = [
        (
            "reliable_improvement_rate",
            "Reliable improvement",
            ".1%",
            True,
            f"Share of {episodes} that improved by ≥ {rc:g} points ({definition}).",
        ),
        (
            "reliable_deterioration_rate",
            "Reliable deterioration",
            ".1%",
            False,
            f"Share of {episodes} that worsened by ≥ {rc:g} points ({definition}).",
        ),
        (
            "recovery_rate",
            "Recovery",
            ".1%",
            True,
            f"Of the {episodes} {clinical}: share out of that range at the last score.",
        ),
        (
            "reliable_recovery_rate",
            "Reliable recovery",
            ".1%",
            True,
            f"Of the {episodes} {clinical}: share that recovered and improved by ≥ {rc:g} points.",
        ),
        (
            "pre_post_effect_size",
            "Pre–post effect size",
            ".2f",
            True,
            f"Mean {m.label} improvement / SD of the first score, over the {episodes}. "
            "Uncontrolled: it includes natural recovery and regression to the mean.",
        ),
        (
            "mean_improvement",
            "Mean improvement",
            "+.1f",
            True,
            f"Mean change in {m.label} points between first and last score, positive = better.",
        ),
        (
            "alliance_outcome_r",
            "Alliance–outcome r",
            ".2f",
            True,
            f"Pearson r between early SRS (mean of the first 3) and {m.label} improvement; "
            f"{PUBLISHED_R_TEXT}. {CORRELATION_NOTE}",
        ),
        (
            "outcome_n",
            "Episodes with change scores",
            ",.0f",
            None,
            f"Ended episodes finished in the period with at least two {m.label} scores: the "
            "episodes every figure on this page describes.",
        ),
    ]
    return specs


def tile_n_text(key: str, fmt: str, now: dict, with_ci: bool) -> str:
    """The line under a tile: its interval (when `with_ci` and it has one) and its n."""
    if key in ("recovery_rate", "reliable_recovery_rate"):
        shown_n = f"n = {now['clinical_n']:,} episodes in clinical range"
    elif key == "alliance_outcome_r":
        shown_n = f"n = {now['r_n']:,} episodes · published ≈ .28"
    elif key == "outcome_n":
        share = None if now["outcome_share_withheld"] else now["outcome_share"]
        shown_n = f"{share:.0%} of {now['ended']:,} ended episodes" if share is not None else ""
    else:
        shown_n = f"n = {now['outcome_n']:,} episodes"
    ci = now.get(f"{key}_ci")
    if ci and with_ci:
        ci_fmt = ".0%" if fmt.endswith("%") else ".2f" if key == "alliance_outcome_r" else ".1f"
        shown_n = f"95% CI {format(ci[0], ci_fmt)} to {format(ci[1], ci_fmt)} · {shown_n}"
    return shown_n


def clinical_text(ctx: Context, measure: str) -> str:
    cut = ctx.settings.clinical_cutoff(measure)
    label = MEASURES[measure].label
    return f"{label} < {cut:g}" if MEASURES[measure].higher_is_better else f"{label} ≥ {cut:g}"


def measure_text(ctx: Context, measure: str) -> str:
    """'ORS (higher = better), change = last - first' for subtitles."""
    m = MEASURES[measure]
    change = "last − first" if m.higher_is_better else "first − last"
    return f"{m.label} ({m.direction_text}); improvement = {change}, positive = better"


def cohort_text(measure: str) -> str:
    return f"ended episodes finished in the period with ≥ 2 {MEASURES[measure].label} scores"


def empty_notice(ctx: Context, now: dict) -> str:
    label = MEASURES[ctx.filters.outcome_measure].label
    if now["ended"] == 0:
        return (
            "No episodes ended in this selection, so there are no outcomes to show. Widen the "
            "period or clear a filter."
        )
    return (
        f"Episodes ended in this selection, but none had two or more {label} scores "
        f"(the {label} may not be used at these sites or programs). Choose another outcome "
        "measure, widen the period or clear a filter."
    )


def too_small_notice(min_clients: int) -> str:
    return (
        f"The outcomes in this selection describe fewer than {min_clients} clients, so "
        "no numbers are shown: with so few people, figures could identify individuals "
        "and would be too noisy to act on. Widen the period or clear a filter."
    )


ALLIANCE_BINS_READING = (
    "Bars are the mean improvement of episodes grouped by their early SRS; whiskers "
    "are 95% intervals. A rising pattern means a stronger early alliance goes with more "
    f"improvement. {CORRELATION_NOTE} Change scores also carry regression to the mean: "
    "clients who start worse tend to improve more whatever happens, and intake "
    "severity can colour how they rate the alliance."
)


def group_word(bins: int) -> str:
    share = f"about {100 / bins:.0f}% of episodes each" if bins > 2 else "halves"
    return f"episodes grouped by early SRS ({share}; tied scores kept together)"


def r_note(r: float, ci: list[float] | None, r_n: int) -> str:
    """The box on the alliance-bins chart: this clinic's r beside the published one."""
    ci_text = f" (95% CI {ci[0]:.2f} to {ci[1]:.2f})" if ci else ""
    r_text = f"r = {r:.2f}{ci_text}, n = {r_n:,}"
    return (
        f"<b>This clinic:</b> Pearson {r_text}<br>"
        "<b>Published:</b> r = .28 (95% CI .26–.30), Flückiger et al. 2018"
    )


def distribution_reading(label: str, rc: float) -> str:
    return (
        f"Each bar is the share of episodes whose {label} changed by that many points "
        f"(right = better). Blue bars improved by at least {rc:g} points, more than "
        "measurement error; red bars worsened that much. Change from first to last score "
        "includes natural recovery and regression to the mean, so it is not all the "
        "therapy's doing."
    )


def monthly_texts(
    ctx: Context, measure: str, key: str
) -> tuple[dict[str, str], list[str], str, str]:
    """A monthly panel's lines (event column -> name), its subtitle's definition, the unit of
    its count and its reading (key: monthly_change or monthly_recovery)."""
    m = MEASURES[measure]
    rc = ctx.settings.reliable_change(measure)
    if key == "monthly_change":
        return (
            {
                "reliable_improvement": "Reliable improvement",
                "reliable_deterioration": "Reliable deterioration",
            },
            [f"Share of ended episodes with ≥ 2 {m.label} scores that changed by ≥ {rc:g} points"],
            "episodes",
            (
                f"Lines are the month's shares; bands are 95% Wilson intervals. Improvement by at "
                f"least {rc:g} points is more than the measure's error. Months with few endings "
                "have wide bands: look for sustained movement, not single months."
            ),
        )
    return (
        {"recovered": "Recovery", "reliably_recovered": "Reliable recovery"},
        [
            f"Of ended episodes with ≥ 2 {m.label} scores starting in the clinical range "
            f"({clinical_text(ctx, measure)})",
            f"share ending out of it (reliable recovery: and improved by ≥ {rc:g})",
        ],
        "episodes in clinical range",
        (
            "Recovery counts only episodes that started in the clinical range. Reliable "
            "recovery also needs a change larger than measurement error, so it is never "
            "above recovery. " + SMALL_N_NOTE
        ),
    )


def trajectory_reading(higher_is_better: bool) -> str:
    direction = "rise" if higher_is_better else "fall"
    return (
        f"Each line follows the episodes of one early-alliance third; better outcomes "
        f"{direction} on this scale. Later points describe only the episodes that lasted "
        "that long, so a line's shape mixes change within clients with who stays. "
        + CORRELATION_NOTE
    )
