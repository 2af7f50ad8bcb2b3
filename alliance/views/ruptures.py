"""Ruptures & repair: how often the alliance breaks down, how often it is repaired, what follows.

Definitions (metrics.md "Rupture" and "Repair", settings rupture_threshold and repair_window):
a rupture is an SRS total at least `rupture_threshold` points below the same episode's previous
SRS; it is repaired when one of the next `repair_window` SRS administrations of the episode is at
or above that previous SRS; unrepaired when the window passes, or the episode ends, without one;
still open otherwise, and open ruptures are left out of the repair rate. Rupture rate = ruptures
per 100 SRS administrations that have a previous SRS in the episode. A rupture belongs to the
month, site and therapist of the session where it happened; its window is followed past the end
of the period. All counting is done in SQL (queries/rupture_*.sql).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from alliance import charts, noise, privacy, protected, queries
from alliance.charts import figure_edit
from alliance.charts.dimensions import LABELS, fit_layout, funnel_grid
from alliance.filters import Filters, add_months
from alliance.panel import (
    Context,
    Panel,
    Tile,
    View,
    beyond_chance,
    delta_interval,
    empty_panel,
    with_delta_rule,
)
from alliance.settings import MEASURES
from alliance.spc import MIN_JUDGED, funnel, judged_rules, p_chart, separate_baseline
from alliance.stats import risk_difference, wilson_interval
from alliance.views.common import (
    CORRELATION_NOTE,
    SMALL_N_NOTE,
    any_withheld,
    chart_text,
    chosen_sections,
    gather,
    n_text,
    noise_note,
    protect,
    protect_counts,
    subtitle,
    too_small_notice,
    withheld_note,
)
from alliance.views.profile import SRS_ITEMS, therapist_labels

TITLE = "Ruptures & repair"
QUESTION = (
    "How often does the alliance break down between sessions, how often is it repaired, and "
    "what follows a repaired or an unrepaired rupture?"
)
UNITS = ("month", "site", "therapist")
# The page shows one section at a time (a filter change builds only the section in view); a
# report builds them all. Each section's label, and the units its rupture counts need.
SECTIONS = {
    "time": "Over time",
    "units": "Sites and therapists",
    "after": "What drops, what follows",
}
SECTION_UNITS = {"time": ("month",), "units": ("site", "therapist"), "after": ()}
GROUP_LABELS = {
    "none": "No rupture",
    "repaired": "Ruptures, all repaired",
    "unrepaired": "At least one unrepaired",
}
RATE_COLS = [
    "administrations",
    "with_previous",
    "ruptures",
    "repaired",
    "unrepaired",
    "open",
    "fate_known",
    "fate_clients",
    "rupture_rate",
    "repair_rate",
]
# The protected-statistics step (alliance/protected.py): the counts of queries/rupture_rates.sql
# that carry a cell key, its two rates, and the client counts whose keys are derived from a
# count of the same records (noise.derived_key: no query sums distinct keys).
KEY = protected.KEY_SUFFIX
RATE_COUNTS = [
    "administrations",
    "with_previous",
    "ruptures",
    "repaired",
    "unrepaired",
    "open",
    "fate_known",
]
CLIENT_KEYS = {"n_clients": "with_previous", "fate_clients": "fate_known"}
RUPTURE_RATE = protected.Rate("rupture_rate", "ruptures", "with_previous")
REPAIR_RATE = protected.Rate("repair_rate", "repaired", "fate_known")
# record ranges of the protected means (alliance/noise.py: the sum noise is a share of one
# record's range): an SRS item's drop (twice the item's 0-10 range), an episode's attended
# sessions and its ruptures (the demo clinic's longest episodes have about 50 sessions)
ITEM_DROP_RANGE = 20.0
SESSIONS_RANGE = 50.0


# --------------------------------------------------------------------------- definitions


def rupture_params(ctx: Context) -> dict[str, object]:
    return {
        "rupture_threshold": float(ctx.settings.rupture_threshold),
        "repair_window": int(ctx.settings.repair_window),
    }


def definition_text(ctx: Context) -> str:
    """The settings in force, printed on every chart that uses them."""
    s = ctx.settings
    n = int(s.repair_window)
    return (
        f"rupture = SRS total ≥ {s.rupture_threshold:g} points below the episode's previous SRS; "
        f"repaired = back at or above that SRS within the next {n} SRS administration"
        f"{'s' if n != 1 else ''}"
    )


# --------------------------------------------------------------------------- data


def rupture_table(
    ctx: Context, filters: Filters | None = None, *, groupings: Iterable[str] = UNITS
) -> pd.DataFrame:
    """Rupture and repair counts for the clinic and per month, site and therapist (those of
    `groupings`; () = the clinic row only), in one query.

    Unsuppressed: pass what you show through `protect`. Columns as in
    queries/rupture_rates.sql (grouping, unit, n_clients, administrations, with_previous,
    ruptures, repaired, unrepaired, open, fate_known, fate_clients, rupture_rate, repair_rate).
    """
    chosen = list(groupings)
    unknown = set(chosen) - set(UNITS)
    if unknown:
        raise ValueError(f"unknown groupings {sorted(unknown)}")
    return queries.run(
        ctx.con, "rupture_rates", **ctx.params(filters), **rupture_params(ctx), groupings=chosen
    )


def rupture_counts(
    ctx: Context,
    group_by: str = "clinic",
    filters: Filters | None = None,
    *,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The rows of one unit ('clinic', 'month', 'site', 'therapist') of `rupture_table`."""
    if group_by not in ("clinic", "month", "site", "therapist"):
        raise ValueError(f"unknown unit {group_by!r}")
    if table is None:
        table = rupture_table(ctx, filters, groupings=() if group_by == "clinic" else (group_by,))
    part = table[table["grouping"] == group_by].drop(columns="grouping")
    return part.reset_index(drop=True)


