"""The Dropout page's numbers: the headline counts and rates, and each panel's protected frame.

Named queries (queries/dropout_*.sql, monthly_dropout.sql) -> statistics (alliance.stats, the
alliance-dropout statistics of dropout_stats.py) -> the protected step (threshold, numerator
rule, complementary suppression, cell-key noise; alliance/protected.py). Definitions:
../shared/metrics.md ("Dropout and its link to alliance"). No figures and no sentences: the
view (alliance/views/dropout.py) and its charts (alliance/charts/dropout.py) draw and word them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance import noise, privacy, protected, queries
from alliance.metrics.dropout_stats import GroupedLogit, d_by_site, effects_released
from alliance.panel import Context
from alliance.stats import Estimate, p_chart
from alliance.views.common import protect_comparison, protect_counts

LAST_SESSION = 13  # last sessions from 13 on are pooled ("13+")
SRS_RANGE = 40.0  # one SRS total's (and early SRS's) range: the scale of a sum's noise


# --------------------------------------------------------------------------- headline


def summary(ctx: Context) -> dict[str, float | int | None]:
    """Dropout headline counts for the view (unsuppressed)."""
    s = queries.run(ctx.con, "dropout_summary", **ctx.params()).iloc[0]
    out: dict[str, float | int | None] = {}
    for key, value in s.items():
        if pd.isna(value):
            out[str(key)] = None
        elif key in ("dropout_rate", "median_last_dropout", "median_last_planned"):
            out[str(key)] = float(value)
        else:
            out[str(key)] = int(value)
    return out


# The headline's protected counts (each with its `<count>_cellkey`) and rates. A client count
# takes its key from the count of its cell's episodes (noise.derived_key, as protect_counts'
# n_key_from), so one month's endings show the clients the p-chart's month shows.
_CLIENTS_FROM = {
    "n_clients": "ended",
    "early_clients": "with_early_srs",
    "dropout_clients": "dropouts",
    "planned_clients": "planned",
}
_KEYED = ["ended", "dropouts", "with_early_srs", "early_dropouts", "planned"]
_COUNTS = [*_KEYED, *_CLIENTS_FROM]
_RATES = [
    protected.Rate("dropout_rate", "dropouts", "ended"),
    protected.Rate("early_dropout_rate", "early_dropouts", "with_early_srs"),
]


def protected_summary(ctx: Context, s: dict) -> dict:
    """The headline as it may be shown: counts with their cell's noise (never below k), rates
    from protected counts, and under "rule" the rates the numerator rule withholds (1 .. k-1
    events or non-events). The threshold on clients is the caller's."""
    row = {c: s[c] for c in _COUNTS}
    row.update({f"{c}_cellkey": s[f"{c}_cellkey"] for c in _KEYED})
    for clients, episodes in _CLIENTS_FROM.items():
        key = np.array([s[f"{episodes}_cellkey"]], dtype="float64")
        row[f"{clients}_cellkey"] = noise.derived_key(key, "n_clients")[0]
    raw = pd.DataFrame([row])
    shown = protected.perturb_shown(
        raw, policy=ctx.policy, params=ctx.noise, counts=_COUNTS, rates=_RATES
    )
    row = shown.iloc[0]
    out: dict = {
        c: (None if pd.isna(row[c]) else float(row[c]))
        for c in shown.columns
        if not c.endswith(protected.KEY_SUFFIX)
    }
    out["rule"] = {
        r.col for r in _RATES if protected.numerator_withheld(ctx.policy, s[r.events], s[r.total])
    }
    return out


def rate_withheld(ctx: Context, s: dict, p: dict) -> bool:
    """The headline dropout rate is withheld: 1 .. k-1 clients ended, or its numerator rule."""
    return privacy.cohort_too_small(s["n_clients"], ctx.policy) or "dropout_rate" in p["rule"]


def wilson(ctx: Context, x: float, n: float) -> tuple[float, float]:
    """95% Wilson interval of a protected rate x / n, widened for the noise."""
    lo, hi = protected.wilson(pd.Series([x]), pd.Series([n]), ctx.noise)
    return float(lo[0]), float(hi[0])


