"""Cell-key perturbation (alliance/noise.py) and the protect step (alliance/protected.py),
against hand-computed values and the distribution's stated moments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance import noise, protected
from alliance.privacy import PrivacyPolicy

PARAMS = noise.NoiseParams()
POLICY = PrivacyPolicy(k=11)


def test_default_distribution_is_uniform_on_minus_two_to_two() -> None:
    assert PARAMS.probabilities() == pytest.approx([0.2] * 5)


@pytest.mark.parametrize(("d", "v"), [(2, 1.0), (2, 2.5), (3, 2.0), (1, 0.5)])
def test_distribution_has_mean_zero_and_the_set_variance(d: int, v: float) -> None:
    p = noise.NoiseParams(max_noise=d, variance=v).probabilities()
    j = np.arange(-d, d + 1)
    assert p.sum() == pytest.approx(1)
    assert (p >= 0).all()
    assert (p * j).sum() == pytest.approx(0)
    assert (p * j**2).sum() == pytest.approx(v)


def test_noise_drawn_from_many_keys_follows_the_distribution() -> None:
    keys = np.arange(200_000) * 7919 % noise.KEY_MODULUS
    e = noise.count_noise(keys, PARAMS)
    assert set(np.unique(e)) == {-2, -1, 0, 1, 2}
    assert e.mean() == pytest.approx(0, abs=0.01)
    assert e.var() == pytest.approx(2.0, rel=0.02)
    # the noise of neighbouring keys is unrelated (a cell and the cell plus one record)
    assert np.corrcoef(e[:-1], e[1:])[0, 1] == pytest.approx(0, abs=0.01)


def test_same_key_same_noise_and_keys_wrap_at_the_modulus() -> None:
    keys = np.array([5, 5, 5 + noise.KEY_MODULUS, 123456])
    e = noise.count_noise(keys, PARAMS)
    assert e[0] == e[1] == e[2]


def test_zero_stays_zero_and_counts_stay_positive() -> None:
    keys = np.arange(1000)
    assert (noise.perturb_counts(np.zeros(1000), keys, PARAMS) == 0).all()
    ones = noise.perturb_counts(np.ones(1000), keys, PARAMS)
    assert ones.min() == 1
    big = noise.perturb_counts(np.full(1000, 50), keys, PARAMS)
    assert big.min() == 48 and big.max() == 52


def test_missing_count_stays_missing() -> None:
    out = noise.perturb_counts(np.array([np.nan, 20.0]), np.array([np.nan, 3.0]), PARAMS)
    assert np.isnan(out[0]) and 18 <= out[1] <= 22


def test_mean_moves_by_at_most_the_sum_noise_over_n() -> None:
    keys = np.arange(5000)
    out = noise.perturb_means(np.full(5000, 36.0), np.full(5000, 40.0), keys, 40.0, PARAMS)
    # at most 0.5 x 40 = 20 points on the sum, over 40 ratings: 0.5 of a point
    assert np.abs(out - 36).max() <= 0.5
    assert np.abs(out - 36).max() > 0.45
    assert (out - 36).mean() == pytest.approx(0, abs=0.01)


@pytest.mark.parametrize(
    ("d", "v"), [(0, 1.0), (2, 0.0), (2, 2.6), (1.5, 1.0), (True, 0.5)], ids=str
)
def test_impossible_settings_are_refused_with_a_sentence(d, v) -> None:
    with pytest.raises(ValueError, match="noise"):
        noise.NoiseParams(max_noise=d, variance=v)


def test_widen_adds_the_noise_variance_to_each_half_width() -> None:
    lo, hi = noise.widen(np.array([0.5]), np.array([0.4]), np.array([0.55]), np.array([0.0]), 2)
    assert (lo[0], hi[0]) == pytest.approx((0.4, 0.55))
    lo, hi = noise.widen(np.array([0.5]), np.array([0.4]), np.array([0.5]), np.array([0.01]), 2)
    # half-widths 0.1 and 0: sqrt(0.01 + 4 x 0.01) and sqrt(0 + 0.04)
    assert lo[0] == pytest.approx(0.5 - np.sqrt(0.05))
    assert hi[0] == pytest.approx(0.5 + 0.2)


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "month": ["2026-01", "2026-02", "2026-03", "2026-04"],
            "n_clients": [40, 17, 5, 60],
            "ended": [40, 17, 5, 60],
            "dropouts": [12, 1, 1, 30],
            "dropout_rate": [12 / 40, 1 / 17, 1 / 5, 30 / 60],
            "n_clients_cellkey": [101, 202, 303, 404],
            "ended_cellkey": [111, 222, 333, 444],
            "dropouts_cellkey": [11, 22, 33, 44],
        }
    )


def test_protect_table_numerator_rule_threshold_noise_and_no_keys() -> None:
    raw = _table()
    safe = protected.protect_table(
        raw,
        policy=POLICY,
        params=PARAMS,
        counts=["n_clients", "ended", "dropouts"],
        rates=[protected.Rate("dropout_rate", "dropouts", "ended")],
        complementary=False,
    )
    assert not [c for c in safe.columns if c.endswith("_cellkey")]
    # "5.9% of 17" is one dropout: withheld by the numerator rule; 5 clients by the threshold
    assert safe["suppressed"].tolist() == [False, True, True, False]
    assert safe["suppression"].tolist() == ["", "primary", "primary", ""]
    assert safe.loc[1, ["ended", "dropouts", "dropout_rate"]].isna().all()
    assert pd.isna(safe.loc[1, "n_clients"])
    # shown values carry each cell's noise, and the rate is formed from the shown counts
    for i in (0, 3):
        e = noise.count_noise(np.array([raw.loc[i, "ended_cellkey"]]), PARAMS)[0]
        x = noise.count_noise(np.array([raw.loc[i, "dropouts_cellkey"]]), PARAMS)[0]
        assert safe.loc[i, "ended"] == raw.loc[i, "ended"] + e
        assert safe.loc[i, "dropouts"] == raw.loc[i, "dropouts"] + x
        assert safe.loc[i, "dropout_rate"] == pytest.approx(
            safe.loc[i, "dropouts"] / safe.loc[i, "ended"]
        )


def test_protect_table_with_complementary_suppression_withholds_a_second_month() -> None:
    raw = _table().iloc[[0, 1, 3]].reset_index(drop=True)
    safe = protected.protect_table(
        raw,
        policy=POLICY,
        params=PARAMS,
        counts=["n_clients", "ended", "dropouts"],
        rates=[protected.Rate("dropout_rate", "dropouts", "ended")],
    )
    assert safe["suppressed"].sum() == 2


def test_a_shown_client_count_must_be_protected() -> None:
    with pytest.raises(ValueError, match="client count"):
        protected.protect_table(_table(), policy=POLICY, params=PARAMS, counts=["ended"])


def test_the_client_count_key_can_come_from_the_cell_s_records() -> None:
    raw = _table().drop(columns="n_clients_cellkey")
    safe = protected.protect_table(
        raw, policy=POLICY, params=PARAMS, counts=["n_clients"], n_key_from="ended"
    )
    key = noise.derived_key(raw["ended_cellkey"].to_numpy(), "n_clients")
    assert (key != raw["ended_cellkey"].to_numpy()).all()
    expected = raw["n_clients"] + noise.count_noise(key, PARAMS)
    assert safe.loc[[0, 3], "n_clients"].tolist() == expected[[0, 3]].tolist()


def test_a_count_without_its_cell_key_is_refused() -> None:
    with pytest.raises(KeyError, match="cell key"):
        protected.perturb(_table().drop(columns="ended_cellkey"), params=PARAMS, counts=["ended"])


def test_wilson_of_protected_counts_is_wider_than_plain_wilson() -> None:
    from alliance.stats import wilson_interval

    lo, hi = protected.wilson(pd.Series([12.0]), pd.Series([40.0]), PARAMS)
    plo, phi = wilson_interval(np.array([12.0]), np.array([40.0]))
    assert lo[0] < plo[0] and hi[0] > phi[0]
    lo, hi = protected.wilson(pd.Series([np.nan]), pd.Series([np.nan]), PARAMS)
    assert np.isnan(lo[0]) and np.isnan(hi[0])


def test_a_month_withheld_by_the_numerator_rule_adds_no_distinct_clients() -> None:
    """A withheld set is judged by the distinct clients of its union; a cell withheld by the
    numerator rule counts as no more than its judged size (k - 1), not as its client ids."""
    raw = pd.DataFrame(
        {
            "month": ["a", "b", "c", "d"],
            "n_clients": [5, 20, 30, 30],
            "ended": [5, 20, 30, 30],
            "dropouts": [0, 3, 12, 12],  # b: 3 dropouts, withheld by the numerator rule
            "dropout_rate": [0, 0.15, 0.4, 0.4],
            "n_clients_cellkey": [1, 2, 3, 4],
            "ended_cellkey": [5, 6, 7, 8],
            "dropouts_cellkey": [9, 10, 11, 12],
        }
    )
    ids = [list(range(0, 5)), list(range(5, 25)), list(range(25, 55)), list(range(55, 85))]
    safe = protected.protect_table(
        raw,
        policy=POLICY,
        params=PARAMS,
        counts=["n_clients", "ended", "dropouts"],
        rates=[protected.Rate("dropout_rate", "dropouts", "ended")],
        clients_col=lambda frame: ids,
    )
    # a (5 clients) and b (judged as 10) are not 11 distinct clients for sure: c goes too
    assert safe["suppressed"].tolist() == [True, True, True, False]
