"""The Dropout page's own sentences: its question, the tiles' help and the panels' readings."""

from __future__ import annotations

from alliance.views.common import CORRELATION_NOTE, SMALL_N_NOTE

TITLE = "Dropout"
QUESTION = (
    "How many clients leave therapy without a planned ending, when do they leave, and how is "
    "that linked to the alliance in the first sessions?"
)
PUBLISHED_D = 0.55  # Sharf, Primavera & Diener 2010, Psychotherapy 47:637 (11 studies, n = 1,301)
PUBLISHED_TEXT = "published d ≈ .55 (Sharf, Primavera & Diener 2010)"
EARLY_SRS_TEXT = "early SRS = mean SRS total of the episode's first 3 rated sessions"
NO_ENDINGS = (
    "No episodes ended in this selection. Dropout counts episodes by the month of their last "
    "session: widen the period or clear a filter."
)
NO_EARLY_SRS = "No ended episode with an early SRS in this selection."

RATE_HELP = (
    "Ended episodes (finished in the period) whose end reason is dropout, over all ended "
    "episodes. Published clinics average about 20% (Swift & Greenberg 2012)."
)
D_HELP = (
    "(Mean early SRS of episodes not ending in dropout − mean of dropouts) / pooled SD; "
    f"{EARLY_SRS_TEXT}. Positive = dropouts started with a weaker alliance. "
    "About .2 is small, .5 medium, .8 large."
)
OR_HELP = (
    "Odds ratio per 1 SD lower early SRS, from a logistic regression of dropout on the "
    "standardized early SRS: how many times the odds of dropout multiply for an early SRS one SD "
    "lower. Published ≈ 1.7. Wald 95% CI."
)
R_HELP = (
    "Point-biserial correlation of the early SRS with dropout (1 = dropout): negative when a "
    "higher early alliance goes with less dropout. Fisher-z 95% CI. "
)

BANDS_DEFINITION = (
    "Dropout rate of ended episodes by early SRS: below vs at or above the cutoff "
    "(a setting), and in fifths (quintiles) of the early SRS; 95% Wilson CI"
)
CURVE_DEFINITION = (
    "Logistic regression of dropout on the early SRS, 95% confidence band; dots: "
    "observed dropout rate of each early-SRS quintile (95% Wilson CI)"
)
D_DEFINITION = (
    "Cohen's d = (mean early SRS of other endings − mean of dropouts) / pooled SD, "
    "95% CI; positive = dropouts started with a weaker alliance"
)
D_READING = (
    "A site whose interval crosses the dotted line does not differ from the literature. "
    + SMALL_N_NOTE
    + " "
    + CORRELATION_NOTE
)
WHEN_DEFINITION = (
    "Share of dropouts and of planned endings whose last session was at or before each "
    "session number (attended sessions, counting those before the period)"
)


def bands_reading(vis, min_clients: int) -> str:
    """The bands panel's reading; `vis` holds the cutoff bands with a rate (below, at/above)."""
    reading = ""
    if len(vis) == 2:
        below, above = vis.iloc[0], vis.iloc[1]
        reading = (
            f"{below['dropout_rate']:.0%} of episodes that started below the cutoff ended in "
            f"dropout, against {above['dropout_rate']:.0%} of those at or above it. "
        )
    return reading + (
        "Quintiles with the same early SRS stay together, so their sizes can differ. Their "
        "cut points are rounded to whole SRS points (≈) and named only between two quintiles "
        f"that are shown with at least {min_clients} clients each. "
        + CORRELATION_NOTE
        + " "
        + SMALL_N_NOTE
    )


def curve_reading(curve, lo: float, hi: float) -> str:
    return (
        f"Read the line at an early SRS to see the chance of dropout for episodes starting "
        f"there: {curve['p'].iloc[0]:.0%} at {lo:g} points, {curve['p'].iloc[-1]:.0%} at "
        f"{hi:g}. The dots check the curve against the data. A steeper curve means the "
        "first sessions' SRS says more about who will leave. "
    )


def d_reading(d, shown: bool) -> str:
    """The d panel's first sentence: the clinic's d beside the published .55 (if shown)."""
    if not shown:
        return ""
    inside = d.low <= PUBLISHED_D <= d.high
    return f"Here d = {d.value:.2f} (95% CI {d.low:.2f} to {d.high:.2f}): " + (
        "in line with the published .55. "
        if inside
        else "the interval excludes the published .55. "
    )


def when_reading(at4, s: dict, medians: bool, stops: bool) -> str:
    reading = ""
    if at4.notna().all() and len(at4) == 2:
        reading = (
            f"By session 4, {at4['Dropout']:.0%} of the dropouts had left, against "
            f"{at4['Planned ending']:.0%} of the planned endings. "
        )
    if medians:
        reading += (
            f"Half of the dropouts had left by session {s['median_last_dropout']:g}, half of the "
            f"planned endings came by session {s['median_last_planned']:g}. "
        )
    reading += (
        "Where the dropout line climbs steeply, engagement is won or lost: that is where asking "
        "for feedback, and acting on a low SRS, matters most."
    )
    if stops:
        reading += " A line stops where the next session's count is withheld."
    return reading


# the effect tiles: key, label, statistic (dropout_stats.effect_stats), help
EFFECT_TILES = (
    ("alliance_dropout_d", "Alliance gap, Cohen's d", "d", D_HELP),
    ("dropout_or_per_sd_lower", "Dropout odds ratio", "or", OR_HELP),
    ("dropout_point_biserial_r", "Early SRS – dropout r", "r", R_HELP + CORRELATION_NOTE),
)