def rupture_summary(
    ctx: Context, filters: Filters | None = None, *, table: pd.DataFrame | None = None
) -> dict[str, object]:
    """The headline rupture and repair figures, exactly as metrics.md defines them.

    Keys: rupture_rate_per_100 (ruptures per 100 SRS administrations that have a previous SRS
    in the episode), repair_rate (repaired / (repaired + unrepaired), open ruptures left out),
    repair_rate_ci (Wilson 95%, [low, high]), ruptures, repaired, unrepaired, open,
    with_previous, n_clients (clients the rupture rate describes), fate_clients (clients the
    repair rate describes), rupture_threshold, repair_window. Rates are None when their
    denominator is 0. Unsuppressed: a caller that shows them applies the privacy rule with the
    two client counts.
    """
    df = rupture_counts(ctx, "clinic", filters, table=table)
    row = df.iloc[0] if len(df) else None

    def count(col: str) -> int:
        return 0 if row is None or pd.isna(row[col]) else int(row[col])

    with_prev, ruptures = count("with_previous"), count("ruptures")
    repaired, unrepaired = count("repaired"), count("unrepaired")
    known = repaired + unrepaired
    ci = None
    if known:
        low, high = wilson_interval(repaired, known)
        ci = [float(low[0]), float(high[0])]
    return {
        "rupture_rate_per_100": 100.0 * ruptures / with_prev if with_prev else None,
        "repair_rate": repaired / known if known else None,
        "repair_rate_ci": ci,
        "ruptures": ruptures,
        "repaired": repaired,
        "unrepaired": unrepaired,
        "open": count("open"),
        "with_previous": with_prev,
        "n_clients": count("n_clients"),
        "fate_clients": count("fate_clients"),
        "rupture_threshold": float(ctx.settings.rupture_threshold),
        "repair_window": int(ctx.settings.repair_window),
    }


def with_client_keys(df: pd.DataFrame) -> pd.DataFrame:
    """rupture_table rows with the cell keys of their two client counts, derived from the key of
    the count of the same records (n_clients from with_previous, fate_clients from fate_known)."""
    return df.assign(
        **{
            f"{c}{KEY}": noise.derived_key(df[f"{src}{KEY}"].to_numpy(dtype="float64"), c)
            for c, src in CLIENT_KEYS.items()
        }
    )


def perturbed_rows(ctx: Context, df: pd.DataFrame) -> pd.DataFrame:
    """rupture_table rows as they may be shown: every count (the two client counts too) with its
    cell's noise (never below k), the two rates from the protected counts, the numerator rule
    judged on the exact counts (``rupture_rule``, ``repair_rule``: True = that rate is
    withheld), and the exact client counts kept, for judging only, as ``exact_n_clients`` and
    ``exact_fate_clients``. No key column."""
    k = ctx.policy.k
    raw = with_client_keys(df)
    shown = protected.perturb(
        raw,
        params=ctx.noise,
        counts=[*RATE_COUNTS, *CLIENT_KEYS],
        rates=[RUPTURE_RATE, REPAIR_RATE],
        floor=k,
    )
    shown = shown.assign(
        rupture_rule=protected.numerator_rule(raw, [RUPTURE_RATE], k),
        repair_rule=protected.numerator_rule(raw, [REPAIR_RATE], k),
        exact_n_clients=df["n_clients"].to_numpy(),
        exact_fate_clients=df["fate_clients"].to_numpy(),
    )
    return shown.drop(columns=protected.key_columns(shown))


def protected_summary(ctx: Context, table: pd.DataFrame) -> dict[str, object]:
    """The clinic row of a rupture_table as the page may show it (``perturbed_rows``): counts
    protected, rupture_rate_per_100 and repair_rate from protected counts (None when their
    denominator is 0 or the numerator rule withholds them), repair_rate_ci from protected counts
    (widened for the noise); exact_n_clients, exact_fate_clients, exact_unrepaired and
    exact_open only to judge the threshold (never shown).
    """
    df = rupture_counts(ctx, "clinic", table=table)
    if df.empty:
        zero = dict.fromkeys([*RATE_COUNTS, *CLIENT_KEYS], 0)
        return {
            **zero,
            "exact_n_clients": 0,
            "exact_fate_clients": 0,
            "exact_unrepaired": 0,
            "exact_open": 0,
            "rupture_rate_per_100": None,
            "repair_rate": None,
            "repair_rate_ci": None,
            "rupture_rule": False,
            "repair_rule": False,
        }
    row = perturbed_rows(ctx, df).iloc[0]
    out: dict[str, object] = {c: int(row[c]) for c in [*RATE_COUNTS, *CLIENT_KEYS]}
    out.update(
        exact_n_clients=int(row["exact_n_clients"]),
        exact_fate_clients=int(row["exact_fate_clients"]),
        exact_unrepaired=int(df["unrepaired"].iloc[0]),
        exact_open=int(df["open"].iloc[0]),
        rupture_rule=bool(row["rupture_rule"]),
        repair_rule=bool(row["repair_rule"]),
    )
    rate_ok = out["with_previous"] > 0 and not out["rupture_rule"]
    repair_ok = out["fate_known"] > 0 and not out["repair_rule"]
    out["rupture_rate_per_100"] = 100.0 * float(row["rupture_rate"]) if rate_ok else None
    out["repair_rate"] = float(row["repair_rate"]) if repair_ok else None
    ci = None
    if repair_ok:
        low, high = protected.wilson(
            pd.Series([out["repaired"]]), pd.Series([out["fate_known"]]), ctx.noise
        )
        ci = [float(low[0]), float(high[0])]
    out["repair_rate_ci"] = ci
    return out


