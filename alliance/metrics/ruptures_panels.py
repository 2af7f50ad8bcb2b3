"""Ruptures & repair numbers of the sections over time and by site and therapist: the monthly
p-charts and the funnels, each as the protected frame the page shows (what follows a rupture is
alliance.metrics.ruptures_after)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from alliance import protected, queries
from alliance.filters import add_months
from alliance.metrics.profile import therapist_labels
from alliance.metrics.ruptures import (
    KEY,
    rupture_params,
    with_client_keys,
)
from alliance.panel import Context
from alliance.spc import funnel, judged_rules, p_chart, separate_baseline
from alliance.views.common import protect_counts

# the columns of each rate: events, denominator, the clients they describe
RATE_PARTS = {
    "rupture": ("ruptures", "with_previous", "n_clients"),
    "repair": ("repaired", "fate_known", "fate_clients"),
}


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


def monthly_chart(
    ctx: Context, monthly: pd.DataFrame, which: str, clients: MonthClients | None = None
) -> dict | None:
    """A p-chart of the rupture or repair rate by month, or None without a month to show.

    The privacy step comes first: the months to withhold (primary, and complementary judged by
    the distinct clients of the withheld months together). The chart's centre line, limits and
    run-chart rules are then formed from the shown months only: a withheld month has no centre,
    no limits (they would solve back to its denominator) and no flags, and is not part of the
    baseline (whose centre line would otherwise carry its counts). Returns safe (month, the
    counts, value, centre, lcl, ucl, shift, trend, astronomical, suppressed), withheld, base,
    calendar_base, run_chart and baseline_end.
    """
    rupture = which == "rupture"
    events, n, n_clients = RATE_PARTS[which]
    df = monthly[monthly[n] > 0]
    if df.empty:
        return None
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
    return {
        "safe": safe,
        "withheld": withheld,
        "base": base,
        "calendar_base": calendar_base,
        "run_chart": run_chart,
        "baseline_end": baseline_end,
    }


def unit_names(ctx: Context, units: pd.DataFrame, level: str) -> dict:
    """Display names of the sites (their names) or therapists (codes, or meeting-mode letters
    by their protected volume)."""
    if level != "therapist":
        return {u: u for u in units["unit"]}
    volume = protected.shown_counts_of(
        units["with_previous"].to_numpy(dtype="float64"),
        units[f"with_previous{KEY}"].to_numpy(dtype="float64"),
        ctx.noise,
        ctx.policy,
    )
    return therapist_labels(units["unit"], ctx, pd.Series(volume, index=units["unit"]))


def funnel_part(
    ctx: Context, units: pd.DataFrame, clinic: dict, names: dict, which: str
) -> tuple[tuple | None, str]:
    """One funnel's points, limits, table, protected rows and funnel info (rupture or repair
    rate), or None and why not: 'empty' (nothing counted), 'target' (the clinic's rate is
    withheld), 'few' (fewer than two units shown).

    `clinic` is the protected clinic row (`protected_summary`): the funnel's centre is the
    clinic's protected rate; each unit's rate is its protected events / protected n, a unit
    whose rate has 1 .. k-1 events or non-events is withheld (numerator rule) and not drawn,
    and the limits rest on the protected n. Points and limits are on the shown scale (per 100
    SRS for the rupture rate)."""
    rupture = which == "rupture"
    events, n, n_clients = RATE_PARTS[which]
    target = (
        (None if clinic["rupture_rate_per_100"] is None else clinic["rupture_rate_per_100"] / 100)
        if rupture
        else clinic["repair_rate"]
    )
    df = units[units[n] > 0]
    if df.empty or not clinic[n]:
        return None, "empty"
    if target is None or not np.isfinite(target):
        return None, "target"
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
        return None, "few"
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
    return (pts, lim, float(target) * scale, table, safe, info), ""
