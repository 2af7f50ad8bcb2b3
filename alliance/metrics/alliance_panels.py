"""The Alliance (trust) page's panels, numbers only: the protected frames of the distribution,
the WAI-SR subscales, the monthly control chart, the alliance by session number and the drops
with their dropout. The scales and the headline are alliance.metrics.alliance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance import privacy, protected, queries
from alliance.charts.control import baseline_mask, spc_frame
from alliance.metrics.alliance import (
    FIXED_COHORT_SESSIONS,
    FIXED_LABEL,
    LAST_SESSION_NUMBER,
    SCALES,
    SUBSCALES,
    Scale,
    rating_clients,
    rating_count,
)
from alliance.panel import Context
from alliance.stats import Estimate, risk_difference, xbar_chart


def _num(x: object) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


@dataclass(frozen=True)
class Distribution:
    """The bins of the ratings as they may be shown: `safe` with each bin's share of ALL
    ratings (`share`), where to draw it (`x`), the pooled bin and the top score's bin."""

    safe: pd.DataFrame
    x: np.ndarray
    pooled: pd.Series
    top: pd.Series
    total: float  # the protected count of all ratings
    n_clients: int  # exact: judges
    shown_clients: int  # protected
    clients_shown: bool  # whether the clients may be given beside the total


def distribution(ctx: Context, scale: Scale, s: dict, p: dict) -> Distribution | None:
    """None without ratings. Bins add up to all ratings shown in the subtitle: one partition
    (a client rates in several bins: a withheld set is judged by its largest bin); each bin's
    share is its protected count over the protected count of all ratings."""
    df = queries.run(
        ctx.con,
        "alliance_distribution",
        **ctx.params(),
        alliance=scale.key,
        bin_floor=scale.bin_floor,
        bin_width=scale.bin_width,
        scale_max=scale.scale_max,
    )
    if df.empty:
        return None
    safe = protected.protect_table(
        df,
        policy=ctx.policy,
        params=ctx.noise,
        counts=["n_clients", "n"],
        value_cols=["n", "share"],
        n_key_from="n",
        overlapping=True,
    )
    total = rating_count(p, scale)
    safe["share"] = safe["n"].astype("float64") / total if total else np.nan
    half = scale.bin_width / 2
    low, high = safe["bin_low"], safe["bin_high"]
    pooled = low.isna()
    top = (low == high).fillna(False)
    x = np.where(pooled, scale.bin_floor - half, np.where(top, scale.scale_max + half, low + half))
    n_clients = rating_clients(s, scale)
    return Distribution(
        safe=safe,
        x=x,
        pooled=pooled,
        top=top,
        total=total,
        n_clients=n_clients,
        shown_clients=rating_clients(p, scale),
        clients_shown=privacy.statistic_released(ctx.policy, n_clients),
    )


def wai_subscales(ctx: Context) -> tuple[pd.DataFrame, int, bool] | None:
    """The WAI-SR subscales as they may be shown (with 95% bands), the WAI-SR clients of the
    period and whether the ratings' total may be given beside them; None without ratings."""
    df = queries.run(ctx.con, "alliance_wai_subscales", **ctx.params())
    if df.empty:
        return None
    wai_range = SCALES["wai"].record_range
    df = df.assign(subscale=df["subscale"].map(SUBSCALES))
    # the four rows describe the same clients (not parts of a total): primary suppression only;
    # they are the same episodes, so the same keys: every row shows the same protected counts
    safe = protected.protect_table(
        df,
        policy=ctx.policy,
        params=ctx.noise,
        counts=["n_clients", "episodes", "administrations"],
        means=[protected.Mean("mean_score", "episodes", wai_range)],
        value_cols=["episodes", "administrations", "mean_score", "sd_score"],
        complementary=False,
        n_key_from="episodes",
    )
    low, high = protected.mean_interval(
        safe["mean_score"], safe["sd_score"], safe["episodes"], wai_range, ctx.noise
    )
    safe = safe.assign(low=low, high=high)
    # every row describes the WAI-SR clients of the period (one population, four views)
    clients = int(df["n_clients"].max())
    return safe, clients, privacy.statistic_released(ctx.policy, clients)


@dataclass(frozen=True)
class Control:
    """The monthly control chart: the protected months and the chart's frame (None when no
    month may be shown, so there is no baseline)."""

    safe: pd.DataFrame
    frame: pd.DataFrame | None
    baseline_months: int


def control_chart(ctx: Context, scale: Scale) -> Control | None:
    """None without ratings. Months add up to the period's ratings: one partition, so a
    withheld month stays hidden (a client is rated in many months: a withheld set is judged by
    its largest month); the chart is drawn from the protected means and counts."""
    df = queries.run(
        ctx.con,
        "monthly_alliance",
        **ctx.params(),
        alliance=scale.key,
        srs_cutoff=ctx.settings.srs_cutoff,
    )
    if df.empty:
        return None
    safe = protected.protect_table(
        df[["month", "n_clients", "n", "mean_score", "sd_score", "n_cellkey"]],
        policy=ctx.policy,
        params=ctx.noise,
        counts=["n_clients", "n"],
        means=[protected.Mean("mean_score", "n", scale.record_range)],
        value_cols=["n", "mean_score", "sd_score"],
        n_key_from="n",
        overlapping=True,
    )
    base = baseline_mask(safe["mean_score"], ctx.settings.spc_baseline_months)
    if not base.any():
        return Control(safe, None, 0)
    chart = xbar_chart(safe["mean_score"], safe["sd_score"], safe["n"], baseline=base)
    frame = spc_frame(
        safe["month"], chart["mean"], chart["centre"], chart["lcl"], chart["ucl"], base
    )
    frame = frame.assign(
        n_clients=safe["n_clients"].to_numpy(),
        n=safe["n"].to_numpy(),
        suppressed=safe["suppressed"].to_numpy(),
        suppression=safe["suppression"].to_numpy(),
    )
    return Control(safe, frame, int(base.sum()))


