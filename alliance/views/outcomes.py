"""Outcomes: do clients get better on the chosen measure, and does early alliance go with it?

Every number follows ``../shared/metrics.md`` ("Outcomes"); the numbers are
alliance/metrics/outcomes.py (headline) and outcomes_panels.py (each panel's protected frame),
the figures alliance/charts/outcomes.py, the page's sentences outcomes_text.py.
"""

from __future__ import annotations

from alliance import privacy, protected
from alliance.charts import outcomes as figures
from alliance.metrics import outcomes as metrics
from alliance.metrics import outcomes_panels as numbers
from alliance.panel import Context, Panel, Tile, View, empty_panel, with_delta_rule
from alliance.settings import MEASURES
from alliance.views import outcomes_text as text
from alliance.views.common import (
    any_withheld,
    gather,
    n_text,
    noise_note,
    subtitle,
    withheld_note,
)

TITLE = text.TITLE
QUESTION = text.QUESTION
PUBLISHED_R = text.PUBLISHED_R


def _tiles(ctx: Context, now: dict, before: dict) -> list[Tile]:
    """The tiles from the protected headlines (`metrics.protected_summary`) of this and last
    period."""
    withheld = set(now["withheld"])
    before_withheld = set(before["withheld"]) if before["outcome_n"] else set(metrics.POPULATION)
    tiles = []
    for key, label, fmt, better, help_text in text.tile_specs(ctx, ctx.filters.outcome_measure):
        is_withheld = key in withheld
        value = None if is_withheld else now.get(key)
        shown_n = text.tile_n_text(key, fmt, now, value is not None)
        delta = None
        prev = before.get(key)
        if (
            value is not None
            and prev is not None
            and key not in before_withheld
            and better is not None
        ):
            delta = value - prev
        delta_fmt = {"%": "+.1%", "f": "+.2f"}[fmt[-1]] if fmt[-1] in "%f" else "+,.0f"
        tiles.append(
            Tile(
                key=key,
                label=label,
                value=value,
                fmt=fmt,
                n_text="" if is_withheld else shown_n,
                help=with_delta_rule(help_text) if delta is not None else help_text,
                delta=delta,
                delta_fmt=delta_fmt,
                higher_is_better=better,
                withheld=is_withheld,
                delta_significant=(
                    metrics.delta_significant(ctx, key, now, before) if delta is not None else None
                ),
            )
        )
    return tiles


def _distribution(ctx: Context, now: dict, shown: dict) -> Panel:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    rc = ctx.settings.reliable_change(measure)
    title = f"How much did clients change? {m.label} improvement"
    found = numbers.distribution(ctx, measure, rc)
    if found is None:
        return empty_panel("distribution", title, f"No episodes with ≥ 2 {m.label} scores.")
    safe, lowest, highest = found
    total = shown["outcome_n"]
    fig = figures.improvement_histogram(
        safe,
        rc=rc,
        lowest=lowest,
        highest=highest,
        bin_width=numbers.BIN_WIDTH,
        label=m.label,
        total=total,
        title=title,
        subtitle=subtitle(
            ctx,
            text.measure_text(ctx, measure),
            f"reliable change ≥ {rc:g} points (dashed lines)",
            text.cohort_text(measure),
            n_text=n_text(ctx, total, "episodes", now["outcome_clients"]),
        ),
        suppressed_label=ctx.policy.label,
    )
    return Panel(
        key="distribution",
        title=title,
        subtitle="",
        reading=text.distribution_reading(m.label, rc) + withheld_note(ctx, safe) + noise_note(ctx),
        figure=fig,
        data=numbers.distribution_table(safe, lowest, highest, total),
        withheld=any_withheld(safe),
        stats={"reliable_change": rc},
    )


def _monthly(ctx: Context, now: dict, shown: dict) -> list[Panel]:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    frames = numbers.monthly(ctx, measure)
    titles = (
        f"Reliable improvement and deterioration by month ({m.label})",
        f"Recovery and reliable recovery by month ({m.label})",
    )
    if frames is None:
        msg = f"No episodes with ≥ 2 {m.label} scores ended in this selection."
        return [
            empty_panel("monthly_change", titles[0], msg),
            empty_panel("monthly_recovery", titles[1], msg),
        ]
    a, b = frames
    panels = []
    specs = (
        ("monthly_change", titles[0], a, (shown["outcome_n"], now["outcome_clients"])),
        ("monthly_recovery", titles[1], b, (shown["clinical_n"], now["clinical_clients"])),
    )
    for key, title, frame, n_total in specs:
        rates, definition, n_unit, reading = text.monthly_texts(ctx, measure, key)
        safe, long, lines = numbers.monthly_lines(ctx, frame, rates)
        if long["rate"].notna().sum() == 0:
            fewest = protected.min_clients(ctx.policy)
            msg = (
                f"Every month describes fewer than {fewest} clients here, or fewer than that "
                "stand behind its rates' events or non-events, so no monthly rates are shown. "
                "Widen the period or clear a filter."
            )
            panels.append(empty_panel(key, title, msg))
            continue
        fig = figures.monthly_rates(
            long,
            title=title,
            subtitle=subtitle(
                ctx,
                *definition,
                "by month the episode ended · 95% Wilson band",
                n_text=n_text(ctx, n_total[0], n_unit, n_total[1]),  # (episodes, clients)
            ),
        )
        panels.append(
            Panel(
                key=key,
                title=title,
                subtitle="",
                reading=reading + withheld_note(ctx, safe) + noise_note(ctx),
                figure=fig,
                data=numbers.monthly_table(safe.assign(**lines), long),
                withheld=any_withheld(safe) or bool(long["rate"].isna().any()),
            )
        )
    return panels


