"""Ruptures & repair numbers of the section on what follows a rupture: dropout and improvement
of ended episodes by their ruptures (none, all repaired, at least one unrepaired), and which SRS
item drops at a rupture, each as the protected frame the page shows."""

from __future__ import annotations

import pandas as pd

from alliance import privacy, protected, queries
from alliance.metrics.dimensions import LABELS
from alliance.metrics.ruptures import (
    GROUP_LABELS,
    ITEM_DROP_RANGE,
    SESSIONS_RANGE,
    rupture_params,
)
from alliance.panel import Context
from alliance.settings import MEASURES
from alliance.stats import risk_difference
from alliance.views.common import protect_counts


def followup_rows(ctx: Context) -> dict:
    """Ended episodes by their ruptures (none, all repaired, at least one unrepaired): dropout
    and improvement, protected. Returns measure (settings.MEASURES entry) and, when there are
    episodes: df (exact, ordered, with `group`), safe (the dropout rows), stats (the risk
    difference unrepaired - repaired when both groups are released), total (the groups'
    protected episodes) and, when improvement was measured, imp (exact) and safe_i, imp_total.
    """
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    df = queries.run(
        ctx.con,
        "rupture_followup",
        **ctx.params(),
        measure=measure,
        **rupture_params(ctx),
    )
    if df.empty:
        return {"measure": m, "df": df}
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
    total = int(
        protected.shown_counts_of(
            df["episodes"].to_numpy(dtype="float64"),
            df["episodes_cellkey"].to_numpy(dtype="float64"),
            ctx.noise,
            ctx.policy,
        ).sum()
    )  # the groups' protected episodes
    out = {"measure": m, "df": df, "safe": safe, "stats": stats, "total": total}
    # improvement (positive = better) with t intervals
    got = df[df["outcome_n"] > 0]
    if got.empty:
        return out
    imp = pd.DataFrame(
        {
            "group": got["group"].to_numpy(),
            "n_clients": got["outcome_clients"].to_numpy(),
            "episodes": got["outcome_n"].to_numpy(),
            "mean_improvement": got["mean_improvement"].to_numpy(),
            "sd_improvement": got["sd_improvement"].to_numpy(),
            "episodes_cellkey": got["outcome_n_cellkey"].to_numpy(),
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
    imp_total = int(
        protected.shown_counts_of(
            imp["episodes"].to_numpy(dtype="float64"),
            imp["episodes_cellkey"].to_numpy(dtype="float64"),
            ctx.noise,
            ctx.policy,
        ).sum()
    )
    return {**out, "imp": imp, "safe_i": safe_i, "imp_total": imp_total}


def item_rows(ctx: Context) -> dict | None:
    """How much each SRS item fell at a rupture, protected, or None without ruptures with
    items. Returns df (exact), safe (dimension, n_clients, ruptures, mean_drop, low, high,
    largest, largest_share, suppressed; in the dimensions' order) and ruptures (the
    protected number of ruptures, the same for every item)."""
    df = queries.run(
        ctx.con,
        "rupture_items",
        **ctx.params(),
        rupture_threshold=float(ctx.settings.rupture_threshold),
    )
    if df.empty or int(df["ruptures"].max()) == 0:
        return None
    # one population (the same ruptures) seen four ways: withheld together or not at all.
    # Counts with their cell's noise (the clients keyed from the ruptures), the mean drops from
    # protected sums, the interval from protected values; how often an item fell most is a
    # rate of the ruptures, withheld (with its count) when 1 .. k-1 ruptures are, or are not,
    # its largest drop (numerator rule), while the item's mean drop stays
    share = protected.Rate("largest_share", "largest", "ruptures")
    small_share = protected.numerator_rule(df, [share], protected.min_clients(ctx.policy))
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
    # the same ruptures for every item: one protected count
    ruptures = int(
        protected.shown_counts_of(
            df["ruptures"].to_numpy(dtype="float64")[:1],
            df["ruptures_cellkey"].to_numpy(dtype="float64")[:1],
            ctx.noise,
            ctx.policy,
        )[0]
    )
    return {"df": df, "safe": safe, "ruptures": ruptures}