def early_rate(ctx: Context, s: dict, p: dict) -> float | None:
    """The dropout rate of ended episodes with an early SRS, where it may be shown."""
    early_ok = (
        protected.all_have_enough_clients(ctx.policy, s["early_clients"])
        and "early_dropout_rate" not in p["rule"]
    )
    return p["early_dropout_rate"] if p["with_early_srs"] and early_ok else None


def early_srs_groups(ctx: Context) -> pd.DataFrame:
    """Ended episodes counted by site and exact early SRS (queries/dropout_early_srs.sql): the
    grouped counts behind d, the odds ratio, r and the fitted curve (dropout_stats.py)."""
    return queries.run(ctx.con, "dropout_early_srs", **ctx.params())


def effects_withheld(ctx: Context, s: dict) -> bool:
    """The one release rule for d, OR, r and the curve (dropout_stats.effects_released), on the
    distinct clients of the dropouts and of the other endings with an early SRS."""
    return not effects_released(ctx.policy, s["early_dropout_clients"], s["early_other_clients"])


# --------------------------------------------------------------------------- p-chart


def monthly(ctx: Context) -> pd.DataFrame | None:
    """The protected monthly endings, dropouts and rate (None: no episode ended)."""
    df = queries.run(ctx.con, "monthly_dropout", **ctx.params())
    if df.empty:
        return None
    # months add up to the period's endings: one partition (a client may end two episodes in
    # the period: a withheld set is judged by its largest month); a month with 1 .. k-1
    # dropouts or other endings is withheld (numerator rule); the chart is drawn from the
    # protected counts (as the Overview's monthly chart)
    return protect_counts(
        ctx,
        df,
        counts=["n_clients", "ended", "dropouts"],
        rates=[protected.Rate("dropout_rate", "dropouts", "ended")],
        value_cols=["ended", "dropouts", "dropout_rate"],
        n_key_from="ended",
        overlapping=True,
    )


def control_limits(safe: pd.DataFrame, baseline: np.ndarray) -> pd.DataFrame:
    """The p-chart of the protected months (stats.p_chart): p, centre, lcl, ucl."""
    return p_chart(safe["dropouts"], safe["ended"], baseline=baseline)


# --------------------------------------------------------------------------- bands, quintiles

QUINTILE_NAMES = (
    "Q1 lowest fifth",
    "Q2 second fifth",
    "Q3 middle fifth",
    "Q4 fourth fifth",
    "Q5 highest fifth",
)


def band_labels(cutoff: float) -> dict[str, str]:
    return {
        "below": f"Early SRS below {cutoff:g}",
        "at_or_above": f"Early SRS {cutoff:g} or above",
    }


def quintile_labels(ctx: Context, quint: pd.DataFrame, withheld: pd.Series) -> pd.Series:
    """One label per quintile row that never carries a client's early SRS: the quintile's name,
    with the cut points that bound it (interpolated percentiles rounded to whole SRS points,
    queries/dropout_by_quintile.sql) only where both quintiles a cut point separates are shown
    and have at least k clients (privacy.cut_point_labels). Quintiles without episodes (cut
    points that coincide) count as groups of 0 clients."""
    by_q = quint.set_index("quintile")
    cuts: list[float | None] = []
    for q in range(1, 5):
        hi = by_q["label_high"].get(q)
        lo = by_q["label_low"].get(q + 1)
        value = hi if hi is not None and not pd.isna(hi) else lo
        cuts.append(None if value is None or pd.isna(value) else float(value))
    hidden = pd.Series(withheld.to_numpy(dtype=bool), index=quint["quintile"].to_numpy())
    labels = privacy.cut_point_labels(
        QUINTILE_NAMES,
        cuts,
        [int(by_q["n_clients"].get(q, 0)) for q in range(1, 6)],
        policy=ctx.policy,
        withheld=[bool(hidden.get(q, False)) for q in range(1, 6)],
    )
    return quint["quintile"].map(dict(zip(range(1, 6), labels, strict=True)))


