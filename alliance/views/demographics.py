"""Client demographics (equity): do alliance, dropout and outcomes differ between client groups?

Every headline metric (mean SRS, SRS below-cutoff rate, dropout rate, reliable improvement and
recovery for the chosen outcome measure) by age band, gender or race/ethnicity, each with its 95%
interval and its difference from the clinic-wide value, plus dropout by group x site.

Intervals:

* episode-level rates (dropout, reliable improvement, recovery): Wilson; difference from the
  clinic-wide rate with :func:`alliance.stats.risk_difference_vs_overall`;
* session-level SRS metrics: one client gives many ratings, so a t interval or a Wilson interval
  over ratings would be far too narrow. The mean is the ratio estimator sum(SRS) / ratings with a
  client-cluster (linearisation) variance, t interval on clients - 1 degrees of freedom; the
  below-cutoff rate uses the Wilson interval on the design-effect adjusted ("effective") number
  of ratings, and its difference from the clinic-wide rate the Newcombe interval on effective
  counts (:func:`alliance.stats.risk_difference`), scaled as in ``risk_difference_vs_overall``.

Privacy: the groups of one dimension split the clinic, so each metric's groups are one
partition. The group x site dropout table is protected together with the per-group dropout
figures (rows: the sites of a group and the group's all-site figure; columns: the groups of a
site, and the groups' all-site figures which split the clinic), so nothing withheld in one can be
recovered from the other. Withheld groups are labelled "n < 11", never dropped or shown as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy import stats as sps

from alliance import charts, noise, protected, queries
from alliance.charts import figure_edit
from alliance.charts.layout import fit_header
from alliance.panel import Context, Panel, View, empty_panel
from alliance.protected import Z95
from alliance.settings import MEASURES
from alliance.stats import risk_difference, risk_difference_vs_overall, wilson_interval
from alliance.views.common import (
    chart_text,
    n_text,
    noise_note,
    protect_counts,
    srs_cutoff_text,
    subtitle,
)

TITLE = "Client demographics (equity)"
QUESTION = (
    "Do alliance, dropout and outcomes differ between groups of clients, and by how much "
    "compared with the clinic as a whole?"
)
DIMENSIONS = {
    "race_ethnicity": "Race/ethnicity",
    "age_band": "Age band",
    "gender": "Gender",
}
DEFAULT_DIMENSION = "race_ethnicity"
AGE_ORDER = ["<18", "18-25", "26-44", "45-64", "65+"]
UNKNOWN = "unknown"
UNKNOWN_LABEL = "Not recorded"
ALL_SITES = "All sites"
SRS_RANGE = 40.0  # one SRS total's range (0-40): the scale of a mean's sum noise
EQUITY_NOTE = (
    "Differences between groups are associations that may reflect referral, case mix or "
    "measurement, not the clients themselves; small groups have wide intervals."
)


# --------------------------------------------------------------------------- the view


def build(ctx: Context, dimension: str = DEFAULT_DIMENSION) -> View:
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; choose one of {list(DIMENSIONS)}")
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
    if n_clients < ctx.policy.k:
        return View(TITLE, QUESTION, notice=_too_small(ctx, n_clients), n_clients=n_clients)
    grid = _protect_grid(ctx, dropout, dimension)
    panels = [
        _srs_mean_panel(ctx, srs, dimension),
        _srs_below_panel(ctx, srs, dimension),
        _dropout_panel(ctx, grid, dropout, dimension),
        *_outcome_panels(ctx, outcomes, dimension),
        _site_panel(ctx, grid, dropout, dimension),
    ]
    return View(TITLE, QUESTION, panels=panels, n_clients=n_clients)


# --------------------------------------------------------------------------- statistics
# Client-cluster intervals for session-level metrics. Pure and vectorised over groups. (Not in
# alliance.stats yet: nothing there handles several ratings per client.)


@dataclass(frozen=True)
class ClusterSums:
    """Client-level sums of one group: clusters c, total y (sum of y_c), total m (ratings),
    sum of y_c^2, of y_c m_c and of m_c^2 (arrays, one entry per group)."""

    c: np.ndarray
    y: np.ndarray
    m: np.ndarray
    y2: np.ndarray
    ym: np.ndarray
    m2: np.ndarray

    def minus(self, other: ClusterSums) -> ClusterSums:
        """Sums of the clusters in ``self`` but not in ``other`` (e.g. clinic minus group)."""
        return ClusterSums(
            *(getattr(self, f) - getattr(other, f) for f in ("c", "y", "m", "y2", "ym", "m2"))
        )


def ratio_estimate(s: ClusterSums) -> tuple[np.ndarray, np.ndarray]:
    """Ratio estimator r = y / m and its cluster (linearisation) variance.

    var(r) = c / (c - 1) * sum_c (y_c - r m_c)^2 / m^2, the sum expanded as
    sum y_c^2 - 2 r sum y_c m_c + r^2 sum m_c^2 (NaN when c < 2 or m = 0).
    """
    c, y, m = (np.asarray(a, dtype=float) for a in (s.c, s.y, s.m))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(m > 0, y / m, np.nan)
        ss = np.maximum(s.y2 - 2 * r * s.ym + r**2 * s.m2, 0.0)
        var = np.where(c > 1, c / (c - 1) * ss / m**2, np.nan)
    return r, var


def clustered_mean_ci(s: ClusterSums, conf: float = 0.95) -> tuple[np.ndarray, ...]:
    """Mean per rating with a t interval on clusters - 1 df: (mean, low, high)."""
    r, var = ratio_estimate(s)
    with np.errstate(invalid="ignore"):
        half = sps.t.ppf(0.5 + conf / 2, np.asarray(s.c, dtype=float) - 1) * np.sqrt(var)
    return r, r - half, r + half


def effective_n(s: ClusterSums) -> np.ndarray:
    """Design-effect adjusted number of ratings for a rate: p (1 - p) / var(p), kept between
    the number of clients and the number of ratings (design effect between 1 and the mean
    ratings per client); the number of clients when p is 0 or 1."""
    p, var = ratio_estimate(s)
    c, m = np.asarray(s.c, dtype=float), np.asarray(s.m, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = p * (1 - p) / var
    raw = np.where(np.isfinite(raw), raw, np.where((p > 0) & (p < 1), m, c))
    return np.clip(raw, np.minimum(c, m), m)


def clustered_rate_ci(s: ClusterSums, conf: float = 0.95) -> tuple[np.ndarray, ...]:
    """Rate per rating with a Wilson interval on the effective n: (rate, low, high, n_eff)."""
    p, _ = ratio_estimate(s)
    n_eff = effective_n(s)
    low, high = wilson_interval(p * n_eff, n_eff, conf)
    return p, low, high, n_eff


def clustered_mean_diff_vs_overall(
    group: ClusterSums, clinic: ClusterSums, conf: float = 0.95
) -> tuple[np.ndarray, ...]:
    """Group mean minus the clinic-wide mean (which includes the group), with an interval.

    mean_g - mean_all = (1 - w)(mean_g - mean_rest), w = m_g / m_all; the interval is the
    Welch-Satterthwaite t interval of mean_g - mean_rest from the two cluster variances, scaled
    by (1 - w). A group that is the whole clinic gives 0 (0, 0).
    """
    rest = clinic.minus(group)
    mg, vg = ratio_estimate(group)
    mr, vr = ratio_estimate(rest)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.asarray(group.m, dtype=float) / np.asarray(clinic.m, dtype=float)
        se = np.sqrt(vg + vr)
        dof = (vg + vr) ** 2 / (vg**2 / (group.c - 1) + vr**2 / (rest.c - 1))
        half = sps.t.ppf(0.5 + conf / 2, dof) * se
    d = (1 - w) * (mg - mr)
    low, high = d - (1 - w) * half, d + (1 - w) * half
    whole = np.asarray(rest.m, dtype=float) <= 0
    return (np.where(whole, 0.0, d), np.where(whole, 0.0, low), np.where(whole, 0.0, high))


def clustered_rate_diff_vs_overall(
    group: ClusterSums, clinic: ClusterSums, conf: float = 0.95
) -> tuple[np.ndarray, ...]:
    """Group rate minus the clinic-wide rate, Newcombe interval on effective counts.

    As :func:`alliance.stats.risk_difference_vs_overall`: p_g - p_all = (1 - w)(p_g - p_rest),
    w = m_g / m_all, with the group and the rest each entered as (p n_eff, n_eff).
    """
    rest = clinic.minus(group)
    pg, _ = ratio_estimate(group)
    pr, _ = ratio_estimate(rest)
    ng, nr = effective_n(group), effective_n(rest)
    out = np.full((3, len(pg)), np.nan)
    for i in range(len(pg)):
        if rest.m[i] <= 0:
            out[:, i] = 0.0
            continue
        if not (ng[i] > 0 and nr[i] > 0):
            continue
        f = 1 - group.m[i] / clinic.m[i]
        rd = risk_difference(pg[i] * ng[i], ng[i], pr[i] * nr[i], nr[i], conf)
        out[:, i] = (rd.value * f, rd.low * f, rd.high * f)
    return out[0], out[1], out[2]


# --------------------------------------------------------------------------- panels


@dataclass(frozen=True)
class _Metric:
    key: str
    title: str
    definition: str
    unit: str  # what n counts
    rate: bool
    higher_is_better: bool


def _srs_sums(df: pd.DataFrame, numerator: str) -> ClusterSums:
    if numerator == "srs":
        y, y2, ym = "srs_sum", "sum_y2", "sum_ym"
    else:
        y, y2, ym = "below", "sum_b2", "sum_bm"
    return ClusterSums(
        c=df["clusters"].to_numpy(dtype=float),
        y=df[y].to_numpy(dtype=float),
        m=df["srs_n"].to_numpy(dtype=float),
        y2=df[y2].to_numpy(dtype=float),
        ym=df[ym].to_numpy(dtype=float),
        m2=df["sum_m2"].to_numpy(dtype=float),
    )


# --------------------------------------------------------------------------- protection
# Every shown figure comes from protected counts (cell-key noise, alliance/noise.py): a group's
# value is its protected mean or rate, its interval is formed around that and widened for the
# noise, and its gap from the clinic is protected group minus protected clinic, the exact
# interval's half-widths widened for the noise of both. Exact counts only judge.


def _protect_groups(
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
    safe = protect_counts(
        ctx,
        frame,
        counts=counts,
        means=[mean] if mean is not None else [],
        rates=rates,
        value_cols=[*counts[1:], *([mean.col] if mean is not None else ["value"])],
        n_key_from=count,
    )
    return safe


def _clinic_shown(
    ctx: Context, clinic: pd.Series, count: str, *, events: str | None = None, mean=None
) -> tuple[float, float | None]:
    """The clinic-wide row as shown: (protected count, protected rate or mean); the value is
    None where the numerator rule withholds it (1 .. k-1 events or non-events)."""
    k = ctx.policy.k
    n = float(
        noise.perturb_counts(
            np.array([float(clinic[count])]),
            np.array([float(clinic[f"{count}_cellkey"])]),
            ctx.noise,
            k,
        )[0]
    )
    if events is not None:
        x_exact, n_exact = int(clinic[events]), int(clinic[count])
        if 0 < x_exact < k or 0 < n_exact - x_exact < k or n <= 0:
            return n, None
        x = float(
            noise.perturb_counts(
                np.array([float(x_exact)]),
                np.array([float(clinic[f"{events}_cellkey"])]),
                ctx.noise,
                k,
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


def _recentred(
    exact: np.ndarray, low: np.ndarray, high: np.ndarray, shown: np.ndarray, extra: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An exact interval's half-widths around the protected value, widened for the noise
    (`extra`: the variance the noise adds)."""
    exact, low, high, shown = (np.asarray(a, dtype=float) for a in (exact, low, high, shown))
    return noise.widen(shown, shown - (exact - low), shown + (high - exact), extra, Z95)


