"""What the protected-statistics step costs in accuracy: how far each shown Overview figure lies
from the exact one, for the clinic, every site and every therapist.

`python -m alliance protection-cost [--db PATH] [--from YYYY-MM] [--to YYYY-MM] [--json]` prints,
per level and figure, the typical (median) and largest absolute change among the figures that
are shown (a withheld figure has no change to measure; how many were withheld is counted).
The exact figures come from the database file, which only trusted data staff hold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

import numpy as np

from alliance.filters import add_months
from alliance.metrics import overview
from alliance.panel import Context

RATES = ["dropout_rate", "srs_below_cutoff_rate", "reliable_improvement_rate", "recovery_rate"]
FIGURES = [*RATES, "mean_srs"]


def _units(ctx: Context) -> Iterable[tuple[str, dict[str, str | None]]]:
    yield "clinic", {}
    p = ctx.params()
    sites = ctx.con.execute(
        "select distinct site from session_facts where session_date >= $f and session_date < $t "
        "order by 1",
        {"f": p["date_from"], "t": p["date_to"]},
    ).fetchall()
    for (site,) in sites:
        yield "site", {"site": site}
    therapists = ctx.con.execute(
        "select distinct therapist from session_facts "
        "where session_date >= $f and session_date < $t order by 1",
        {"f": p["date_from"], "t": p["date_to"]},
    ).fetchall()
    for (code,) in therapists:
        yield "therapist", {"therapist": code}


def measure(ctx: Context) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """{level: {figure: {shown, withheld, median_abs, max_abs}}}; rates in percentage points,
    the mean SRS in points."""
    k = ctx.policy.k
    changes: dict[str, dict[str, list[float]]] = {}
    withheld: dict[str, dict[str, int]] = {}
    for level, filters in _units(ctx):
        unit = dataclasses.replace(ctx, filters=dataclasses.replace(ctx.filters, **filters))
        exact = overview.headline(unit)
        shown, by_rule = overview.protected_headline(unit, exact)
        for key in FIGURES:
            bucket = changes.setdefault(level, {}).setdefault(key, [])
            hidden = withheld.setdefault(level, {})
            population = overview.population(exact, key)
            if population == 0 or exact[key] is None:
                continue
            if population < k or key in by_rule:
                hidden[key] = hidden.get(key, 0) + 1
                continue
            scale = 100.0 if key in RATES else 1.0
            bucket.append(abs(float(shown[key]) - float(exact[key])) * scale)
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for level, figures in changes.items():
        out[level] = {}
        for key, values in figures.items():
            arr = np.asarray(values)
            out[level][key] = {
                "shown": len(values),
                "withheld": withheld.get(level, {}).get(key, 0),
                "median_abs": round(float(np.median(arr)), 3) if len(arr) else None,
                "max_abs": round(float(arr.max()), 3) if len(arr) else None,
            }
    return out


def text(result: dict) -> str:
    lines = [
        "Change the protection makes to each shown Overview figure "
        "(rates in percentage points, mean SRS in points):"
    ]
    for level, figures in result.items():
        for key, r in figures.items():
            if r["shown"]:
                lines.append(
                    f"  {level:<10} {key:<27} typical {r['median_abs']:.2f}  "
                    f"largest {r['max_abs']:.2f}  ({r['shown']} shown, {r['withheld']} withheld)"
                )
            else:
                lines.append(f"  {level:<10} {key:<27} none shown ({r['withheld']} withheld)")
    return "\n".join(lines)


def averaging_attack(ctx: Context, month: dt.date, max_pairs: int = 29) -> list[dict[str, object]]:
    """The attack cell-key perturbation does not stop, measured: for each site x race/ethnicity
    group with 1 .. k-1 clients in `month`, the Overview's Sessions tile for periods ending in
    `month` minus the same period ending a month earlier, averaged over up to `max_pairs`
    different start months (each pair carries independent noise), rounded, against the truth.
    """
    k = ctx.policy.k
    rows = ctx.con.execute(
        "select site, race_ethnicity, count(*), count(distinct client_id) from session_facts "
        "where month = $m group by all order by 1, 2",
        {"m": month},
    ).fetchall()
    out = []
    for site, race, truth, clients in rows:
        if not 0 < clients < k:
            continue
        diffs = []
        for back in range(1, max_pairs + 1):
            start = add_months(month, -back - 6)
            shown = []
            for last in (add_months(month, -1), month):
                f = dataclasses.replace(
                    ctx.filters, first_month=start, last_month=last, site=site, race_ethnicity=race
                )
                unit = dataclasses.replace(ctx, filters=f)
                exact = overview.headline(unit)
                if 0 < exact["n_clients"] < k:
                    break
                shown.append(overview.protected_headline(unit, exact)[0]["sessions"])
            if len(shown) == 2:
                diffs.append(shown[1] - shown[0])
        if len(diffs) >= 5:
            estimate = round(float(np.mean(diffs)))
            out.append(
                {
                    "site": site,
                    "race": race,
                    "truth": int(truth),
                    "pairs": len(diffs),
                    "estimate": estimate,
                    "recovered": estimate == truth,
                }
            )
    return out