def bands_and_quintiles(ctx: Context) -> pd.DataFrame | None:
    """Dropout by early-SRS band (below / at or above the cutoff) and by quintile, protected,
    with 95% Wilson intervals (low, high); None when no ended episode has an early SRS."""
    cutoff = ctx.settings.srs_cutoff
    bands = queries.run(ctx.con, "dropout_by_alliance_band", **ctx.params(), srs_cutoff=cutoff)
    quint = queries.run(ctx.con, "dropout_by_quintile", **ctx.params())
    if bands.empty:
        return None
    bands = bands.assign(split="Cutoff", group=bands["band"].map(band_labels(cutoff)))
    quint = quint.assign(split="Early-SRS quintile", group=quint["quintile"].astype(str))
    cols = [
        "split",
        "group",
        "n_clients",
        "episodes",
        "dropouts",
        "dropout_rate",
        "mean_early_srs",
        "episodes_cellkey",
        "dropouts_cellkey",
    ]
    both = pd.concat([bands[cols], quint[cols]], ignore_index=True)
    # the bands split the episodes, and so do the quintiles: one partition each; a group with
    # 1 .. k-1 dropouts or other endings is withheld (numerator rule); rates, means and
    # intervals from the protected counts
    safe = protect_counts(
        ctx,
        both,
        counts=["n_clients", "episodes", "dropouts"],
        means=[protected.Mean("mean_early_srs", "episodes", SRS_RANGE)],
        rates=[protected.Rate("dropout_rate", "dropouts", "episodes")],
        value_cols=["episodes", "dropouts", "dropout_rate", "mean_early_srs"],
        partition_cols=["split"],
        n_key_from="episodes",
        overlapping=True,
    )
    low, high = protected.wilson(safe["dropouts"], safe["episodes"], ctx.noise)
    safe = safe.assign(low=low, high=high)
    # the quintiles' labels once their cells are judged: no cut point beside a withheld one
    is_q = (safe["split"] == "Early-SRS quintile").to_numpy()
    safe.loc[is_q, "group"] = quintile_labels(
        ctx, quint.reset_index(drop=True), safe.loc[is_q, "suppressed"].reset_index(drop=True)
    ).to_numpy()
    return safe


# --------------------------------------------------------------------------- fitted curve


def _weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x)
    cum = np.cumsum(w[order]) / w.sum()
    return float(x[order][np.searchsorted(cum, q)])


def fitted_curve(pooled: pd.DataFrame) -> tuple[pd.DataFrame, float, float] | None:
    """The fitted chance of dropout (x, p, low, high) over the middle 95% of episodes, and
    that range's ends; None when the logistic model cannot be fitted."""
    model = GroupedLogit(pooled)
    if model.res is None:
        return None
    x, w = pooled["early_srs"].to_numpy(float), pooled["episodes"].to_numpy(float)
    # drawn over the middle 95% of episodes, rounded outward to whole points: no single
    # client's score marks an end of the line, and the ends are not extrapolated far
    lo = max(0.0, np.floor(_weighted_quantile(x, w, 0.025)))
    hi = min(40.0, np.ceil(_weighted_quantile(x, w, 0.975)))
    if hi <= lo:
        hi = min(40.0, lo + 1)
    return model.curve(np.linspace(lo, hi, 81)), lo, hi


# --------------------------------------------------------------------------- d by site


