"""Therapist funnel plots and statistical process control (metrics.md "Therapists" and
"Quality improvement views").

Funnel plots follow Spiegelhalter (2005), "Funnel plots for comparing institutional
performance", Stat Med 24:1185-1202. SPC charts are Shewhart p- and X-bar charts with the IHI
run-chart rules. Every function is pure: inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "FLAGS",
    "Overdispersion",
    "dl_tau2",
    "funnel",
    "funnel_limits_mean",
    "funnel_limits_proportion",
    "overdispersion",
    "p_chart",
    "pooled_sd",
    "judged_rules",
    "run_rules",
    "separate_baseline",
    "xbar_chart",
]

FLAGS = ("within", "above 95%", "below 95%", "above 99.8%", "below 99.8%")


def _arr(a: ArrayLike | pd.Series) -> np.ndarray:
    """Float array (NaN for missing) from a list, numpy array or pandas Series."""
    if isinstance(a, pd.Series | pd.Index):
        return a.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(a, dtype=float)


def _index(a: object) -> pd.Index | None:
    """The index of a pandas Series input (kept on outputs), else None."""
    return a.index if isinstance(a, pd.Series) else None


def _level_label(level: float) -> str:
    """0.95 -> '95', 0.998 -> '998' (column suffix)."""
    return f"{level * 100:g}".replace(".", "")


def pooled_sd(sd: ArrayLike, n: ArrayLike) -> float:
    """Pooled SD sqrt(sum((n_i - 1) sd_i^2) / sum(n_i - 1)) over groups with n_i >= 2."""
    s, m = _arr(sd), _arr(n)
    ok = np.isfinite(s) & np.isfinite(m) & (m >= 2)
    df = float(np.sum(m[ok] - 1))
    return float(np.sqrt(np.sum((m[ok] - 1) * s[ok] ** 2) / df)) if df > 0 else float("nan")


def dl_tau2(q: float, w: ArrayLike) -> float:
    """DerSimonian-Laird moment estimate of the between-unit variance.

    ``q`` is the weighted sum of squares sum(w_i (y_i - centre)^2) (= I * phi for funnel
    z-scores), ``w`` the weights 1/s_i^2: tau2 = max(0, (q - (I - 1)) / (sum w - sum w^2/sum w)).
    """
    w = _arr(w)
    w = w[np.isfinite(w)]
    if w.size < 2:
        return float("nan")
    denom = w.sum() - np.sum(w**2) / w.sum()
    return float(max(0.0, (q - (w.size - 1)) / denom)) if denom > 0 else 0.0


# --------------------------------------------------------------------------- funnel plots


def _normal_limits(
    centre: float, var0: np.ndarray, levels: Sequence[float], tau2: float, phi: float
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt(phi * var0 + tau2)
    for lev in levels:
        z = stats.norm.ppf(0.5 + lev / 2)
        out[f"low_{_level_label(lev)}"] = centre - z * half
        out[f"high_{_level_label(lev)}"] = centre + z * half
    return out


def funnel_limits_proportion(
    p0: float,
    n: ArrayLike,
    levels: Sequence[float] = (0.95, 0.998),
    tau2: float = 0.0,
    phi: float = 1.0,
) -> pd.DataFrame:
    """Funnel control limits for a proportion with target ``p0`` at sample sizes ``n``.

    Without overdispersion (tau2 == 0 and phi == 1) the limits are exact binomial quantiles with
    Spiegelhalter's (2005, appendix A.1.1) interpolation: r_p = binom.ppf(p, n, p0),
    alpha = (F(r_p) - p) / (F(r_p) - F(r_p - 1)), limit = (r_p - alpha) / n, for
    p = (1 - level)/2 and (1 + level)/2; ``n`` is rounded to whole numbers. Otherwise the normal
    approximation p0 +/- z sqrt(phi p0 (1 - p0) / n + tau2) (multiplicative: phi > 1; additive:
    tau2 > 0). Limits are clipped to [0, 1]; n < 1 gives NaN.
    Columns: n, low_95, high_95, low_998, high_998 (suffix from ``levels``).
    """
    nn = _arr(n)
    out: dict[str, np.ndarray] = {"n": nn}
    if tau2 == 0.0 and phi == 1.0:
        m = np.where(nn >= 1, np.round(nn), np.nan)
        for lev in levels:
            for side, p in (("low", (1 - lev) / 2), ("high", (1 + lev) / 2)):
                r = stats.binom.ppf(p, m, p0)
                f_r = stats.binom.cdf(r, m, p0)
                alpha = (f_r - p) / (f_r - stats.binom.cdf(r - 1, m, p0))
                out[f"{side}_{_level_label(lev)}"] = (r - alpha) / m
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            var0 = np.where(nn >= 1, p0 * (1 - p0) / nn, np.nan)
        out.update(_normal_limits(p0, var0, levels, tau2, phi))
    df = pd.DataFrame(out)
    cols = [c for c in df.columns if c != "n"]
    df[cols] = df[cols].clip(0.0, 1.0)
    return df


def funnel_limits_mean(
    mu0: float,
    sigma: float,
    n: ArrayLike,
    levels: Sequence[float] = (0.95, 0.998),
    tau2: float = 0.0,
    phi: float = 1.0,
) -> pd.DataFrame:
    """Funnel limits for a mean: mu0 +/- z sqrt(phi sigma^2 / n + tau2).

    ``sigma`` is the pooled within-unit SD (metrics.md). Columns as in
    :func:`funnel_limits_proportion`; n < 1 gives NaN.
    """
    nn = _arr(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        var0 = np.where(nn >= 1, sigma**2 / nn, np.nan)
    return pd.DataFrame({"n": nn, **_normal_limits(mu0, var0, levels, tau2, phi)})


@dataclass(frozen=True)
class Overdispersion:
    """phi = mean winsorised z^2; tau2 = additive between-unit variance (DerSimonian-Laird)."""

    phi: float
    tau2: float
    significant: bool
    n_units: int
    p_value: float


def overdispersion(
    y: ArrayLike, target: float, se: ArrayLike, winsor: float = 0.10
) -> Overdispersion:
    """Overdispersion of unit values ``y`` around ``target`` given their null SEs ``se``.

    Spiegelhalter (2005, section 6): z_i = (y_i - target) / se_i; z is Winsorised (values below
    its ``winsor`` quantile are set to that quantile, likewise above 1 - ``winsor``);
    phi = sum(z^2) / I. Significant when I * phi > chi2.ppf(0.95, I - 1) (I - 1 degrees of
    freedom because the target is the clinic-wide value estimated from the same units).
    tau2 = max(0, (I phi - (I - 1)) / (sum w - sum w^2 / sum w)) with w = 1 / se^2. Units with a
    non-finite z (e.g. se == 0) are ignored; fewer than 2 units give NaN and not significant.
    """
    yy, s = _arr(y), _arr(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (yy - target) / s
    ok = np.isfinite(z) & (s > 0)
    z, s = z[ok], s[ok]
    units = int(z.size)
    if units < 2:
        return Overdispersion(float("nan"), float("nan"), False, units, float("nan"))
    if winsor > 0:
        z = np.clip(z, np.quantile(z, winsor), np.quantile(z, 1 - winsor))
    q = float(np.sum(z**2))
    p_value = float(stats.chi2.sf(q, units - 1))
    return Overdispersion(q / units, dl_tau2(q, 1 / s**2), p_value < 0.05, units, p_value)


def _limit_grid(max_n: float) -> np.ndarray:
    top = max(1, int(np.ceil(max_n)))
    if top <= 400:
        return np.arange(1, top + 1, dtype=float)
    return np.unique(np.round(np.geomspace(1, top, 400)))


def funnel(
    df: pd.DataFrame,
    *,
    kind: Literal["proportion", "mean"],
    target: float,
    sigma: float | None = None,
    method: Literal["none", "multiplicative", "additive"] = "none",
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """Funnel plot data: unit points with flags, control limits on an n grid, and info.

    ``df`` has columns unit, n, value (rate in [0, 1] for ``kind="proportion"``, mean for
    ``kind="mean"``, which needs ``sigma`` = pooled within-unit SD). Units with n < 1 or a
    missing value are dropped. Overdispersion is always estimated; limits are widened with the
    chosen ``method`` only when it is significant (``info["method_used"]`` says what was
    applied). Flags compare each value with the limits at its own n (strictly outside), the
    99.8% flag taking precedence. Returns (points, limits, info):
    points columns unit, n, value, se, z, z_adj (z with the widening applied), low_95, high_95,
    low_998, high_998, flag;
    limits columns n, low_95, high_95, low_998, high_998, target;
    info keys kind, target, sigma, phi, tau2, significant, p_value, n_units, method,
    method_used.
    """
    if kind not in ("proportion", "mean"):
        raise ValueError(f"unknown kind {kind!r}")
    if method not in ("none", "multiplicative", "additive"):
        raise ValueError(f"unknown method {method!r}")
    if kind == "mean" and (sigma is None or not np.isfinite(sigma) or sigma <= 0):
        raise ValueError("kind='mean' needs sigma, the pooled within-unit SD")
    n, value = _arr(df["n"]), _arr(df["value"])
    keep = (n >= 1) & np.isfinite(value)
    pts = pd.DataFrame({"unit": df["unit"].to_numpy()[keep], "n": n[keep], "value": value[keep]})
    sig = float(sigma) if sigma is not None else float("nan")
    var0 = target * (1 - target) if kind == "proportion" else sig**2
    pts["se"] = np.sqrt(var0 / pts["n"].to_numpy())
    with np.errstate(divide="ignore", invalid="ignore"):
        pts["z"] = (pts["value"] - target) / pts["se"]
    od = overdispersion(pts["value"], target, pts["se"])
    used = method if od.significant else "none"
    tau2 = od.tau2 if used == "additive" else 0.0
    phi = od.phi if used == "multiplicative" else 1.0

    def limits(at: np.ndarray) -> pd.DataFrame:
        if kind == "proportion":
            return funnel_limits_proportion(target, at, tau2=tau2, phi=phi)
        return funnel_limits_mean(target, sig, at, tau2=tau2, phi=phi)

    with np.errstate(divide="ignore", invalid="ignore"):  # z against the widened null
        pts["z_adj"] = (pts["value"] - target) / np.sqrt(phi * pts["se"] ** 2 + tau2)
    own = limits(pts["n"].to_numpy())
    for col in ("low_95", "high_95", "low_998", "high_998"):
        pts[col] = own[col].to_numpy()
    v = pts["value"].to_numpy()
    pts["flag"] = np.select(
        [v > pts["high_998"], v < pts["low_998"], v > pts["high_95"], v < pts["low_95"]],
        ["above 99.8%", "below 99.8%", "above 95%", "below 95%"],
        default="within",
    )
    grid = limits(_limit_grid(pts["n"].max() if len(pts) else 1.0))
    grid["target"] = target
    info: dict[str, object] = {
        "kind": kind,
        "target": target,
        "sigma": sigma,
        "phi": od.phi,
        "tau2": od.tau2,
        "significant": od.significant,
        "p_value": od.p_value,
        "n_units": od.n_units,
        "method": method,
        "method_used": used,
    }
    return pts, grid, info


# --------------------------------------------------------------------------- SPC charts


def _baseline_mask(baseline: ArrayLike | None, size: int) -> np.ndarray:
    if baseline is None:
        return np.ones(size, dtype=bool)
    mask = np.asarray(baseline, dtype=bool)
    if mask.shape != (size,):
        raise ValueError("baseline must be a boolean array with one entry per point")
    return mask


def p_chart(events: ArrayLike, n: ArrayLike, baseline: ArrayLike | None = None) -> pd.DataFrame:
    """Shewhart p-chart: p_i = events_i / n_i, centre = sum(events) / sum(n) over the baseline
    points (all when None), limits centre +/- 3 sqrt(centre (1 - centre) / n_i) clipped to
    [0, 1]. Columns p, centre, lcl, ucl.

    A point without a value (n_i == 0, or a withheld point passed as NaN) has no centre and no
    limits either (NaN): a line there would describe a month that shows nothing, and its limits
    solve back to its n_i. Pass withheld points as NaN so that they are neither drawn nor part of
    the baseline.
    """
    x, m = _arr(events), _arr(n)
    has = (m > 0) & np.isfinite(x)
    base = _baseline_mask(baseline, x.size) & has
    centre = x[base].sum() / m[base].sum() if base.any() else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(has, x / m, np.nan)
        half = np.where(has, 3 * np.sqrt(centre * (1 - centre) / m), np.nan)
    return pd.DataFrame(
        index=_index(events),
        data={
            "p": p,
            "centre": np.where(has, centre, np.nan),
            "lcl": np.clip(centre - half, 0, 1),
            "ucl": np.clip(centre + half, 0, 1),
        },
    )


def xbar_chart(
    means: ArrayLike,
    sds_or_pooled_sd: ArrayLike | float,
    n: ArrayLike,
    baseline: ArrayLike | None = None,
) -> pd.DataFrame:
    """Shewhart X-bar chart for monthly means.

    centre = n-weighted mean of the baseline means; sigma = the given scalar, or the pooled
    within-month SD of the baseline months (see :func:`pooled_sd`); limits
    centre +/- 3 sigma / sqrt(n_i) (no c4 bias correction). Columns mean, centre, lcl, ucl.

    As in :func:`p_chart`, a point without a value (n_i == 0, or withheld: NaN mean or n) has
    no centre and no limits (NaN), and is not part of the baseline.
    """
    mu, m = _arr(means), _arr(n)
    has = (m > 0) & np.isfinite(mu)
    base = _baseline_mask(baseline, mu.size) & has
    centre = float(np.sum(m[base] * mu[base]) / m[base].sum()) if base.any() else np.nan
    sds = _arr(sds_or_pooled_sd)
    sigma = float(sds) if sds.ndim == 0 else pooled_sd(sds[base], m[base])
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.where(has, 3 * sigma / np.sqrt(m), np.nan)
    return pd.DataFrame(
        index=_index(means),
        data={
            "mean": np.where(has, mu, np.nan),
            "centre": np.where(has, centre, np.nan),
            "lcl": centre - half,
            "ucl": centre + half,
        },
    )


def _flag_runs(keys: np.ndarray, positions: np.ndarray, min_len: int, size: int) -> np.ndarray:
    """Flag ``positions`` belonging to runs of >= min_len equal consecutive ``keys``."""
    flags = np.zeros(size, dtype=bool)
    start = 0
    for i in range(1, keys.size + 1):
        if i == keys.size or keys[i] != keys[start]:
            if i - start >= min_len:
                flags[positions[start:i]] = True
            start = i
    return flags


def run_rules(
    values: ArrayLike,
    centre_line: ArrayLike | float,
    lcl: ArrayLike | float | None = None,
    ucl: ArrayLike | float | None = None,
    *,
    shift_length: int = 6,
    trend_length: int = 5,
) -> pd.DataFrame:
    """IHI run-chart rules, one boolean row per point (columns shift, trend, astronomical).

    shift: part of a run of ``shift_length``+ consecutive points on the same side of
    ``centre_line`` (the median on a run chart); points on the line neither break nor count
    (and are not flagged). trend: part of ``trend_length``+ consecutive points all rising or all
    falling; a point equal to its predecessor neither counts nor breaks the trend (it is flagged
    when it lies inside a flagged trend, not when it only precedes or follows one).
    astronomical: strictly below ``lcl`` or above ``ucl`` (False when limits are None).
    Missing values are skipped by all rules and never flagged.
    """
    v = _arr(values)
    size = v.size
    centre = np.broadcast_to(_arr(centre_line), (size,))
    finite = np.flatnonzero(np.isfinite(v))

    side = np.sign(v[finite] - centre[finite])
    on_side = side != 0
    shift = _flag_runs(side[on_side], finite[on_side], shift_length, size)

    trend = np.zeros(size, dtype=bool)
    if finite.size:
        vals = v[finite]
        new_block = np.concatenate([[True], vals[1:] != vals[:-1]])
        starts = np.flatnonzero(new_block)  # first index (into finite) of each tie block
        ends = np.append(starts[1:] - 1, vals.size - 1)  # last index of each tie block
        steps = np.sign(np.diff(vals[starts]))  # direction between successive blocks
        s = 0
        for i in range(1, steps.size + 1):
            if i == steps.size or steps[i] != steps[s]:
                if i - s + 1 >= trend_length:  # steps s..i-1 join blocks s..i
                    trend[finite[ends[s] : starts[i] + 1]] = True
                s = i

    astro = np.zeros(size, dtype=bool)
    with np.errstate(invalid="ignore"):
        if lcl is not None:
            astro |= v < np.broadcast_to(_arr(lcl), (size,))
        if ucl is not None:
            astro |= v > np.broadcast_to(_arr(ucl), (size,))
    return pd.DataFrame(
        {"shift": shift, "trend": trend, "astronomical": astro}, index=_index(values)
    )


# A baseline judges the months after it: at least this many months with a value must follow it
# (a shift needs 6 points), or the period is too short for a separate baseline.
MIN_JUDGED = 6


def separate_baseline(values: ArrayLike, baseline: ArrayLike, min_after: int = MIN_JUDGED) -> bool:
    """Whether the points after the baseline can be judged against it: ``min_after`` or more
    points with a value that are not part of the baseline."""
    v = _arr(values)
    base = np.asarray(baseline, dtype=bool)
    return int(np.sum(np.isfinite(v) & ~base)) >= min_after


def judged_rules(
    values: ArrayLike,
    centre_line: ArrayLike | float,
    lcl: ArrayLike | float | None,
    ucl: ArrayLike | float | None,
    baseline: ArrayLike,
    *,
    min_after: int = MIN_JUDGED,
) -> pd.DataFrame:
    """The run-chart rules as a control chart applies them: against the centre line that is
    drawn (not another, undrawn line), and only on the points after the baseline (a baseline
    does not judge itself: points inside it, and runs reaching into it, are never flagged).

    When fewer than ``min_after`` points with a value follow the baseline
    (:func:`separate_baseline`), nothing is judged and nothing flagged. Columns shift, trend,
    astronomical, judged (the points the rules looked at).
    """
    v = _arr(values)
    base = np.asarray(baseline, dtype=bool)
    judged = np.isfinite(v) & ~base
    if not separate_baseline(v, base, min_after):
        judged[:] = False
    after = np.where(judged, v, np.nan)
    rules = run_rules(after, centre_line, lcl, ucl)
    rules["judged"] = judged
    for col in ("shift", "trend", "astronomical"):
        rules[col] = rules[col].to_numpy() & judged
    return rules
