"""Ruptures & repair: how often the alliance breaks down, how often it is repaired, what follows.

Rupture rate = ruptures per 100 SRS administrations that have a previous SRS in the episode;
repair rate = repaired / ruptures whose fate is known (metrics.md "Rupture" and "Repair"). A
rupture belongs to the month, site and therapist of the session where it happened; its window is
followed past the end of the period. All counting is done in SQL (queries/rupture_*.sql); the
numbers are alliance.metrics.ruptures and ruptures_panels, the charts alliance.charts.ruptures
and dimension_grids, the sentences alliance.views.ruptures_text.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from alliance import charts, privacy
from alliance.charts.dimension_grids import funnel_grid
from alliance.charts.ruptures import funnel_item, group_bars, item_drops, rate_chart
from alliance.metrics import ruptures_after as after
from alliance.metrics import ruptures_panels as mp
from alliance.metrics.dimensions import LABELS
from alliance.metrics.ruptures import (
    SECTION_UNITS,
    protected_summary,
    rupture_counts,
    rupture_table,
    tile_figures,
)
from alliance.panel import Context, Panel, Tile, View, empty_panel, with_delta_rule
from alliance.views import ruptures_text as text
from alliance.views.common import (
    any_withheld,
    chosen_sections,
    gather,
    n_text,
    subtitle,
    too_small_notice,
)

TITLE = "Ruptures & repair"
QUESTION = (
    "How often does the alliance break down between sessions, how often is it repaired, and "
    "what follows a repaired or an unrepaired rupture?"
)
# The page shows one section at a time (a filter change builds only the section in view); a
# report builds them all (the units each needs: metrics.ruptures.SECTION_UNITS).
SECTIONS = {
    "time": "Over time",
    "units": "Sites and therapists",
    "after": "What drops, what follows",
}
FOLLOWUP = "What follows a rupture"


def _tiles(ctx: Context, now: dict, before: dict) -> list[Tile]:
    """The four tiles from protected figures (`protected_summary` of the period and of the
    previous one)."""
    t = tile_figures(ctx, now, before)
    rate_ok, repair_ok, withheld = t["rate_ok"], t["repair_ok"], t["withheld"]
    rule = " " + with_delta_rule("")
    ci = now["repair_rate_ci"]
    ci_text = f"95% CI {ci[0]:.0%}–{ci[1]:.0%} · " if ci else ""
    unrepaired_ok = repair_ok and not withheld["unrepaired"]
    open_ok = rate_ok and not withheld["open"]
    return [
        Tile(
            key="rupture_rate",
            label="Ruptures per 100 SRS",
            value=now["rupture_rate_per_100"] if rate_ok else None,
            fmt=".1f",
            n_text=f"n = {now['with_previous']:,} SRS with a previous SRS" if rate_ok else "",
            help=text.rate_help(ctx, rule),
            delta=t["rate_delta"],
            delta_significant=t["rate_significant"],
            delta_fmt="+.1f",
            higher_is_better=False,
            withheld=bool(withheld["rate"]),
        ),
        Tile(
            key="repair_rate",
            label="Repair rate",
            value=now["repair_rate"] if repair_ok else None,
            fmt=".0%",
            n_text=(
                f"{ci_text}n = {now['fate_known']:,} ruptures with a known fate"
                if repair_ok
                else ""
            ),
            help=text.repair_help(ctx, rule),
            delta=t["repair_delta"],
            delta_significant=t["repair_significant"],
            delta_fmt="+.1%",
            higher_is_better=True,
            withheld=bool(withheld["repair"]),
        ),
        Tile(
            key="unrepaired",
            label="Unrepaired ruptures",
            value=float(now["unrepaired"]) if unrepaired_ok else None,
            fmt=",.0f",
            n_text=f"of {now['ruptures']:,} ruptures" if unrepaired_ok else "",
            help=text.unrepaired_help(ctx),
            delta=None,
            higher_is_better=False,
            withheld=bool(withheld["unrepaired"]),
        ),
        Tile(
            key="open",
            label="Still open",
            value=float(now["open"]) if open_ok else None,
            fmt=",.0f",
            n_text="not yet counted in the repair rate" if open_ok else "",
            help=text.open_help(ctx),
            delta=None,
            higher_is_better=None,
            withheld=bool(withheld["open"]),
        ),
    ]


def _monthly(
    ctx: Context,
    monthly: pd.DataFrame,
    which: str,
    now: dict,
    clients: mp.MonthClients | None = None,
) -> Panel:
    """A p-chart of the rupture or repair rate by month (metrics.ruptures_panels.monthly_chart:
    the privacy step first, then the centre line, limits and rules from the shown months)."""
    rupture = which == "rupture"
    key = "rupture_monthly" if rupture else "repair_monthly"
    title = "Rupture rate by month" if rupture else "Repair rate by month"
    events, n, _ = mp.RATE_PARTS[which]
    got = mp.monthly_chart(ctx, monthly, which, clients)
    if got is None:
        what = (
            "SRS administrations with a previous SRS" if rupture else "ruptures with a known fate"
        )
        return empty_panel(key, title, f"No {what} in this selection.")
    safe, run_chart = got["safe"], got["run_chart"]
    total = int(now[n])  # the period's protected total
    fig = rate_chart(
        safe,
        title=title,
        subtitle=subtitle(
            ctx,
            text.monthly_measure(ctx, rupture, got),
            text.definition_text(ctx),
            n_text=(
                n_text(ctx, total, "SRS with a previous SRS", now["exact_n_clients"])
                if rupture
                else n_text(ctx, total, "ruptures with a known fate", now["exact_fate_clients"])
            ),
        ),
        y_label="Ruptures per 100 SRS" if rupture else "Repair rate",
        value_format="num1" if rupture else "pct",
        baseline_end=got["baseline_end"],
        scale="per100" if rupture else "rate",
        centre_label="mean of the period" if run_chart else "centre line (baseline)",
    )
    table = safe.assign(month=safe["month"].dt.strftime("%Y-%m"))[
        ["month", "n_clients", events, n, "value", "centre", "lcl", "ucl", "suppressed"]
    ].rename(columns={"value": "rate_per_100" if rupture else "repair_rate"})
    reading = text.monthly_reading(ctx, rupture, got)
    return Panel(
        key, title, "", reading, fig, table, withheld=any_withheld(safe), section="Over time"
    )


def _funnels(ctx: Context, units: pd.DataFrame, clinic: dict, *, level: str) -> Panel:
    """Rupture rate and repair rate by site or therapist: two funnel plots side by side."""
    noun = "therapist" if level == "therapist" else "site"
    key, title = f"funnel_{level}", f"Rupture and repair rates by {noun}"
    names = mp.unit_names(ctx, units, level)
    parts, reasons = [], []
    for which in ("rupture", "repair"):
        part, why = mp.funnel_part(ctx, units, clinic, names, which)
        if part is None:
            reasons.append(text.funnel_reason(ctx, which, why))
        else:
            pts, lim, target, table, safe, info = part
            parts.append((funnel_item(which, pts, lim, target), table, safe, info))
    if not parts:
        message = f"No funnel by {noun}: " + "; ".join(reasons) + "."
        return empty_panel(key, title, message, section=f"By {noun}")
    n_shown = pd.concat([p[0]["points"]["unit"] for p in parts]).nunique()
    od = text.overdispersion_text({p[3]["method_used"] for p in parts})
    fig = funnel_grid(
        [p[0] for p in parts],
        title=title,
        subtitle_text=subtitle(
            ctx,
            "Ruptures per 100 SRS with a previous SRS; repaired / ruptures with a known fate",
            text.definition_text(ctx),
            f"95% and 99.8% limits around the clinic-wide value; {od}",
            n_text=f"{n_shown} {noun}s shown",
        ),
    )
    table = pd.concat([p[1] for p in parts], ignore_index=True)
    table = table[["measure", "unit", "n_clients", "events", "n", "value", "flag", "suppressed"]]
    table = table.rename(
        columns={"unit": noun, "events": "events (ruptures / repaired)", "n": "out of"}
    )
    safe_all = pd.concat([p[2] for p in parts], ignore_index=True)
    reading = text.funnel_reading(ctx, noun, table, reasons, safe_all)
    withheld = any_withheld(safe_all)
    return Panel(key, title, "", reading, fig, table, withheld=withheld, section=f"By {noun}")


def _followup(ctx: Context) -> list[Panel]:
    got = after.followup_rows(ctx)
    m = got["measure"]
    t_drop, t_imp = "Dropout after a rupture", f"{m.label} improvement after a rupture"
    if got["df"].empty:
        msg = "No ended episodes with at least two SRS ratings in this selection."
        return [
            empty_panel("followup_dropout", t_drop, msg),
            empty_panel("followup_outcome", t_imp, msg),
        ]
    df, safe = got["df"], got["safe"]
    definition = text.definition_text(ctx)
    fig = group_bars(
        safe,
        x="group",
        y="dropout_rate",
        low="low",
        high="high",
        title=t_drop,
        subtitle=subtitle(
            ctx,
            text.DROPOUT_MEASURE,
            definition,
            # the groups' clients: at least the largest group's
            n_text=n_text(ctx, got["total"], "ended episodes", int(df["n_clients"].max())),
        ),
        x_label="Episode's ruptures",
        y_label="Dropout rate",
        value_format="pct",
        suppressed_label=ctx.policy.label,
    )
    cols = ["group", "n_clients", "episodes", "dropouts", "dropout_rate", "low", "high"]
    cols += ["mean_sessions", "mean_ruptures", "suppressed"]
    p_drop = Panel(
        "followup_dropout",
        t_drop,
        "",
        text.dropout_reading(ctx, got["stats"], safe),
        fig,
        safe[cols],
        withheld=any_withheld(safe),
        section=FOLLOWUP,
        stats=got["stats"],
    )
    if "safe_i" not in got:
        message = f"No ended episodes with two or more {m.label} scores in this selection."
        return [p_drop, empty_panel("followup_outcome", t_imp, message)]
    imp, safe_i = got["imp"], got["safe_i"]
    fig_i = group_bars(
        safe_i,
        x="group",
        y="mean_improvement",
        low="low",
        high="high",
        title=t_imp,
        subtitle=subtitle(
            ctx,
            text.improvement_measure(m),
            definition,
            n_text=n_text(ctx, got["imp_total"], "ended episodes", int(imp["n_clients"].max())),
        ),
        x_label="Episode's ruptures",
        y_label=f"{m.label} improvement (points)",
        value_format="num1",
        colour=charts.GREEN,
        suppressed_label=ctx.policy.label,
    )
    reading = text.improvement_reading(ctx, safe_i)
    withheld = any_withheld(safe_i)
    p_imp = Panel(
        "followup_outcome", t_imp, "", reading, fig_i, safe_i, withheld=withheld, section=FOLLOWUP
    )
    return [p_drop, p_imp]


def _items(ctx: Context) -> Panel:
    key, title = "rupture_items", "Which part of the alliance drops at a rupture"
    got = after.item_rows(ctx)
    if got is None:
        return empty_panel(
            key,
            title,
            "No ruptures with SRS item scores in this selection: item-level drops need the four "
            "SRS items at the rupture and the SRS before it (recorded at some sites only).",
            section="What drops",
        )
    df, safe = got["df"], got["safe"]
    fig = item_drops(
        safe.assign(label=text.item_labels(safe)),
        category="label",
        value="mean_drop",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            text.ITEMS_MEASURE,
            text.definition_text(ctx),
            n_text=n_text(ctx, got["ruptures"], "ruptures", int(df["n_clients"].max())),
        ),
        x_label="Mean item drop at a rupture (points)",
        value_format="num2",
        suppressed_label=ctx.policy.label,
    )
    cols = ["dimension", "n_clients", "ruptures", "mean_drop", "low", "high", "largest"]
    cols += ["largest_share", "suppressed"]
    table = safe.assign(dimension=safe["dimension"].map(LABELS))[cols]
    reading = text.items_reading(ctx, safe)
    withheld = any_withheld(safe)
    return Panel(key, title, "", reading, fig, table, withheld=withheld, section="What drops")


def sections(ctx: Context) -> dict[str, str]:
    """The page's sections (all of them for every role: without therapist-level access the
    therapist funnel says it is not available)."""
    return dict(SECTIONS)


def build(ctx: Context, section: str | None = None) -> View:
    """The page's view: the tiles and one section's panels, or with section=None every
    section's (a report)."""
    chosen = chosen_sections(SECTIONS, section)
    groupings = [
        g for s in chosen for g in SECTION_UNITS[s] if g != "therapist" or ctx.therapist_level
    ]
    parts = [
        lambda: rupture_table(ctx, groupings=groupings),
        lambda: rupture_table(ctx, ctx.filters.previous_period(), groupings=()),
    ]
    if "after" in chosen:
        # the follow-up and item panels need nothing from the main table: they are built while
        # its query runs (and dropped unseen when the selection turns out too small to show)
        parts += [lambda: _followup(ctx), lambda: _items(ctx)]
    table, table_before, *built = gather(*parts)
    # what the page shows: the protected clinic rows (the exact client counts only judge)
    now = protected_summary(ctx, table)
    before = protected_summary(ctx, table_before)
    n_clients = now["exact_n_clients"]
    if n_clients == 0:
        return View(
            TITLE,
            QUESTION,
            notice=(
                "No SRS ratings with a previous SRS in the same episode in this selection, so "
                "no ruptures can be counted. Widen the period or clear a filter."
            ),
        )
    if privacy.cohort_too_small(n_clients, ctx.policy):
        return View(TITLE, QUESTION, notice=too_small_notice(ctx, n_clients), n_clients=n_clients)
    panels: list[Panel] = []
    if "time" in chosen:
        monthly = rupture_counts(ctx, "month", table=table)
        # one query for both charts, only if a month is withheld
        month_clients = mp.MonthClients(ctx)
        panels += _in(
            "time",
            [
                _monthly(ctx, monthly, "rupture", now, month_clients),
                _monthly(ctx, monthly, "repair", now, month_clients),
            ],
        )
    if "units" in chosen:
        sites = rupture_counts(ctx, "site", table=table)
        if ctx.therapist_level:
            by_ther = rupture_counts(ctx, "therapist", table=table)
            ther = _funnels(ctx, by_ther, now, level="therapist")
        else:
            ther = empty_panel(
                "funnel_therapist",
                "Ruptures and repair by therapist",
                "Therapist-level comparisons are not available for your role.",
            )
        panels += _in("units", [_funnels(ctx, sites, now, level="site"), ther])
    if built:
        followup, items = built
        panels += _in("after", [*followup, items])
    return View(TITLE, QUESTION, tiles=_tiles(ctx, now, before), panels=panels, n_clients=n_clients)


def _in(section: str, panels: list[Panel]) -> list[Panel]:
    """The panels, labelled with their section."""
    return [dataclasses.replace(p, section=SECTIONS[section]) for p in panels]
