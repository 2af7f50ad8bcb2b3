"""The threshold for callers outside the privacy layer (alliance/protected.py, issue #22): the
views and metrics never compare with k themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance import noise, protected
from alliance.privacy import PrivacyPolicy

POLICY = PrivacyPolicy(k=11)
PARAMS = noise.NoiseParams()


def test_min_clients_is_the_policy_threshold() -> None:
    assert protected.min_clients(POLICY) == 11
    assert protected.min_clients(PrivacyPolicy(k=5)) == 5


def test_enough_clients_is_at_least_k() -> None:
    got = protected.enough_clients_rows(pd.Series([0, 1, 10, 11, 40]), POLICY)
    assert got.tolist() == [False, False, False, True, True]
    assert protected.enough_clients_rows(np.array([5.0]), PrivacyPolicy(k=5)).tolist() == [True]


def test_shown_counts_never_show_a_count_below_k() -> None:
    counts = np.array([0.0, 1.0, 11.0, 12.0, 500.0, np.nan])
    keys = np.arange(len(counts), dtype="float64") * 977.0
    got = protected.shown_counts_of(counts, keys, PARAMS, POLICY)
    assert np.array_equal(got, noise.perturb_counts(counts, keys, PARAMS, 11), equal_nan=True)
    assert got[0] == 0
    assert (got[1:5] >= 11).all()
    assert np.isnan(got[5])
