"""Tests for alliance.stats and alliance.spc.

Expected values are worked out by hand (arithmetic in the comments), taken from published
examples, or computed with a different formula / library than the code under test.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams
from statsmodels.stats.meta_analysis import combine_effects

from alliance import spc
from alliance import stats as _stats
from alliance.stats import (
    ICC,
    Estimate,
    casemix_adjusted,
    cohens_d,
    dl_tau2,
    empirical_bayes_shrink,
    fisher_z_ci,
    funnel,
    funnel_limits_mean,
    funnel_limits_proportion,
    logistic_curve,
    logistic_or_per_sd_lower,
    mean_ci,
    overdispersion,
    p_chart,
    pearson_r,
    point_biserial_r,
    pooled_sd,
    pre_post_effect_size,
    risk_difference,
    risk_difference_vs_overall,
    run_rules,
    therapist_icc,
    wilson_interval,
    xbar_chart,
)

Z95 = 1.959963984540054  # norm.ppf(0.975)
Z998 = 3.090232306167813  # norm.ppf(0.999)
approx = pytest.approx


def expit(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# --------------------------------------------------------------------------- proportions


def test_wilson_by_hand() -> None:
    # 8/10: p = .8, z^2 = 3.8415, denom = 1 + z^2/n = 1.38415
    # centre = (.8 + z^2/20) / 1.38415 = .71674
    # half = z sqrt(.8*.2/10 + z^2/400) / 1.38415 = 1.96 * .160012 / 1.38415 = .22658
    # 0/5: (0, z^2 / (5 + z^2)) = (0, 3.8415 / 8.8415 = .43448)
    low, high = wilson_interval([8, 0, 3], [10, 5, 0])
    assert low[0] == approx(0.4902, abs=5e-5) and high[0] == approx(0.9433, abs=5e-5)
    assert low[1] == 0.0 and high[1] == approx(Z95**2 / (5 + Z95**2), abs=1e-9)
    assert math.isnan(low[2]) and math.isnan(high[2])  # n == 0


def test_wilson_accepts_series_and_does_not_mutate() -> None:
    x, n = pd.Series([8, 2]), pd.Series([10, 4])
    low, high = wilson_interval(x, n)
    assert low.shape == (2,) and x.tolist() == [8, 2] and n.tolist() == [10, 4]
    # p = .5, n = 4: centre .5, half = z sqrt(.0625 + z^2/64) / (1 + z^2/4) = .3744 / ...
    half = Z95 * math.sqrt(0.25 / 4 + Z95**2 / 64) / (1 + Z95**2 / 4)
    assert (low[1], high[1]) == approx((0.5 - half, 0.5 + half))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 500), st.data())
def test_wilson_and_newcombe_contain_the_estimate(n: int, data: st.DataObject) -> None:
    x = data.draw(st.integers(0, n))
    low, high = wilson_interval(x, n)
    assert 0 <= low[0] <= x / n <= high[0] <= 1
    n0 = data.draw(st.integers(1, 500))
    x0 = data.draw(st.integers(0, n0))
    rd = risk_difference(x, n, x0, n0)
    assert -1 <= rd.low <= rd.value <= rd.high <= 1


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998) Stat Med 17:873-890, Table II, method 10 (score, no correction)
        ((56, 70, 48, 80), (0.2000, 0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.6000, 0.1705, 0.8090)),
        ((5, 56, 0, 29), (0.0893, -0.0381, 0.1926)),
        ((0, 10, 0, 10), (0.0, -0.2775, 0.2775)),
        ((10, 10, 0, 10), (1.0, 0.6075, 1.0000)),
    ],
)
def test_newcombe_published_examples(counts: tuple[int, ...], expected: tuple[float, ...]) -> None:
    rd = risk_difference(*counts)
    assert (rd.value, rd.low, rd.high) == approx(expected, abs=6e-5)
    assert rd.n == counts[1] + counts[3]


def test_risk_difference_empty_group_is_nan() -> None:
    rd = risk_difference(0, 0, 3, 10)
    assert math.isnan(rd.value) and math.isnan(rd.low)


def test_risk_difference_vs_overall() -> None:
    # group 30/50 = .6, clinic 110/250 = .44 -> difference .16; rest 80/200 = .4;
    # .16 = (1 - 50/250) * (.6 - .4) = .8 * .2, so the interval is .8 x Newcombe(group vs rest)
    est = risk_difference_vs_overall(30, 50, 110, 250)
    rest = risk_difference(30, 50, 80, 200)
    assert est.value == approx(0.16)
    assert (est.low, est.high) == approx((0.8 * rest.low, 0.8 * rest.high))
    assert est.low < 0.16 < est.high
    whole = risk_difference_vs_overall(30, 50, 30, 50)
    assert (whole.value, whole.low, whole.high) == (0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- correlations


def test_fisher_z_ci_by_hand() -> None:
    # r = .5, n = 28: atanh(.5) = .549306, SE = 1/sqrt(25) = .2, half = 1.96 * .2 = .391993
    # tanh(.157313) = .156028, tanh(.941299) = .735818
    assert fisher_z_ci(0.5, 28) == approx((0.156028, 0.735818), abs=1e-6)
    assert all(math.isnan(v) for v in fisher_z_ci(0.5, 3))


def test_pearson_r_by_hand_with_missing_pairs() -> None:
    # x = 1..5, y = 2,1,4,3,5: dx = -2,-1,0,1,2; dy = -1,-2,1,0,2
    # Sxy = 2+2+0+0+4 = 8, Sxx = 10, Syy = 10 -> r = .8
    # CI: atanh(.8) = 1.098612 -/+ 1.96/sqrt(2) = 1.385904 -> tanh(-.287292) = -.279640,
    #     tanh(2.484516) = .986196
    x = [1, 2, 3, 4, 5, np.nan, 7]
    y = pd.Series([2, 1, 4, 3, 5, 9, None])
    est = pearson_r(x, y)
    assert est.n == 5
    assert (est.value, est.low, est.high) == approx((0.8, -0.279640, 0.986196), abs=1e-6)


def test_pearson_r_too_few_or_constant_is_nan() -> None:
    assert math.isnan(pearson_r([1, 2, 3], [3, 1, 2]).value)
    est = pearson_r([1, 1, 1, 1, 1], [1, 2, 3, 4, 5])
    assert math.isnan(est.value) and est.n == 5


def test_point_biserial_by_hand() -> None:
    # x = 1..6, binary 0,0,0,1,1,1: M1 = 5, M0 = 2, population SD of x = sqrt(35/12) = 1.707825
    # r_pb = (M1 - M0) / SD * sqrt(p q) = 3 / 1.707825 * .5 = .878310
    est = point_biserial_r([1, 2, 3, 4, 5, 6], np.array([False, False, False, True, True, True]))
    assert est.value == approx(0.878310, abs=1e-6)
    assert (est.low, est.high) == approx(fisher_z_ci(0.878310, 6), abs=1e-5)
    with pytest.raises(ValueError):
        point_biserial_r([1, 2, 3, 4], [0, 1, 2, 1])


# --------------------------------------------------------------------------- means


def test_cohens_d_by_hand() -> None:
    # a = 2,4,6: mean 4, var 4; b = 1,2,3: mean 2, var 1
    # pooled var = (2*4 + 2*1) / 4 = 2.5 -> SD 1.581139; d = 2 / 1.581139 = 1.264911
    # SE = sqrt(6/9 + 1.6/12) = sqrt(.8) = .894427; half = 1.96 * .894427 = 1.753045
    est = cohens_d([2, 4, 6, np.nan], pd.Series([1.0, 2.0, 3.0]))
    assert est.n == 6
    assert (est.value, est.low, est.high) == approx((1.264911, -0.488134, 3.017956), abs=1e-6)
    assert math.isnan(cohens_d([1], [1, 2, 3]).value)
    assert math.isnan(cohens_d([2, 2], [2, 2]).value)  # zero pooled SD


def test_mean_ci_by_hand() -> None:
    # 2,4,4,4,5,5,7,9: mean 5, SS = 9+1+1+1+0+0+4+16 = 32, SD = sqrt(32/7) = 2.138090
    # SE = 2.138090 / sqrt(8) = .755929, t(.975, 7) = 2.364624 -> half = 1.787488
    est = mean_ci([2, 4, 4, 4, 5, 5, 7, 9, None])
    assert (est.value, est.low, est.high, est.n) == approx((5, 3.212512, 6.787488, 8), abs=1e-6)
    assert mean_ci([3, 3, 3]) == Estimate(3.0, 3.0, 3.0, 3)
    one = mean_ci([3.0])
    assert one.value == 3.0 and math.isnan(one.low)
    assert math.isnan(mean_ci([]).value)


def test_pre_post_effect_size_by_hand() -> None:
    # PHQ-9 (lower is better): first 20,10,15,25, last 10,8,5,20 -> improvement 10,2,10,5,
    # mean 6.75; SD(first): mean 17.5, SS = 6.25+56.25+6.25+56.25 = 125, SD = sqrt(125/3)
    first, last = [20, 10, 15, 25, np.nan], [10, 8, 5, 20, 3]
    es = 6.75 / math.sqrt(125 / 3)  # 1.045712
    assert pre_post_effect_size(first, last, higher_is_better=False) == approx(es)
    assert pre_post_effect_size(first, last, higher_is_better=True) == approx(-es)
    assert math.isnan(pre_post_effect_size([1], [2], higher_is_better=True))


def test_estimate_is_frozen() -> None:
    est = Estimate(1.0, 0.0, 2.0, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.value = 2.0  # type: ignore[misc]


# --------------------------------------------------------------------------- logistic models

# Two groups of 20: x = 0 has 5 dropouts (5 vs 15), x = 1 has 10 (10 vs 10).
X_BIN = np.array([0.0] * 20 + [1.0] * 20)
Y_BIN = np.array([1] * 5 + [0] * 15 + [1] * 10 + [0] * 10)


def test_logistic_or_binary_predictor_by_hand() -> None:
    # With a binary predictor the logit slope is the 2x2 log odds ratio and its Wald SE is
    # Woolf's: log OR = log((10/10) / (5/15)) = log 3 = 1.098612,
    # SE = sqrt(1/5 + 1/15 + 1/10 + 1/10) = .683130.
    # Standardising x (SD with ddof=1 = sqrt(40 * .25 / 39) = .506370) multiplies both by .506370:
    # b = .556305, SE = .345917; OR per SD lower = exp(-b) = .573324,
    # CI exp(-.556305 -/+ 1.96 * .345917) = (.291042, 1.129391)
    est = logistic_or_per_sd_lower(X_BIN, Y_BIN)
    assert est.n == 40
    assert (est.value, est.low, est.high) == approx((0.573324, 0.291042, 1.129391), abs=2e-6)


def test_logistic_or_recovers_simulated_slope() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(30, 5, 20_000)
    z = (x - x.mean()) / x.std(ddof=1)
    y = rng.random(x.size) < 1 / (1 + np.exp(1.2 + 0.6 * z))  # lower x -> more dropout
    est = logistic_or_per_sd_lower(x, y.astype(float))
    assert est.low < math.exp(0.6) < est.high
    assert math.log(est.value) == approx(0.6, abs=0.06)


def test_logistic_or_degenerate_inputs_are_nan() -> None:
    assert math.isnan(logistic_or_per_sd_lower([1, 2, 3, 4], [0, 0, 0, 0]).value)  # one class
    assert math.isnan(logistic_or_per_sd_lower([1, 2, 3, 4], [0, 0, 1, 1]).value)  # separated
    assert math.isnan(logistic_or_per_sd_lower([2, 2, 2, 2], [0, 1, 0, 1]).value)  # constant x


def test_logistic_curve_binary_predictor_by_hand() -> None:
    # The model is saturated, so at x = 0 and 1 the fitted P are the group rates .25 and .5 and
    # the SE of the linear predictor is sqrt(1/events + 1/non-events) of each group.
    curve = logistic_curve(X_BIN, Y_BIN, [0.0, 1.0])
    assert list(curve.columns) == ["x", "p", "low", "high"]
    se0, se1 = math.sqrt(1 / 5 + 1 / 15), math.sqrt(1 / 10 + 1 / 10)
    lo0, hi0 = expit(math.log(1 / 3) - Z95 * se0), expit(math.log(1 / 3) + Z95 * se0)
    assert curve["p"].tolist() == approx([0.25, 0.5], abs=1e-6)
    assert curve.loc[0, ["low", "high"]].tolist() == approx([lo0, hi0], abs=1e-6)  # .1081, .4784
    assert curve.loc[1, ["low", "high"]].tolist() == approx(
        [expit(-Z95 * se1), expit(Z95 * se1)], abs=1e-6
    )


def test_logistic_curve_unfittable_is_nan() -> None:
    curve = logistic_curve([1, 2, 3], [1, 1, 1], [1, 2])
    assert len(curve) == 2 and curve["p"].isna().all()


# --------------------------------------------------------------------------- funnel limits


def test_exact_binomial_funnel_limits_by_hand() -> None:
    # p0 = .5, n = 10; CDF F(r) = sum C(10, k) / 1024: F(0) = 1, F(1) = 11, F(2) = 56,
    # F(7) = 968, F(8) = 1013, F(9) = 1023 (all /1024). Spiegelhalter: r_p = smallest r with
    # F(r) >= p; alpha = (F(r_p) - p) / P(r_p); limit = (r_p - alpha) / n.
    # .975: r = 8, alpha = (1013 - 998.4) / 45 = .324444 -> .767556
    # .025: r = 2, alpha = (56 - 25.6) / 45 = .675556 -> .132444
    # .999: r = 9, alpha = (1023 - 1022.976) / 10 = .0024 -> .89976
    # .001: r = 1, alpha = (11 - 1.024) / 10 = .9976 -> .00024
    lim = funnel_limits_proportion(0.5, np.array([10]))
    assert list(lim.columns) == ["n", "low_95", "high_95", "low_998", "high_998"]
    row = lim.iloc[0]
    assert row["low_95"] == approx(1.324444 / 10, abs=1e-6)
    assert row["high_95"] == approx(7.675556 / 10, abs=1e-6)
    assert row["low_998"] == approx(0.00024, abs=1e-9)
    assert row["high_998"] == approx(0.89976, abs=1e-9)


def test_exact_funnel_limits_approach_normal_for_large_n() -> None:
    lim = funnel_limits_proportion(0.2, [10_000, 0]).iloc[0]
    se = math.sqrt(0.2 * 0.8 / 10_000)  # .004
    assert lim["low_95"] == approx(0.2 - Z95 * se, abs=2e-4)
    assert lim["high_998"] == approx(0.2 + Z998 * se, abs=2e-4)
    assert funnel_limits_proportion(0.2, [0]).iloc[0, 1:].isna().all()


def test_overdispersed_proportion_and_mean_limits_by_hand() -> None:
    # multiplicative: .3 +/- 1.96 sqrt(2 * .21 / 100) = .3 +/- 1.96 * .064807 = .3 +/- .127020
    mult = funnel_limits_proportion(0.3, [100], phi=2.0).iloc[0]
    assert (mult["low_95"], mult["high_95"]) == approx((0.172980, 0.427020), abs=1e-6)
    # additive: .3 +/- z sqrt(.0021 + .01) = .3 +/- z * .11: 95% (.084404, .515596),
    # 99.8% high .3 + .339926 = .639926, low .3 - .339926 < 0 -> clipped to 0
    add = funnel_limits_proportion(0.3, [100], tau2=0.01).iloc[0]
    assert (add["low_95"], add["high_95"]) == approx((0.084404, 0.515596), abs=1e-6)
    assert (add["low_998"], add["high_998"]) == approx((0.0, 0.639926), abs=1e-6)
    assert funnel_limits_proportion(0.05, [4], tau2=0.05).iloc[0]["low_95"] == 0.0  # clipped
    # means: 10 +/- 1.96 * 5 / sqrt(25) = 10 +/- 1.96
    mean = funnel_limits_mean(10.0, 5.0, [25]).iloc[0]
    assert (mean["low_95"], mean["high_95"]) == approx((8.040036, 11.959964), abs=1e-6)
    wide = funnel_limits_mean(10.0, 5.0, [25], tau2=3.0).iloc[0]  # sqrt(1 + 3) = 2
    assert wide["high_998"] == approx(10 + Z998 * 2)


# --------------------------------------------------------------------------- overdispersion


def test_overdispersion_by_hand_without_winsorising() -> None:
    # z = 1, -1, 2, -2: sum z^2 = 10, phi = 10/4 = 2.5; chi2(.95, 3) = 7.815 < 10 -> significant
    # tau2 = (10 - 3) / (4 - 4/4) = 7/3 (all w = 1/1^2 = 1)
    od = overdispersion([1, -1, 2, -2], 0.0, [1, 1, 1, 1], winsor=0.0)
    assert (od.phi, od.tau2, od.significant, od.n_units) == approx((2.5, 7 / 3, True, 4))


def test_overdispersion_winsorises_at_10_percent() -> None:
    # z = 0..9: 10th percentile 0.9, 90th 8.1 (linear interpolation), so 0 -> .9 and 9 -> 8.1:
    # sum z^2 = .81 + (1 + 4 + ... + 64 = 204) + 65.61 = 270.42 -> phi = 27.042
    od = overdispersion(np.arange(10.0), 0.0, np.ones(10))
    assert od.phi == approx(27.042)


def test_overdispersion_tau2_matches_dersimonian_laird() -> None:
    # with the target at the precision-weighted mean and no winsorising, I * phi is Cochran's Q,
    # so tau2 must equal statsmodels' DerSimonian-Laird estimate
    y = np.array([0.10, 0.30, 0.25, 0.50, 0.05, 0.40])
    se = np.array([0.05, 0.08, 0.04, 0.10, 0.06, 0.07])
    target = float(np.sum(y / se**2) / np.sum(1 / se**2))
    od = overdispersion(y, target, se, winsor=0.0)
    ref = combine_effects(y, se**2, method_re="dl")
    assert od.tau2 == approx(ref.tau2, rel=1e-9)
    assert od.phi * 6 == approx(ref.q, rel=1e-9)
    assert dl_tau2(ref.q, 1 / se**2) == approx(ref.tau2, rel=1e-9)


def test_overdispersion_on_simulated_units() -> None:
    rng = np.random.default_rng(3)
    n = rng.integers(50, 400, 50)
    p0 = 0.2
    binomial = rng.binomial(n, p0) / n
    true_p = np.clip(rng.normal(p0, 0.08, n.size), 0.01, 0.99)  # between-unit SD .08
    overdispersed = rng.binomial(n, true_p) / n
    se = np.sqrt(p0 * (1 - p0) / n)
    calm, wild = overdispersion(binomial, p0, se), overdispersion(overdispersed, p0, se)
    assert not calm.significant and 0.5 < calm.phi < 1.6
    assert wild.significant and wild.phi > 3
    # true tau2 = .08^2 = .0064; Winsorising the z-scores (as Spiegelhalter does) pulls it down
    raw = overdispersion(overdispersed, p0, se, winsor=0.0)
    assert 0.0035 < raw.tau2 < 0.0100
    assert 0 < wild.tau2 < raw.tau2 and wild.phi < raw.phi


# --------------------------------------------------------------------------- funnel()


def test_funnel_flags_against_hand_limits() -> None:
    # p0 = .5, n = 10 limits from the hand calculation above: 95% (.1324, .7676),
    # 99.8% (.00024, .89976)
    df = pd.DataFrame(
        {
            "unit": ["T1", "T2", "T3", "T4", "T5", "T6", "T7"],
            "n": [10, 10, 10, 10, 10, 0, 10],
            "value": [0.8, 0.9, 0.1, 0.0, 0.5, 0.3, np.nan],
        }
    )
    before = df.copy()
    points, limits, info = funnel(df, kind="proportion", target=0.5, method="none")
    pd.testing.assert_frame_equal(df, before)  # input untouched
    assert points["unit"].tolist() == ["T1", "T2", "T3", "T4", "T5"]  # n = 0 and NaN dropped
    assert points["flag"].tolist() == [
        "above 95%",
        "above 99.8%",
        "below 95%",
        "below 99.8%",
        "within",
    ]
    assert points["z"].tolist() == approx([(v - 0.5) / math.sqrt(0.025) for v in points["value"]])
    assert limits["n"].tolist() == list(range(1, 11))
    assert (limits["target"] == 0.5).all()
    assert info["method_used"] == "none" and info["n_units"] == 5


def test_funnel_additive_widening_only_when_significant() -> None:
    rng = np.random.default_rng(8)
    n = rng.integers(20, 300, 40)
    true_p = np.clip(rng.normal(0.3, 0.1, n.size), 0.01, 0.99)
    df = pd.DataFrame({"unit": range(40), "n": n, "value": rng.binomial(n, true_p) / n})
    points, limits, info = funnel(df, kind="proportion", target=0.3, method="additive")
    assert info["significant"] and info["method_used"] == "additive" and info["tau2"] > 0
    m = limits["n"].to_numpy()
    expected = 0.3 + Z95 * np.sqrt(0.21 / m + info["tau2"])
    assert limits["high_95"].to_numpy() == approx(np.clip(expected, 0, 1))
    assert set(points["flag"]) <= set(spc.FLAGS)
    se = np.sqrt(0.21 / points["n"])
    z_adj = (points["value"] - 0.3) / np.sqrt(se**2 + info["tau2"])
    assert points["z_adj"].to_numpy() == approx(z_adj.to_numpy())
    assert (points["flag"] != "within").sum() < (np.abs(points["z"]) > Z95).sum()

    calm = pd.DataFrame({"unit": range(40), "n": n, "value": rng.binomial(n, 0.3) / n})
    _, calm_limits, calm_info = funnel(calm, kind="proportion", target=0.3, method="additive")
    assert not calm_info["significant"] and calm_info["method_used"] == "none"
    exact = funnel_limits_proportion(0.3, calm_limits["n"])
    pd.testing.assert_series_equal(calm_limits["high_95"], exact["high_95"])


def test_funnel_of_means() -> None:
    df = pd.DataFrame({"unit": ["a", "b", "c"], "n": [25, 100, 25], "value": [12.5, 10.5, 10]})
    points, _, info = funnel(df, kind="mean", target=10.0, sigma=5.0)
    # n = 25: 95% 10 +/- 1.96, 99.8% 10 +/- 3.09 -> 12.5 is above 95% only;
    # n = 100: 95% 10 +/- .98 -> 10.5 within
    assert points["flag"].tolist() == ["above 95%", "within", "within"]
    assert points["z"].tolist() == approx([2.5, 1.0, 0.0])
    with pytest.raises(ValueError):
        funnel(df, kind="mean", target=10.0, sigma=None)


def test_pooled_sd_by_hand() -> None:
    # sqrt((4*4 + 9*1 + 0) / (4 + 9)) = sqrt(25/13); the n = 1 group carries no information
    assert pooled_sd([2, 1, 7], [5, 10, 1]) == approx(math.sqrt(25 / 13))


# --------------------------------------------------------------------------- case mix


def test_casemix_numeric_covariate_by_hand() -> None:
    # y = 2,4,5,7 on x = 1,2,3,4: Sxx = 5, Sxy = 8 -> b = 1.6, a = 4.5 - 1.6*2.5 = .5
    # fitted 2.1, 3.7, 5.3, 6.9; residuals -.1, .3, -.3, .1
    # A: mean residual .1 -> adjusted 4.5 + .1 = 4.6 (raw 3); B: -.1 -> 4.4 (raw 6)
    # SDs of residuals: .4 / sqrt(2) = .282843 in both; pooled sqrt(.16 / 2) = .282843
    df = pd.DataFrame({"y": [2, 4, 5, 7, np.nan], "x": [1, 2, 3, 4, 5], "t": list("AABBB")})
    out = casemix_adjusted(df, outcome="y", covariates=["x"], categorical=[], group="t")
    assert out["group"].tolist() == ["A", "B"] and out["n"].tolist() == [2, 2]
    assert out["raw_mean"].tolist() == approx([3, 6])
    assert out["mean_residual"].tolist() == approx([0.1, -0.1])
    assert out["adjusted_mean"].tolist() == approx([4.6, 4.4])
    assert out["sd_residual"].tolist() == approx([0.282843, 0.282843], abs=1e-6)
    assert out["pooled_sd"].tolist() == approx([0.282843, 0.282843], abs=1e-6)


def test_casemix_categorical_by_hand() -> None:
    # with only a categorical covariate the residual is y minus its category mean:
    # c1: A 1, B 3, B 5 (mean 3); c2: A 10, A 14, B 12 (mean 12)
    # residuals A: -2, -2, 2 (mean -2/3); B: 0, 2, 0 (mean 2/3); clinic mean 45/6 = 7.5
    # adjusted A = 7.5 - 2/3 = 6.8333 (raw 25/3 = 8.3333); B = 8.1667 (raw 20/3 = 6.6667)
    df = pd.DataFrame(
        {
            "y": [1, 3, 5, 10, 14, 12],
            "program": ["c1", "c1", "c1", "c2", "c2", "c2"],
            "t": ["A", "B", "B", "A", "A", "B"],
        }
    )
    out = casemix_adjusted(df, outcome="y", covariates=[], categorical=["program"], group="t")
    assert out["raw_mean"].tolist() == approx([25 / 3, 20 / 3])
    assert out["adjusted_mean"].tolist() == approx([7.5 - 2 / 3, 7.5 + 2 / 3])


# --------------------------------------------------------------------------- ICC


def simulate_clinic(icc: float, seed: int, groups: int = 60) -> pd.DataFrame:
    """Improvement = 0.4 * intake + therapist effect + noise with total residual variance 1.

    The intake term has variance 0.4^2 * 8^2 = 10.24, ten times the residual variance, so
    forgetting to adjust for intake would pull the ICC far below the truth.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(40, 160, groups)  # unbalanced caseloads
    g = np.repeat(np.arange(groups), sizes)
    intake = rng.normal(18, 8, g.size)
    y = (
        0.4 * intake
        + rng.normal(0, math.sqrt(icc), groups)[g]
        + rng.normal(0, math.sqrt(1 - icc), g.size)
    )
    return pd.DataFrame({"y": y, "intake": intake, "therapist": [f"T{i:02d}" for i in g]})


