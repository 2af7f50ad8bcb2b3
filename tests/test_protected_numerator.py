"""The small questions the Outcomes and Dropout pages ask the privacy layer instead of comparing
with k themselves (alliance/protected.py: numerator_withheld, enough_clients, perturb_shown,
perturb_count_values, min_clients)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance import noise, protected
from alliance.privacy import PrivacyPolicy

POLICY = PrivacyPolicy(k=11)


@pytest.mark.parametrize(
    ("events", "total", "withheld"),
    [
        (0, 0, False),
        (0, 50, False),  # no events: nothing to protect
        (1, 50, True),
        (10, 50, True),
        (11, 50, False),
        (40, 50, True),  # 10 non-events
        (39, 50, False),
        (50, 50, False),  # no non-events
        (None, None, False),
    ],
)
def test_numerator_withheld_is_the_tables_rule_for_one_cell(events, total, withheld) -> None:
    assert protected.numerator_withheld(POLICY, events, total) is withheld
    if events is not None:
        frame = pd.DataFrame({"x": [events], "t": [total]})
        rule = protected.numerator_rule(frame, [protected.Rate("r", "x", "t")], POLICY.k)
        assert bool(rule[0]) is withheld


def test_enough_clients_asks_every_group() -> None:
    assert protected.all_have_enough_clients(POLICY, 11)
    assert protected.all_have_enough_clients(POLICY, 11, 40)
    assert not protected.all_have_enough_clients(POLICY, 10)
    assert not protected.all_have_enough_clients(POLICY, 0)
    assert not protected.all_have_enough_clients(POLICY, 40, 3)
    assert protected.min_clients(POLICY) == 11
    assert protected.min_clients(PrivacyPolicy(k=5)) == 5


def test_shown_counts_never_fall_below_k() -> None:
    params = noise.NoiseParams()
    counts = np.array([0.0, 11.0, 12.0, 500.0])
    keys = np.array([0.1, 0.2, 0.3, 0.4])
    shown = protected.perturb_count_values(counts, keys, POLICY, params)
    assert np.array_equal(shown, noise.perturb_counts(counts, keys, params, POLICY.k))
    assert shown[0] == 0 and (shown[1:] >= POLICY.k).all()
    frame = pd.DataFrame({"n": counts, "n_cellkey": keys})
    table = protected.perturb_shown(frame, policy=POLICY, params=params, counts=["n"])
    assert np.array_equal(table["n"].to_numpy(), shown)
