"""The Outcomes page's headline numbers: exact (`outcome_summary`, for the command line) and as
the page may show them (`protected_summary`), and whether a change between periods is beyond
chance (`delta_significant`).

Every number follows ``../shared/metrics.md`` ("Outcomes"): change between the first and last
administration of an ended episode finished in the period with at least two administrations,
improvement oriented so that positive = better (ORS last - first; PHQ-9 and GAD-7 first - last);
recovery over the episodes that started in the clinical range. Cutoffs and reliable change come
from the settings (``Settings.outcome_params``), never from constants here. The panels' frames:
outcomes_panels.py. No figures and no sentences (alliance/views/outcomes.py, charts/outcomes.py).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from alliance import noise, protected, queries
from alliance.filters import Filters
from alliance.panel import Context, beyond_chance, delta_interval, se_from_ci
from alliance.settings import MEASURES
from alliance.stats import fisher_z_ci, mean_interval, wilson_interval
from alliance.views.common import protect

SRS_RANGE = 40.0  # one SRS total's range (0-40; an early SRS is a mean of them): sum noise scale


def score_range(measure: str) -> float:
    """One score's range (ORS 40, PHQ-9 27, GAD-7 21): the scale of a mean score's sum noise."""
    return float(MEASURES[measure].max_score)


def change_range(measure: str) -> float:
    """One change score's range: twice the measure's (-40..+40 on the ORS)."""
    return 2.0 * score_range(measure)


# --------------------------------------------------------------------------- headline figures


def _num(x: object) -> float | None:
    if x is None or x is pd.NA:
        return None
    x = float(x)  # type: ignore[arg-type]
    return None if math.isnan(x) else x


def _wilson(x: int, n: int) -> list[float] | None:
    if n <= 0:
        return None
    low, high = wilson_interval(x, n)
    return [float(low[0]), float(high[0])]


def _mean_interval(mean: float | None, sd: float | None, n: int) -> list[float] | None:
    """Student t 95% interval of a mean from its summary statistics (SD with n - 1)."""
    if mean is None or sd is None or n < 2:
        return None
    low, high = mean_interval([mean], [sd], [n])
    return [float(low[0]), float(high[0])]


def summary_row(ctx: Context, measure: str, filters: Filters | None = None) -> pd.Series:
    """The one row of ``outcomes_summary`` (exact aggregates and the counts' cell keys)."""
    return queries.run(
        ctx.con,
        "outcomes_summary",
        **ctx.params(filters),
        **ctx.settings.outcome_params(measure),
    ).iloc[0]


def summary_raw(ctx: Context, measure: str, filters: Filters | None = None) -> dict:
    """The outcome headline figures for `measure`, unsuppressed (see `outcome_summary`)."""
    return summary_from_row(summary_row(ctx, measure, filters), measure)


def summary_from_row(row: pd.Series, measure: str) -> dict:
    """The exact headline figures of one ``outcomes_summary`` row (`outcome_summary`'s own)."""
    n = int(row["outcome_n"])
    clinical_n = int(row["clinical_n"])
    r_n = int(row["r_n"])
    counts = {
        "reliable_improvement_rate": (int(row["reliable_improvement"]), n),
        "reliable_deterioration_rate": (int(row["reliable_deterioration"]), n),
        "recovery_rate": (int(row["recovered"]), clinical_n),
        "reliable_recovery_rate": (int(row["reliably_recovered"]), clinical_n),
    }
    out: dict = {"measure": measure}
    for key, (x, m) in counts.items():
        out[key] = x / m if m else None
        out[f"{key}_ci"] = _wilson(x, m)
    r = _num(row["r"]) if r_n >= 4 else None
    out["alliance_outcome_r"] = r
    ci = fisher_z_ci(r, r_n) if r is not None else (float("nan"), float("nan"))
    out["alliance_outcome_r_ci"] = None if math.isnan(ci[0]) else [ci[0], ci[1]]
    mean_imp, sd_first = _num(row["mean_improvement"]), _num(row["sd_first"])
    # metrics.md: mean improvement / SD of the first administration (as stats.pre_post_effect_size)
    out["pre_post_effect_size"] = mean_imp / sd_first if mean_imp is not None and sd_first else None
    out["mean_improvement"] = mean_imp
    out["mean_improvement_ci"] = _mean_interval(mean_imp, _num(row["sd_improvement"]), n)
    out["outcome_n"] = n
    out["outcome_clients"] = int(row["n_clients"])
    out["clinical_n"] = clinical_n
    out["clinical_clients"] = int(row["clinical_clients"])
    out["r_n"] = r_n
    out["r_clients"] = int(row["r_clients"])
    out["ended"] = int(row["ended"])
    out["counts"] = {key: x for key, (x, _) in counts.items()}
    return out


# which population (distinct clients) each headline figure describes, for the privacy step
POPULATION = {
    "reliable_improvement_rate": "outcome_clients",
    "reliable_deterioration_rate": "outcome_clients",
    "recovery_rate": "clinical_clients",
    "reliable_recovery_rate": "clinical_clients",
    "alliance_outcome_r": "r_clients",
    "pre_post_effect_size": "outcome_clients",
    "mean_improvement": "outcome_clients",
    "outcome_n": "outcome_clients",
}


def withheld_keys(ctx: Context, raw: dict) -> set[str]:
    frame = pd.DataFrame(
        {
            "key": list(POPULATION),
            "n_clients": [raw[pop] for pop in POPULATION.values()],
            "value": [0.0] * len(POPULATION),
        }
    )
    safe = protect(ctx, frame, value_cols=["value"], complementary=False)
    return set(safe.loc[safe["suppressed"], "key"])


def outcome_summary(
    ctx: Context, measure: str = "ors", filters: Filters | None = None
) -> dict[str, object]:
    """Outcome headline figures for `measure` over the context's filters (metrics.md).

    Keys: ``reliable_improvement_rate``, ``reliable_deterioration_rate``, ``recovery_rate``,
    ``reliable_recovery_rate`` (0-1, each with ``<key>_ci`` = [low, high] Wilson 95%),
    ``alliance_outcome_r`` (Pearson r of early SRS and improvement) with
    ``alliance_outcome_r_ci`` (Fisher z 95%), ``pre_post_effect_size`` (mean improvement / SD of
    the first administration), ``mean_improvement`` (+ ``_ci``, t 95%), ``outcome_n`` (ended
    episodes finished in the period with >= 2 administrations), ``clinical_n`` (of those, in
    the clinical range at the start), ``r_n``, ``ended``, the matching distinct-client counts,
    and ``withheld``: the keys withheld by the privacy rule (their population has 1 .. k-1
    clients; value and interval are then None). Missing or undefined values are None, never NaN.
    """
    raw = summary_raw(ctx, measure, filters)
    withheld = withheld_keys(ctx, raw)
    out = {key: v for key, v in raw.items() if key != "counts"}
    for key in withheld:
        out[key] = None
        if f"{key}_ci" in out:
            out[f"{key}_ci"] = None
    out["withheld"] = sorted(withheld)
    return out


# --------------------------------------------------------------------------- protected figures
# What the page shows: every count with its cell's noise (alliance/noise.py), rates and means
# formed from protected counts, intervals from the protected values widened for the noise. The
# exact figures above only judge (threshold, numerator rule); `outcome_summary` stays exact.

_COUNTS = [
    "ended",
    "outcome_n",
    "reliable_improvement",
    "reliable_deterioration",
    "clinical_n",
    "recovered",
    "reliably_recovered",
    "r_n",
]
# distinct clients of a count's records: their key derives from that count's key, as in
# protected.protect_table (n_key_from), so the same cell shows the same value on every page
_CLIENTS = {"outcome_clients": "outcome_n", "clinical_clients": "clinical_n", "r_clients": "r_n"}
_CLIENT_COLS = {"outcome_clients": "n_clients"}  # the query's name where it differs
RATES = {
    "reliable_improvement_rate": ("reliable_improvement", "outcome_n"),
    "reliable_deterioration_rate": ("reliable_deterioration", "outcome_n"),
    "recovery_rate": ("recovered", "clinical_n"),
    "reliable_recovery_rate": ("reliably_recovered", "clinical_n"),
}


def protected_summary(ctx: Context, row: pd.Series, measure: str) -> dict:
    """The headline as the page may show it (same keys as `outcome_summary`).

    Counts carry their cell's noise; the four rates are protected events / protected total
    with a Wilson interval widened for the noise; the mean improvement is the exact mean plus
    the sum's bounded noise over the protected count (interval widened likewise); the effect
    size is that mean over the SD of the first scores; r is exact (a statistic, released when
    its episodes describe at least k clients) with its interval at the protected n. ``withheld``:
    the figures whose population has 1 .. k-1 clients or whose rate has 1 .. k-1 events or
    non-events (numerator rule); ``outcome_share`` (episodes with change scores / ended) and
    its withholding likewise.
    """
    policy = ctx.policy
    raw = summary_from_row(row, measure)
    counts = np.array([float(row[c]) for c in _COUNTS])
    keys = np.array([float(row[f"{c}_cellkey"]) for c in _COUNTS])
    values = protected.perturb_count_values(counts, keys, policy, ctx.noise)
    shown = dict(zip(_COUNTS, values, strict=True))
    for col, base in _CLIENTS.items():
        key = noise.derived_key(np.array([float(row[f"{base}_cellkey"])]), "n_clients")
        exact = float(row[_CLIENT_COLS.get(col, col)])
        shown[col] = float(
            protected.perturb_count_values(np.array([exact]), key, policy, ctx.noise)[0]
        )
    out: dict = {"measure": measure}
    out.update({c: int(v) for c, v in shown.items()})
    withheld = set(withheld_keys(ctx, raw))
    for key, (events, total) in RATES.items():
        x, t = shown[events], shown[total]
        out[key] = x / t if t > 0 else None
        low, high = protected.wilson(pd.Series([x]), pd.Series([t]), ctx.noise)
        out[f"{key}_ci"] = None if t <= 0 else [float(low[0]), float(high[0])]
        ex, et = int(row[events]), int(row[total])
        if protected.numerator_withheld(policy, ex, et):
            withheld.add(key)
    n, shown_n = raw["outcome_n"], shown["outcome_n"]
    mean = raw["mean_improvement"]
    if mean is not None and shown_n > 0:
        mean = float(
            noise.perturb_means(
                np.array([mean]),
                np.array([shown_n]),
                np.array([float(row["outcome_n_cellkey"])]),
                change_range(measure),
                ctx.noise,
            )[0]
        )
    out["mean_improvement"] = mean
    sd = _num(row["sd_improvement"])
    if mean is not None and sd is not None and n >= 2:
        low, high = protected.mean_interval(
            pd.Series([mean]),
            pd.Series([sd]),
            pd.Series([shown_n]),
            change_range(measure),
            ctx.noise,
        )
        out["mean_improvement_ci"] = [float(low[0]), float(high[0])]
    else:
        out["mean_improvement_ci"] = None
    sd_first = _num(row["sd_first"])
    out["pre_post_effect_size"] = mean / sd_first if mean is not None and sd_first else None
    r = raw["alliance_outcome_r"]
    out["alliance_outcome_r"] = r
    ci = fisher_z_ci(r, int(shown["r_n"])) if r is not None else (float("nan"),) * 2
    out["alliance_outcome_r_ci"] = None if math.isnan(ci[0]) else [ci[0], ci[1]]
    ended, x = shown["ended"], shown["outcome_n"]
    out["outcome_share"] = x / ended if ended > 0 else None
    out["outcome_share_withheld"] = protected.numerator_withheld(policy, n, int(row["ended"]))
    for key in withheld:
        out[key] = None
        if f"{key}_ci" in out:
            out[f"{key}_ci"] = None
    out["withheld"] = sorted(withheld)
    return out


def delta_significant(ctx: Context, key: str, now: dict, before: dict) -> bool | None:
    """Whether a tile's change is beyond chance: the 95% interval of the difference between
    the two periods' shown figures excludes zero (panel.delta_interval)."""
    a, b = now.get(key), before.get(key)
    if a is None or b is None:
        return None
    if key in RATES:
        total = RATES[key][1]
        return beyond_chance(delta_interval("rate", (a, now[total]), (b, before[total]), ctx.noise))
    if key == "alliance_outcome_r":
        return beyond_chance(delta_interval("r", (a, now["r_n"]), (b, before["r_n"]), ctx.noise))
    # means: the SE behind each period's shown interval (widened for the noise); the effect
    # size is the mean improvement over the SD of the first scores, so its SE scales alike
    se_a = se_from_ci(now.get("mean_improvement_ci"))
    se_b = se_from_ci(before.get("mean_improvement_ci"))
    if key == "pre_post_effect_size":
        ma, mb = now.get("mean_improvement"), before.get("mean_improvement")
        if not ma or not mb:
            return None
        se_a, se_b = se_a * abs(a / ma), se_b * abs(b / mb)
    elif key != "mean_improvement":
        return None
    return beyond_chance(delta_interval("se", (a, se_a), (b, se_b), ctx.noise))
