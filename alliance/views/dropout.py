"""Dropout: who leaves therapy early, and how is that linked to the early alliance?

Panels: the monthly dropout rate as a p-chart with the IHI run-chart rules; dropout by
early-alliance band and quintile (Wilson intervals); the fitted logistic curve of dropout against
the early SRS with its confidence band; Cohen's d by site beside the published d ≈ .55; and when
dropouts leave compared with planned endings. Definitions: ../shared/metrics.md ("Dropout and its
link to alliance"). The numbers: alliance/metrics/dropout.py and dropout_stats.py; the figures:
alliance/charts/dropout.py; the sentences: dropout_text.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance import privacy, protected
from alliance.charts import dropout as figures
from alliance.charts.control import baseline_mask, spc_frame, spc_method_text, spc_note
from alliance.metrics import dropout as metrics
from alliance.metrics.dropout_stats import effect_groups, effect_stats, pool
from alliance.panel import Context, Panel, Tile, View, empty_panel
from alliance.stats import Estimate
from alliance.views import dropout_text as text
from alliance.views.common import (
    CORRELATION_NOTE,
    any_withheld,
    gather,
    mark_all_withheld,
    n_text,
    noise_note,
    subtitle,
    too_small_notice,
    withheld_note,
)

TITLE = text.TITLE
QUESTION = text.QUESTION


def _tiles(
    ctx: Context, s: dict, p: dict, effects: dict[str, Estimate], withheld: bool
) -> list[Tile]:
    rate_withheld = metrics.rate_withheld(ctx, s, p)
    rate_text = ""
    if p["ended"] and not rate_withheld:
        lo, hi = metrics.wilson(ctx, p["dropouts"], p["ended"])
        rate_text = f"95% CI {lo:.1%} to {hi:.1%} · n = {p['ended']:,.0f} ended episodes"
    n_eff = f"n = {p['with_early_srs']:,.0f} ended episodes with an early SRS"

    def effect(key: str, label: str, name: str, help_text: str) -> Tile:
        e = effects[name]
        shown = not withheld and np.isfinite(e.value)
        ci = f"95% CI {e.low:.2f} to {e.high:.2f} · {n_eff}" if shown else ""
        published = (text.PUBLISHED_TEXT,) if name == "d" else ()
        return Tile(
            key=key,
            label=label,
            value=e.value if shown else None,
            fmt=".2f",
            n_text=" · ".join(t for t in (ci, *published) if t),
            help=help_text,
            higher_is_better=None,
            withheld=withheld,
        )

    rate = Tile(
        key="dropout_rate",
        label="Dropout rate",
        value=None if rate_withheld else p["dropout_rate"],
        fmt=".1%",
        n_text=rate_text,
        help=text.RATE_HELP + noise_note(ctx),
        higher_is_better=False,
        withheld=rate_withheld,
    )
    return [rate, *(effect(*spec) for spec in text.EFFECT_TILES)]


def _p_chart(ctx: Context, s: dict, p: dict) -> Panel:
    title = "Dropout rate by month: control chart"
    safe = metrics.monthly(ctx)
    if safe is None:
        return empty_panel("dropout_spc", title, "No episodes ended in this selection.")
    base = baseline_mask(safe["dropout_rate"], ctx.settings.spc_baseline_months)
    if not base.any():
        fewest = protected.min_clients(ctx.policy)
        msg = f"Every month describes fewer than {fewest} clients: widen the selection."
        return empty_panel("dropout_spc", title, msg)
    chart = metrics.control_limits(safe, base)
    frame = spc_frame(safe["month"], chart["p"], chart["centre"], chart["lcl"], chart["ucl"], base)
    shown = ("n_clients", "ended", "dropouts", "suppressed", "suppression")
    frame = frame.assign(**{c: safe[c].to_numpy() for c in shown})
    fig = figures.control_chart(
        frame,
        title=title,
        subtitle=subtitle(
            ctx,
            "Dropouts / ended episodes by month of the last session (p-chart)",
            *spc_method_text(frame, ctx.settings.spc_baseline_months, "with endings"),
            n_text=n_text(ctx, p["ended"] or 0, "ended episodes", s["n_clients"]),
        ),
    )
    reading = spc_note(frame) + " Limits are wider in months with few endings."
    return Panel(
        key="dropout_spc",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fig,
        data=frame,
        withheld=any_withheld(safe),
    )


def _bands_and_quintiles(ctx: Context, s: dict, p: dict) -> tuple[Panel, pd.DataFrame]:
    title = "Dropout by early alliance"
    safe = metrics.bands_and_quintiles(ctx)
    if safe is None:
        return empty_panel("dropout_bands", title, text.NO_EARLY_SRS), pd.DataFrame()
    fig = figures.by_early_alliance(
        safe,
        title=title,
        subtitle=subtitle(
            ctx,
            text.BANDS_DEFINITION,
            text.EARLY_SRS_TEXT,
            n_text=n_text(ctx, p["with_early_srs"] or 0, "ended episodes", s["early_clients"]),
        ),
        overall=metrics.early_rate(ctx, s, p),
        suppressed_label=ctx.policy.label,
    )
    vis = safe[safe["split"] == "Cutoff"].dropna(subset=["dropout_rate"])
    reading = text.bands_reading(vis, protected.min_clients(ctx.policy))
    columns = ["split", "group", "n_clients", "episodes", "dropouts", "dropout_rate", "low"]
    columns += ["high", "mean_early_srs", "suppressed"]
    panel = Panel(
        key="dropout_bands",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fig,
        data=safe[columns],
        withheld=any_withheld(safe),
    )
    return panel, safe[safe["split"] == "Early-SRS quintile"]


def _logistic_curve(
    ctx: Context,
    pooled: pd.DataFrame,
    quintiles: pd.DataFrame,
    withheld: bool,
    n_clients: int,
    p: dict,
) -> Panel:
    title = "Chance of dropout by early alliance: fitted curve"
    if pooled.empty or withheld:
        fewest = protected.min_clients(ctx.policy)
        msg = (
            text.NO_EARLY_SRS
            if pooled.empty
            else f"Dropouts or other endings describe fewer than {fewest} clients here: "
            "the curve is withheld."
        )
        return empty_panel("dropout_curve", title, msg)
    fitted = metrics.fitted_curve(pooled)
    if fitted is None:
        return empty_panel(
            "dropout_curve", title, "The logistic model cannot be fitted here (e.g. no dropouts)."
        )
    curve, lo, hi = fitted
    fig = figures.logistic_curve(
        curve,
        quintiles,
        title=title,
        subtitle=subtitle(
            ctx,
            text.CURVE_DEFINITION,
            text.EARLY_SRS_TEXT,
            n_text=n_text(ctx, p["with_early_srs"] or 0, "ended episodes", n_clients),
        ),
    )
    return Panel(
        key="dropout_curve",
        title=title,
        subtitle="",
        reading=text.curve_reading(curve, lo, hi) + CORRELATION_NOTE + noise_note(ctx),
        figure=fig,
        # every point of the curve comes from the model fitted to all these episodes
        data=curve.rename(columns={"x": "early_srs", "p": "fitted_dropout_chance"}).assign(
            n_clients=p["early_clients"]
        ),
    )


def _effect_by_site(
    ctx: Context,
    groups: pd.DataFrame,
    clients: pd.DataFrame,
    overall: dict[str, Estimate],
    early_clients: int,
    p: dict,
) -> Panel:
    title = "How much lower was the early alliance of dropouts? Cohen's d"
    if groups.empty:
        return empty_panel("dropout_d", title, text.NO_EARLY_SRS)
    safe, released = metrics.effect_by_site(ctx, groups, clients, overall, early_clients)
    fig = figures.effect_by_site(
        safe,
        title=title,
        subtitle=subtitle(
            ctx,
            text.D_DEFINITION,
            "dotted line: " + text.PUBLISHED_TEXT,
            n_text=n_text(ctx, p["with_early_srs"] or 0, "ended episodes", early_clients),
        ),
        reference=text.PUBLISHED_D,
        reference_label="published .55",
        suppressed_label=ctx.policy.label,
    )
    d = overall["d"]
    clinic_released = bool(released[0])  # the clinic row comes first
    shown = np.isfinite(d.value) and clinic_released and not bool(safe["suppressed"].iloc[0])
    reading = text.d_reading(d, shown) + text.D_READING
    return Panel(
        key="dropout_d",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fig,
        data=safe[["group", "n_clients", "episodes", "d", "low", "high", "suppressed"]],
        withheld=any_withheld(safe),
        # the clinic's d only where it is released (as on the tiles)
        stats={"alliance_dropout_d": d.value} if clinic_released else {},
    )


def _when_they_leave(ctx: Context, s: dict, p: dict) -> Panel:
    title = "When do clients leave? Share of endings by each session"
    safe = metrics.last_sessions(ctx, p)
    if safe is None:
        return empty_panel("dropout_when", title, "No dropout or planned ending in this selection.")
    # the pooled last bin always completes 100%: the curve stops at the last single session
    plot = safe[safe["bin_order"] < metrics.LAST_SESSION]
    totals = (
        (p["dropouts"] or 0, "dropouts", s["dropout_clients"]),
        (p["planned"] or 0, "planned endings", s["planned_clients"]),
    )
    fig = figures.when_they_leave(
        plot,
        title=title,
        subtitle=subtitle(
            ctx,
            text.WHEN_DEFINITION,
            "'other' endings not shown",
            n_text=", ".join(
                n_text(ctx, count, unit, clients)
                if metrics.total_shown(ctx, count, clients)
                # which total is withheld is said with the label
                else f"{unit}: {ctx.policy.label} clients"
                for count, unit, clients in totals
            ),
        ),
        mark_withheld=(
            (lambda fig: mark_all_withheld(fig, ctx, "line's first session"))
            if plot["ended_by"].isna().all()
            else None
        ),
    )
    at4 = plot[plot["bin_order"] == 4].set_index("ending")["ended_by"]
    reading = text.when_reading(
        at4, s, metrics.medians_released(ctx, s), bool(plot["ended_by"].isna().any())
    )
    columns = ["ending", "last_session", "n_clients", "episodes", "share", "ended_by"]
    return Panel(
        key="dropout_when",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fig,
        data=safe[[*columns, "suppressed"]],
        withheld=any_withheld(safe),
    )


def build(ctx: Context) -> View:
    s = metrics.summary(ctx)
    if s["n_clients"] == 0:
        return View(TITLE, QUESTION, notice=text.NO_ENDINGS)
    if privacy.cohort_too_small(s["n_clients"], ctx.policy):
        return View(
            TITLE, QUESTION, notice=too_small_notice(ctx, s["n_clients"]), n_clients=s["n_clients"]
        )
    p = metrics.protected_summary(ctx, s)
    groups, clients, (bands, quintiles), p_chart, when = gather(
        lambda: metrics.early_srs_groups(ctx),
        lambda: effect_groups(ctx),
        lambda: _bands_and_quintiles(ctx, s, p),
        lambda: _p_chart(ctx, s, p),
        lambda: _when_they_leave(ctx, s, p),
    )
    pooled = pool(groups)
    effects = effect_stats(pooled)
    withheld = metrics.effects_withheld(ctx, s)
    panels = [
        p_chart,
        bands,
        _logistic_curve(ctx, pooled, quintiles, withheld, s["early_clients"], p),
        _effect_by_site(ctx, groups, clients, effects, s["early_clients"], p),
        when,
    ]
    return View(
        TITLE,
        QUESTION,
        tiles=_tiles(ctx, s, p, effects, withheld),
        panels=panels,
        n_clients=s["n_clients"],
    )
