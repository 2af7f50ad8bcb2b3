"""Statistics for the alliance dashboard, as defined in ``../shared/metrics.md``.

Plain, pure functions: inputs (lists, numpy arrays, pandas Series) are never modified; results
are small frozen dataclasses, floats, arrays or DataFrames. Intervals are two-sided at ``conf``
(default 95%). Too little data gives NaN, never an exception. Funnel plots and SPC charts live
in :mod:`alliance.spc` and are re-exported here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm
from numpy.typing import ArrayLike
from scipy import optimize, stats
from statsmodels.discrete.discrete_model import BinaryResultsWrapper
from statsmodels.stats.proportion import proportion_confint
from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

from alliance.spc import (
    FLAGS,
    Overdispersion,
    dl_tau2,
    funnel,
    funnel_limits_mean,
    funnel_limits_proportion,
    overdispersion,
    p_chart,
    pooled_sd,
    run_rules,
    xbar_chart,
)

__all__ = [
    "FLAGS",
    "ICC",
    "Estimate",
    "Overdispersion",
    "casemix_adjusted",
    "cohens_d",
    "dl_tau2",
    "empirical_bayes_shrink",
    "fisher_z_ci",
    "funnel",
    "funnel_limits_mean",
    "funnel_limits_proportion",
    "logistic_curve",
    "logistic_or_per_sd_lower",
    "mean_ci",
    "mean_interval",
    "overdispersion",
    "p_chart",
    "pearson_r",
    "point_biserial_r",
    "pooled_sd",
    "pre_post_effect_size",
    "risk_difference",
    "risk_difference_vs_overall",
    "run_rules",
    "therapist_icc",
    "wilson_interval",
    "xbar_chart",
]

NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval (``low``, ``high``) and the n it rests on."""

    value: float
    low: float
    high: float
    n: int


def _arr(a: ArrayLike | pd.Series) -> np.ndarray:
    """Float array (NaN for missing) from a list, numpy array or pandas Series."""
    if isinstance(a, pd.Series | pd.Index):
        return a.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(a, dtype=float)


def _z(conf: float) -> float:
    return float(stats.norm.ppf(0.5 + conf / 2))


def _complete(*arrays: ArrayLike) -> list[np.ndarray]:
    """The arrays restricted to rows where all are finite."""
    arrs = [_arr(a) for a in arrays]
    ok = np.logical_and.reduce([np.isfinite(a) for a in arrs])
    return [a[ok] for a in arrs]


def _nan_estimate(n: int) -> Estimate:
    return Estimate(NAN, NAN, NAN, int(n))


# --------------------------------------------------------------------------- proportions


