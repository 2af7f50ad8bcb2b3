"""Client-cluster intervals for the Client demographics page's session-level metrics (several
ratings per client): the ratio estimator with a linearisation variance, Wilson on the effective
number of ratings, and each group's gap from the clinic-wide value. Pure and vectorised over
groups. (Not in alliance.stats yet: nothing there handles several ratings per client.)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from alliance.stats import risk_difference, wilson_interval


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


def srs_sums(df: pd.DataFrame, numerator: str) -> ClusterSums:
    """The SRS sums of each row: of the SRS totals (numerator "srs") or of the ratings below the
    cutoff ("below")."""
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


def broadcast(s: ClusterSums, size: int) -> ClusterSums:
    """One group's sums repeated `size` times (the clinic beside each group)."""
    return ClusterSums(
        *(
            np.repeat(np.asarray(getattr(s, f), dtype=float), size)
            for f in ("c", "y", "m", "y2", "ym", "m2")
        )
    )