def effect_by_site(
    ctx: Context,
    groups: pd.DataFrame,
    clients: pd.DataFrame,
    overall: dict[str, Estimate],
    early_clients: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Cohen's d of the clinic and of each site (when more than one), protected: the rows as
    they may be shown, and whether each row's d is released (the clinic's first)."""
    rows = [("All sites in view", "__all__", overall["d"])]
    by_site = d_by_site(groups)
    if len(by_site) > 1:
        rows += [(str(site), site, d) for site, d in by_site.items()]
    c = clients.set_index("site").reindex([r[1] for r in rows], fill_value=0)
    frame = pd.DataFrame(
        {
            "group": [r[0] for r in rows],
            "scope": ["clinic" if r[1] == "__all__" else "site" for r in rows],
            "dropout_clients": c["dropout_clients"].to_numpy(),
            "other_clients": c["other_clients"].to_numpy(),
            "episodes": [r[2].n for r in rows],
            "episodes_cellkey": (
                c["dropout_episodes_cellkey"] + c["other_episodes_cellkey"]
            ).to_numpy(dtype="float64"),
            "d": [r[2].value for r in rows],
            "low": [r[2].low for r in rows],
            "high": [r[2].high for r in rows],
        }
    )
    # d compares dropouts with other endings and describes both: a row is withheld when either
    # has 1 .. k-1 clients (or, with no dropouts at a site, when its other endings have). Sites
    # split the clinic's episodes: one partition; the clinic row stands alone.
    values = ["episodes", "d", "low", "high"]
    safe = pd.concat(
        [
            protect_comparison(
                ctx,
                frame[frame["scope"] == "clinic"],
                first="dropout_clients",
                second="other_clients",
                value_cols=values,
                complementary=False,
            ),
            protect_comparison(
                ctx,
                frame[frame["scope"] == "site"],
                first="dropout_clients",
                second="other_clients",
                value_cols=values,
            ),
        ]
    )
    # d itself only where the one release rule lets it out (both groups with at least k clients; a row
    # with one empty group stays visible above, its d is not computable anyway)
    released = np.array(
        [
            effects_released(ctx.policy, int(a), int(b))
            for a, b in zip(frame["dropout_clients"], frame["other_clients"], strict=True)
        ]
    )
    safe[["d", "low", "high"]] = safe[["d", "low", "high"]].mask(
        pd.Series(~released, index=frame.index).reindex(safe.index), axis=0
    )
    # shown counts are protected: each row's episodes and clients with the noise of the row's
    # episodes (the clinic's clients exactly, as on the other panels: dropout + other clients
    # counts a client with both twice)
    exact_n = np.where(
        frame["scope"] == "clinic", early_clients, frame["dropout_clients"] + frame["other_clients"]
    )
    keyed = frame.assign(
        n_clients=exact_n,
        n_clients_cellkey=noise.derived_key(frame["episodes_cellkey"].to_numpy(), "n_clients"),
    )
    shown = protected.perturb_shown(
        keyed, policy=ctx.policy, params=ctx.noise, counts=["episodes", "n_clients"]
    ).reindex(safe.index)
    hidden = safe["suppressed"].to_numpy(dtype=bool)
    for col in ("episodes", "n_clients"):
        safe[col] = shown[col].round().astype("Int64").mask(hidden)
    return safe, released


# --------------------------------------------------------------------------- when they leave


def _cumulative_visible(part: pd.DataFrame) -> pd.Series:
    """Running total of the bins' shares, stopped at the first withheld bin.

    Beyond a withheld bin a running total would give its share away by subtraction; the part of
    the curve before it is safe, and what remains after it is the combined share of the later
    bins (at least two withheld bins of k clients together, by the complementary rule).
    """
    shares = part["share"].astype("float64")
    blocked = part["suppressed"].astype(bool).cummax()
    return shares.cumsum().mask(blocked)


def last_sessions(ctx: Context, p: dict) -> pd.DataFrame | None:
    """Endings by last session (dropouts, planned endings; LAST_SESSION+ pooled), protected,
    with each bin's share of its ending and the running share ``ended_by`` (stopped at the
    first withheld bin); None when there is no dropout or planned ending."""
    df = queries.run(ctx.con, "dropout_last_session", **ctx.params(), last_number=LAST_SESSION)
    if df.empty:
        return None
    df = df.assign(ending=df["ending"].map({"dropout": "Dropout", "planned": "Planned ending"}))
    # the session bins of one kind of ending add up to its total: one partition per ending;
    # each bin's share is its protected count over the protected total of its ending
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "episodes"],
        value_cols=["episodes", "share"],
        partition_cols=["ending"],
        n_key_from="episodes",
        overlapping=True,
    )
    totals = safe["ending"].map({"Dropout": p["dropouts"], "Planned ending": p["planned"]})
    safe["share"] = safe["episodes"].astype("float64") / totals.astype("float64")
    safe = safe.sort_values(["ending", "bin_order"])
    safe["ended_by"] = safe.groupby("ending", group_keys=False)[["share", "suppressed"]].apply(
        _cumulative_visible
    )
    return safe


def medians_released(ctx: Context, s: dict) -> bool:
    """The median last sessions may be said: both exist and both endings have at least k clients."""
    return (
        s["median_last_dropout"] is not None
        and s["median_last_planned"] is not None
        and protected.all_have_enough_clients(
            ctx.policy, s["dropout_clients"], s["planned_clients"]
        )
    )


def total_shown(ctx: Context, count: float, clients: int) -> bool:
    """A total of endings may be given with its clients (none, or at least k clients)."""
    return protected.all_have_enough_clients(ctx.policy, clients) or not count