def wilson_interval(
    successes: ArrayLike, n: ArrayLike, conf: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (low, high) for successes/n, vectorised; n <= 0 or an impossible
    count gives NaN."""
    x, m = np.atleast_1d(_arr(successes)), np.atleast_1d(_arr(n))
    x, m = np.broadcast_arrays(x, m)
    ok = (m > 0) & (x >= 0) & (x <= m)
    low, high = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    if ok.any():
        lo, hi = proportion_confint(x[ok], m[ok], alpha=1 - conf, method="wilson")
        low[ok], high[ok] = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
    low[ok & (x == 0)], high[ok & (x == m)] = 0.0, 1.0  # exact ends, not 1e-17 rounding
    return low, high


def risk_difference(x1: float, n1: float, x0: float, n0: float, conf: float = 0.95) -> Estimate:
    """p1 - p0 with Newcombe's (1998, method 10) hybrid Wilson score interval for independent
    samples: low = d - sqrt((p1 - l1)^2 + (u0 - p0)^2), high = d + sqrt((u1 - p1)^2 +
    (p0 - l0)^2), (l, u) being Wilson limits. ``n`` of the result is n1 + n0."""
    (l1, l0), (u1, u0) = wilson_interval([x1, x0], [n1, n0], conf)
    if not (np.isfinite(l1) and np.isfinite(l0)):
        return _nan_estimate(int(n1 + n0) if np.isfinite(n1 + n0) else 0)
    p1, p0 = x1 / n1, x0 / n0
    d = p1 - p0
    low = d - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return Estimate(float(d), float(low), float(high), int(n1 + n0))


def risk_difference_vs_overall(
    x_group: float, n_group: float, x_total: float, n_total: float, conf: float = 0.95
) -> Estimate:
    """Difference between a group's rate and the clinic-wide rate that includes the group.

    The two are not independent, so the interval comes from the group vs the rest of the
    clinic: p_g - p_all = (1 - w)(p_g - p_rest) with w = n_group / n_total, so the Newcombe
    interval for p_g - p_rest is scaled by (1 - w). A group that is the whole clinic gives 0.
    """
    n_rest = n_total - n_group
    if n_group > 0 and n_rest == 0:
        return Estimate(0.0, 0.0, 0.0, int(n_total))
    rd = risk_difference(x_group, n_group, x_total - x_group, n_rest, conf)
    f = n_rest / n_total if n_total > 0 else NAN
    return Estimate(rd.value * f, rd.low * f, rd.high * f, int(n_total))


# --------------------------------------------------------------------------- correlations


def fisher_z_ci(r: float, n: int, conf: float = 0.95) -> tuple[float, float]:
    """tanh(atanh(r) -/+ z / sqrt(n - 3)); NaN when n < 4 or r is missing."""
    if n < 4 or not np.isfinite(r):
        return NAN, NAN
    with np.errstate(divide="ignore"):
        zr = np.arctanh(np.clip(r, -1.0, 1.0))
    half = _z(conf) / np.sqrt(n - 3)
    return float(np.tanh(zr - half)), float(np.tanh(zr + half))


def pearson_r(x: ArrayLike, y: ArrayLike, conf: float = 0.95) -> Estimate:
    """Pearson r over complete pairs with a Fisher-z interval; n < 4 or a constant variable
    gives NaN."""
    a, b = _complete(x, y)
    n = int(a.size)
    if n < 4 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return _nan_estimate(n)
    r = float(stats.pearsonr(a, b).statistic)
    return Estimate(r, *fisher_z_ci(r, n, conf), n)


def point_biserial_r(x: ArrayLike, binary: ArrayLike, conf: float = 0.95) -> Estimate:
    """Pearson r of ``x`` with a 0/1 (or boolean) variable, Fisher-z interval."""
    b = _arr(binary)
    if not np.all(np.isin(b[np.isfinite(b)], (0.0, 1.0))):
        raise ValueError("binary must contain only 0/1 (or missing)")
    return pearson_r(x, b, conf)


# --------------------------------------------------------------------------- means


def cohens_d(a: ArrayLike, b: ArrayLike, conf: float = 0.95) -> Estimate:
    """(mean(a) - mean(b)) / pooled SD (n - 1 weighting), NaNs dropped; interval
    d -/+ z sqrt((na + nb)/(na nb) + d^2 / (2 (na + nb))). ``n`` = na + nb."""
    xa, xb = (v[np.isfinite(v)] for v in (_arr(a), _arr(b)))
    na, nb = xa.size, xb.size
    if na < 2 or nb < 2:
        return _nan_estimate(na + nb)
    return cohens_d_from_moments(
        na,
        float(xa.mean()),
        float(xa.var(ddof=1)),
        nb,
        float(xb.mean()),
        float(xb.var(ddof=1)),
        conf,
    )


def cohens_d_from_moments(
    na: int, mean_a: float, var_a: float, nb: int, mean_b: float, var_b: float, conf: float = 0.95
) -> Estimate:
    """`cohens_d` from each group's size, mean and variance (n - 1 weighting): the same
    estimate and interval, for groups summarised in the database or by weighted sums."""
    if na < 2 or nb < 2:
        return _nan_estimate(na + nb)
    sp = np.sqrt(((na - 1) * var_a + (nb - 1) * var_b) / (na + nb - 2))
    if sp == 0:
        return _nan_estimate(na + nb)
    d = float((mean_a - mean_b) / sp)
    se = np.sqrt((na + nb) / (na * nb) + d**2 / (2 * (na + nb)))
    return Estimate(d, float(d - _z(conf) * se), float(d + _z(conf) * se), int(na + nb))


def mean_ci(values: ArrayLike, conf: float = 0.95) -> Estimate:
    """Mean with a Student t interval (NaNs dropped; interval NaN when n < 2)."""
    v = _arr(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return _nan_estimate(0)
    if v.size == 1:
        return Estimate(float(v[0]), NAN, NAN, 1)
    if np.ptp(v) == 0:
        return Estimate(float(v[0]), float(v[0]), float(v[0]), int(v.size))
    low, high = stats.t.interval(conf, v.size - 1, loc=v.mean(), scale=stats.sem(v))
    return Estimate(float(v.mean()), float(low), float(high), int(v.size))


def mean_interval(
    mean: ArrayLike, sd: ArrayLike, n: ArrayLike, conf: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Student t interval mean -/+ t(n-1) sd / sqrt(n) from summary statistics (NaN if n < 2).

    The same interval as `mean_ci`, from (mean, SD, n) computed in the database instead of raw
    values. Vectorized.
    """
    m = pd.Series(mean, dtype="float64").to_numpy(na_value=np.nan)
    s = pd.Series(sd, dtype="float64").to_numpy(na_value=np.nan)
    k = pd.Series(n, dtype="float64").to_numpy(na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(k >= 2, stats.t.ppf(0.5 + conf / 2, np.maximum(k - 1, 1)), np.nan)
        half = t * s / np.sqrt(k)
    return m - half, m + half


def pre_post_effect_size(first: ArrayLike, last: ArrayLike, higher_is_better: bool) -> float:
    """Mean improvement / SD(first, ddof=1) over complete pairs; improvement is last - first
    when higher is better (ORS), first - last otherwise (PHQ-9, GAD-7)."""
    f, la = _complete(first, last)
    if f.size < 2 or f.std(ddof=1) == 0:
        return NAN
    improvement = la - f if higher_is_better else f - la
    return float(improvement.mean() / f.std(ddof=1))


# --------------------------------------------------------------------------- logistic models


def _fit_logit(x: np.ndarray, y: np.ndarray) -> BinaryResultsWrapper | None:
    """Logit(y ~ 1 + x); None when y is not 0/1 with both classes, x is constant, the data are
    separated or the fit does not converge."""
    if x.size < 3 or np.ptp(x) == 0 or not np.all(np.isin(y, (0.0, 1.0))) or np.ptp(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", PerfectSeparationWarning)  # inserted first: wins
        try:
            res = sm.Logit(y, sm.add_constant(x, has_constant="add")).fit(disp=0, maxiter=100)
        except (PerfectSeparationError, PerfectSeparationWarning, np.linalg.LinAlgError):
            return None
    ok = res.mle_retvals.get("converged", False) and np.all(np.isfinite(res.bse))
    return res if ok else None


def logistic_or_per_sd_lower(x: ArrayLike, y: ArrayLike, conf: float = 0.95) -> Estimate:
    """Odds ratio of y = 1 per 1 SD *lower* x: logit P(y) = a + b z with z = x standardised
    (ddof=1) over the complete rows; OR = exp(-b), Wald interval exp(-b -/+ z_conf SE(b))."""
    xx, yy = _complete(x, y)
    if xx.size < 3 or np.ptp(xx) == 0:
        return _nan_estimate(xx.size)
    res = _fit_logit((xx - xx.mean()) / xx.std(ddof=1), yy)
    if res is None:
        return _nan_estimate(xx.size)
    b, se = float(res.params[1]), float(res.bse[1])
    half = _z(conf) * se
    return Estimate(float(np.exp(-b)), float(np.exp(-b - half)), float(np.exp(-b + half)), xx.size)


def logistic_curve(x: ArrayLike, y: ArrayLike, grid: ArrayLike, conf: float = 0.95) -> pd.DataFrame:
    """Fitted P(y = 1 | x) of Logit(y ~ 1 + x) on ``grid`` with a delta-method band: the linear
    predictor's SE sqrt(g' V g) is formed on the logit scale and the interval back-transformed.
    Columns x, p, low, high (NaN when the model cannot be fitted)."""
    xx, yy = _complete(x, y)
    g = _arr(grid)
    out = pd.DataFrame({"x": g, "p": NAN, "low": NAN, "high": NAN})
    if xx.size < 3 or np.ptp(xx) == 0:
        return out
    centre, scale = xx.mean(), xx.std(ddof=1)  # fit on standardised x for conditioning
    res = _fit_logit((xx - centre) / scale, yy)
    if res is None:
        return out
    design = np.column_stack([np.ones_like(g), (g - centre) / scale])
    eta = design @ np.asarray(res.params)
    se = np.sqrt(np.einsum("ij,jk,ik->i", design, np.asarray(res.cov_params()), design))
    expit = stats.logistic.cdf
    out["p"], out["low"], out["high"] = (
        expit(eta),
        expit(eta - _z(conf) * se),
        expit(eta + _z(conf) * se),
    )
    return out


# --------------------------------------------------------------------------- therapists


def casemix_adjusted(
    df: pd.DataFrame,
    *,
    outcome: str,
    covariates: list[str],
    categorical: list[str],
    group: str,
) -> pd.DataFrame:
    """Case-mix adjusted group means from one OLS across all rows.

    outcome ~ 1 + covariates + dummies(categorical) (first level dropped; a missing category is
    its own level); rows missing the outcome, a covariate or the group are dropped. Per group:
    n, raw_mean, mean_residual, adjusted_mean = clinic mean of the outcome + mean residual,
    sd_residual (the group's own, ddof=1) and pooled_sd (pooled within-group SD of residuals,
    sqrt(SS_within / (N - G)), the same for every group: the sigma of a funnel of means).
    """
    data = df[[outcome, *covariates, *categorical, group]].copy()
    data = data.dropna(subset=[outcome, *covariates, group])
    cols = ["group", "n", "raw_mean", "mean_residual", "adjusted_mean", "sd_residual", "pooled_sd"]
    if data.empty:
        return pd.DataFrame(columns=cols)
    parts = [np.ones((len(data), 1)), data[covariates].to_numpy(dtype=float)]
    if categorical:
        cats = data[categorical].astype("string").fillna("(missing)")
        parts.append(pd.get_dummies(cats, drop_first=True, dtype=float).to_numpy())
    design = np.column_stack(parts)
    y = data[outcome].to_numpy(dtype=float)
    resid = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    # per group from integer codes (groups in sorted order): counts, means and the residuals'
    # within-group sums of squares, without a pandas groupby over every row
    codes, labels = pd.factorize(data[group], sort=True)
    k = len(labels)
    n = np.bincount(codes, minlength=k).astype(float)
    raw_mean = np.bincount(codes, weights=y, minlength=k) / n
    mean_residual = np.bincount(codes, weights=resid, minlength=k) / n
    ss = np.bincount(codes, weights=(resid - mean_residual[codes]) ** 2, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd_residual = np.where(n > 1, np.sqrt(ss / (n - 1)), NAN)
    dof = len(y) - k
    return pd.DataFrame(
        {
            "group": np.asarray(labels),
            "n": n.astype("int64"),
            "raw_mean": raw_mean,
            "mean_residual": mean_residual,
            "adjusted_mean": y.mean() + mean_residual,
            "sd_residual": sd_residual,
            "pooled_sd": np.sqrt(ss.sum() / dof) if dof > 0 else NAN,
        }
    )[cols]


@dataclass(frozen=True)
class ICC:
    """Therapist share of outcome variance: icc = tau2 / (tau2 + sigma2).

    ``method`` is "reml" (restricted maximum likelihood) or "anova" (method of moments).
    ``low``/``high``: approximate interval from the one-way ANOVA F (Searle), with n0 for
    unbalanced groups, whatever the point estimate's method.
    """

    icc: float
    low: float
    high: float
    tau2: float
    sigma2: float
    n_groups: int
    n: int
    method: str

    @property
    def value(self) -> float:
        return self.icc


def _anova_components(resid: np.ndarray, codes: np.ndarray, conf: float) -> tuple[float, ...]:
    """One-way random-effects ANOVA on residuals: (tau2, sigma2, low, high), tau2 >= 0."""
    n, groups = resid.size, int(codes.max()) + 1
    counts = np.bincount(codes, minlength=groups).astype(float)
    means = np.bincount(codes, weights=resid, minlength=groups) / counts
    ssb = float(np.sum(counts * (means - resid.mean()) ** 2))
    ssw = float(np.sum((resid - means[codes]) ** 2))
    df1, df2 = groups - 1, n - groups
    msb, msw = ssb / df1, ssw / df2
    n0 = (n - np.sum(counts**2) / n) / df1
    tau2 = max(0.0, (msb - msw) / n0)
    if msw <= 0:
        return tau2, msw, NAN, NAN
    f = msb / msw
    a = 1 - conf
    fl, fu = f / stats.f.ppf(1 - a / 2, df1, df2), f / stats.f.ppf(a / 2, df1, df2)
    low, high = ((v - 1) / (v + n0 - 1) for v in (fl, fu))
    return tau2, msw, float(np.clip(low, 0, 1)), float(np.clip(high, 0, 1))


def therapist_icc(
    y: ArrayLike,
    intake: ArrayLike,
    group: ArrayLike,
    conf: float = 0.95,
    method: Literal["reml", "anova"] = "reml",
) -> ICC:
    """Therapist effect from y ~ intake + (1 | group), REML (metrics.md).

    Rows missing y, intake or group are dropped. REML: the restricted likelihood profiled over
    the fixed effects and the residual variance is maximised over lambda = tau2 / sigma2 >= 0
    (`_reml_random_intercept`; the same estimate as statsmodels' MixedLM, tested, in
    milliseconds at any size). If that fails, or with method="anova", the closed-form ANOVA
    estimator on the residuals of OLS y ~ intake is used (unbalanced one-way,
    n0 = (N - sum n_g^2 / N) / (G - 1), tau2 truncated at 0). An intake that does not vary is
    left out of the model. Fewer than 2 groups, fewer than G + 2 rows or no residual variance
    give NaN (method "none").
    """
    if method not in ("reml", "anova"):
        raise ValueError(f"unknown method {method!r}: 'reml' or 'anova'")
    yy, xx = _arr(y), _arr(intake)
    g = group if isinstance(group, pd.Series) else pd.Series(np.asarray(group, dtype=object))
    ok = np.isfinite(yy) & np.isfinite(xx) & g.notna().to_numpy()
    yy, xx = yy[ok], xx[ok]
    codes = pd.factorize(g[ok])[0]
    n = int(yy.size)
    groups = int(codes.max()) + 1 if n else 0
    if groups < 2 or n < groups + 2:
        return ICC(NAN, NAN, NAN, NAN, NAN, groups, n, "none")
    # centred (the likelihood does not change; the sums stay well conditioned); a constant
    # intake carries nothing and would make the design singular
    xc = xx - xx.mean()
    design = np.column_stack([np.ones(n), xc]) if np.ptp(xc) > 0 else np.ones((n, 1))
    yc = yy - yy.mean()
    resid = yc - design @ np.linalg.lstsq(design, yc, rcond=None)[0]
    if not resid.var() > 1e-12 * yy.var() > 0:  # nothing to share out (constant / exact fit)
        return ICC(NAN, NAN, NAN, NAN, NAN, groups, n, "none")
    tau2, sigma2, low, high = _anova_components(resid, codes, conf)
    used = "anova"
    if method == "reml" and sigma2 > 0:
        fit = _reml_random_intercept(yc, design, codes)
        if fit is not None:
            tau2, sigma2 = fit
            used = "reml"
    icc = tau2 / (tau2 + sigma2) if tau2 + sigma2 > 0 else NAN
    return ICC(float(icc), low, high, float(tau2), float(sigma2), groups, n, used)


def _reml_random_intercept(
    y: np.ndarray, x: np.ndarray, codes: np.ndarray
) -> tuple[float, float] | None:
    """REML estimate (tau2, sigma2) of y = x b + u_group + e, u ~ N(0, tau2), e ~ N(0, sigma2).

    With lambda = tau2 / sigma2 each group's covariance is sigma2 (I + lambda J), whose inverse
    is I - c J with c = lambda / (1 + n_g lambda); so x'V^-1 x, x'V^-1 y and y'V^-1 y need only
    each group's size and column sums. Profiling b and sigma2 out (Harville 1977), minus twice
    the restricted log-likelihood is, up to a constant,
        (N - p) log RSS(lambda) + sum_g log(1 + n_g lambda) + log det(x'H^-1 x),
    with sigma2 = RSS / (N - p). It is minimised over 0 <= lambda <= 1e4 (an ICC up to 0.9999):
    a grid on the log scale from 1e-8, lambda = 0 itself, then Brent's method around the best
    grid point. None if not finite.
    """
    n, p = x.shape
    k = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=k).astype(float)
    sx = np.column_stack([np.bincount(codes, weights=x[:, j], minlength=k) for j in range(p)])
    sy = np.bincount(codes, weights=y, minlength=k)
    xtx, xty, yty = x.T @ x, x.T @ y, float(y @ y)

    def terms(lam: float) -> tuple[float, float, float]:
        """RSS, and the sign and log of det(x'H^-1 x), at lambda."""
        c = lam / (1 + sizes * lam)
        a = xtx - (sx * c[:, None]).T @ sx
        b = xty - (sx * (c * sy)[:, None]).sum(axis=0)
        sign, logdet = np.linalg.slogdet(a)
        return yty - float(np.sum(c * sy**2)) - float(b @ np.linalg.solve(a, b)), sign, logdet

    def objective(lam: float) -> float:
        rss, sign, logdet = terms(lam)
        if not (rss > 0 and sign > 0):
            return math.inf
        return (n - p) * math.log(rss) + float(np.sum(np.log1p(sizes * lam))) + logdet

    with np.errstate(all="ignore"):
        try:
            grid = np.exp(np.linspace(math.log(1e-8), math.log(1e4), 61))
            values = np.array([objective(float(v)) for v in grid])
            i = int(np.argmin(values))
            lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
            best = optimize.minimize_scalar(
                lambda t: objective(math.exp(t)),
                bounds=(math.log(lo), math.log(hi)),
                method="bounded",
                options={"xatol": 1e-10},
            )
            lam = math.exp(best.x) if best.fun <= values[i] else float(grid[i])
            if objective(0.0) <= objective(lam):  # the boundary: no therapist effect
                lam = 0.0
            sigma2 = terms(lam)[0] / (n - p)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return None
    if not (math.isfinite(lam) and math.isfinite(sigma2) and sigma2 > 0):
        return None
    return lam * sigma2, sigma2


def empirical_bayes_shrink(
    values: ArrayLike,
    n: ArrayLike,
    within_var: ArrayLike | float,
    grand_mean: float | None = None,
) -> np.ndarray:
    """Group means shrunk toward the overall mean (for small-n group gaps).

    Each mean has sampling variance v_g = within_var / n_g. tau2 is the DerSimonian-Laird
    moment estimate (Q about the precision-weighted mean, weights 1/v_g). The shrunken mean is
    m + tau2 / (tau2 + v_g) (y_g - m), m = ``grand_mean`` or by default the n-weighted mean of
    the groups (the clinic mean). Groups with n <= 0 or a missing value give NaN.
    """
    y, m = _arr(values), _arr(n)
    v = np.broadcast_to(_arr(within_var), y.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(m > 0, v / m, np.nan)
    ok = np.isfinite(y) & np.isfinite(var) & (var > 0)
    out = np.full(y.shape, np.nan)
    if not ok.any():
        return out
    w = 1 / var[ok]
    centre_w = np.sum(w * y[ok]) / w.sum()
    tau2 = dl_tau2(float(np.sum(w * (y[ok] - centre_w) ** 2)), w)
    tau2 = 0.0 if not np.isfinite(tau2) else tau2
    centre = grand_mean if grand_mean is not None else np.sum(m[ok] * y[ok]) / m[ok].sum()
    out[ok] = centre + tau2 / (tau2 + var[ok]) * (y[ok] - centre)
    return out