# --------------------------------------------------------------------------- tiles


def _tiles(ctx: Context, now: dict, before: dict) -> list[Tile]:
    """The four tiles from protected figures (`protected_summary` of the period and of the
    previous one); the exact client counts only judge the threshold."""
    k = ctx.policy.k
    rate_ok = now["exact_n_clients"] >= k and now["rupture_rate_per_100"] is not None
    repair_ok = now["exact_fate_clients"] >= k and now["repair_rate"] is not None
    prev_rate_ok = before["exact_n_clients"] >= k
    prev_repair_ok = before["exact_fate_clients"] >= k
    # a count of ruptures describes at most that many clients: the unrepaired and open counts
    # are withheld below k like any other small count (judged on the exact counts)
    unrepaired_clients = min(
        now["exact_fate_clients"], now["exact_unrepaired"] or now["exact_fate_clients"]
    )
    open_clients = min(now["exact_n_clients"], now["exact_open"] or now["exact_n_clients"])
    raw = pd.DataFrame(
        {
            "key": ["rate", "repair", "unrepaired", "open"],
            "n_clients": [
                now["exact_n_clients"],
                now["exact_fate_clients"],
                unrepaired_clients,
                open_clients,
            ],
        }
    )
    safe = protect(ctx, raw, value_cols=[], complementary=False)
    withheld = dict(zip(safe["key"], safe["suppressed"], strict=True))
    # the numerator rule: a rate with 1 .. k-1 events or non-events is withheld
    withheld["rate"] = bool(withheld["rate"]) or (
        now["exact_n_clients"] > 0 and now["rupture_rule"]
    )
    withheld["repair"] = bool(withheld["repair"]) or (
        now["exact_fate_clients"] > 0 and now["repair_rule"]
    )

    def delta(key: str, ok: bool) -> float | None:
        a, b = now[key], before[key]
        return None if a is None or b is None or not ok else a - b

    def significant(key: str, n_key: str, per: float, ok: bool) -> bool | None:
        """Beyond chance: the 95% interval of the difference of the two periods' rates
        (protected counts, the noise's variance added) excludes zero."""
        if delta(key, ok) is None:
            return None
        return beyond_chance(
            delta_interval(
                "rate",
                (now[key] / per, now[n_key]),
                (before[key] / per, before[n_key]),
                ctx.noise,
            )
        )

    rate_sig = significant("rupture_rate_per_100", "with_previous", 100.0, prev_rate_ok and rate_ok)
    repair_sig = significant("repair_rate", "fate_known", 1.0, prev_repair_ok and repair_ok)
    rule = " " + with_delta_rule("")

    ci = now["repair_rate_ci"]
    ci_text = f"95% CI {ci[0]:.0%}–{ci[1]:.0%} · " if ci else ""
    return [
        Tile(
            key="rupture_rate",
            label="Ruptures per 100 SRS",
            value=now["rupture_rate_per_100"] if rate_ok else None,
            fmt=".1f",
            n_text=f"n = {now['with_previous']:,} SRS with a previous SRS" if rate_ok else "",
            help=(
                "Ruptures per 100 SRS administrations that have a previous SRS in the episode; "
                f"{definition_text(ctx)}. Clients report tensions in 19–42% of sessions "
                "(Eubanks, Muran & Safran 2018)." + noise_note(ctx) + rule
            ),
            delta=delta("rupture_rate_per_100", prev_rate_ok and rate_ok),
            delta_significant=rate_sig,
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
            help=(
                "Repaired / (repaired + unrepaired) ruptures; ruptures still inside their "
                f"window are left out. {definition_text(ctx)}." + noise_note(ctx) + rule
            ),
            delta=delta("repair_rate", prev_repair_ok and repair_ok),
            delta_significant=repair_sig,
            delta_fmt="+.1%",
            higher_is_better=True,
            withheld=bool(withheld["repair"]),
        ),
        Tile(
            key="unrepaired",
            label="Unrepaired ruptures",
            value=float(now["unrepaired"]) if repair_ok and not withheld["unrepaired"] else None,
            fmt=",.0f",
            n_text=f"of {now['ruptures']:,} ruptures"
            if repair_ok and not withheld["unrepaired"]
            else "",
            help=(
                "Ruptures whose repair window passed, or whose episode ended, without an SRS "
                "back at the level before the rupture." + noise_note(ctx)
            ),
            delta=None,
            higher_is_better=False,
            withheld=bool(withheld["unrepaired"]),
        ),
        Tile(
            key="open",
            label="Still open",
            value=float(now["open"]) if rate_ok and not withheld["open"] else None,
            fmt=",.0f",
            n_text="not yet counted in the repair rate" if rate_ok and not withheld["open"] else "",
            help=(
                "Ruptures in ongoing episodes whose repair window has not passed yet; they join "
                "the repair rate once their fate is known." + noise_note(ctx)
            ),
            delta=None,
            higher_is_better=None,
            withheld=bool(withheld["open"]),
        ),
    ]


# --------------------------------------------------------------------------- panels


def _baseline(months: pd.Series, ctx: Context) -> np.ndarray:
    m = pd.to_datetime(months).dt.date
    first = ctx.filters.first_month
    end = add_months(first, int(ctx.settings.spc_baseline_months))
    return (m < end).to_numpy()


