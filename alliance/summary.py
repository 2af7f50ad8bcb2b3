"""Headline metrics for scheduled reporting and for checking the dashboard's numbers.

`python -m alliance summary --json` prints one object whose values come from the very functions
the pages use (a value whose whole population has fewer than k clients is null and listed under
"withheld").

The figures are EXACT and UNPROTECTED by design: people who hold the database file are trusted
data staff (like SQL on the file). No perturbation is added and statistics are not held back by
the dashboard's release rule; the output says so (keys "exact" and "privacy") and lists under
"app_withholds" what the web app and the report packs withhold by that rule
(alliance/privacy.py, statistic_released), so that nobody passes such a figure on.
"""

from __future__ import annotations

import math

import pandas as pd

from alliance.metrics import dropout_stats, outcomes, overview
from alliance.metrics.ruptures import rupture_summary
from alliance.metrics.therapists import therapist_icc_outcome
from alliance.panel import Context
from alliance.stats import mean_interval, wilson_interval
from alliance.views.common import protect

COUNT_KEYS = {"sessions", "episodes", "clients", "therapists", "ended_episodes"}
PRIVACY_NOTE = (
    "Exact figures, not protected: for data staff who hold the database file only. The web app "
    "and report packs apply the privacy rules; share their figures, never these."
)
EFFECT_KEYS = ("alliance_dropout_d", "dropout_or_per_sd_lower", "dropout_point_biserial_r")


def _ci(low: float, high: float) -> list[float] | None:
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return None
    return [float(low), float(high)]


def compute(ctx: Context) -> dict[str, object]:
    """Every headline key (see the issue list in README 'Command line'), with `<key>_ci`."""
    head = overview.headline(ctx)
    out: dict[str, object] = {
        "period": {
            "from": ctx.filters.first_month.strftime("%Y-%m"),
            "to": ctx.filters.last_month.strftime("%Y-%m"),
        },
        "filters": ctx.filters.to_query_params(),
        "settings": {
            "srs_cutoff": ctx.settings.srs_cutoff,
            "privacy_k": ctx.settings.privacy_k,
            "rupture_threshold": ctx.settings.rupture_threshold,
            "repair_window": ctx.settings.repair_window,
        },
        "exact": True,
        "privacy": PRIVACY_NOTE,
    }
    rows: list[dict[str, object]] = []

    def add(key: str, value: object, n_clients: int, ci: list[float] | None = None) -> None:
        low, high = ci or [None, None]
        rows.append(
            {"key": key, "n_clients": int(n_clients), "value": value, "low": low, "high": high}
        )

    n = head["n_clients"]
    add("sessions", head["sessions"], n)
    add("episodes", head["active_episodes"], n)
    add("clients", head["n_clients"], n)
    add("therapists", head["therapists"], n)
    add("ended_episodes", head["ended"], head["ended_clients"])
    lo, hi = wilson_interval([head["dropouts"]], [head["ended"]])
    add("dropout_rate", head["dropout_rate"], head["ended_clients"], _ci(lo[0], hi[0]))
    srs = overview_srs_ci(ctx, head)
    # judged by the clients with an SRS in the period (not every client with a session)
    add("mean_srs", head["mean_srs"], head["srs_clients"], srs)
    lo, hi = wilson_interval([head["srs_below"]], [head["srs_n"]])
    add(
        "srs_below_cutoff_rate",
        head["srs_below_cutoff_rate"],
        head["srs_clients"],
        _ci(lo[0], hi[0]),
    )

    d = dropout_stats.dropout_alliance_stats(ctx)
    for key in EFFECT_KEYS:
        add(key, d.get(key), head["ended_clients"], d.get(f"{key}_ci"))
    # printed exactly here; the app decides with the one release rule (both groups >= k)
    app_withholds = [] if d["released"] else list(EFFECT_KEYS)

    o = outcomes.outcome_summary(ctx, "ors")
    for key in (
        "reliable_improvement_rate",
        "reliable_deterioration_rate",
        "recovery_rate",
        "reliable_recovery_rate",
        "alliance_outcome_r",
        "pre_post_effect_size",
    ):
        # whose clients each figure describes (for the privacy step)
        population = {
            "recovery_rate": "clinical_clients",
            "reliable_recovery_rate": "clinical_clients",
            "alliance_outcome_r": "r_clients",
        }.get(key, "outcome_clients")
        add(key, o.get(key), int(o.get(population) or 0), o.get(f"{key}_ci"))

    icc = therapist_icc_outcome(ctx, "ors")
    add(
        "therapist_icc_outcome",
        icc.icc,
        head["outcome_clients"],
        _ci(getattr(icc, "low", None), getattr(icc, "high", None)),
    )

    r = rupture_summary(ctx)
    add("rupture_rate_per_100", r.get("rupture_rate_per_100"), int(r.get("n_clients") or 0))
    add(
        "repair_rate",
        r.get("repair_rate"),
        int(r.get("fate_clients") or 0),
        r.get("repair_rate_ci"),
    )

    # the one privacy step, as on the pages
    table = protect(
        ctx, pd.DataFrame(rows), value_cols=["value", "low", "high"], complementary=False
    )
    withheld = []
    for row in table.itertuples(index=False):
        if row.suppressed:
            out[row.key] = None
            withheld.append(row.key)
            continue
        out[row.key] = int(row.value) if row.key in COUNT_KEYS else _plain(row.value)
        if row.low is not None and not pd.isna(row.low):
            out[f"{row.key}_ci"] = [_plain(row.low), _plain(row.high)]
    out["withheld"] = withheld
    out["app_withholds"] = [key for key in app_withholds if key not in withheld]
    out["icc_method"] = getattr(icc, "method", None)
    return out


def overview_srs_ci(ctx: Context, head: dict) -> list[float] | None:
    """t interval of the mean SRS from its SD and n (sufficient statistics from SQL)."""
    if head["mean_srs"] is None or head.get("sd_srs") is None:
        return None
    low, high = mean_interval([head["mean_srs"]], [head["sd_srs"]], [head["srs_n"]])
    return _ci(float(low[0]), float(high[0]))


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6)
    return value


def as_table(summary: dict[str, object]) -> str:
    """A readable table for the terminal."""
    lines = [
        f"Period {summary['period']['from']} to {summary['period']['to']}",
        f"  {summary['privacy']}",
    ]
    skip = ("period", "filters", "settings", "withheld", "exact", "privacy", "app_withholds")
    app_withholds = set(summary.get("app_withholds") or [])
    for key, value in summary.items():
        if key in skip or key.endswith("_ci"):
            continue
        ci = summary.get(f"{key}_ci")
        shown = "withheld (n < k)" if key in summary["withheld"] else _fmt(value)
        if ci:
            shown += f"  (95% CI {_fmt(ci[0])} to {_fmt(ci[1])})"
        if key in app_withholds:
            shown += "  [exact; withheld in the app: a group has fewer than k clients]"
        lines.append(f"  {key:<30} {shown}")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
