"""The alliance-dropout statistics of metrics.md ("Dropout and its link to alliance") from
grouped counts.

Query dropout_early_srs gives ended episodes counted by site and exact early SRS: a few thousand
rows at most however many episodes, and no loss (see the query's header). From them: Cohen's d
(clinic and per site, from weighted moments), the point-biserial r and the logistic regression of
dropout on the standardized early SRS (a binomial GLM on the counts: the per-episode likelihood).
The Dropout page builds on these; `dropout_alliance_stats` gives its headline figures to the CLI
summary.

Whether d, the odds ratio, r and the fitted curve may be shown is decided in one place,
`effects_released` (alliance/privacy.py, statistic_released: every group a statistic rests on,
here the dropouts and the other endings, has at least k clients). The page's tiles, its curve and
d-by-site panel, and so the report packs and the app's exports built from them, all ask it; the
`summary` command prints exact figures for data staff and reports the decision beside them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

from alliance import privacy, queries
from alliance.panel import Context
from alliance.stats import Estimate, cohens_d, cohens_d_from_moments, point_biserial_r

NAN = float("nan")
STAT_KEYS = (
    "alliance_dropout_d",
    "alliance_dropout_d_ci",
    "dropout_or_per_sd_lower",
    "dropout_or_per_sd_lower_ci",
    "dropout_point_biserial_r",
    "dropout_point_biserial_r_ci",
    "n",
    "dropout_clients",
    "other_clients",
    "released",
)


def effects_released(
    policy: privacy.PrivacyPolicy, dropout_clients: int, other_clients: int
) -> bool:
    """The one release rule for the statistics comparing dropouts with other endings (Cohen's
    d, the odds ratio, the point-biserial r, the fitted curve): both groups have at least k
    distinct clients (privacy.statistic_released)."""
    return privacy.statistic_released(policy, dropout_clients, other_clients)


def effect_groups(ctx: Context) -> pd.DataFrame:
    """Client counts by (site or all, dropout), wide: site ("__all__" for every site in view),
    dropout_clients, other_clients, dropout_episodes, other_episodes (ended episodes with an
    early SRS; queries/dropout_effect_groups.sql), and the cell keys of the episode counts
    (dropout_episodes_cellkey, other_episodes_cellkey: for the page's protected counts only)."""
    g = queries.run(ctx.con, "dropout_effect_groups", **ctx.params())
    g = g.assign(site=g["site"].fillna("__all__"))
    wide = g.pivot_table(
        index="site",
        columns="dropout",
        values=["n_clients", "episodes", "episodes_cellkey"],
        fill_value=0,
    )
    out = pd.DataFrame(index=wide.index)
    for col, key in (
        ("n_clients", "clients"),
        ("episodes", "episodes"),
        ("episodes_cellkey", "episodes_cellkey"),
    ):
        for flag, name in ((True, "dropout"), (False, "other")):
            out[f"{name}_{key}"] = (
                wide[(col, flag)].astype(int) if (col, flag) in wide.columns else 0
            )
    return out.reset_index()


def expand(groups: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode (early_srs, dropout 0/1) rebuilt exactly from the grouped counts."""
    x = groups["early_srs"].to_numpy(dtype=float)
    drops = groups["dropouts"].to_numpy(dtype=np.int64)
    others = groups["episodes"].to_numpy(dtype=np.int64) - drops
    srs = np.concatenate([np.repeat(x, drops), np.repeat(x, others)])
    dropout = np.concatenate([np.ones(drops.sum()), np.zeros(others.sum())])
    return srs, dropout


def pool(groups: pd.DataFrame) -> pd.DataFrame:
    """The grouped counts summed over sites: one row per exact early SRS."""
    return groups.groupby("early_srs", as_index=False)[["episodes", "dropouts"]].sum()


class GroupedLogit:
    """Logit P(dropout) = a + b z, z = early SRS standardized over the episodes (ddof = 1).

    Fitted as a binomial GLM on (dropouts, non-dropouts) per exact early-SRS value: the same
    likelihood as a per-episode logistic regression, so the same estimates and Wald standard
    errors as alliance.stats.logistic_or_per_sd_lower / logistic_curve on the expanded episodes
    (tests/test_view_dropout.py checks it), in milliseconds instead of seconds at 10^6 episodes.
    """

    def __init__(self, pooled: pd.DataFrame) -> None:
        x = pooled["early_srs"].to_numpy(dtype=float)
        n = pooled["episodes"].to_numpy(dtype=float)
        d = pooled["dropouts"].to_numpy(dtype=float)
        self.n = int(n.sum())
        self.res = None
        if self.n < 3 or x.size < 2 or d.sum() in (0, self.n):
            return
        self.centre = float(np.sum(n * x) / self.n)
        self.scale = float(np.sqrt(np.sum(n * (x - self.centre) ** 2) / (self.n - 1)))
        design = sm.add_constant((x - self.centre) / self.scale, has_constant="add")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", PerfectSeparationWarning)
            try:
                res = sm.GLM(
                    np.column_stack([d, n - d]), design, family=sm.families.Binomial()
                ).fit()
            except (PerfectSeparationError, PerfectSeparationWarning, np.linalg.LinAlgError):
                return
        if res.converged and np.all(np.isfinite(res.bse)):
            self.res = res

    def or_per_sd_lower(self, conf: float = 0.95) -> Estimate:
        if self.res is None:
            return Estimate(NAN, NAN, NAN, self.n)
        b, se = float(self.res.params[1]), float(self.res.bse[1])
        half = float(sps.norm.ppf(0.5 + conf / 2)) * se
        return Estimate(
            float(np.exp(-b)), float(np.exp(-b - half)), float(np.exp(-b + half)), self.n
        )

    def curve(self, grid: np.ndarray, conf: float = 0.95) -> pd.DataFrame:
        """Fitted P(dropout) on `grid` with a delta-method band formed on the logit scale."""
        out = pd.DataFrame({"x": grid, "p": NAN, "low": NAN, "high": NAN})
        if self.res is None:
            return out
        design = np.column_stack([np.ones_like(grid), (grid - self.centre) / self.scale])
        eta = design @ np.asarray(self.res.params)
        cov = np.asarray(self.res.cov_params())
        se = np.sqrt(np.einsum("ij,jk,ik->i", design, cov, design))
        z = float(sps.norm.ppf(0.5 + conf / 2))
        out["p"] = sps.logistic.cdf(eta)
        out["low"] = sps.logistic.cdf(eta - z * se)
        out["high"] = sps.logistic.cdf(eta + z * se)
        return out


def effect_stats(pooled: pd.DataFrame) -> dict[str, Estimate]:
    srs, dropout = expand(pooled)
    return {
        # d = (mean early SRS of other endings - mean of dropouts) / pooled SD: positive when
        # dropouts had the weaker early alliance, as the published d
        "d": cohens_d(srs[dropout == 0], srs[dropout == 1]),
        "r": point_biserial_r(srs, dropout),
        "or": GroupedLogit(pooled).or_per_sd_lower(),
    }


def d_by_site(groups: pd.DataFrame) -> dict[str, Estimate]:
    """Cohen's d (other endings minus dropouts) per site, in site order, from the grouped
    counts: each group's size, mean and variance as weighted sums over the exact early-SRS
    values, so the same d as `cohens_d` on the site's expanded episodes (the test checks it)
    without rebuilding them site by site."""
    g = groups.dropna(subset=["site"])
    x = g["early_srs"].to_numpy(dtype=float)
    site = g["site"].to_numpy(dtype=object)
    moments = {}
    for name, w in (
        ("drop", g["dropouts"].to_numpy(dtype=float)),
        ("other", (g["episodes"] - g["dropouts"]).to_numpy(dtype=float)),
    ):
        n = pd.Series(w).groupby(site).sum()
        mean = pd.Series(w * x).groupby(site).sum() / n
        dev = x - mean.reindex(site).to_numpy()
        ss = pd.Series(w * dev * dev).groupby(site).sum()
        moments[name] = (n, mean, ss / (n - 1))
    (n1, m1, v1), (n0, m0, v0) = moments["drop"], moments["other"]
    return {
        s: cohens_d_from_moments(int(n0[s]), m0[s], v0[s], int(n1[s]), m1[s], v1[s])
        for s in sorted(n0.index)
    }


def _ci(e: Estimate) -> list[float]:
    return [e.low, e.high]


def dropout_alliance_stats(ctx: Context) -> dict[str, float | list[float] | int | bool]:
    """The alliance-dropout headline statistics of metrics.md for the view's filters.

    Over ended episodes finished in the period that have an early SRS (`n`):
    alliance_dropout_d: Cohen's d = (mean early SRS of non-dropout endings - mean of dropouts) /
    pooled SD (n - 1 weighting), interval d -/+ 1.96 SE; dropout_or_per_sd_lower: odds ratio of
    dropout per 1 SD lower early SRS from a logistic regression on the standardized early SRS,
    Wald 95% CI; dropout_point_biserial_r: Pearson r of early SRS with dropout (0/1), Fisher-z
    95% CI (negative: a higher early SRS goes with less dropout). `*_ci` = [low, high].
    Not computable (e.g. no dropouts) -> NaN. Exact and unprotected: a caller that shows them
    applies `effects_released` to dropout_clients and other_clients (the distinct clients of
    the dropout and of the other episodes), whose verdict is under "released".
    """
    groups = queries.run(ctx.con, "dropout_early_srs", **ctx.params())
    pooled = pool(groups)
    est = effect_stats(pooled)
    clients = effect_groups(ctx).set_index("site")
    dropout_clients = int(clients["dropout_clients"].get("__all__", 0))
    other_clients = int(clients["other_clients"].get("__all__", 0))
    return {
        "alliance_dropout_d": est["d"].value,
        "alliance_dropout_d_ci": _ci(est["d"]),
        "dropout_or_per_sd_lower": est["or"].value,
        "dropout_or_per_sd_lower_ci": _ci(est["or"]),
        "dropout_point_biserial_r": est["r"].value,
        "dropout_point_biserial_r_ci": _ci(est["r"]),
        "n": int(pooled["episodes"].sum()),
        "dropout_clients": dropout_clients,
        "other_clients": other_clients,
        "released": effects_released(ctx.policy, dropout_clients, other_clients),
    }
