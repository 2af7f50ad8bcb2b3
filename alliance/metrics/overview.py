"""The Overview's numbers: the headline of a period (exact, then as it may be shown), the tiles'
figures and changes, and the monthly alliance and dropout frames (protected).

Read by the Overview page, `summary`, `protection-cost`, the report and the bench.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance import noise, privacy, protected, queries
from alliance.panel import Context, beyond_chance, delta_interval
from alliance.stats import fisher_z_ci
from alliance.views.common import gather

SRS_RANGE = 40.0  # one SRS rating's range (0-40): the scale of a sum's noise


def _num(x: object) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def headline(ctx: Context, filters=None) -> dict[str, float | int | None]:
    """The headline figures for one period (unsuppressed: callers pass them through `protect`).

    The client count behind each figure is there for the privacy step: n_clients (sessions),
    ended_clients, outcome_clients exactly; srs_clients, clinical_clients and r_clients
    exactly when below k, else possibly a lower bound that is already at least k (see
    `protected.clients_behind`): compare them with k, do not show them.
    """
    f = filters or ctx.filters
    p = ctx.params(f)
    measure = f.outcome_measure
    s, e = (
        df.iloc[0]
        for df in gather(
            lambda: queries.run(
                ctx.con, "overview_sessions", **p, srs_cutoff=ctx.settings.srs_cutoff
            ),
            lambda: queries.run(
                ctx.con, "overview_episodes", **p, **ctx.settings.outcome_params(measure)
            ),
        )
    )

    policy = ctx.policy
    sessions, clients, srs_n = int(s["sessions"]), int(s["n_clients"]), int(s["srs_n"])
    outcome_n, outcome_clients = int(e["outcome_n"]), int(e["outcome_clients"])
    # Clients with an SRS: at least the clients minus the sessions without one (a client with
    # no SRS has at least one such session); settled exactly only when that bound is below k.
    srs_clients = protected.clients_behind(
        srs_n, clients - (sessions - srs_n), policy, lambda: _alliance_clients(ctx, f)
    )
    # Clients of a subset of the outcome episodes: at least its episodes minus the outcome
    # episodes beyond each client's first (outcome_n - outcome_clients).
    exact: dict[str, int] = {}

    def outcome_exact(key: str) -> int:
        if not exact:
            exact.update(_outcome_clients(ctx, f))
        return exact[key]

    extra = outcome_n - outcome_clients
    clinical_n, r_n = int(e["clinical_n"]), int(e["r_n"])
    clinical_clients = protected.clients_behind(
        clinical_n, clinical_n - extra, policy, lambda: outcome_exact("clinical_clients")
    )
    r_clients = protected.clients_behind(
        r_n, r_n - extra, policy, lambda: outcome_exact("r_clients")
    )

    return {
        "sessions": int(s["sessions"]),
        "n_clients": int(s["n_clients"]),
        "active_episodes": int(s["active_episodes"]),
        "therapists": int(s["therapists"]),
        "srs_n": srs_n,
        "srs_clients": srs_clients,
        "mean_srs": _num(s["mean_srs"]),
        "sd_srs": _num(s["sd_srs"]),
        "srs_below": int(s["srs_below"]),
        "srs_below_cutoff_rate": _num(s["srs_below_rate"]),
        "ended": int(e["ended"]),
        "ended_clients": int(e["n_clients"]),
        "dropouts": int(e["dropouts"]),
        "dropout_rate": _num(e["dropout_rate"]),
        "outcome_n": int(e["outcome_n"]),
        "outcome_clients": int(e["outcome_clients"]),
        "reliable_improvement_rate": _num(e["reliable_improvement"] / e["outcome_n"])
        if e["outcome_n"]
        else None,
        "reliable_deterioration_rate": _num(e["reliable_deterioration"] / e["outcome_n"])
        if e["outcome_n"]
        else None,
        "clinical_n": clinical_n,
        "clinical_clients": clinical_clients,
        "recovery_rate": _num(e["recovered"] / e["clinical_n"]) if e["clinical_n"] else None,
        "reliable_recovery_rate": _num(e["reliably_recovered"] / e["clinical_n"])
        if e["clinical_n"]
        else None,
        "alliance_outcome_r": _num(e["r"]),
        "r_n": r_n,
        "r_clients": r_clients,
        # cell keys of the counts, for the protected-statistics step (never shown)
        **{c: int(s[c]) for c in s.index if c.endswith("_cellkey")},
        **{c: int(e[c]) for c in e.index if c.endswith("_cellkey")},
        # distinct clients and episodes of the sessions: keys derived from the sessions' key
        **{
            f"{c}_cellkey": int(noise.derived_key(np.array([s["sessions_cellkey"]]), c)[0])
            for c in ("n_clients", "active_episodes")
        },
        "reliable_improvement": int(e["reliable_improvement"]),
        "recovered": int(e["recovered"]),
    }


def nothing_shown(ctx: Context, head: dict) -> bool:
    """No figure at all: an empty selection, or one of 1 .. k-1 clients."""
    n = head["n_clients"]
    return privacy.cohort_too_small(n, ctx.policy) or n == 0


# The headline's protected counts (each with its `<count>_cellkey`), means and rates.
_COUNTS = [
    "sessions",
    "n_clients",
    "active_episodes",
    "srs_n",
    "srs_below",
    "ended",
    "dropouts",
    "outcome_n",
    "reliable_improvement",
    "clinical_n",
    "recovered",
    "r_n",
]
_MEANS = [protected.Mean("mean_srs", "srs_n", 40.0)]
RATES = {
    "srs_below_cutoff_rate": protected.Rate("srs_below_cutoff_rate", "srs_below", "srs_n"),
    "dropout_rate": protected.Rate("dropout_rate", "dropouts", "ended"),
    "reliable_improvement_rate": protected.Rate(
        "reliable_improvement_rate", "reliable_improvement", "outcome_n"
    ),
    "recovery_rate": protected.Rate("recovery_rate", "recovered", "clinical_n"),
}


def now_shown(ctx: Context, head: dict, count: str) -> float:
    """One headline count as shown (with its cell's noise)."""
    return protected_headline(ctx, head)[0][count] or 0


def protected_headline(ctx: Context, head: dict) -> tuple[dict, set[str]]:
    """The headline as it may be shown: counts with their cell's noise, means and rates from
    protected parts, and the keys withheld by the numerator rule (a rate with 1 .. k-1 events
    or non-events). The threshold on each figure's clients is the caller's (`population`)."""
    # the same arithmetic as protected.perturb on one row, in numpy (a frame per call would
    # cost more than the rest of the step)
    counts = np.array([head[c] for c in _COUNTS], dtype="float64")
    keys = np.array([head[f"{c}_cellkey"] for c in _COUNTS], dtype="float64")
    noisy = protected.shown_counts(counts, keys, policy=ctx.policy, params=ctx.noise)
    shown = dict(zip(_COUNTS, noisy, strict=True))
    out: dict[str, float | None] = {c: float(v) for c, v in shown.items()}
    for m in _MEANS:
        value = noise.perturb_means(
            np.array([np.nan if head[m.col] is None else head[m.col]], dtype="float64"),
            np.array([shown[m.n]]),
            np.array([head[f"{m.n}_cellkey"]], dtype="float64"),
            m.record_range,
            ctx.noise,
        )[0]
        out[m.col] = None if np.isnan(value) else float(value)
    for key, rate in RATES.items():
        total = shown[rate.total]
        out[key] = float(shown[rate.events] / total) if total > 0 else None
    withheld = {
        key
        for key, rate in RATES.items()
        if protected.rate_withheld(head[rate.events], head[rate.total], ctx.policy)
    }
    out["alliance_outcome_r"] = head["alliance_outcome_r"]
    return out, withheld


def _alliance_clients(ctx: Context, f) -> int:
    s = queries.run(
        ctx.con, "alliance_summary", **ctx.params(f), srs_cutoff=ctx.settings.srs_cutoff
    )
    return int(s["srs_clients"].iloc[0])


def _outcome_clients(ctx: Context, f) -> dict[str, int]:
    o = queries.run(
        ctx.con,
        "outcomes_summary",
        **ctx.params(f),
        **ctx.settings.outcome_params(f.outcome_measure),
    ).iloc[0]
    return {"clinical_clients": int(o["clinical_clients"]), "r_clients": int(o["r_clients"])}


# the clients each tile's figure describes (headline keys)
POPULATION = {
    "active_episodes": "n_clients",
    "sessions": "n_clients",
    "mean_srs": "srs_clients",
    "srs_below_cutoff_rate": "srs_clients",
    "dropout_rate": "ended_clients",
    "reliable_improvement_rate": "outcome_clients",
    "recovery_rate": "clinical_clients",
    "alliance_outcome_r": "r_clients",
}
# the count each tile's "n = ..." gives (headline keys), in the order of the tiles
TILE_COUNTS = {
    "active_episodes": "n_clients",
    "sessions": "n_clients",
    "mean_srs": "srs_n",
    "srs_below_cutoff_rate": "srs_n",
    "dropout_rate": "ended",
    "reliable_improvement_rate": "outcome_n",
    "recovery_rate": "clinical_n",
    "alliance_outcome_r": "r_n",
}


def population(head: dict, key: str) -> int:
    """The clients a tile's figure describes (exact, or a lower bound that reaches k)."""
    return int(head.get(POPULATION[key]) or 0)


@dataclass(frozen=True)
class TileFigure:
    """One tile's numbers as they may be shown."""

    value: float | None
    withheld: bool
    delta: float | None  # change from last period, only when both periods are shown
    delta_significant: bool | None
    n_shown: float  # the protected count behind the figure
    ci: tuple[float, float] | None  # 95% interval (the correlation's)


def tile_figures(ctx: Context, now: dict, before: dict) -> dict[str, TileFigure]:
    """The protected-statistics step for the tiles: every figure from protected counts
    (cell-key noise); a tile whose population has fewer than k clients, or whose rate has
    1 .. k-1 events or non-events, is withheld; its change is shown only when last period's
    figure was shown too (the change and this period's value would give last period's away)."""
    shown_now, rule_now = protected_headline(ctx, now)
    shown_before, rule_before = protected_headline(ctx, before) if before else ({}, set())
    out = {}
    for key, n_key in TILE_COUNTS.items():
        hidden = privacy.cohort_too_small(population(now, key), ctx.policy) or key in rule_now
        value = None if hidden else shown_now.get(key)
        prev = shown_before.get(key)
        delta = None
        if (
            value is not None
            and prev is not None
            and privacy.statistic_released(ctx.policy, population(before, key))
            and key not in rule_before
        ):
            delta = value - prev
        significant = delta_significant(ctx, key, shown_now, shown_before, now, before)
        n_shown = shown_now.get(n_key) or 0
        ci = None
        if key == "alliance_outcome_r" and value is not None and n_shown > 3:
            ci = fisher_z_ci(value, int(n_shown))
        out[key] = TileFigure(
            value=value,
            withheld=hidden,
            delta=delta,
            delta_significant=significant if delta is not None else None,
            n_shown=n_shown,
            ci=ci,
        )
    return out


def delta_significant(
    ctx: Context, key: str, shown_now: dict, shown_before: dict, now: dict, before: dict
) -> bool | None:
    """Whether a tile's change is beyond chance: the 95% interval of the difference between
    the two periods' shown figures excludes zero (panel.delta_interval)."""
    a, b = shown_now.get(key), shown_before.get(key)
    if a is None or b is None:
        return None
    if key in RATES:
        total = RATES[key].total
        return beyond_chance(
            delta_interval("rate", (a, shown_now[total]), (b, shown_before[total]), ctx.noise)
        )
    if key == "mean_srs":
        sd_a, sd_b = now.get("sd_srs"), before.get("sd_srs")
        if sd_a is None or sd_b is None:
            return None
        return beyond_chance(
            delta_interval(
                "mean",
                (a, shown_now["srs_n"], sd_a),
                (b, shown_before["srs_n"], sd_b),
                ctx.noise,
                record_range=SRS_RANGE,
            )
        )
    if key == "alliance_outcome_r":
        return beyond_chance(
            delta_interval("r", (a, shown_now["r_n"]), (b, shown_before["r_n"]), ctx.noise)
        )
    return None  # counts: no better direction, never coloured


# --------------------------------------------------------------------------- monthly frames


def alliance_trend(ctx: Context) -> pd.DataFrame | None:
    """The monthly mean SRS as it may be shown, with its 95% band (`low`, `high`); None
    without ratings. Months add up to the ratings in the subtitle: one partition, so a withheld
    month cannot be recovered by subtraction; the band is formed from the protected mean and
    count."""
    df = queries.run(
        ctx.con,
        "monthly_alliance",
        **ctx.params(),
        alliance="srs",
        srs_cutoff=ctx.settings.srs_cutoff,
    )
    if df.empty:
        return None
    safe = protected.protect_table(
        df[["month", "n_clients", "n", "mean_score", "sd_score", "n_cellkey"]],
        policy=ctx.policy,
        params=ctx.noise,
        counts=["n_clients", "n"],
        means=[protected.Mean("mean_score", "n", SRS_RANGE)],
        value_cols=["n", "mean_score", "sd_score"],
        n_key_from="n",
        overlapping=True,  # a client is rated in many months
    )
    low, high = protected.mean_interval(
        safe["mean_score"], safe["sd_score"], safe["n"], SRS_RANGE, ctx.noise
    )
    return safe.drop(columns="sd_score").assign(low=low, high=high)


def dropout_trend(ctx: Context) -> pd.DataFrame | None:
    """The monthly dropout rate as it may be shown, with its 95% Wilson band; None without
    ended episodes. The numerator rule withholds a month with 1 .. k-1 dropouts or other
    endings."""
    df = queries.run(ctx.con, "monthly_dropout", **ctx.params())
    if df.empty:
        return None
    safe = protected.protect_table(
        df,
        policy=ctx.policy,
        params=ctx.noise,
        counts=["n_clients", "ended", "dropouts"],
        rates=[protected.Rate("dropout_rate", "dropouts", "ended")],
        value_cols=["ended", "dropouts", "dropout_rate"],
        n_key_from="ended",
        overlapping=True,  # a client may end two episodes in the period
    )
    low, high = protected.wilson(safe["dropouts"], safe["ended"], ctx.noise)
    return safe.assign(low=low, high=high)