def _rate_gap(
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
    low, high = _recentred(
        np.array([r.value for r in rd]),
        np.array([r.low for r in rd]),
        np.array([r.high for r in rd]),
        diff,
        extra,
    )
    hide = ~np.isfinite(value)
    return tuple(np.where(hide, np.nan, a) for a in (diff, low, high))  # type: ignore[return-value]


def _withheld_clinic(ctx: Context, metric: _Metric, dimension: str) -> Panel:
    return empty_panel(
        f"demo_{metric.key}",
        metric.title,
        f"The clinic-wide {_x_label(metric, ctx).lower()} rests on fewer than {ctx.policy.k} "
        "events or non-events in this selection, so this comparison is withheld. Widen the "
        "period or clear a filter.",
        section=DIMENSIONS[dimension],
    )


# --------------------------------------------------------------------------- panels


def _srs_mean_panel(ctx: Context, df: pd.DataFrame, dimension: str) -> Panel:
    metric = _Metric(
        "mean_srs",
        "Mean SRS by " + DIMENSIONS[dimension].lower(),
        "Mean SRS total (0–40) over sessions in the period; 95% t interval allowing for "
        "several ratings per client",
        "SRS ratings",
        rate=False,
        higher_is_better=True,
    )
    groups, clinic = df[~df["is_clinic"]], df[df["is_clinic"]]
    if groups.empty or clinic.empty:
        return empty_panel(metric.key, metric.title, "No SRS ratings in this selection.")
    groups = groups.assign(mean_srs=groups["srs_sum"] / groups["srs_n"])
    safe = _protect_groups(
        ctx, groups, "srs_n", mean=protected.Mean("mean_srs", "srs_n", SRS_RANGE)
    )
    g, c = _srs_sums(groups, "srs"), _srs_sums(clinic, "srs")
    exact, low, high = clustered_mean_ci(g)
    diff_exact, dlow, dhigh = clustered_mean_diff_vs_overall(g, _broadcast(c, len(groups)))
    row = clinic.iloc[0]
    clinic_n, overall = _clinic_shown(ctx, row, "srs_n", mean=float(row["srs_sum"] / row["srs_n"]))
    value = safe["mean_srs"].to_numpy(dtype=float, na_value=np.nan)
    shown_n = safe["srs_n"].to_numpy(dtype=float, na_value=np.nan)
    var_g = noise.mean_noise_variance(shown_n, SRS_RANGE, ctx.noise)
    var_c = noise.mean_noise_variance(np.array([clinic_n]), SRS_RANGE, ctx.noise)
    low, high = _recentred(exact, low, high, value, var_g)
    diff = value - overall
    dlow, dhigh = _recentred(diff_exact, dlow, dhigh, diff, var_g + var_c)
    table = _metric_table(safe, "srs_n", value, low, high, diff, dlow, dhigh)
    total = (clinic_n, int(row["n_clients"]))
    return _dots_panel(ctx, metric, table, overall, total, dimension)


def _srs_below_panel(ctx: Context, df: pd.DataFrame, dimension: str) -> Panel:
    metric = _Metric(
        "srs_below",
        "SRS below cutoff by " + DIMENSIONS[dimension].lower(),
        f"Share of SRS ratings with {srs_cutoff_text(ctx)}; 95% Wilson interval on the "
        "effective number of ratings (several per client)",
        "SRS ratings",
        rate=True,
        higher_is_better=False,
    )
    groups, clinic = df[~df["is_clinic"]], df[df["is_clinic"]]
    if groups.empty or clinic.empty:
        return empty_panel(metric.key, metric.title, "No SRS ratings in this selection.")
    safe = _protect_groups(ctx, groups, "srs_n", events="below")
    g, c = _srs_sums(groups, "below"), _srs_sums(clinic, "below")
    row = clinic.iloc[0]
    clinic_n, overall = _clinic_shown(ctx, row, "srs_n", events="below")
    if overall is None:
        return _withheld_clinic(ctx, metric, dimension)
    value = safe["value"].to_numpy(dtype=float, na_value=np.nan)
    shown_n = safe["srs_n"].to_numpy(dtype=float, na_value=np.nan)
    # Wilson on the effective number of ratings (design effect from the exact sums), around
    # the protected rate, widened for the noise of its two counts
    n_eff = effective_n(g)
    low, high = wilson_interval(value * n_eff, n_eff)
    var_g = noise.rate_noise_variance(value, shown_n, ctx.noise)
    low, high = noise.widen(value, low, high, var_g, Z95)
    low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
    diff_exact, dlow, dhigh = clustered_rate_diff_vs_overall(g, _broadcast(c, len(groups)))
    diff = value - overall
    var_c = noise.rate_noise_variance(np.array([overall]), np.array([clinic_n]), ctx.noise)
    dlow, dhigh = _recentred(diff_exact, dlow, dhigh, diff, var_g + var_c)
    table = _metric_table(safe, "srs_n", value, low, high, diff, dlow, dhigh)
    total = (clinic_n, int(row["n_clients"]))
    return _dots_panel(ctx, metric, table, overall, total, dimension)


def _dropout_panel(ctx: Context, grid: pd.DataFrame, raw: pd.DataFrame, dimension: str) -> Panel:
    metric = _Metric(
        "dropout",
        "Dropout rate by " + DIMENSIONS[dimension].lower(),
        "Dropouts / ended episodes (finished in the period); 95% Wilson interval",
        "ended episodes",
        rate=True,
        higher_is_better=False,
    )
    clinic = raw[raw["level"] == "clinic"]
    totals = grid[grid["site"] == ALL_SITES]
    if totals.empty or clinic.empty:
        return empty_panel(metric.key, metric.title, "No episodes ended in this selection.")
    clinic_n, overall = _clinic_shown(ctx, clinic.iloc[0], "ended", events="dropouts")
    if overall is None:
        return _withheld_clinic(ctx, metric, dimension)
    table = pd.DataFrame(
        {
            "client_group": totals["client_group"].to_numpy(),
            "n_clients": totals["n_clients"].to_numpy(),
            "n": totals["ended"].to_numpy(),
            "value": totals["dropout_rate"].to_numpy(),
            "low": totals["low"].to_numpy(),
            "high": totals["high"].to_numpy(),
            "diff": totals["diff"].to_numpy(),
            "diff_low": totals["diff_low"].to_numpy(),
            "diff_high": totals["diff_high"].to_numpy(),
            "suppressed": totals["suppressed"].to_numpy(),
            "suppression": totals["suppression"].to_numpy(),
        }
    )
    total = (clinic_n, int(clinic["n_clients"].iloc[0]))
    return _dots_panel(ctx, metric, table, overall, total, dimension)


def _outcome_panels(ctx: Context, df: pd.DataFrame, dimension: str) -> list[Panel]:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    rc = ctx.settings.reliable_change(measure)
    dim = DIMENSIONS[dimension].lower()
    groups, clinic = df[~df["is_clinic"]], df[df["is_clinic"]]
    improve = _Metric(
        "reliable_improvement",
        f"Reliable improvement ({m.label}) by {dim}",
        f"Ended episodes with ≥ 2 {m.label} scores improving by ≥ {rc:g} points; "
        "95% Wilson interval",
        "episodes",
        rate=True,
        higher_is_better=True,
    )
    recover = _Metric(
        "recovery",
        f"Recovery ({m.label}) by {dim}",
        f"Of ended episodes starting in the {m.label} clinical range, the share ending out of "
        f"it ({ctx.settings.outcome_definition(measure)}); 95% Wilson interval",
        "episodes starting in the clinical range",
        rate=True,
        higher_is_better=True,
    )
    if groups.empty or clinic.empty or int(clinic["outcome_n"].iloc[0]) == 0:
        msg = f"No ended episodes with two or more {m.label} scores in this selection."
        return [
            empty_panel(improve.key, improve.title, msg),
            empty_panel(recover.key, recover.title, msg),
        ]
    c = clinic.iloc[0]
    panels = []
    for metric, events, n, clients in (
        (improve, "reliable_improvement", "outcome_n", "n_clients"),
        (recover, "recovered", "clinical_n", "clinical_clients"),
    ):
        part = groups[groups[n] > 0]
        if part.empty or c[n] == 0:
            panels.append(
                empty_panel(metric.key, metric.title, f"No {metric.unit} in this selection.")
            )
            continue
        clinic_n, overall = _clinic_shown(ctx, c, n, events=events)
        if overall is None:
            panels.append(_withheld_clinic(ctx, metric, dimension))
            continue
        part = part.assign(n_clients=part[clients])
        safe = _protect_groups(ctx, part, n, events=events)
        low, high = protected.wilson(safe[events], safe[n], ctx.noise)
        diff, dlow, dhigh = _rate_gap(
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
        table = _metric_table(safe, n, value, low, high, diff, dlow, dhigh)
        total = (clinic_n, int(c[clients]))
        panels.append(_dots_panel(ctx, metric, table, overall, total, dimension))
    return panels


def _metric_table(
    safe: pd.DataFrame, n_col: str, value, low, high, diff, dlow, dhigh
) -> pd.DataFrame:
    """The protected groups (`_protect_groups`) with their values, intervals and gaps."""
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


VALUE_COLS = ["n", "value", "low", "high", "diff", "diff_low", "diff_high"]


def _dots_panel(
    ctx: Context,
    metric: _Metric,
    table: pd.DataFrame,
    overall: float,
    total: tuple[int, int],
    dimension: str,
) -> Panel:
    """Group estimates with intervals against the clinic-wide value; the groups of the
    dimension are one partition of the privacy step (they split the clinic).

    total: (count, clients) of the clinic-wide figure. Below k clients the clinic-wide value
    itself is withheld, and with it the panel (each group is part of it).
    """
    overall_n, overall_clients = total
    if 0 < overall_clients < ctx.policy.k:
        return empty_panel(
            f"demo_{metric.key}",
            metric.title,
            f"The {metric.unit} in this selection describe fewer than {ctx.policy.k} clients, "
            "so this comparison is withheld. Widen the period or clear a filter.",
            section=DIMENSIONS[dimension],
        )
    table = table[table["n_clients"].fillna(1) > 0]
    safe = table  # protected by the caller (`_protect_groups`, `_protect_grid`)
    safe = _ordered(safe, dimension)
    safe = safe.assign(group=_display_groups(safe["client_group"]))
    fmt = "pct" if metric.rate else "num1"
    ref_text = f"{overall:.1%}" if metric.rate else f"{overall:.1f}"
    visible = safe[~safe["suppressed"]]
    plot = safe.assign(group=safe["group"].map(chart_text))  # group names as text in the chart
    fig = charts.interval_dots(
        plot,
        category="group",
        value="value",
        low="low",
        high="high",
        title=metric.title,
        subtitle=subtitle(
            ctx,
            metric.definition,
            n_text=n_text(ctx, overall_n, metric.unit, overall_clients)
            + f" · {len(visible)} of {len(safe)} groups shown",
        ),
        x_label=_x_label(metric, ctx),
        reference=overall,
        reference_label=f"clinic-wide {ref_text}",
        value_format=fmt,
        suppressed_label=ctx.policy.label,
    )
    figure_edit.update_yaxes(fig, categoryorder="array", categoryarray=plot["group"].tolist())
    fit_header(fig, extra=22)  # the clinic-wide label sits above the plot
    return Panel(
        key=f"demo_{metric.key}",
        title=metric.title,
        subtitle="",
        reading=_reading(ctx, metric, visible, safe, dimension) + noise_note(ctx),
        figure=fig,
        data=_data_table(safe, metric, dimension),
        withheld=bool(safe["suppressed"].any()),
        section=DIMENSIONS[dimension],
        stats={"clinic": overall},
    )


def _site_panel(ctx: Context, grid: pd.DataFrame, raw: pd.DataFrame, dimension: str) -> Panel:
    dim = DIMENSIONS[dimension]
    title = f"Dropout rate by {dim.lower()} and site"
    cells = grid[grid["site"] != ALL_SITES]
    if cells.empty:
        return empty_panel("demo_site", title, "No episodes ended in this selection.")
    clinic = raw[raw["level"] == "clinic"]
    _, clinic_clients = _clinic_total(clinic, "ended")  # exact: only to judge
    if 0 < clinic_clients < ctx.policy.k:
        return empty_panel(
            "demo_site",
            title,
            f"The ended episodes in this selection describe fewer than {ctx.policy.k} clients, "
            "so this table is withheld. Widen the period or clear a filter.",
            section=dim,
        )
    sites = sorted(cells["site"].unique()) + [ALL_SITES]
    groups = _ordered(grid.drop_duplicates("client_group"), dimension)["client_group"].tolist()
    full = (
        pd.MultiIndex.from_product([groups, sites], names=["client_group", "site"])
        .to_frame(index=False)
        .merge(grid, on=["client_group", "site"], how="left")
    )
    text = np.where(
        full["suppressed"].fillna(False).astype(bool),
        ctx.policy.label,
        np.where(
            full["dropout_rate"].notna(),
            full["dropout_rate"].map(lambda v: f"{v:.0%}" if pd.notna(v) else ""),
            "–",
        ),
    )
    full = full.assign(text=text, group=_display_groups(full["client_group"]))
    fig = _heatmap(
        full,
        rows=_display_groups(pd.Series(groups)).tolist(),
        cols=sites,
        title=title,
        subtitle=subtitle(
            ctx,
            "Dropouts / ended episodes (finished in the period) by the site of the first session",
            f'"{ctx.policy.label}": fewer than {ctx.policy.k} clients (or withheld with such a '
            'cell); "–": no ended episodes',
            n_text=n_text(ctx, _clinic_shown_n(ctx, clinic), "ended episodes", clinic_clients),
        ),
    )
    shown = grid[grid["site"] != ALL_SITES].copy()
    shown = _ordered(shown, dimension)
    data = pd.DataFrame(
        {
            dim: _display_groups(shown["client_group"]).to_numpy(),
            "site": shown["site"].to_numpy(),
            "n_clients": shown["n_clients"].to_numpy(),
            "ended episodes": shown["ended"].to_numpy(),
            "dropouts": shown["dropouts"].to_numpy(),
            "dropout rate %": (shown["dropout_rate"] * 100).to_numpy(),
            "suppressed": shown["suppressed"].to_numpy(),
            "suppression": shown["suppression"].to_numpy(),
        }
    )
    withheld = int(shown["suppressed"].sum())
    return Panel(
        key="demo_site",
        title=title,
        subtitle="",
        reading="Each cell is one group's dropout rate at one site; the last column is the "
        f"group across all sites. {withheld} of {len(shown)} cells are withheld "
        f'("{ctx.policy.label}") because they describe fewer than {ctx.policy.k} clients, or '
        "so that such a cell cannot be worked out from the row or column totals. "
        + EQUITY_NOTE
        + noise_note(ctx),
        figure=fig,
        data=data,
        withheld=withheld > 0,
        section=dim,
    )


# --------------------------------------------------------------------------- privacy


def _protect_grid(ctx: Context, raw: pd.DataFrame, dimension: str) -> pd.DataFrame:
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
    clinic_n, overall = _clinic_shown(ctx, c, "ended", events="dropouts")
    diff = np.full((3, len(safe)), np.nan)
    totals = (safe["site"] == ALL_SITES).to_numpy() & ~hide
    if overall is not None and totals.any():
        gap = _rate_gap(
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


# --------------------------------------------------------------------------- small helpers


def _broadcast(s: ClusterSums, size: int) -> ClusterSums:
    return ClusterSums(
        *(
            np.repeat(np.asarray(getattr(s, f), dtype=float), size)
            for f in ("c", "y", "m", "y2", "ym", "m2")
        )
    )


def _clinic_total(clinic: pd.DataFrame, count: str) -> tuple[int, int]:
    """(count, distinct clients) of the clinic-wide row; (0, 0) without one."""
    if clinic.empty:
        return 0, 0
    row = clinic.iloc[0]
    return int(row[count]), int(row["n_clients"])


def _clinic_shown_n(ctx: Context, clinic: pd.DataFrame) -> float:
    """The clinic's ended episodes as shown (protected); 0 without a clinic row."""
    if clinic.empty:
        return 0.0
    return _clinic_shown(ctx, clinic.iloc[0], "ended")[0]


def _clinic_clients(df: pd.DataFrame) -> int:
    return int(df["n_clients"].iloc[0]) if len(df) else 0


def _ordered(df: pd.DataFrame, dimension: str) -> pd.DataFrame:
    """Groups in a neutral order: age bands by age, others alphabetically; 'unknown' last."""
    order = AGE_ORDER if dimension == "age_band" else []
    values = df["client_group"].astype(str)
    rank = values.map(
        lambda v: (v == UNKNOWN, order.index(v) if v in order else len(order), v.lower())
    )
    keys = ["__rank"] + (["site"] if "site" in df.columns else [])
    return df.assign(__rank=rank).sort_values(keys).drop(columns="__rank").reset_index(drop=True)


def _display_groups(values: pd.Series) -> pd.Series:
    return values.astype(str).replace({UNKNOWN: UNKNOWN_LABEL})


def _x_label(metric: _Metric, ctx: Context) -> str:
    return {
        "mean_srs": "Mean SRS total (0–40)",
        "srs_below": "SRS ratings below cutoff",
        "dropout": "Dropout rate",
        "reliable_improvement": "Reliable improvement rate",
        "recovery": "Recovery rate",
    }[metric.key]


def _reading(
    ctx: Context, metric: _Metric, visible: pd.DataFrame, safe: pd.DataFrame, dimension: str
) -> str:
    unit = "percentage points" if metric.rate else "points"
    scale = 100 if metric.rate else 1
    digits = 1 if metric.rate else 2
    apart = visible[(visible["diff_low"] > 0) | (visible["diff_high"] < 0)]
    if len(apart):
        items = "; ".join(
            f"{_display_groups(pd.Series([r.client_group])).iloc[0]} "
            f"{r.diff * scale:+.{digits}f} (95% CI {r.diff_low * scale:+.{digits}f} to "
            f"{r.diff_high * scale:+.{digits}f})"
            for r in apart.itertuples()
        )
        found = (
            f"Groups whose difference from the clinic-wide value ({unit}) has a 95% interval "
            f"excluding zero: {items}. With {len(visible)} groups, about one interval in 20 "
            "excludes zero by chance alone."
        )
    else:
        found = (
            "No group's difference from the clinic-wide value has a 95% interval that "
            "excludes zero."
        )
    withheld = int(safe["suppressed"].sum())
    note = (
        f" {withheld} group{'s are' if withheld != 1 else ' is'} withheld "
        f'("{ctx.policy.label}"): fewer than {ctx.policy.k} clients, or withheld with such a '
        "group so it cannot be worked out from the clinic-wide value."
        if withheld
        else ""
    )
    dim_filter = {
        "race_ethnicity": ctx.filters.race_ethnicity,
        "age_band": ctx.filters.age_band,
        "gender": ctx.filters.gender,
    }[dimension]
    filtered = (
        f" The selection is filtered to one {DIMENSIONS[dimension].lower()}, so there is only "
        "one group: choose another dimension or clear that filter."
        if dim_filter
        else ""
    )
    return (
        "Each dot is a group's value with its 95% interval; the dotted line is the clinic-wide "
        f"value. {found}{note}{filtered} {EQUITY_NOTE}"
    )


def _data_table(safe: pd.DataFrame, metric: _Metric, dimension: str) -> pd.DataFrame:
    scale = 100 if metric.rate else 1
    suffix = " %" if metric.rate else ""
    diff_unit = " (pct points)" if metric.rate else " (points)"
    name = {
        "mean_srs": "mean SRS",
        "srs_below": "below cutoff",
        "dropout": "dropout rate",
        "reliable_improvement": "reliable improvement",
        "recovery": "recovery",
    }[metric.key]
    return pd.DataFrame(
        {
            DIMENSIONS[dimension]: safe["group"].to_numpy(),
            "n_clients": safe["n_clients"].to_numpy(),
            metric.unit: safe["n"].to_numpy(),
            f"{name}{suffix}": (safe["value"] * scale).to_numpy(),
            f"95% CI low{suffix}": (safe["low"] * scale).to_numpy(),
            f"95% CI high{suffix}": (safe["high"] * scale).to_numpy(),
            f"difference from clinic-wide{diff_unit}": (safe["diff"] * scale).to_numpy(),
            "difference 95% CI low": (safe["diff_low"] * scale).to_numpy(),
            "difference 95% CI high": (safe["diff_high"] * scale).to_numpy(),
            "suppressed": safe["suppressed"].to_numpy(),
            "suppression": safe["suppression"].to_numpy(),
        }
    )


def _heatmap(
    df: pd.DataFrame, *, rows: Sequence[str], cols: Sequence[str], title: str, subtitle: str
) -> go.Figure:
    """Group x site heatmap with the value printed in each cell (withheld cells labelled)."""
    # group and site names as text in the chart, never markup
    df = df.assign(group=df["group"].map(chart_text), site=df["site"].map(chart_text))
    rows, cols = [chart_text(r) for r in rows], [chart_text(c) for c in cols]
    z = df.pivot(index="group", columns="site", values="dropout_rate").reindex(
        index=rows, columns=cols
    )
    text = df.pivot(index="group", columns="site", values="text").reindex(index=rows, columns=cols)
    ended = df.pivot(index="group", columns="site", values="ended").reindex(
        index=rows, columns=cols
    )
    zmax = max(
        0.4,
        float(np.nanmax(z.to_numpy(dtype=float)))
        if np.isfinite(z.to_numpy(dtype=float)).any()
        else 0.4,
    )
    fig = go.Figure(
        go.Heatmap(
            z=z.to_numpy(dtype=float),
            x=list(cols),
            y=list(rows),
            text=text.to_numpy(),
            texttemplate="%{text}",
            textfont={"size": 14, "color": "#111"},
            customdata=ended.to_numpy(dtype=float),
            colorscale=[[0.0, "#f4f8fb"], [1.0, charts.SKY]],
            zmin=0.0,
            zmax=zmax,
            xgap=3,
            ygap=3,
            colorbar={"title": {"text": "Dropout rate"}, "tickformat": ".0%"},
            hovertemplate="%{y} · %{x}: %{text} of %{customdata:.0f} ended episodes<extra></extra>",
            hoverongaps=False,
        )
    )
    figure_edit.update_xaxes(fig, showgrid=False, title=None, tickangle=0, showline=False, ticks="")
    figure_edit.update_yaxes(
        fig, autorange="reversed", showgrid=False, title=None, showline=False, ticks=""
    )
    height = max(340, 190 + 42 * len(rows))
    fig = charts.themed(fig, title=title, subtitle=subtitle, height=height)
    fit_header(fig)
    return fig


def _too_small(ctx: Context, n_clients: int) -> str:
    if n_clients == 0:
        return "No sessions match these filters. Widen the period or clear a filter."
    return (
        f"This selection describes fewer than {ctx.policy.k} clients, so no numbers are shown: "
        "with so few people, figures could identify individuals and would be too noisy to act "
        "on. Widen the period or clear a filter."
    )
