"""The Alliance (trust) page's numbers: the headline (exact, then as it may be shown), the
tiles' figures, and the protected frames of the distribution, the WAI-SR subscales, the
monthly control chart, the alliance by session number and the drops with their dropout.

Definitions: ../shared/metrics.md ("Alliance", "Quality improvement views").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance import noise, privacy, protected, queries
from alliance.charts.control import baseline_mask, spc_frame
from alliance.panel import Context
from alliance.stats import Estimate, risk_difference, xbar_chart

LAST_SESSION_NUMBER = 12  # session numbers from 12 on are pooled ("12+")
FIXED_COHORT_SESSIONS = 6  # the fixed cohort: episodes seen from session 1 through session 6
FIXED_LABEL = f"Same episodes, sessions 1–{FIXED_COHORT_SESSIONS}"


@dataclass(frozen=True)
class Scale:
    """How one alliance measure is binned, labelled and formatted."""

    key: str
    label: str  # e.g. "SRS total"
    long_label: str
    unit: str
    bin_floor: float  # scores below are pooled into one bin
    bin_width: float
    scale_max: float
    ticks: tuple[float, ...]
    decimals: int
    record_range: float  # one rating's range: the scale of a sum's noise (alliance/noise.py)

    @property
    def value_format(self) -> str:
        return "num1" if self.decimals == 1 else "num2"

    def fmt(self, value: float) -> str:
        return f"{value:.{self.decimals}f}"


SCALES = {
    "srs": Scale(
        "srs",
        "SRS total",
        "Session Rating Scale total (0–40)",
        "points",
        25.0,
        1.0,
        40.0,
        (30.0, 35.0),
        1,
        40.0,
    ),
    "wai": Scale(
        "wai",
        "WAI-SR mean item score",
        "WAI-SR mean item score (1–5)",
        "",
        2.5,
        0.25,
        5.0,
        (3.0, 3.5, 4.0, 4.5),
        2,
        4.0,
    ),
}
SUBSCALES = {
    "task": "Task: agreeing on what to work on",
    "bond": "Bond: liking and trusting each other",
    "goal": "Goal: agreeing on the goals",
    "total": "Whole scale (mean of 12 items)",
}


def scale_of(ctx: Context) -> Scale:
    """The alliance measure chosen in the filters (SRS unless WAI-SR)."""
    return SCALES.get(ctx.filters.alliance_measure, SCALES["srs"])


def _num(x: object) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def rate_interval(ctx: Context, x: float, n: float) -> tuple[float, float]:
    """The 95% Wilson interval of protected x / n, widened for the noise."""
    lo, hi = protected.wilson(pd.Series([x]), pd.Series([n]), ctx.noise)
    return lo[0], hi[0]


# --------------------------------------------------------------------------- headline


def summary(ctx: Context) -> dict[str, float | int | None]:
    """Alliance headline figures for the view (unsuppressed: callers pass them through protect)."""
    s = queries.run(
        ctx.con, "alliance_summary", **ctx.params(), srs_cutoff=ctx.settings.srs_cutoff
    ).iloc[0]
    d = queries.run(
        ctx.con, "alliance_drops", **ctx.params(), rupture_threshold=ctx.settings.rupture_threshold
    ).iloc[0]
    return {
        "sessions": int(s["sessions"]),
        "n_clients": int(s["n_clients"]),
        "srs_n": int(s["srs_n"]),
        "srs_clients": int(s["srs_clients"]),
        "mean_srs": _num(s["mean_srs"]),
        "sd_srs": _num(s["sd_srs"]),
        "srs_below": int(s["srs_below"]),
        "srs_below_rate": s["srs_below"] / s["srs_n"] if s["srs_n"] else None,
        "wai_n": int(s["wai_n"]),
        "wai_clients": int(s["wai_clients"]),
        "mean_wai": _num(s["mean_wai"]),
        "sd_wai": _num(s["sd_wai"]),
        "drop_clients": int(d["n_clients"]),
        "with_previous": int(d["with_previous"]),
        "drops": int(d["drops"]),
        "drop_rate": _num(d["drop_rate"]),
        # cell keys of the counts, for the protected-statistics step (never shown)
        **{c: int(s[c]) for c in s.index if c.endswith(protected.KEY_SUFFIX)},
        **{c: int(d[c]) for c in d.index if c.endswith(protected.KEY_SUFFIX)},
    }


def nothing_shown(ctx: Context, s: dict) -> bool:
    """No figure at all: an empty selection, or one of 1 .. k-1 clients."""
    n = s["n_clients"]
    return privacy.cohort_too_small(n, ctx.policy) or n == 0


# The headline's protected counts, means and rates. A client count takes its key from the
# count of its cell's records (noise.derived_key, as protect_counts' n_key_from), so the SRS
# clients of one month show what the control chart's month shows.
_CLIENTS_FROM = {
    "n_clients": "sessions",
    "srs_clients": "srs_n",
    "wai_clients": "wai_n",
    "drop_clients": "with_previous",
}
_COUNTS = [
    "sessions",
    "srs_n",
    "srs_below",
    "wai_n",
    "with_previous",
    "drops",
    *_CLIENTS_FROM,
]
_MEANS = [
    protected.Mean("mean_srs", "srs_n", SCALES["srs"].record_range),
    protected.Mean("mean_wai", "wai_n", SCALES["wai"].record_range),
]
_RATES = [
    protected.Rate("srs_below_rate", "srs_below", "srs_n"),
    protected.Rate("drop_rate", "drops", "with_previous"),
    protected.Rate("srs_recorded", "srs_n", "sessions"),
]


def protected_summary(ctx: Context, s: dict) -> dict:
    """The headline as it may be shown: every count with its cell's noise (never below k),
    means and rates from protected parts, and under "rule" the rates that the numerator rule
    withholds (1 .. k-1 events or non-events). The threshold on clients is the caller's."""
    raw = {c: s[c] for c in _COUNTS}
    raw.update({m.col: np.nan if s[m.col] is None else s[m.col] for m in _MEANS})
    raw.update({f"{c}_cellkey": s[f"{c}_cellkey"] for c in _COUNTS if c not in _CLIENTS_FROM})
    for clients, records in _CLIENTS_FROM.items():
        key = np.array([s[f"{records}_cellkey"]], dtype="float64")
        raw[f"{clients}_cellkey"] = noise.derived_key(key, "n_clients")[0]
    frame = pd.DataFrame([raw])
    shown, rule = protected.perturb_figures(
        frame, policy=ctx.policy, params=ctx.noise, counts=_COUNTS, means=_MEANS, rates=_RATES
    )
    row = shown.iloc[0]
    out: dict = {c: _num(row[c]) for c in [*_COUNTS, *(m.col for m in _MEANS)]}
    out.update({r.col: _num(row[r.col]) for r in _RATES})
    out["rule"] = rule
    return out