def by_session_number(ctx: Context, scale: Scale) -> pd.DataFrame | None:
    """The mean rating at each session number, for all episodes and for the fixed cohort, as
    it may be shown (with 95% bands); None without ratings. The points of a line add up to its
    ratings: one partition per line, so a withheld point cannot be recovered by subtraction (a
    client is rated at many session numbers: a withheld set is judged by its largest point);
    means and bands from the protected sums and counts."""
    df = queries.run(
        ctx.con,
        "alliance_by_session_number",
        **ctx.params(),
        alliance=scale.key,
        last_number=LAST_SESSION_NUMBER,
        cohort_sessions=FIXED_COHORT_SESSIONS,
    )
    if df.empty:
        return None
    df = df.assign(
        group=df["cohort"].map({"all": "All episodes", "fixed": FIXED_LABEL}),
        session=np.where(
            df["session_number"] >= LAST_SESSION_NUMBER,
            f"{LAST_SESSION_NUMBER}+",
            df["session_number"].astype(str),
        ),
    )
    safe = protected.protect_table(
        df,
        policy=ctx.policy,
        params=ctx.noise,
        counts=["n_clients", "n"],
        means=[protected.Mean("mean_score", "n", scale.record_range)],
        value_cols=["n", "mean_score", "sd_score"],
        partition_cols=["cohort"],
        n_key_from="n",
        overlapping=True,
    )
    low, high = protected.mean_interval(
        safe["mean_score"], safe["sd_score"], safe["n"], scale.record_range, ctx.noise
    )
    return safe.assign(low=low, high=high)


@dataclass(frozen=True)
class Drops:
    """Dropout of ended episodes with and without an alliance drop, as it may be shown."""

    safe: pd.DataFrame  # one row per group, with Wilson bands
    episodes: float  # both groups together, protected
    clients: int  # the two groups' clients: at least the larger group's
    overall: float | None  # both groups' dropout rate, None when withheld
    drops_shown: bool  # whether the period's drop rate may be given
    difference: tuple[float, float, Estimate] | None  # with, without, their difference


def drops_and_dropout(ctx: Context, s: dict, p: dict) -> Drops | None:
    """None without an ended episode with two or more SRS ratings. The two groups split the
    same episodes: withholding one withholds both; a group with 1 .. k-1 dropouts or other
    endings is withheld (numerator rule)."""
    thr = ctx.settings.rupture_threshold
    df = queries.run(ctx.con, "alliance_drops_dropout", **ctx.params(), rupture_threshold=thr)
    if df.empty:
        return None
    df = df.sort_values("had_drop", ascending=False, ignore_index=True)
    df = df.assign(
        group=np.where(df["had_drop"], f"With a drop of {thr:g}+ points", "Without a drop")
    )
    rate = protected.Rate("dropout_rate", "dropouts", "episodes")
    safe = protected.protect_table(
        df,
        policy=ctx.policy,
        params=ctx.noise,
        counts=["n_clients", "episodes", "dropouts"],
        rates=[rate],
        value_cols=["episodes", "dropouts", "dropout_rate"],
        n_key_from="episodes",
    )
    low, high = protected.wilson(safe["dropouts"], safe["episodes"], ctx.noise)
    safe = safe.assign(low=low, high=high)
    # both groups together: a cell of their own, whose key is the sum of theirs
    both = pd.DataFrame(
        {c: [df[c].sum()] for c in ["episodes", "dropouts", "episodes_cellkey", "dropouts_cellkey"]}
    )
    shown, ruled = protected.perturb_figures(
        both, policy=ctx.policy, params=ctx.noise, counts=["episodes", "dropouts"], rates=[rate]
    )
    total = shown.iloc[0]
    clients = int(df["n_clients"].max())
    overall_ok = privacy.statistic_released(ctx.policy, clients) and not ruled
    drops_shown = (
        p["drop_rate"] is not None
        and privacy.statistic_released(ctx.policy, s["drop_clients"])
        and "drop_rate" not in p["rule"]
    )
    difference = None
    withheld = "suppressed" in safe and bool(safe["suppressed"].any())
    if not withheld and len(safe) == 2:
        # from the protected counts, like every figure shown
        yes, no = safe[safe["had_drop"]].iloc[0], safe[~safe["had_drop"]].iloc[0]
        rd = risk_difference(
            float(yes["dropouts"]),
            float(yes["episodes"]),
            float(no["dropouts"]),
            float(no["episodes"]),
        )
        if np.isfinite(rd.value):
            difference = (yes["dropout_rate"], no["dropout_rate"], rd)
    return Drops(
        safe=safe,
        episodes=total["episodes"],
        clients=clients,
        overall=_num(total["dropout_rate"]) if overall_ok else None,
        drops_shown=drops_shown,
        difference=difference,
    )
