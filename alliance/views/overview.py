"""Overview: the clinic's alliance, dropout and outcome picture at a glance.

Numbers: alliance.metrics.overview (the headline, the tiles' figures, the monthly frames).
"""

from __future__ import annotations

from alliance import charts
from alliance.metrics import overview as metrics
from alliance.panel import Context, Panel, Tile, View, empty_panel, with_delta_rule
from alliance.settings import MEASURES
from alliance.views.common import (
    CORRELATION_NOTE,
    any_withheld,
    gather,
    mark_all_withheld,
    n_text,
    noise_note,
    srs_cutoff_text,
    subtitle,
    too_small_notice,
    withheld_note,
)

TITLE = "Overview"
QUESTION = "How strong is the alliance, who drops out, and do clients get better?"


def _tile_texts(ctx: Context) -> dict[str, tuple[str, str, str, str, bool | None, str]]:
    """Per tile: label, format, unit of its n, help, whether higher is better, change format."""
    m = MEASURES[ctx.filters.outcome_measure].label
    rc = ctx.settings.reliable_change(ctx.filters.outcome_measure)
    definition = ctx.settings.outcome_definition(ctx.filters.outcome_measure)
    return {
        "active_episodes": (
            "Active episodes",
            ",.0f",
            "clients",
            "Episodes with at least one attended session in the period.",
            None,
            "+,.0f",
        ),
        "sessions": (
            "Sessions",
            ",.0f",
            "clients",
            "Attended sessions dated in the period.",
            None,
            "+,.0f",
        ),
        "mean_srs": (
            "Mean SRS",
            ".1f",
            "SRS ratings",
            "Mean Session Rating Scale total (0–40) over sessions in the period.",
            True,
            "+.2f",
        ),
        "srs_below_cutoff_rate": (
            "SRS below cutoff",
            ".1%",
            "SRS ratings",
            f"Share of SRS ratings with {srs_cutoff_text(ctx)}.",
            False,
            "+.1%",
        ),
        "dropout_rate": (
            "Dropout rate",
            ".1%",
            "ended episodes",
            "Ended episodes (finished in period) whose end reason is dropout (client-unilateral).",
            False,
            "+.1%",
        ),
        "reliable_improvement_rate": (
            "Reliable improvement",
            ".1%",
            "episodes",
            f"Ended episodes with ≥ 2 {m} scores improving by ≥ {rc:g} points.",
            True,
            "+.1%",
        ),
        "recovery_rate": (
            "Recovery",
            ".1%",
            "episodes",
            f"Of ended episodes starting in the {m} clinical range, share ending out of it "
            f"({definition}).",
            True,
            "+.1%",
        ),
        "alliance_outcome_r": (
            "Alliance–outcome r",
            ".2f",
            "episodes",
            f"Pearson r between early SRS (mean of first 3) and {m} improvement. "
            "Published: r ≈ .28 (Flückiger et al. 2018). " + CORRELATION_NOTE,
            True,
            "+.2f",
        ),
    }


def _tiles(ctx: Context, now: dict, before: dict) -> list[Tile]:
    figures = metrics.tile_figures(ctx, now, before)
    tiles = []
    for key, (label, fmt, n_unit, help_text, better, delta_fmt) in _tile_texts(ctx).items():
        t = figures[key]
        shown_n = f"n = {t.n_shown:,.0f} {n_unit}" if not t.withheld else ""
        if t.ci is not None:
            lo, hi = t.ci
            shown_n = f"95% CI {lo:.2f} to {hi:.2f} · {shown_n}"
        tiles.append(
            Tile(
                key=key,
                label=label,
                value=t.value,
                fmt=fmt,
                n_text=shown_n,
                help=with_delta_rule(help_text) if t.delta is not None else help_text,
                delta=t.delta,
                delta_fmt=delta_fmt,
                higher_is_better=better,
                withheld=t.withheld,
                delta_significant=t.delta_significant,
            )
        )
    return tiles


def _alliance_trend(ctx: Context, now: dict) -> Panel:
    title = "Alliance by month"
    safe = metrics.alliance_trend(ctx)
    if safe is None:
        return empty_panel("alliance_trend", title, "No SRS ratings in this selection.")
    fig = charts.lines(
        safe,
        x="month",
        y="mean_score",
        group=None,
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Mean SRS total per calendar month (0–40), 95% CI band",
            n_text=n_text(ctx, metrics.now_shown(ctx, now, "srs_n"), "ratings", now["srs_clients"]),
        ),
        x_label="Month",
        y_label="Mean SRS",
        value_format="num1",
        scale="srs",
    )
    if safe["mean_score"].isna().all():
        mark_all_withheld(fig, ctx, "month")
    return Panel(
        key="alliance_trend",
        title=title,
        subtitle="",
        figure=fig,
        data=safe,
        reading=(
            "Each point is the month's mean SRS; the band is its 95% confidence interval. "
            "A few tenths of a point either way is usual month-to-month noise; the Alliance "
            "page tests for real shifts with control-chart rules."
            + withheld_note(ctx, safe)
            + noise_note(ctx)
        ),
        withheld=any_withheld(safe),
        section=ctx.filters.period_text(),
    )


def _dropout_trend(ctx: Context, now: dict) -> Panel:
    title = "Dropout rate by month"
    safe = metrics.dropout_trend(ctx)
    if safe is None:
        return empty_panel("dropout_trend", title, "No episodes ended in this selection.")
    fig = charts.lines(
        safe,
        x="month",
        y="dropout_rate",
        group=None,
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Dropouts / ended episodes by month of the last session",
            "95% Wilson band",
            n_text=n_text(
                ctx, metrics.now_shown(ctx, now, "ended"), "ended episodes", now["ended_clients"]
            ),
        ),
        x_label="Month the episode ended",
        y_label="Dropout rate",
        value_format="pct",
        scale="rate",
    )
    if safe["dropout_rate"].isna().all():
        mark_all_withheld(fig, ctx, "month")
    return Panel(
        key="dropout_trend",
        title=title,
        subtitle="",
        figure=fig,
        data=safe,
        reading=(
            "Share of episodes ending that month whose end reason was dropout. "
            "Months with few endings have wide bands; published clinics average ≈ 20% "
            "(Swift & Greenberg 2012)." + withheld_note(ctx, safe) + noise_note(ctx)
        ),
        withheld=any_withheld(safe),
    )


def build(ctx: Context) -> View:
    now = metrics.headline(ctx)
    if metrics.nothing_shown(ctx, now):
        return View(
            TITLE,
            QUESTION,
            notice=too_small_notice(ctx, now["n_clients"]),
            n_clients=now["n_clients"],
        )
    before, *panels = gather(
        lambda: metrics.headline(ctx, ctx.filters.previous_period()),
        lambda: _alliance_trend(ctx, now),
        lambda: _dropout_trend(ctx, now),
    )
    tiles = _tiles(ctx, now, before)
    return View(TITLE, QUESTION, tiles=tiles, panels=panels, n_clients=now["n_clients"])
