"""Alliance (trust): how strong is the alliance clients report, is it changing, does it build?

Panels: the distribution of the chosen alliance score (SRS total, or the WAI-SR mean item score
with its Task / Bond / Goal subscales), the monthly mean as an X-bar control chart with the IHI
run-chart rules, the alliance by session number, and alliance drops with the dropout that
followed. Definitions: ../shared/metrics.md ("Alliance", "Quality improvement views").

Numbers: alliance.metrics.alliance (headline, tiles) and alliance.metrics.alliance_panels (the
panels' frames); figures: alliance.charts.ratings (the control chart's frame, layout and captions
are alliance.charts.control, shared with Dropout); words: alliance.views.alliance_text.
"""

from __future__ import annotations

import numpy as np

from alliance.charts import ratings
from alliance.charts.control import (
    fit_layout,
    spc_baseline_end,
    spc_centre_label,
    spc_method_text,
    spc_note,
)
from alliance.metrics import alliance as metrics
from alliance.metrics import alliance_panels as frames
from alliance.metrics.alliance import FIXED_COHORT_SESSIONS, LAST_SESSION_NUMBER, SCALES, Scale
from alliance.panel import Context, Panel, Tile, View, empty_panel
from alliance.views import alliance_text as text
from alliance.views.common import (
    SMALL_N_NOTE,
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

TITLE = "Alliance (trust)"
QUESTION = (
    "How strong is the alliance clients report, is it changing over time, and does it build "
    "over the first sessions?"
)
_DROPS_COLUMNS = [
    "group",
    "n_clients",
    "episodes",
    "dropouts",
    "dropout_rate",
    "low",
    "high",
    "suppressed",
]


def _tiles(ctx: Context, s: dict, p: dict) -> list[Tile]:
    """The headline tiles from the protected summary `p` (metrics.tile_figures judges)."""
    figures = metrics.tile_figures(ctx, s, p)
    note = noise_note(ctx).strip()
    tiles = []
    for key, label, fmt, n, help_text, better in text.tile_rows(ctx, p):
        figure = figures[key]
        tiles.append(
            Tile(
                key=key,
                label=label,
                value=figure.value,
                fmt=fmt,
                n_text="" if figure.withheld else n,
                help=f"{help_text} {note}",
                higher_is_better=better,
                withheld=figure.withheld,
            )
        )
    return tiles


def _ratings_n(ctx: Context, scale: Scale, s: dict, p: dict) -> str:
    """'n = … ratings' of the period's ratings of the scale (protected), judged by its clients."""
    return n_text(ctx, metrics.rating_count(p, scale), "ratings", metrics.rating_clients(s, scale))


def _distribution(ctx: Context, scale: Scale, s: dict, p: dict) -> Panel:
    title = f"How clients rate the alliance: {scale.label}"
    d = frames.distribution(ctx, scale, s, p)
    if d is None:
        return empty_panel("distribution", title, text.no_ratings(scale))
    safe = d.safe
    labels = text.bin_labels(scale, d)
    plot = safe.assign(x=d.x, bin=labels)
    f = text.tick_format(scale)
    cutoff = ctx.settings.srs_cutoff if scale.key == "srs" else None
    parts = [
        f"{scale.long_label} per session: share of ratings in each {scale.bin_width:g}-point bin",
        f"scores below {f(scale.bin_floor)} pooled, the top score on its own",
    ]
    if cutoff is not None:
        parts.append(srs_cutoff_text(ctx))
    half = scale.bin_width / 2
    fig = ratings.rating_histogram(
        plot,
        tickvals=[scale.bin_floor - half, *scale.ticks, scale.scale_max + half],
        ticktext=[f"<{f(scale.bin_floor)}", *(f(t) for t in scale.ticks), f(scale.scale_max)],
        title=title,
        subtitle=subtitle(
            ctx,
            *parts,
            n_text=(
                n_text(ctx, d.total, "ratings", d.n_clients)
                + (f" from {d.shown_clients:,} clients" if d.clients_shown else "")
            ),
        ),
        x_label=scale.long_label,
        y_label="Share of ratings",
        cutoff=cutoff,
        cutoff_label=f"cutoff {cutoff:g}" if cutoff is not None else "cutoff",
        suppressed_label=ctx.policy.label,
    )
    below_shown = metrics.below_cutoff_shown(ctx, s, p)
    return Panel(
        key="distribution",
        title=title,
        subtitle="",
        reading=text.distribution_reading(ctx, scale, plot.loc[d.top, "share"], p, below_shown)
        + noise_note(ctx)
        + withheld_note(ctx, safe),
        figure=fig,
        data=safe.drop(columns=["x"], errors="ignore").assign(bin=labels)[
            ["bin", "n_clients", "n", "share", "suppressed", "suppression"]
        ],
        withheld=any_withheld(safe),
        stats={"srs_below_cutoff_rate": p["srs_below_rate"] if below_shown else np.nan},
    )


def _wai_subscales(ctx: Context) -> Panel:
    title = "WAI-SR subscales: task, bond and goal"
    found = frames.wai_subscales(ctx)
    if found is None:
        return empty_panel("wai_subscales", title, text.no_ratings(SCALES["wai"]))
    safe, clients, clients_shown = found
    total = n_text(ctx, safe["episodes"].max(), "episodes", clients)
    if clients_shown:
        total += f", {int(safe['administrations'].max()):,} ratings"
    fig = ratings.dots(
        safe,
        category="subscale",
        value="mean_score",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "WAI-SR subscale = mean of its 4 items (1–5)",
            "mean over episodes of each episode's mean rating in the period, 95% CI",
            n_text=total,
        ),
        x_label="Mean item score (1 = seldom, 5 = always)",
        value_format="num2",
        suppressed_label=ctx.policy.label,
    )
    return Panel(
        key="wai_subscales",
        title=title,
        subtitle="",
        reading=text.WAI_READING + SMALL_N_NOTE + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fig,
        data=safe,
        withheld=any_withheld(safe),
    )