class MonthClients:
    """The distinct clients behind each month of the monthly charts (client ids, never shown),
    fetched once and only when a month is withheld: the complementary rule judges the withheld
    months by the distinct clients of their union (a client is seen in several months), not by
    the sum of their counts (queries/rupture_month_clients.sql)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._table: pd.DataFrame | None = None

    def table(self) -> pd.DataFrame:
        if self._table is None:
            df = queries.run(
                self._ctx.con,
                "rupture_month_clients",
                **self._ctx.params(),
                **rupture_params(self._ctx),
            )
            self._table = df.set_index("month")
        return self._table

    def ids(self, which: str) -> Callable[[pd.DataFrame], list[object]]:
        """For privacy.suppress(clients_col=...): the ids of each row's month ("unit")."""
        col = "previous_clients" if which == "rupture" else "fate_clients"

        def of(frame: pd.DataFrame) -> list[object]:
            by_month = self.table()[col]
            return [by_month.get(u, []) for u in frame["unit"]]

        return of


def _monthly(
    ctx: Context,
    monthly: pd.DataFrame,
    which: str,
    now: dict,
    clients: MonthClients | None = None,
) -> Panel:
    """A p-chart of the rupture or repair rate by month.

    The privacy step comes first: the months to withhold (primary, and complementary judged by
    the distinct clients of the withheld months together). The chart's centre line, limits and
    run-chart rules are then formed from the shown months only: a withheld month has no centre,
    no limits (they would solve back to its denominator) and no flags, and is not part of the
    baseline (whose centre line would otherwise carry its counts).
    """
    rupture = which == "rupture"
    key = "rupture_monthly" if rupture else "repair_monthly"
    title = "Rupture rate by month" if rupture else "Repair rate by month"
    events, n, n_clients = (
        ("ruptures", "with_previous", "n_clients")
        if rupture
        else ("repaired", "fate_known", "fate_clients")
    )
    df = monthly[monthly[n] > 0]
    if df.empty:
        what = (
            "SRS administrations with a previous SRS" if rupture else "ruptures with a known fate"
        )
        return empty_panel(key, title, f"No {what} in this selection.")
    df = with_client_keys(df.assign(month=pd.to_datetime(df["unit"])))
    counts = pd.DataFrame(
        {
            "month": df["month"].to_numpy(),
            "unit": df["unit"].to_numpy(),
            "n_clients": df[n_clients].to_numpy(),
            events: df[events].to_numpy(),
            n: df[n].to_numpy(),
            f"n_clients{KEY}": df[f"{n_clients}{KEY}"].to_numpy(),
            f"{events}{KEY}": df[f"{events}{KEY}"].to_numpy(),
            f"{n}{KEY}": df[f"{n}{KEY}"].to_numpy(),
        }
    )
    # the protected-statistics step: a month whose rate has 1 .. k-1 events or non-events is
    # withheld (numerator rule); months add up to the period's total: one partition, whose
    # withheld months must together describe k distinct clients (a month withheld by the
    # numerator rule counts as no more than its judged size)
    clients = clients or MonthClients(ctx)
    safe = protect_counts(
        ctx,
        counts,
        counts=["n_clients", events, n],
        rates=[protected.Rate("rate", events, n)],
        value_cols=[events, n],
        clients_col=clients.ids(which),
    ).drop(columns=["unit", "rate"])
    withheld = safe["suppressed"].to_numpy(dtype=bool)
    calendar_base = _baseline(df["month"], ctx)
    base = calendar_base & ~withheld
    # a baseline judges the months after it: with fewer than 6 shown months after it, the
    # period is too short for a separate baseline and the chart is a run chart around the
    # period's rate (no limits, no flags)
    shown_rate = pd.Series(
        np.where(withheld, np.nan, safe[n].to_numpy(dtype=float, na_value=np.nan))
    )
    run_chart = not separate_baseline(shown_rate, base)
    if run_chart:
        base = ~withheld
        calendar_base = np.ones(len(base), dtype=bool)
    chart = p_chart(
        safe[events].to_numpy(dtype=float, na_value=np.nan),
        safe[n].to_numpy(dtype=float, na_value=np.nan),
        baseline=base,
    )
    if run_chart:
        chart = chart.assign(lcl=np.nan, ucl=np.nan)
    rules = judged_rules(chart["p"], chart["centre"], chart["lcl"], chart["ucl"], base)
    scale = 100.0 if rupture else 1.0

    def flag(col: str) -> pd.Series:
        return pd.Series(rules[col].to_numpy(), index=safe.index, dtype="boolean").mask(withheld)

    safe = safe.assign(
        value=chart["p"].to_numpy() * scale,
        centre=chart["centre"].to_numpy() * scale,
        lcl=chart["lcl"].to_numpy() * scale,
        ucl=chart["ucl"].to_numpy() * scale,
        shift=flag("shift"),
        trend=flag("trend"),
        astronomical=flag("astronomical"),
    )
    baseline_end = None
    if calendar_base.any() and not calendar_base.all():
        baseline_end = pd.Timestamp(df["month"][calendar_base].max()) + pd.offsets.MonthEnd(1)
    what = (
        "Ruptures per 100 SRS administrations with a previous SRS"
        if rupture
        else "Repaired / ruptures with a known fate (month of the rupture)"
    )
    total = int(now[n])  # the period's protected total
    fig = charts.spc_chart(
        safe,
        title=title,
        subtitle=subtitle(
            ctx,
            (
                f"{what}; too short for a separate baseline (a baseline of "
                f"{int(ctx.settings.spc_baseline_months)} months needs "
                f"{int(ctx.settings.spc_baseline_months) + MIN_JUDGED} or more): run chart "
                "around the period's rate, no limits, no rules applied"
                if run_chart
                else f"{what}; p-chart, 3-sigma limits from the first "
                f"{int(ctx.settings.spc_baseline_months)} months"
                + (" (withheld months left out)" if (calendar_base & withheld).any() else "")
                + "; the months after them judged against the centre line"
            ),
            definition_text(ctx),
            n_text=(
                n_text(ctx, total, "SRS with a previous SRS", now["exact_n_clients"])
                if rupture
                else n_text(ctx, total, "ruptures with a known fate", now["exact_fate_clients"])
            ),
        ),
        y_label="Ruptures per 100 SRS" if rupture else "Repair rate",
        value_format="num1" if rupture else "pct",
        baseline_end=baseline_end,
        scale="per100" if rupture else "rate",
        centre_label="mean of the period" if run_chart else "centre line (baseline)",
    )
    fit_layout(fig)
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
    if run_chart:
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
    reading += withheld_note(ctx, safe) + noise_note(ctx)
    table = safe.assign(month=safe["month"].dt.strftime("%Y-%m"))[
        ["month", "n_clients", events, n, "value", "centre", "lcl", "ucl", "suppressed"]
    ].rename(columns={"value": "rate_per_100" if rupture else "repair_rate"})
    return Panel(
        key=key,
        title=title,
        subtitle="",
        reading=reading,
        figure=fig,
        data=table,
        withheld=any_withheld(safe),
        section="Over time",
    )