@dataclass(frozen=True)
class TileFigure:
    value: float | None
    withheld: bool


def tile_figures(ctx: Context, s: dict, p: dict) -> dict[str, TileFigure]:
    """The tiles' figures from the protected summary `p`; the exact summary `s` only judges
    (a figure of 1 .. k-1 clients is withheld, and so is a rate under the numerator rule)."""
    mean = "mean_wai" if ctx.filters.alliance_measure == "wai" else "mean_srs"
    rule = p["rule"]
    rows = [
        (mean, p[mean], s["wai_clients" if mean == "mean_wai" else "srs_clients"], False),
        (
            "srs_below_cutoff_rate",
            p["srs_below_rate"],
            s["srs_clients"],
            "srs_below_rate" in rule,
        ),
        ("drop_rate", p["drop_rate"], s["drop_clients"], "drop_rate" in rule),
        ("srs_recorded", p["srs_recorded"], s["n_clients"], "srs_recorded" in rule),
    ]
    out = {}
    for key, value, n_clients, by_rule in rows:
        withheld = privacy.cohort_too_small(n_clients, ctx.policy) or by_rule
        out[key] = TileFigure(None if withheld or value is None else float(value), withheld)
    return out


def rating_clients(s: dict, scale: Scale) -> int:
    """Distinct clients with a rating of the scale in the period (exact from the summary,
    protected from protected_summary)."""
    return int(s["srs_clients"] if scale.key == "srs" else s["wai_clients"])


def rating_count(p: dict, scale: Scale) -> float:
    """The protected count of the scale's ratings in the period."""
    return float(p["srs_n"] if scale.key == "srs" else p["wai_n"])


def below_cutoff_shown(ctx: Context, s: dict, p: dict) -> bool:
    """Whether the share of SRS ratings below the cutoff may be shown."""
    return (
        bool(s["srs_n"])
        and privacy.statistic_released(ctx.policy, s["srs_clients"])
        and "srs_below_rate" not in p["rule"]
        and p["srs_below_rate"] is not None
    )


# --------------------------------------------------------------------------- panels


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