def _control_chart(ctx: Context, scale: Scale, s: dict, p: dict) -> Panel:
    title = f"Monthly mean {scale.label}: control chart"
    c = frames.control_chart(ctx, scale)
    if c is None:
        return empty_panel("alliance_spc", title, text.no_ratings(scale))
    if c.frame is None:
        return empty_panel("alliance_spc", title, text.no_month_shown(ctx))
    frame = c.frame
    fig = ratings.control_chart(
        frame,
        title=title,
        subtitle=subtitle(
            ctx,
            f"Mean {scale.long_label} per month (X-bar chart)",
            *spc_method_text(frame, ctx.settings.spc_baseline_months, "with ratings"),
            n_text=_ratings_n(ctx, scale, s, p),
        ),
        y_label=f"Mean {scale.label}",
        value_format=scale.value_format,
        baseline_end=spc_baseline_end(frame),
        scale=scale.key,
        centre_label=spc_centre_label(frame),
    )
    return Panel(
        key="alliance_spc",
        title=title,
        subtitle="",
        reading=(
            spc_note(frame)
            + " Limits are narrow when a month has many ratings."
            + (
                " With so few baseline months the limits are rough."
                if c.baseline_months < 8
                else ""
            )
            + noise_note(ctx)
            + withheld_note(ctx, c.safe)
        ),
        figure=fig,
        data=frame,
        withheld=any_withheld(c.safe),
    )


def _by_session_number(ctx: Context, scale: Scale, s: dict, p: dict) -> Panel:
    title = f"Does the alliance build? {scale.label} by session number"
    safe = frames.by_session_number(ctx, scale)
    if safe is None:
        return empty_panel("by_session", title, text.no_ratings(scale))
    fig = ratings.session_lines(
        safe,
        x="session",
        y="mean_score",
        group="group",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            f"Mean {scale.long_label} at each session number (the episode's n-th attended "
            f"session), 95% CI; {LAST_SESSION_NUMBER}+ pools later sessions",
            f"dashed: episodes seen from session 1 through {FIXED_COHORT_SESSIONS} in the period",
            n_text=_ratings_n(ctx, scale, s, p),
        ),
        x_label="Session number",
        y_label=f"Mean {scale.label}",
        value_format=scale.value_format,
        dash_groups={metrics.FIXED_LABEL: "dash"},
        scale=scale.key,
    )
    if safe["mean_score"].isna().all():
        mark_all_withheld(fig, ctx, "session number")
    return Panel(
        key="by_session",
        title=title,
        subtitle="",
        reading=text.by_session_reading(scale, safe[safe["cohort"] == "all"])
        + noise_note(ctx)
        + withheld_note(ctx, safe),
        figure=fit_layout(fig),
        data=safe[
            ["group", "session", "n_clients", "n", "mean_score", "low", "high", "suppressed"]
        ],
        withheld=any_withheld(safe),
    )


def _drops_and_dropout(ctx: Context, s: dict, p: dict) -> Panel:
    title = "Alliance drops and what followed them"
    thr = ctx.settings.rupture_threshold
    d = frames.drops_and_dropout(ctx, s, p)
    if d is None:
        return empty_panel("drops", title, text.NO_DROPS)
    fig = ratings.dots(
        d.safe,
        category="group",
        value="dropout_rate",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Dropout rate of ended episodes with 2+ SRS ratings, by whether any SRS was "
            f"≥ {thr:g} points below the episode's previous SRS (a setting); 95% Wilson CI",
            f"drops: {p['drop_rate']:.1%} of {p['with_previous']:,.0f} SRS ratings with a "
            "previous one in the period"
            if d.drops_shown
            else "",
            n_text=n_text(ctx, d.episodes, "ended episodes", d.clients),
        ),
        x_label="Dropout rate",
        reference=d.overall,
        reference_label="these episodes overall",
        value_format="pct",
        suppressed_label=ctx.policy.label,
        rate_axis="x",
    )
    return Panel(
        key="drops",
        title=title,
        subtitle="",
        reading=text.drops_reading(d.difference) + noise_note(ctx) + withheld_note(ctx, d.safe),
        figure=fig,
        data=d.safe[_DROPS_COLUMNS],
        withheld=any_withheld(d.safe),
    )


def build(ctx: Context) -> View:
    s = metrics.summary(ctx)
    if metrics.nothing_shown(ctx, s):
        return View(
            TITLE, QUESTION, notice=too_small_notice(ctx, s["n_clients"]), n_clients=s["n_clients"]
        )
    p = metrics.protected_summary(ctx, s)
    scale = metrics.scale_of(ctx)
    parts = [
        lambda: _by_session_number(ctx, scale, s, p),
        lambda: _drops_and_dropout(ctx, s, p),
        lambda: _distribution(ctx, scale, s, p),
        lambda: _control_chart(ctx, scale, s, p),
    ]
    if scale.key == "wai":
        parts.append(lambda: _wai_subscales(ctx))
    by_number, drops, distribution, control, *wai = gather(*parts)
    panels = [distribution, *wai, control, by_number, drops]
    return View(TITLE, QUESTION, tiles=_tiles(ctx, s, p), panels=panels, n_clients=s["n_clients"])