def _funnel_part(ctx: Context, units: pd.DataFrame, clinic: dict, names: dict, which: str):
    """One funnel's points, limits and table (rupture or repair rate), or a reason why not.

    `clinic` is the protected clinic row (`protected_summary`): the funnel's centre is the
    clinic's protected rate; each unit's rate is its protected events / protected n, a unit
    whose rate has 1 .. k-1 events or non-events is withheld (numerator rule) and not drawn,
    and the limits rest on the protected n."""
    rupture = which == "rupture"
    events, n, n_clients = (
        ("ruptures", "with_previous", "n_clients")
        if rupture
        else ("repaired", "fate_known", "fate_clients")
    )
    target = (
        (None if clinic["rupture_rate_per_100"] is None else clinic["rupture_rate_per_100"] / 100)
        if rupture
        else clinic["repair_rate"]
    )
    df = units[units[n] > 0]
    if df.empty or not clinic[n]:
        return None, f"no {'SRS ratings' if rupture else 'ruptures with a known fate'}"
    if target is None or not np.isfinite(target):
        return None, f"the clinic's rate rests on fewer than {ctx.policy.k} events or non-events"
    df = with_client_keys(df)
    frame = pd.DataFrame(
        {
            "unit": df["unit"].to_numpy(),
            "n_clients": df[n_clients].to_numpy(),
            "events": df[events].to_numpy(),
            "n": df[n].to_numpy(),
            "rate": (df[events] / df[n]).to_numpy(),
            f"n_clients{KEY}": df[f"{n_clients}{KEY}"].to_numpy(),
            f"events{KEY}": df[f"{events}{KEY}"].to_numpy(),
            f"n{KEY}": df[f"{n}{KEY}"].to_numpy(),
        }
    )
    safe = protect_counts(
        ctx,
        frame,
        counts=["n_clients", "events", "n"],
        rates=[protected.Rate("rate", "events", "n")],
        value_cols=["events", "n", "rate"],
    )
    shown = safe[safe["rate"].notna()]
    if len(shown) < 2:
        return None, f"fewer than two describe at least {ctx.policy.k} clients"
    pts, lim, info = funnel(
        pd.DataFrame(
            {
                "unit": shown["unit"].map(names),
                "n": shown["n"].astype(float),
                "value": shown["rate"].astype(float),
            }
        ),
        kind="proportion",
        target=float(target),
        method=ctx.settings.overdispersion,
    )
    scale = 100.0 if rupture else 1.0
    for col in ("value", "low_95", "high_95", "low_998", "high_998"):
        pts[col] = pts[col] * scale
    for col in ("low_95", "high_95", "low_998", "high_998"):
        lim[col] = lim[col] * scale
    flags = pts.set_index("unit")["flag"]
    table = safe.assign(unit=safe["unit"].map(names))
    table = table.assign(
        measure="Rupture rate (per 100 SRS)" if rupture else "Repair rate",
        value=table["rate"] * scale,
        flag=table["unit"].map(flags),
    )
    item = {
        "name": "Ruptures per 100 SRS" if rupture else "Repair rate",
        # site names as text in the chart, never markup
        "points": pts.assign(unit=pts["unit"].map(chart_text)),
        "limits": lim,
        "target": float(target) * scale,
        "x_label": "SRS with a previous SRS" if rupture else "Ruptures with a known fate",
        "y_label": "Ruptures per 100 SRS" if rupture else "Repair rate",
        "value_format": "num1" if rupture else "pct",
        "own_axis": True,
    }
    return (item, table, safe, info), ""