@pytest.mark.parametrize(("icc", "tol"), [(0.05, 0.03), (0.20, 0.08)])
def test_icc_recovers_simulated_therapist_share(icc: float, tol: float) -> None:
    # SE of the ICC with 60 therapists is about .012 at 5% and .03 at 20%
    d = simulate_clinic(icc, seed=21)
    est = therapist_icc(d["y"], d["intake"], d["therapist"])
    assert isinstance(est, ICC) and est.method == "reml"
    assert est.icc == approx(icc, abs=tol)
    assert est.n_groups == 60 and est.n == len(d)
    assert est.icc == approx(est.tau2 / (est.tau2 + est.sigma2))
    assert est.low < icc < est.high
    anova = therapist_icc(d["y"], d["intake"], d["therapist"], method="anova")
    assert anova.method == "anova" and anova.icc == approx(est.icc, abs=0.01)


def _statsmodels_reml(d: pd.DataFrame) -> tuple[MixedLM, float, float, float]:
    """statsmodels' MixedLM REML fit of y ~ intake + (1 | therapist): the reference."""
    x = np.column_stack([np.ones(len(d)), d["intake"]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MixedLM(d["y"].to_numpy(), x, groups=d["therapist"])
        res = model.fit(reml=True, method="bfgs")
    assert res.converged
    return model, float(np.asarray(res.cov_re)[0, 0]), float(res.scale), float(res.llf)


@pytest.mark.parametrize(("icc", "seed"), [(0.01, 3), (0.05, 21), (0.20, 21), (0.30, 9)])
def test_icc_reml_equals_statsmodels_mixedlm(icc: float, seed: int) -> None:
    """The profiled REML gives statsmodels' MixedLM estimate, and statsmodels' own REML
    log-likelihood is at least as high at ours as at its optimizer's."""
    d = simulate_clinic(icc, seed=seed)
    est = therapist_icc(d["y"], d["intake"], d["therapist"])
    model, tau2, sigma2, llf = _statsmodels_reml(d)
    assert est.method == "reml"
    assert (est.tau2, est.sigma2) == approx((tau2, sigma2), rel=2e-3)
    x = np.column_stack([np.ones(len(d)), d["intake"]])
    fe = np.linalg.lstsq(x, d["y"].to_numpy(), rcond=None)[0]
    ours = MixedLMParams.from_components(fe, cov_re=np.array([[est.tau2 / est.sigma2]]))
    assert float(model.loglike(ours, profile_fe=True)) >= llf - 1e-7


def test_icc_reml_balanced_equals_anova_by_hand() -> None:
    # balanced one-way data with MSB > MSW: REML and ANOVA coincide (Searle, Casella and
    # McCulloch 1992, 4.8). Constant intake (left out); A 1,3,2; B 5,7,6; C 3,5,4: group means
    # 2, 6, 4, MSB = 12, MSW = 1, n = 3 -> tau2 = (12 - 1) / 3 = 11/3, sigma2 = 1
    y = [1, 3, 2, 5, 7, 6, 3, 5, 4]
    est = therapist_icc(y, [10] * 9, list("AAABBBCCC"))
    assert est.method == "reml"
    assert (est.tau2, est.sigma2) == approx((11 / 3, 1.0), rel=1e-6)


def test_icc_boundary_no_therapist_effect() -> None:
    d = simulate_clinic(0.0, seed=4)
    est = therapist_icc(d["y"], d["intake"], d["therapist"])
    assert est.method == "reml"
    assert 0 <= est.icc < 0.02 and est.low == 0.0
    assert est.sigma2 == approx(1.0, abs=0.06)


def test_icc_reml_at_zero_when_groups_differ_less_than_chance() -> None:
    # group means closer together than the noise allows (MSB < MSW): the REML optimum is on
    # the boundary, tau2 = 0, and sigma2 is then the OLS residual variance RSS / (N - p)
    y = [1, 5, 3, 2, 6, 4, 3, 2, 4]  # means 3, 4, 3: MSB = 1, MSW = 3
    est = therapist_icc(y, [7] * 9, list("AAABBBCCC"))
    assert est.method == "reml" and est.tau2 == 0.0 and est.icc == 0.0
    assert est.sigma2 == approx(float(np.var(y, ddof=1)))


def test_icc_unknown_method_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        therapist_icc([1, 2, 3, 4], [1, 1, 1, 1], list("AABB"), method="REML")


def test_icc_falls_back_to_anova_when_reml_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    d = simulate_clinic(0.20, seed=21)
    monkeypatch.setattr(_stats, "_reml_random_intercept", lambda *a: None)
    est = therapist_icc(d["y"], d["intake"], d["therapist"])
    assert est.method == "anova" and est.icc == approx(0.20, abs=0.08)


def test_icc_anova_unbalanced_by_hand() -> None:
    # constant intake; A 1,3 (mean 2, SS 2); B 4,6,8 (mean 6, SS 8); C 2,3,4,5 (mean 3.5, SS 5)
    # grand mean 36/9 = 4; SSB = 2*4 + 3*4 + 4*.25 = 21 -> MSB = 10.5; MSW = 15/6 = 2.5
    # n0 = (9 - (4 + 9 + 16)/9) / 2 = 26/9; tau2 = 8 / (26/9) = 72/26; ICC = 2.769231/5.269231
    y = [1, 3, 4, 6, 8, 2, 3, 4, 5]
    est = therapist_icc(y, [7] * 9, list("AABBBCCCC"), method="anova")
    assert (est.tau2, est.sigma2) == approx((72 / 26, 2.5))
    assert est.icc == approx((72 / 26) / (72 / 26 + 2.5))  # .525547


def test_icc_anova_by_hand() -> None:
    # constant intake, three therapists of three: A 1,3,2; B 5,7,6; C 3,5,4
    # group means 2, 6, 4 (grand 4): MSB = 3 * (4 + 4 + 0) / 2 = 12; MSW = (2+2+2) / 6 = 1
    # n0 = 3 -> tau2 = (12 - 1) / 3 = 11/3, ICC = (11/3) / (14/3) = .785714
    # interval: F = 12, lower = (F/Fu - 1) / (F/Fu + n0 - 1), Fu = F(.975; 2, 6)
    y = [1, 3, 2, 5, 7, 6, 3, 5, 4]
    est = therapist_icc(y, [10] * 9, list("AAABBBCCC"), method="anova")
    assert (est.icc, est.tau2, est.sigma2) == approx((11 / 14, 11 / 3, 1.0))
    fl = 12 / sps.f.ppf(0.975, 2, 6)
    assert est.low == approx((fl - 1) / (fl + 2))


def test_icc_large_data_reml() -> None:
    # 200,000 episodes of 600 therapists: REML from the groups' sums, no per-row model
    rng = np.random.default_rng(0)
    g = rng.integers(0, 600, 200_000)
    x = rng.normal(20, 5, g.size)
    y = x + rng.normal(0, math.sqrt(0.1), 600)[g] + rng.normal(0, math.sqrt(0.9), g.size)
    est = therapist_icc(y, x, g)
    assert est.method == "reml" and est.icc == approx(0.1, abs=0.02)


def test_icc_degenerate_inputs() -> None:
    assert math.isnan(therapist_icc([1, 2, 3, 4], [1, 2, 3, 4], ["a"] * 4).icc)
    assert math.isnan(therapist_icc([1, 2, 3], [1, 2, 3], ["a", "b", "c"]).icc)
    constant = therapist_icc([1.0] * 6, [1, 2, 3, 4, 5, 6], list("AABBCC"))
    assert math.isnan(constant.icc) and constant.method == "none"


# --------------------------------------------------------------------------- shrinkage


def test_empirical_bayes_by_hand() -> None:
    # means 10, 20 with n 4, 4 and within variance 16 -> v = 4, w = .25; weighted mean 15
    # Q = .25 * (25 + 25) = 12.5; tau2 = (12.5 - 1) / (.5 - .0625/.5) = 11.5 / .25 = 46
    # shrink factor 46 / (46 + 4) = .92 -> 15 -/+ .92 * 5 = 10.4, 19.6
    assert empirical_bayes_shrink([10, 20], [4, 4], 16).tolist() == approx([10.4, 19.6])
    # means 10, 11: Q = .25 * (.25 + .25) = .125 < 1 -> tau2 = 0 -> all at the mean 10.5
    assert empirical_bayes_shrink([10, 11], [4, 4], 16).tolist() == approx([10.5, 10.5])
    out = empirical_bayes_shrink([10, 20, 5], [4, 4, 0], 16)
    assert math.isnan(out[2])


def test_empirical_bayes_uses_dersimonian_laird() -> None:
    y, n, s2 = np.array([3.0, 5.5, 4.0, 8.0]), np.array([5, 40, 12, 9]), 9.0
    tau2 = combine_effects(y, s2 / n, method_re="dl").tau2
    centre = np.sum(n * y) / n.sum()
    expected = centre + tau2 / (tau2 + s2 / n) * (y - centre)
    assert empirical_bayes_shrink(y, n, s2) == approx(expected)


# --------------------------------------------------------------------------- SPC


def test_p_chart_by_hand() -> None:
    # baseline months 1-2: centre = 15 / 150 = .1
    # n = 50: 3 sqrt(.09/50) = .127279 -> (0, .227279); n = 100: 3 * .03 = .09 -> (.01, .19)
    # n = 20: 3 sqrt(.09/20) = .201246 -> (0, .301246)
    chart = p_chart([5, 10, 2, 0], [50, 100, 20, 0], baseline=[True, True, False, False])
    assert list(chart.columns) == ["p", "centre", "lcl", "ucl"]
    assert chart["centre"].iloc[0] == approx(0.1)
    assert chart["lcl"].tolist()[:3] == approx([0.0, 0.01, 0.0])
    assert chart["ucl"].tolist()[:3] == approx([0.227279, 0.19, 0.301246], abs=1e-6)
    assert chart.iloc[3].isna()[["p", "lcl", "ucl"]].all()
    whole = p_chart([5, 10, 2], [50, 100, 20])  # no baseline: 17 / 170 = .1 too
    assert whole["centre"].iloc[0] == approx(0.1)


def test_xbar_chart_by_hand() -> None:
    # baseline months 1-2: centre = (5*10 + 5*12) / 10 = 11; pooled SD = sqrt((4*4 + 4*16)/8)
    # = sqrt(10); n = 5: 3 sqrt(10) / sqrt(5) = 4.242641; n = 10: 3 sqrt(10)/sqrt(10) = 3
    chart = xbar_chart([10, 12, 11], [2, 4, 3], [5, 5, 10], baseline=[True, True, False])
    assert chart["centre"].tolist() == approx([11, 11, 11])
    assert chart["lcl"].tolist() == approx([6.757359, 6.757359, 8.0], abs=1e-6)
    assert chart["ucl"].tolist() == approx([15.242641, 15.242641, 14.0], abs=1e-6)
    # sigma given as 2: centre (4*10 + 16*12) / 20 = 11.6; 3*2/2 = 3, 3*2/4 = 1.5
    fixed = xbar_chart([10, 12], 2.0, [4, 16])
    assert fixed["ucl"].tolist() == approx([14.6, 13.1])
    assert fixed["lcl"].tolist() == approx([8.6, 10.1])


def test_run_rules_shift() -> None:
    six = run_rules([5, 6, 7, 8, 9, 10, 3, 2], 4)
    assert six["shift"].tolist() == [True] * 6 + [False] * 2
    five = run_rules([5, 6, 7, 8, 9, 3, 5], 4)
    assert not five["shift"].any()
    # a point on the median neither breaks nor counts: 5 6 [4] 7 8 9 10 -> six above
    on_line = run_rules([5, 6, 4, 7, 8, 9, 10], 4)
    assert on_line["shift"].tolist() == [True, True, False, True, True, True, True]
    broken = run_rules([5, 6, 3, 7, 8, 9, 10], 4)
    assert not broken["shift"].any()
    below = run_rules(pd.Series([1, 2, 1, 2, 1, 2], index=list("abcdef")), 3)
    assert below["shift"].all() and list(below.index) == list("abcdef")


def test_run_rules_trend_and_ties() -> None:
    assert run_rules([1, 2, 3, 4, 5], 3)["trend"].all()
    assert run_rules([9, 7, 5, 3, 1], 5)["trend"].all()
    assert not run_rules([1, 2, 3, 4, 3, 2], 3)["trend"].any()
    # ties neither count nor break: 1 2 2 3 4 has only four distinct steps' points -> no trend
    assert not run_rules([1, 2, 2, 3, 4], 3)["trend"].any()
    # 1 2 2 3 4 5 -> five counted points, the tie inside the trend is part of it
    assert run_rules([1, 2, 2, 3, 4, 5], 3)["trend"].all()
    # a tie after the end of a trend is not part of it
    assert run_rules([1, 2, 3, 4, 5, 5], 3)["trend"].tolist() == [True] * 5 + [False]
    # missing months are skipped
    gap = run_rules([1, 2, np.nan, 3, 4, 5], 3)["trend"].tolist()
    assert gap == [True, True, False, True, True, True]


def test_run_rules_astronomical() -> None:
    flags = run_rules([0.1, 0.5, 0.05, 0.2], 0.2, lcl=[0.08, 0.08, 0.08, 0.1], ucl=0.4)
    assert flags["astronomical"].tolist() == [False, True, True, False]
    assert not run_rules([1, 100], 2)["astronomical"].any()  # no limits, no flag


def test_mean_interval_from_summary_statistics_by_hand():
    # mean 10, SD 2, n 4: t(0.975, 3) = 3.182446; half = 3.182446 * 2 / 2 = 3.182446
    low, high = _stats.mean_interval([10.0, 5.0], [2.0, 1.0], [4, 1])
    assert low[0] == pytest.approx(10 - 3.182446, abs=1e-6)
    assert high[0] == pytest.approx(10 + 3.182446, abs=1e-6)
    assert np.isnan(low[1]) and np.isnan(high[1])  # n < 2: no interval
    # agrees with mean_ci on raw values
    values = [3.0, 5.0, 7.0, 9.0, 11.0]
    est = _stats.mean_ci(values)
    lo, hi = _stats.mean_interval([np.mean(values)], [np.std(values, ddof=1)], [len(values)])
    assert (lo[0], hi[0]) == pytest.approx((est.low, est.high))
