"""The Client demographics page's numbers: every headline metric by client group (age band,
gender or race/ethnicity), each with its 95% interval and its gap from the clinic-wide value,
and dropout by group x site.

Intervals: episode-level rates (dropout, reliable improvement, recovery) Wilson, the gap from the
clinic-wide rate with `alliance.stats.risk_difference_vs_overall`; session-level SRS metrics with
client-cluster intervals (alliance/metrics/demographics_clusters.py).

Privacy: the groups of one dimension split the clinic, so each metric's groups are one partition
of the protected step. Every shown figure comes from protected counts (cell-key noise,
alliance/noise.py): a group's value is its protected mean or rate, its interval is formed around
that and widened for the noise, its gap from the clinic is protected group minus protected
clinic, the exact interval's half-widths widened for the noise of both. The group x site dropout
table is protected together with the per-group dropout figures (`protect_grid`), so nothing
withheld in one can be recovered from the other. Exact counts only judge.
No Plotly, no prose: alliance/views/demographics.py draws and words these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance import noise, protected, queries
from alliance.metrics.demographics_clusters import (
    broadcast,
    clustered_mean_ci,
    clustered_mean_diff_vs_overall,
    clustered_rate_diff_vs_overall,
    effective_n,
    srs_sums,
)
from alliance.metrics.demographics_protected import (
    ALL_SITES,
    SRS_RANGE,
    clinic_shown,
    protect_grid,  # noqa: F401 (the page protects its grid first)
    protect_groups,
    rate_gap,
    recentred,
)
from alliance.panel import Context
from alliance.protected import Z95
from alliance.stats import wilson_interval

AGE_ORDER = ["<18", "18-25", "26-44", "45-64", "65+"]
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Tables:
    """The page's exact aggregates by group of one dimension and the clinic's exact clients."""

    srs: pd.DataFrame
    dropout: pd.DataFrame
    outcomes: pd.DataFrame
    n_clients: int


@dataclass(frozen=True)
class Estimates:
    """One metric by group as shown: `table` (client_group, n_clients, n, value, low, high, diff,
    diff_low, diff_high, suppressed, suppression), the clinic-wide value (None: withheld by the
    numerator rule, and with it the comparison), its protected count and exact clients."""

    table: pd.DataFrame | None
    overall: float | None
    count: float
    clients: int


def tables(ctx: Context, dimension: str) -> Tables:
    p = ctx.params()
    srs = queries.run(
        ctx.con,
        "demographics_srs",
        **p,
        dimension=dimension,
        srs_cutoff=ctx.settings.srs_cutoff,
    )
    dropout = queries.run(ctx.con, "demographics_dropout", **p, dimension=dimension)
    measure = ctx.filters.outcome_measure
    outcomes = queries.run(
        ctx.con,
        "demographics_outcomes",
        **p,
        dimension=dimension,
        **ctx.settings.outcome_params(measure),
    )
    n_clients = max(
        _clinic_clients(srs[srs["is_clinic"]]),
        _clinic_clients(dropout[dropout["level"] == "clinic"]),
    )
    return Tables(srs, dropout, outcomes, n_clients)


# --------------------------------------------------------------------------- metrics


def srs_mean(ctx: Context, df: pd.DataFrame) -> Estimates | None:
    """Mean SRS by group with a t interval on clients; None without ratings."""
    groups, clinic = df[~df["is_clinic"]], df[df["is_clinic"]]
    if groups.empty or clinic.empty:
        return None
    groups = groups.assign(mean_srs=groups["srs_sum"] / groups["srs_n"])
    safe = protect_groups(ctx, groups, "srs_n", mean=protected.Mean("mean_srs", "srs_n", SRS_RANGE))
    g, c = srs_sums(groups, "srs"), srs_sums(clinic, "srs")
    exact, low, high = clustered_mean_ci(g)
    diff_exact, dlow, dhigh = clustered_mean_diff_vs_overall(g, broadcast(c, len(groups)))
    row = clinic.iloc[0]
    clinic_n, overall = clinic_shown(ctx, row, "srs_n", mean=float(row["srs_sum"] / row["srs_n"]))
    value = safe["mean_srs"].to_numpy(dtype=float, na_value=np.nan)
    shown_n = safe["srs_n"].to_numpy(dtype=float, na_value=np.nan)
    var_g = noise.mean_noise_variance(shown_n, SRS_RANGE, ctx.noise)
    var_c = noise.mean_noise_variance(np.array([clinic_n]), SRS_RANGE, ctx.noise)
    low, high = recentred(exact, low, high, value, var_g)
    diff = value - overall
    dlow, dhigh = recentred(diff_exact, dlow, dhigh, diff, var_g + var_c)
    table = metric_table(safe, "srs_n", value, low, high, diff, dlow, dhigh)
    return Estimates(table, overall, clinic_n, int(row["n_clients"]))


def srs_below(ctx: Context, df: pd.DataFrame) -> Estimates | None:
    """Share of SRS ratings below the cutoff by group, Wilson on the effective number of
    ratings; None without ratings."""
    groups, clinic = df[~df["is_clinic"]], df[df["is_clinic"]]
    if groups.empty or clinic.empty:
        return None
    safe = protect_groups(ctx, groups, "srs_n", events="below")
    g, c = srs_sums(groups, "below"), srs_sums(clinic, "below")
    row = clinic.iloc[0]
    clinic_n, overall = clinic_shown(ctx, row, "srs_n", events="below")
    if overall is None:
        return Estimates(None, None, clinic_n, int(row["n_clients"]))
    value = safe["value"].to_numpy(dtype=float, na_value=np.nan)
    shown_n = safe["srs_n"].to_numpy(dtype=float, na_value=np.nan)
    # Wilson on the effective number of ratings (design effect from the exact sums), around
    # the protected rate, widened for the noise of its two counts
    n_eff = effective_n(g)
    low, high = wilson_interval(value * n_eff, n_eff)
    var_g = noise.rate_noise_variance(value, shown_n, ctx.noise)
    low, high = noise.widen(value, low, high, var_g, Z95)
    low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
    diff_exact, dlow, dhigh = clustered_rate_diff_vs_overall(g, broadcast(c, len(groups)))
    diff = value - overall
    var_c = noise.rate_noise_variance(np.array([overall]), np.array([clinic_n]), ctx.noise)
    dlow, dhigh = recentred(diff_exact, dlow, dhigh, diff, var_g + var_c)
    table = metric_table(safe, "srs_n", value, low, high, diff, dlow, dhigh)
    return Estimates(table, overall, clinic_n, int(row["n_clients"]))


def dropout(ctx: Context, grid: pd.DataFrame, raw: pd.DataFrame) -> Estimates | None:
    """Dropout rate by group: the all-site cells of the protected grid (`protect_grid`); None
    without ended episodes."""
    clinic = raw[raw["level"] == "clinic"]
    totals = grid[grid["site"] == ALL_SITES]
    if totals.empty or clinic.empty:
        return None
    clinic_n, overall = clinic_shown(ctx, clinic.iloc[0], "ended", events="dropouts")
    clients = int(clinic["n_clients"].iloc[0])
    if overall is None:
        return Estimates(None, None, clinic_n, clients)
    cols = ["client_group", "n_clients", "ended", "dropout_rate", "low", "high", "diff"]
    cols += ["diff_low", "diff_high", "suppressed", "suppression"]
    table = pd.DataFrame({c: totals[c].to_numpy() for c in cols})
    table = table.rename(columns={"ended": "n", "dropout_rate": "value"})
    return Estimates(table, overall, clinic_n, clients)


OUTCOMES = {  # metric -> (events, count, its clients)
    "reliable_improvement": ("reliable_improvement", "outcome_n", "n_clients"),
    "recovery": ("recovered", "clinical_n", "clinical_clients"),
}


def outcomes(ctx: Context, df: pd.DataFrame) -> dict[str, Estimates | None] | None:
    """Reliable improvement and recovery by group (OUTCOMES); None without ended episodes with
    two or more scores, a metric None without its episodes."""
    groups, clinic = df[~df["is_clinic"]], df[df["is_clinic"]]
    if groups.empty or clinic.empty or int(clinic["outcome_n"].iloc[0]) == 0:
        return None
    c = clinic.iloc[0]
    out: dict[str, Estimates | None] = {}
    for key, (events, n, clients) in OUTCOMES.items():
        part = groups[groups[n] > 0]
        if part.empty or c[n] == 0:
            out[key] = None
            continue
        clinic_n, overall = clinic_shown(ctx, c, n, events=events)
        if overall is None:
            out[key] = Estimates(None, None, clinic_n, int(c[clients]))
            continue
        part = part.assign(n_clients=part[clients])
        safe = protect_groups(ctx, part, n, events=events)
        low, high = protected.wilson(safe[events], safe[n], ctx.noise)
        diff, dlow, dhigh = rate_gap(
            ctx,
            safe.rename(columns={n: "n"}),
            part[events].to_numpy(dtype=float),
            part[n].to_numpy(dtype=float),
            float(c[events]),
            float(c[n]),
            overall,
            clinic_n,
        )
        value = safe["value"].to_numpy(dtype=float, na_value=np.nan)
        table = metric_table(safe, n, value, low, high, diff, dlow, dhigh)
        out[key] = Estimates(table, overall, clinic_n, int(c[clients]))
    return out


def metric_table(
    safe: pd.DataFrame, n_col: str, value, low, high, diff, dlow, dhigh
) -> pd.DataFrame:
    """The protected groups (`protect_groups`) with their values, intervals and gaps."""
    return pd.DataFrame(
        {
            "client_group": safe["client_group"].to_numpy(),
            "n_clients": safe["n_clients"].to_numpy(),
            "n": safe[n_col].to_numpy(),
            "value": value,
            "low": low,
            "high": high,
            "diff": diff,
            "diff_low": dlow,
            "diff_high": dhigh,
            "suppressed": safe["suppressed"].to_numpy(),
            "suppression": safe["suppression"].to_numpy(),
        }
    )


# --------------------------------------------------------------------------- group x site


def site_cells(grid: pd.DataFrame, dimension: str) -> tuple[pd.DataFrame, list, list]:
    """Every group x site cell of the protected grid, the all-site column last (missing cells
    empty), with the groups (in order) and the sites: (cells, groups, sites)."""
    cells = grid[grid["site"] != ALL_SITES]
    sites = sorted(cells["site"].unique()) + [ALL_SITES]
    groups = ordered(grid.drop_duplicates("client_group"), dimension)["client_group"].tolist()
    full = (
        pd.MultiIndex.from_product([groups, sites], names=["client_group", "site"])
        .to_frame(index=False)
        .merge(grid, on=["client_group", "site"], how="left")
    )
    return full, groups, sites


def clinic_total(clinic: pd.DataFrame, count: str) -> tuple[int, int]:
    """(count, distinct clients) of the clinic-wide row; (0, 0) without one."""
    if clinic.empty:
        return 0, 0
    row = clinic.iloc[0]
    return int(row[count]), int(row["n_clients"])


def clinic_shown_n(ctx: Context, clinic: pd.DataFrame) -> float:
    """The clinic's ended episodes as shown (protected); 0 without a clinic row."""
    if clinic.empty:
        return 0.0
    return clinic_shown(ctx, clinic.iloc[0], "ended")[0]


def _clinic_clients(df: pd.DataFrame) -> int:
    return int(df["n_clients"].iloc[0]) if len(df) else 0


def ordered(df: pd.DataFrame, dimension: str) -> pd.DataFrame:
    """Groups in a neutral order: age bands by age, others alphabetically; 'unknown' last."""
    order = AGE_ORDER if dimension == "age_band" else []
    values = df["client_group"].astype(str)
    rank = values.map(
        lambda v: (v == UNKNOWN, order.index(v) if v in order else len(order), v.lower())
    )
    keys = ["__rank"] + (["site"] if "site" in df.columns else [])
    return df.assign(__rank=rank).sort_values(keys).drop(columns="__rank").reset_index(drop=True)