def _funnels(ctx: Context, units: pd.DataFrame, clinic: dict, *, level: str) -> Panel:
    """Rupture rate and repair rate by site or therapist: two funnel plots side by side."""
    noun = "therapist" if level == "therapist" else "site"
    key, title = f"funnel_{level}", f"Rupture and repair rates by {noun}"
    if level == "therapist":
        # meeting mode letters by volume: the protected volume
        volume = noise.perturb_counts(
            units["with_previous"].to_numpy(dtype="float64"),
            units[f"with_previous{KEY}"].to_numpy(dtype="float64"),
            ctx.noise,
            ctx.policy.k,
        )
        names = therapist_labels(units["unit"], ctx, pd.Series(volume, index=units["unit"]))
    else:
        names = {u: u for u in units["unit"]}
    parts, reasons = [], []
    for which in ("rupture", "repair"):
        part, why = _funnel_part(ctx, units, clinic, names, which)
        if part is None:
            reasons.append(f"{which} rate: {why}")
        else:
            parts.append(part)
    if not parts:
        return empty_panel(
            key, title, f"No funnel by {noun}: " + "; ".join(reasons) + ".", section=f"By {noun}"
        )
    methods = sorted({p[3]["method_used"] for p in parts} - {"none"})
    od = (
        f"limits widened for overdispersion ({', '.join(methods)}) where significant"
        if methods
        else "no significant overdispersion"
    )
    n_shown = pd.concat([p[0]["points"]["unit"] for p in parts]).nunique()
    fig = funnel_grid(
        [p[0] for p in parts],
        title=title,
        subtitle_text=subtitle(
            ctx,
            "Ruptures per 100 SRS with a previous SRS; repaired / ruptures with a known fate",
            definition_text(ctx),
            f"95% and 99.8% limits around the clinic-wide value; {od}",
            n_text=f"{n_shown} {noun}s shown",
        ),
    )
    table = pd.concat([p[1] for p in parts], ignore_index=True)
    table = table[["measure", "unit", "n_clients", "events", "n", "value", "flag", "suppressed"]]
    table = table.rename(
        columns={"unit": noun, "events": "events (ruptures / repaired)", "n": "out of"}
    )
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
    safe_all = pd.concat([p[2] for p in parts], ignore_index=True)
    return Panel(
        key=key,
        title=title,
        subtitle="",
        reading=(
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
            + withheld_note(ctx, safe_all)
            + noise_note(ctx)
        ),
        figure=fig,
        data=table,
        withheld=any_withheld(safe_all),
        section=f"By {noun}",
    )


