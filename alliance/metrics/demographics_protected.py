"""The Client demographics page's protected step: the groups of one dimension split the clinic,
so each metric's groups are one partition; the group x site dropout table is protected together
with the per-group dropout figures (rows: the sites of a group and the group's all-site figure;
columns: the groups of a site, and the groups' all-site figures which split the clinic), so
nothing withheld in one can be recovered from the other.

Every shown figure comes from protected counts (cell-key noise, alliance/noise.py): a group's
value is its protected mean or rate, its interval is formed around that and widened for the
noise, and its gap from the clinic is protected group minus protected clinic, the exact
interval's half-widths widened for the noise of both. Exact counts only judge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance import noise, protected
from alliance.panel import Context
from alliance.protected import Z95
from alliance.stats import risk_difference_vs_overall
from alliance.views.common import protect_counts

ALL_SITES = "All sites"
SRS_RANGE = 40.0  # one SRS total's range (0-40): the scale of a mean's sum noise


def protect_groups(
    ctx: Context,
    groups: pd.DataFrame,
    count: str,
    *,
    events: str | None = None,
    mean: protected.Mean | None = None,
) -> pd.DataFrame:
    """The groups of a dimension (one partition: they split the clinic) through the protect
    step: `count` (with its key) and the distinct clients from it, a rate events / count with
    the numerator rule, or a mean over count."""
    counts = ["n_clients", count] + ([events] if events else [])
    rates = [protected.Rate("value", events, count)] if events else []
    cols = ["client_group", *counts, *(f"{c}_cellkey" for c in counts[1:])]
    frame = groups[cols].reset_index(drop=True)
    if mean is not None:
        frame = frame.assign(**{mean.col: groups[mean.col].to_numpy()})
    return protect_counts(
        ctx,
        frame,
        counts=counts,
        means=[mean] if mean is not None else [],
        rates=rates,
        value_cols=[*counts[1:], *([mean.col] if mean is not None else ["value"])],
        n_key_from=count,
    )


def clinic_shown(
    ctx: Context, clinic: pd.Series, count: str, *, events: str | None = None, mean=None
) -> tuple[float, float | None]:
    """The clinic-wide row as shown: (protected count, protected rate or mean); the value is
    None where the numerator rule withholds it (1 .. k-1 events or non-events)."""
    n = float(
        protected.shown_count_values(
            ctx.policy,
            ctx.noise,
            np.array([float(clinic[count])]),
            np.array([float(clinic[f"{count}_cellkey"])]),
        )[0]
    )
    if events is not None:
        x_exact, n_exact = int(clinic[events]), int(clinic[count])
        if protected.rate_withheld_for(ctx.policy, x_exact, n_exact) or n <= 0:
            return n, None
        x = float(
            protected.shown_count_values(
                ctx.policy,
                ctx.noise,
                np.array([float(x_exact)]),
                np.array([float(clinic[f"{events}_cellkey"])]),
            )[0]
        )
        return n, x / n
    if mean is None:
        return n, None
    value = noise.perturb_means(
        np.array([float(mean)]),
        np.array([n]),
        np.array([float(clinic[f"{count}_cellkey"])]),
        SRS_RANGE,
        ctx.noise,
    )[0]
    return n, None if np.isnan(value) else float(value)


def recentred(
    exact: np.ndarray, low: np.ndarray, high: np.ndarray, shown: np.ndarray, extra: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An exact interval's half-widths around the protected value, widened for the noise
    (`extra`: the variance the noise adds)."""
    exact, low, high, shown = (np.asarray(a, dtype=float) for a in (exact, low, high, shown))
    return noise.widen(shown, shown - (exact - low), shown + (high - exact), extra, Z95)


def rate_gap(
    ctx: Context,
    safe: pd.DataFrame,
    x_exact: np.ndarray,
    n_exact: np.ndarray,
    clinic_x: float,
    clinic_n: float,
    overall: float,
    clinic_shown_n: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Protected group rate minus protected clinic rate, with the exact Newcombe interval of
    `risk_difference_vs_overall` around it, widened for the noise of both rates."""
    rd = [
        risk_difference_vs_overall(xi, ni, clinic_x, clinic_n)
        for xi, ni in zip(x_exact, n_exact, strict=True)
    ]
    value = safe["value"].to_numpy(dtype=float, na_value=np.nan)
    shown_n = safe["n"].to_numpy(dtype=float, na_value=np.nan)
    diff = value - overall
    extra = noise.rate_noise_variance(value, shown_n, ctx.noise) + noise.rate_noise_variance(
        np.array([overall]), np.array([clinic_shown_n]), ctx.noise
    )
    low, high = recentred(
        np.array([r.value for r in rd]),
        np.array([r.low for r in rd]),
        np.array([r.high for r in rd]),
        diff,
        extra,
    )
    hide = ~np.isfinite(value)
    return tuple(np.where(hide, np.nan, a) for a in (diff, low, high))  # type: ignore[return-value]


def protect_grid(ctx: Context, raw: pd.DataFrame, dimension: str) -> pd.DataFrame:
    """Group x site dropout cells and each group's all-site figure, protected together.

    Partitions: the cells of one group (its sites and its all-site figure) and the cells of one
    site (its groups; for the all-site column, the groups that split the clinic), through the
    one protected step. Rates, Wilson intervals and each group's gap from the clinic come from
    the protected counts.
    """
    rows = raw[raw["level"] != "clinic"].copy()
    rows["site"] = rows["site"].where(rows["level"] == "cell", ALL_SITES)
    clinic = raw[raw["level"] == "clinic"]
    if rows.empty or clinic.empty:
        return rows.drop(columns=protected.key_columns(rows)).assign(
            low=[], high=[], diff=[], diff_low=[], diff_high=[], suppressed=[], suppression=[]
        )
    rows = rows.drop(columns=["level"]).reset_index(drop=True)
    safe = protect_counts(
        ctx,
        rows,
        counts=["n_clients", "ended", "dropouts"],
        rates=[protected.Rate("dropout_rate", "dropouts", "ended")],
        value_cols=["ended", "dropouts", "dropout_rate"],
        partition_cols=["client_group"],
        also_partition_by=[["site"]],
        n_key_from="ended",
    )
    hide = safe["suppressed"].to_numpy(dtype=bool)
    low, high = protected.wilson(safe["dropouts"], safe["ended"], ctx.noise)
    c = clinic.iloc[0]
    clinic_n, overall = clinic_shown(ctx, c, "ended", events="dropouts")
    diff = np.full((3, len(safe)), np.nan)
    totals = (safe["site"] == ALL_SITES).to_numpy() & ~hide
    if overall is not None and totals.any():
        gap = rate_gap(
            ctx,
            safe.loc[totals, ["dropout_rate", "ended"]].set_axis(["value", "n"], axis=1),
            rows.loc[totals, "dropouts"].to_numpy(dtype=float),
            rows.loc[totals, "ended"].to_numpy(dtype=float),
            float(c["dropouts"]),
            float(c["ended"]),
            overall,
            clinic_n,
        )
        diff[:, totals] = np.vstack(gap)
    return safe.assign(low=low, high=high, diff=diff[0], diff_low=diff[1], diff_high=diff[2])
