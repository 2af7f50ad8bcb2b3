"""What the protected-statistics step costs in accuracy: how far each shown Overview figure lies
from the exact one, for the clinic, every site and every therapist.

`python -m alliance protection-cost [--db PATH] [--from YYYY-MM] [--to YYYY-MM] [--json]` prints,
per level and figure, the typical (median) and largest absolute change among the figures that
are shown (a withheld figure has no change to measure; how many were withheld is counted).
The exact figures come from the database file, which only trusted data staff hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from alliance.panel import Context
from alliance.views import overview

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
            population = overview._population(exact, key)
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