def _followup(ctx: Context) -> list[Panel]:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    df = queries.run(
        ctx.con,
        "rupture_followup",
        **ctx.params(),
        measure=measure,
        **rupture_params(ctx),
    )
    t_drop, t_imp = "Dropout after a rupture", f"{m.label} improvement after a rupture"
    if df.empty:
        msg = "No ended episodes with at least two SRS ratings in this selection."
        return [
            empty_panel("followup_dropout", t_drop, msg),
            empty_panel("followup_outcome", t_imp, msg),
        ]
    order = {g: i for i, g in enumerate(GROUP_LABELS)}
    df = df.assign(_o=df["rupture_group"].map(order)).sort_values("_o").drop(columns="_o")
    df = df.assign(group=df["rupture_group"].map(GROUP_LABELS)).reset_index(drop=True)
    # the protected-statistics step: counts with their cell's noise (the groups' clients keyed
    # from their episodes), the dropout rate from protected counts (numerator rule), the means
    # from protected sums; the Wilson interval from the protected counts, widened for the noise
    safe = protect_counts(
        ctx,
        df[
            [
                "rupture_group",
                "group",
                "n_clients",
                "episodes",
                "dropouts",
                "dropout_rate",
                "mean_sessions",
                "mean_ruptures",
                "episodes_cellkey",
                "dropouts_cellkey",
            ]
        ],
        counts=["n_clients", "episodes", "dropouts"],
        means=[
            protected.Mean("mean_sessions", "episodes", SESSIONS_RANGE),
            protected.Mean("mean_ruptures", "episodes", SESSIONS_RANGE),
        ],
        rates=[protected.Rate("dropout_rate", "dropouts", "episodes")],
        value_cols=["episodes", "dropouts", "dropout_rate", "mean_sessions", "mean_ruptures"],
        n_key_from="episodes",
    )
    # episodes without a rupture have 0 ruptures by definition: nothing to protect there
    none = (safe["rupture_group"] == "none") & safe["mean_ruptures"].notna()
    safe.loc[none, "mean_ruptures"] = 0.0
    low, high = protected.wilson(safe["dropouts"], safe["episodes"], ctx.noise)
    safe = safe.assign(low=low, high=high)
    stats: dict[str, float] = {}
    by = safe.set_index("rupture_group")
    exact = df.set_index("rupture_group")
    note = ""
    if (
        {"repaired", "unrepaired"} <= set(by.index)
        and not safe["suppressed"].any()
        and privacy.statistic_released(
            ctx.policy,
            int(exact.loc["repaired", "n_clients"]),
            int(exact.loc["unrepaired", "n_clients"]),
        )
    ):
        # from the protected counts, like every figure the page shows
        rd = risk_difference(
            float(by.loc["unrepaired", "dropouts"]),
            float(by.loc["unrepaired", "episodes"]),
            float(by.loc["repaired", "dropouts"]),
            float(by.loc["repaired", "episodes"]),
        )
        stats = {"risk_difference": rd.value, "rd_low": rd.low, "rd_high": rd.high}
        if np.isfinite(rd.value):
            note = (
                f"Dropout after an unrepaired rupture minus after repaired ones: "
                f"{rd.value * 100:+.1f} points (95% CI {rd.low * 100:+.1f} to "
                f"{rd.high * 100:+.1f}). "
            )
    total = int(
        noise.perturb_counts(
            df["episodes"].to_numpy(dtype="float64"),
            df["episodes_cellkey"].to_numpy(dtype="float64"),
            ctx.noise,
            ctx.policy.k,
        ).sum()
    )  # the groups' protected episodes
    fig = charts.bars(
        safe,
        x="group",
        y="dropout_rate",
        low="low",
        high="high",
        title=t_drop,
        subtitle=subtitle(
            ctx,
            "Dropout rate of ended episodes (≥ 2 SRS) by their ruptures, 95% Wilson intervals",
            definition_text(ctx),
            # the groups' clients: at least the largest group's
            n_text=n_text(ctx, total, "ended episodes", int(df["n_clients"].max())),
        ),
        x_label="Episode's ruptures",
        y_label="Dropout rate",
        value_format="pct",
        suppressed_label=ctx.policy.label,
    )
    fit_layout(fig, legend_below=False)
    caveat = (
        "Longer episodes have more chances of a rupture (mean sessions per group are in the "
        "data), and a rupture at an episode's last SRS can never be repaired, so part of the "
        "link between unrepaired ruptures and dropout is built into the definitions. "
    )
    caveat_outcome = (
        "Longer episodes have more chances of a rupture and more time to improve (mean "
        "sessions per group are in the data); episodes that end soon after a rupture count as "
        "unrepaired and have had less time to improve. "
    )
    p_drop = Panel(
        key="followup_dropout",
        title=t_drop,
        subtitle="",
        reading=(
            "Ended episodes that had no rupture, ruptures that were all repaired, or at least "
            f"one unrepaired rupture, and how many of each ended in dropout. {note}"
            f"{CORRELATION_NOTE} {caveat}" + withheld_note(ctx, safe) + noise_note(ctx)
        ),
        figure=fig,
        data=safe[
            [
                "group",
                "n_clients",
                "episodes",
                "dropouts",
                "dropout_rate",
                "low",
                "high",
                "mean_sessions",
                "mean_ruptures",
                "suppressed",
            ]
        ],
        withheld=any_withheld(safe),
        section="What follows a rupture",
        stats=stats,
    )
    # improvement (positive = better) with t intervals
    out = df[df["outcome_n"] > 0]
    if out.empty:
        return [
            p_drop,
            empty_panel(
                "followup_outcome",
                t_imp,
                f"No ended episodes with two or more {m.label} scores in this selection.",
            ),
        ]
    imp = pd.DataFrame(
        {
            "group": out["group"].to_numpy(),
            "n_clients": out["outcome_clients"].to_numpy(),
            "episodes": out["outcome_n"].to_numpy(),
            "mean_improvement": out["mean_improvement"].to_numpy(),
            "sd_improvement": out["sd_improvement"].to_numpy(),
            "episodes_cellkey": out["outcome_n_cellkey"].to_numpy(),
        }
    )
    # an improvement is a change score: its record range is twice the measure's
    change_range = 2.0 * float(m.max_score)
    safe_i = protect_counts(
        ctx,
        imp,
        counts=["n_clients", "episodes"],
        means=[protected.Mean("mean_improvement", "episodes", change_range)],
        value_cols=["episodes", "mean_improvement", "sd_improvement"],
        n_key_from="episodes",
    )
    low, high = protected.mean_interval(
        safe_i["mean_improvement"],
        safe_i["sd_improvement"],
        safe_i["episodes"],
        change_range,
        ctx.noise,
    )
    # the group's mean sessions as the dropout chart shows it (the same protected cell)
    sessions = safe.set_index("group")["mean_sessions"]
    safe_i = safe_i.assign(
        low=low, high=high, mean_sessions=safe_i["group"].map(sessions).to_numpy()
    ).drop(columns="sd_improvement")
    safe_i = safe_i[
        ["group", "n_clients", "episodes", "mean_improvement", "low", "high", "mean_sessions"]
        + ["suppressed", "suppression"]
    ]
    direction = "last − first" if m.higher_is_better else "first − last"
    fig_i = charts.bars(
        safe_i,
        x="group",
        y="mean_improvement",
        low="low",
        high="high",
        title=t_imp,
        subtitle=subtitle(
            ctx,
            f"Mean {m.label} improvement ({direction}, points, positive = better) of ended "
            "episodes (≥ 2 SRS, ≥ 2 scores) by their ruptures, 95% CI",
            definition_text(ctx),
            n_text=n_text(
                ctx,
                int(
                    noise.perturb_counts(
                        imp["episodes"].to_numpy(dtype="float64"),
                        imp["episodes_cellkey"].to_numpy(dtype="float64"),
                        ctx.noise,
                        ctx.policy.k,
                    ).sum()
                ),
                "ended episodes",
                int(imp["n_clients"].max()),
            ),
        ),
        x_label="Episode's ruptures",
        y_label=f"{m.label} improvement (points)",
        value_format="num1",
        colour=charts.GREEN,
        suppressed_label=ctx.policy.label,
    )
    fit_layout(fig_i, legend_below=False)
    p_imp = Panel(
        key="followup_outcome",
        title=t_imp,
        subtitle="",
        reading=(
            "Mean improvement per group with its 95% interval. Research finds repaired ruptures "
            "go with better outcomes than unrepaired ones (Eubanks, Muran & Safran 2018, "
            f"r ≈ .29). {CORRELATION_NOTE} {caveat_outcome}{SMALL_N_NOTE}"
            + withheld_note(ctx, safe_i)
            + noise_note(ctx)
        ),
        figure=fig_i,
        data=safe_i,
        withheld=any_withheld(safe_i),
        section="What follows a rupture",
    )
    return [p_drop, p_imp]


