"""The Alliance (trust) page's words: tile labels and help, bin labels, empty-panel sentences
and the readings under the charts. Numbers come in from alliance.metrics.alliance."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from alliance import protected
from alliance.metrics import alliance as metrics
from alliance.metrics.alliance import Scale
from alliance.metrics.alliance_panels import Distribution
from alliance.panel import Context
from alliance.stats import Estimate
from alliance.views.common import srs_cutoff_text

WAI_READING = (
    "Bond usually scores highest and Task lowest in published samples. A subscale well "
    "below the others points to where the alliance is weakest (e.g. agreeing on tasks). "
    "Each episode counts once, so the intervals allow for repeated ratings. "
)
NO_DROPS = "No ended episode with two or more SRS ratings finished in this selection."


def wilson_text(ctx: Context, x: float, n: float) -> str:
    """The 95% Wilson interval of protected x / n, widened for the noise."""
    lo, hi = metrics.rate_interval(ctx, x, n)
    return f"95% CI {lo:.1%} to {hi:.1%}"


def tile_rows(ctx: Context, p: dict) -> list[tuple[str, str, str, str, str, bool]]:
    """Per tile: key, label, format, its n (from the protected summary `p`), help, whether
    higher is better."""
    if ctx.filters.alliance_measure == "wai":
        rows = [
            (
                "mean_wai",
                "Mean WAI-SR item score",
                ".2f",
                f"n = {p['wai_n']:,.0f} ratings, {p['wai_clients']:,.0f} clients",
                "Mean WAI-SR mean item score (1–5, total / 12) over the WAI-SR ratings in the "
                "period. Recorded only where the WAI-SR is used.",
                True,
            )
        ]
    else:
        rows = [
            (
                "mean_srs",
                "Mean SRS",
                ".1f",
                f"n = {p['srs_n']:,.0f} ratings, {p['srs_clients']:,.0f} clients",
                "Mean Session Rating Scale total (0–40) over the SRS ratings in the period.",
                True,
            )
        ]
    below_text = ""
    if p["srs_n"]:
        below_text = (
            f"{wilson_text(ctx, p['srs_below'], p['srs_n'])} · n = {p['srs_n']:,.0f} ratings"
        )
    drop_text = ""
    if p["with_previous"]:
        drop_text = (
            f"{wilson_text(ctx, p['drops'], p['with_previous'])} · "
            f"n = {p['with_previous']:,.0f} ratings"
        )
    thr = ctx.settings.rupture_threshold
    return [
        *rows,
        (
            "srs_below_cutoff_rate",
            "SRS below cutoff",
            ".1%",
            below_text,
            f"Share of SRS ratings with {srs_cutoff_text(ctx)} (OpenFIT's cutoff; a setting). "
            "Interval: Wilson 95%.",
            False,
        ),
        (
            "drop_rate",
            "Alliance drops",
            ".1%",
            drop_text,
            f"Share of SRS ratings at least {thr:g} points below the same episode's previous "
            "SRS (a setting), among ratings that have a previous one. Details on the "
            "Ruptures & repair page.",
            False,
        ),
        (
            "srs_recorded",
            "Sessions with an SRS",
            ".1%",
            f"n = {p['sessions']:,.0f} sessions",
            "Share of attended sessions in the period with an SRS total: low completion makes "
            "every alliance figure less representative.",
            True,
        ),
    ]


def no_ratings(scale: Scale) -> str:
    if scale.key == "wai":
        return (
            "No WAI-SR ratings in this selection (the WAI-SR is recorded only at some sites and "
            "programs). Choose SRS as the alliance measure, or widen the filters."
        )
    return "No SRS ratings in this selection. Widen the period or clear a filter."


def no_month_shown(ctx: Context) -> str:
    return (
        f"Every month describes fewer than {protected.min_clients(ctx.policy)} clients: widen "
        "the selection."
    )


def tick_format(scale: Scale) -> Callable[[float], str]:
    """How the scale's scores are written on the axis and in bin labels."""
    return scale.fmt if scale.key == "wai" else (lambda v: f"{v:g}")


def bin_labels(scale: Scale, d: Distribution) -> list[str]:
    f = tick_format(scale)
    low, high = d.safe["bin_low"], d.safe["bin_high"]
    return [
        f"below {f(scale.bin_floor)}"
        if p
        else f"{f(scale.scale_max)} (top score)"
        if t
        else f"{f(lo)} to under {f(hi)}"
        for p, t, lo, hi in zip(d.pooled, d.top, low, high, strict=True)
    ]


def distribution_reading(
    ctx: Context, scale: Scale, top_share: pd.Series, p: dict, below_shown: bool
) -> str:
    reading = ""
    if len(top_share) and pd.notna(top_share.iloc[0]):
        reading = (
            f"{top_share.iloc[0]:.0%} of ratings are the top score: the scale has a ceiling, so "
            "differences between high scores carry little information. "
        )
    if scale.key == "srs" and below_shown:
        reading += (
            f"{p['srs_below_rate']:.1%} of ratings are below the cutoff "
            f"({wilson_text(ctx, p['srs_below'], p['srs_n'])}): the sessions worth a "
            "conversation about how therapy is going. "
        )
    return reading + "Each rating counts once, so clients seen more often weigh more."


def by_session_reading(scale: Scale, all_rows: pd.DataFrame) -> str:
    reading = ""
    vis = all_rows.dropna(subset=["mean_score"])
    if len(vis) >= 2:
        first, last = vis.iloc[0], vis.iloc[-1]
        reading = (
            f"Across all episodes the mean goes from {scale.fmt(first['mean_score'])} at session "
            f"{first['session']} to {scale.fmt(last['mean_score'])} at session {last['session']}. "
        )
    return reading + (
        "Clients with a weak alliance tend to leave early, so later sessions hold the clients "
        "who stayed: part of any rise in all episodes is who remains. The dashed line follows "
        "the same episodes and shows how much the alliance builds within them."
    )


def drops_reading(difference: tuple[float, float, Estimate] | None) -> str:
    reading = ""
    if difference is not None:
        yes, no, rd = difference
        chance = rd.low <= 0 <= rd.high
        reading = (
            f"Dropout: {yes:.1%} of episodes with a drop, "
            f"{no:.1%} without, a difference of {rd.value * 100:+.1f} "
            f"percentage points (95% CI {rd.low * 100:+.1f} to {rd.high * 100:+.1f})"
            + (", within what chance alone produces. " if chance else ". ")
        )
    return reading + (
        "An association, not a cause: longer episodes have more chances of a drop, and clients "
        "who drop out may differ in other ways. Whether drops were repaired, and by whom, is on "
        "the Ruptures & repair page."
    )