def _trajectory(ctx: Context, now: dict, shown: dict) -> Panel:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    title = f"{m.label} session by session, by early alliance"
    found = numbers.trajectory(ctx, measure)
    if found is None:
        return empty_panel(
            "trajectory", title, f"No episodes with both an early SRS and ≥ 2 {m.label} scores."
        )
    safe, names, cut_low, cut_high = found
    if safe["mean_score"].notna().sum() == 0:
        fewest = protected.min_clients(ctx.policy)
        return empty_panel(
            "trajectory",
            title,
            f"Each early-alliance third describes fewer than {fewest} clients here, so no "
            "trajectories are shown. Widen the period or clear a filter.",
        )
    max_session = numbers.MAX_SESSION
    fig = figures.trajectory(
        safe,
        title=title,
        subtitle=subtitle(
            ctx,
            f"Mean {m.label} score by session number ({m.direction_text}), 95% CI band",
            f"sessions {max_session}+ pooled",
            text.cohort_text(measure),
            "split into thirds by early SRS (mean of the first 3)",
            # the same episodes as r: >= 2 scores and an early SRS
            n_text=n_text(ctx, shown["r_n"], "episodes", now["r_clients"]),
        ),
        y_label=f"{m.label} score ({m.direction_text})",
        scale=measure,
        cutoff=ctx.settings.clinical_cutoff(measure),
        cutoff_text=f"clinical cutoff ({text.clinical_text(ctx, measure)} = clinical range)",
        max_session=max_session,
    )
    table = safe.drop(columns=["group", "label_low", "label_high", "tercile_clients"]).assign(
        early_srs_third=safe["tercile"].map(names)
    )
    columns = ["early_srs_third", "session", "n_clients", "episodes", "mean_score", "low", "high"]
    return Panel(
        key="trajectory",
        title=title,
        subtitle="",
        reading=text.trajectory_reading(m.higher_is_better)
        + withheld_note(ctx, safe)
        + noise_note(ctx),
        figure=fig,
        data=table[[*columns, "suppressed"]],
        withheld=any_withheld(safe),
        # the cut points as the labels show them (rounded), only where they are shown
        stats={
            name: value
            for name, value, is_shown in (
                ("cut_low", cut_low, "≈" in names[1]),
                ("cut_high", cut_high, "≈" in names[3]),
            )
            if is_shown
        },
    )


def _alliance_bins(ctx: Context, now: dict, shown: dict) -> Panel:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    title = f"Early alliance and {m.label} improvement"
    if now["r_n"] < 4:
        return empty_panel(
            "alliance_outcome",
            title,
            f"Too few episodes with both an early SRS and ≥ 2 {m.label} scores to relate them.",
        )
    r_n = int(shown["r_n"])  # the protected count: neither the text nor the groups give the exact
    safe, bins = numbers.alliance_bins(ctx, measure, r_n)
    r = shown["alliance_outcome_r"]
    ci = shown["alliance_outcome_r_ci"]
    r_withheld = numbers.r_withheld(ctx, now)
    fig = figures.alliance_bins(
        safe,
        title=title,
        subtitle=subtitle(
            ctx,
            f"Mean {m.label} improvement (points, positive = better), 95% CI",
            text.group_word(bins),
            "early SRS = mean of the first 3 SRS totals (0–40)",
            text.cohort_text(measure),
            n_text=n_text(ctx, r_n, "episodes with an early SRS", now["r_clients"]),
        ),
        x_label="Early SRS (mean of the first 3 SRS totals)",
        y_label=f"Mean {m.label} improvement (points)",
        suppressed_label=ctx.policy.label,
        note=None if r is None or r_withheld else text.r_note(r, ci, r_n),
    )
    columns = ["group", "n_clients", "episodes", "mean_early_srs", "mean_improvement", "low"]
    return Panel(
        key="alliance_outcome",
        title=title,
        subtitle="",
        reading=text.ALLIANCE_BINS_READING + withheld_note(ctx, safe) + noise_note(ctx),
        figure=fig,
        data=safe[[*columns, "high", "suppressed"]],
        withheld=any_withheld(safe),
        stats={
            "r": float("nan") if r is None else r,
            "r_low": float("nan") if not ci else ci[0],
            "r_high": float("nan") if not ci else ci[1],
            "r_n": r_n,
            "published_r": PUBLISHED_R,
        },
    )


def build(ctx: Context) -> View:
    measure = ctx.filters.outcome_measure
    row = metrics.summary_row(ctx, measure)
    now = metrics.summary_from_row(row, measure)  # exact: only to judge (threshold, rule)
    n_clients = now["outcome_clients"]
    if n_clients == 0:
        return View(TITLE, QUESTION, notice=text.empty_notice(ctx, now), n_clients=0)
    if privacy.cohort_too_small(n_clients, ctx.policy):
        notice = text.too_small_notice(protected.min_clients(ctx.policy))
        return View(TITLE, QUESTION, notice=notice, n_clients=n_clients)
    shown = metrics.protected_summary(ctx, row, measure)  # what the page shows
    previous = ctx.filters.previous_period()
    trajectory, before, distribution, monthly, alliance_bins = gather(
        lambda: _trajectory(ctx, now, shown),
        lambda: metrics.protected_summary(
            ctx, metrics.summary_row(ctx, measure, previous), measure
        ),
        lambda: _distribution(ctx, now, shown),
        lambda: _monthly(ctx, now, shown),
        lambda: _alliance_bins(ctx, now, shown),
    )
    panels = [distribution, *monthly, trajectory, alliance_bins]
    return View(
        TITLE,
        QUESTION,
        tiles=_tiles(ctx, shown, before),
        panels=panels,
        n_clients=n_clients,
    )