def _items(ctx: Context) -> Panel:
    key, title = "rupture_items", "Which part of the alliance drops at a rupture"
    df = queries.run(
        ctx.con,
        "rupture_items",
        **ctx.params(),
        rupture_threshold=float(ctx.settings.rupture_threshold),
    )
    if df.empty or int(df["ruptures"].max()) == 0:
        return empty_panel(
            key,
            title,
            "No ruptures with SRS item scores in this selection: item-level drops need the four "
            "SRS items at the rupture and the SRS before it (recorded at some sites only).",
            section="What drops",
        )
    # one population (the same ruptures) seen four ways: withheld together or not at all.
    # Counts with their cell's noise (the clients keyed from the ruptures), the mean drops from
    # protected sums, the interval from protected values; how often an item fell most is a
    # rate of the ruptures, withheld (with its count) when 1 .. k-1 ruptures are, or are not,
    # its largest drop (numerator rule), while the item's mean drop stays
    share = protected.Rate("largest_share", "largest", "ruptures")
    small_share = protected.numerator_rule(df, [share], ctx.policy.k)
    safe = protect_counts(
        ctx,
        df.assign(largest_share=df["largest"] / df["ruptures"]),
        counts=["n_clients", "ruptures", "largest"],
        means=[protected.Mean("mean_drop", "ruptures", ITEM_DROP_RANGE)],
        value_cols=["ruptures", "mean_drop", "sd_drop", "largest", "largest_share"],
        complementary=False,
        n_key_from="ruptures",
    )
    safe = safe.assign(
        largest_share=(safe["largest"] / safe["ruptures"]).mask(small_share),
        largest=safe["largest"].mask(small_share),
    )
    low, high = protected.mean_interval(
        safe["mean_drop"], safe["sd_drop"], safe["ruptures"], ITEM_DROP_RANGE, ctx.noise
    )
    safe = safe.assign(low=low, high=high)
    order = {d: i for i, d in enumerate(LABELS)}
    safe = safe.assign(_o=safe["dimension"].map(order)).sort_values("_o").drop(columns="_o")
    safe = safe.assign(
        label=[
            f"{LABELS[d]} (fell most in {s:.0%})" if pd.notna(s) else LABELS[d]
            for d, s in zip(safe["dimension"], safe["largest_share"], strict=True)
        ]
    )
    fig = charts.interval_dots(
        safe,
        category="label",
        value="mean_drop",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Mean drop of each SRS item (0–10) from the previous SRS at ruptures where items were "
            "recorded, 95% CI",
            definition_text(ctx),
            # the same ruptures for every item: one protected count
            n_text=n_text(
                ctx,
                int(
                    noise.perturb_counts(
                        df["ruptures"].to_numpy(dtype="float64")[:1],
                        df["ruptures_cellkey"].to_numpy(dtype="float64")[:1],
                        ctx.noise,
                        ctx.policy.k,
                    )[0]
                ),
                "ruptures",
                int(df["n_clients"].max()),
            ),
        ),
        x_label="Mean item drop at a rupture (points)",
        value_format="num2",
        suppressed_label=ctx.policy.label,
    )
    figure_edit.update_xaxes(fig, rangemode="tozero")
    fit_layout(fig, legend_below=False)
    top = safe.dropna(subset=["mean_drop"])
    lead = ""
    if len(top):
        best = top.loc[top["mean_drop"].idxmax()]
        lead = f"“{LABELS[best['dimension']]}” drops most on average ({best['mean_drop']:.2f} points). "
    items = "; ".join(f"{LABELS[d]} = {SRS_ITEMS[d]}" for d in LABELS)
    return Panel(
        key=key,
        title=title,
        subtitle="",
        reading=(
            f"{lead}How much each item fell, on average, when the total fell by at least "
            f"{ctx.settings.rupture_threshold:g} points, and how often it was the item that fell "
            f"most (ties count for each). {items}. Only sites that record the four items count."
            + withheld_note(ctx, safe)
            + noise_note(ctx)
        ),
        figure=fig,
        data=safe.assign(dimension=safe["dimension"].map(LABELS))[
            [
                "dimension",
                "n_clients",
                "ruptures",
                "mean_drop",
                "low",
                "high",
                "largest",
                "largest_share",
                "suppressed",
            ]
        ],
        withheld=any_withheld(safe),
        section="What drops",
    )


# --------------------------------------------------------------------------- view


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
    table, table_before, *after = gather(*parts)
    # what the page shows: the protected clinic rows (the exact client counts only judge)
    now = protected_summary(ctx, table)
    before = protected_summary(ctx, table_before)
    n_clients = now["exact_n_clients"]
    if n_clients < ctx.policy.k:
        if n_clients == 0:
            return View(
                TITLE,
                QUESTION,
                notice=(
                    "No SRS ratings with a previous SRS in the same episode in this selection, so "
                    "no ruptures can be counted. Widen the period or clear a filter."
                ),
            )
        return View(TITLE, QUESTION, notice=too_small_notice(ctx, n_clients), n_clients=n_clients)
    panels: list[Panel] = []
    if "time" in chosen:
        monthly = rupture_counts(ctx, "month", table=table)
        month_clients = MonthClients(ctx)  # one query for both charts, only if a month is withheld
        panels += _in(
            "time",
            [
                _monthly(ctx, monthly, "rupture", now, month_clients),
                _monthly(ctx, monthly, "repair", now, month_clients),
            ],
        )
    if "units" in chosen:
        clinic = now
        sites = rupture_counts(ctx, "site", table=table)
        if ctx.therapist_level:
            by_ther = rupture_counts(ctx, "therapist", table=table)
            ther = _funnels(ctx, by_ther, clinic, level="therapist")
        else:
            ther = empty_panel(
                "funnel_therapist",
                "Ruptures and repair by therapist",
                "Therapist-level comparisons are not available for your role.",
            )
        panels += _in("units", [_funnels(ctx, sites, clinic, level="site"), ther])
    if after:
        followup, items = after
        panels += _in("after", [*followup, items])
    return View(
        TITLE,
        QUESTION,
        tiles=_tiles(ctx, now, before),
        panels=panels,
        n_clients=n_clients,
    )


def _in(section: str, panels: list[Panel]) -> list[Panel]:
    """The panels, labelled with their section."""
    return [dataclasses.replace(p, section=SECTIONS[section]) for p in panels]
