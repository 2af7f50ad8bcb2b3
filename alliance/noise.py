"""Cell-key perturbation: the noise every shown count, sum, mean and rate carries.

The method is the one of the Australian Bureau of Statistics' TableBuilder and the ONS
flexible table builder, made for tables that people define themselves without limit:

* Every client has a **record key**, a pseudo-random whole number in [0, 2^24) fixed when the
  derived facts are built (``derive.sql``: the first 24 bits of an MD5 of the client's keyed
  pseudonym; episodes have their own from the episode's pseudonym). Without the secret key of
  the import nobody can tell which client has which key.
* A cell's **cell key** is the sum of the record keys of the records it counts (each session
  carries its client's key; a count of distinct clients sums each client's key once). The same
  records always give the same cell key, however the cell is asked for: the same cell always
  shows the same value, so asking again teaches nothing.
* The cell key is mixed (SplitMix64) into uniform numbers, one stream per use, and each picks a
  **noise** from a fixed distribution: whole numbers -D..D with mean 0 and variance V for counts
  (``max_noise`` = D, ``variance`` = V), a uniform share of one record's range for sums. Any
  difference of two cells carries the noise of both, so subtracting outputs never gives a small
  group's exact figure.
* Counts of 0 stay 0 (nobody to protect); a shown count never falls below k, the threshold (a
  count under k is withheld anyway, whatever its noise).
* Means and rates are formed from the protected numerator and denominator.

Pure functions over numpy arrays; nothing here reads the database.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

KEY_BITS = 24
KEY_MODULUS = 1 << KEY_BITS
"""Record keys lie in [0, KEY_MODULUS); sums of up to 2^39 of them stay exact in an int64."""

COUNT_STREAM = 1
SUM_STREAM = 2


@dataclass(frozen=True)
class NoiseParams:
    """The perturbation's settings (documented defaults in the README, "Privacy").

    Attributes:
        max_noise: D, the largest change made to any count (whole number, 1 or more).
        variance: V, the variance of the change to a count; between 0 (exclusive) and
            (D + 1)(2D + 1) / 6, the variance of a change that is never 0. The default, 2 with
            D = 2, picks each of -2, -1, 0, +1, +2 with probability 1/5.
        sum_share: the largest change made to a sum, as a share of the range of one record's
            value (0.5: at most half of one SRS rating's 0-40 range, 20 points, on a sum).
    """

    max_noise: int = 2
    variance: float = 2.0
    sum_share: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.max_noise, bool) or not isinstance(self.max_noise, int | np.integer):
            raise ValueError(f"the largest noise must be a whole number, got {self.max_noise!r}")
        if self.max_noise < 1:
            raise ValueError(f"the largest noise must be at least 1, got {self.max_noise}")
        top = self.max_variance
        if not (0 < float(self.variance) <= top):
            raise ValueError(
                f"the noise variance must be above 0 and at most {top:g} "
                f"for a largest noise of {self.max_noise}, got {self.variance!r}"
            )
        if not (0 <= float(self.sum_share) <= 1):
            raise ValueError(f"the sum noise share must be between 0 and 1, got {self.sum_share}")

    @property
    def max_variance(self) -> float:
        d = int(self.max_noise)
        return (d + 1) * (2 * d + 1) / 6

    def probabilities(self) -> np.ndarray:
        """P(noise = j) for j = -D..D: 0 with the probability that gives the variance, every
        other value equally likely (so the distribution is symmetric: mean 0)."""
        d = int(self.max_noise)
        p_zero = 1 - float(self.variance) / self.max_variance
        p = np.full(2 * d + 1, (1 - p_zero) / (2 * d))
        p[d] = p_zero
        return p


def _uniform(cell_keys: np.ndarray, stream: int) -> np.ndarray:
    """Uniform numbers in [0, 1) from cell keys: SplitMix64 of (key mod 2^24, stream)."""
    keys = np.asarray(cell_keys, dtype="float64")
    keys = np.where(np.isfinite(keys), keys, 0).astype("int64") % KEY_MODULUS
    z = keys.astype("uint64") * np.uint64(4) + np.uint64(stream)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype("float64") / float(1 << 53)


def derived_key(cell_keys: np.ndarray, statistic: str) -> np.ndarray:
    """The cell key of another statistic of the same records (e.g. the distinct clients of
    a cell of sessions): the records' key sum shifted by a constant of the statistic's name, so
    the same records still give the same value and its noise is independent of the count's."""
    shift = zlib.crc32(statistic.encode()) % KEY_MODULUS
    return (np.asarray(cell_keys, dtype="float64") + shift) % KEY_MODULUS


def count_noise(cell_keys: np.ndarray, params: NoiseParams) -> np.ndarray:
    """The whole-number noise (-D..D) that the cells with these keys carry."""
    u = _uniform(cell_keys, COUNT_STREAM)
    cdf = np.cumsum(params.probabilities())
    cdf[-1] = 1.0
    return np.searchsorted(cdf, u, side="right").astype("int64") - int(params.max_noise)


def perturb_counts(
    counts: np.ndarray, cell_keys: np.ndarray, params: NoiseParams, floor: int = 1
) -> np.ndarray:
    """Protected counts: 0 stays 0, any other count gets its cell's noise and stays ≥ floor.

    Shown cells describe at least k clients, so the protect step passes floor = k: a shown count
    is never one that the threshold would withhold (a cell of 11 never shows as 9)."""
    n = np.asarray(counts, dtype="float64")
    missing = ~np.isfinite(n)
    whole = np.where(missing, 0, n).astype("int64")
    shown = np.where(whole > 0, np.maximum(whole + count_noise(cell_keys, params), floor), 0)
    out = shown.astype("float64")
    out[missing] = np.nan
    return out


def sum_noise(cell_keys: np.ndarray, record_range: float, params: NoiseParams) -> np.ndarray:
    """The noise on a sum: uniform in ±sum_share × one record's range, mean 0."""
    u = _uniform(cell_keys, SUM_STREAM)
    return (2 * u - 1) * float(params.sum_share) * float(record_range)


def perturb_means(
    means: np.ndarray,
    shown_n: np.ndarray,
    cell_keys: np.ndarray,
    record_range: float,
    params: NoiseParams,
) -> np.ndarray:
    """Protected means: (mean × protected n + sum noise) / protected n.

    The protected sum is the exact mean times the protected count plus the sum's own noise, so
    a sum recovered from a shown mean and count, or the difference of two, carries the noise of
    the counts (a mean's worth per unit) and of the sums. Missing means stay missing.
    """
    mean = np.asarray(means, dtype="float64")
    n = np.asarray(shown_n, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = mean + sum_noise(cell_keys, record_range, params) / n
    return np.where(np.isfinite(mean) & (n > 0), out, np.nan)


def count_variance(params: NoiseParams) -> float:
    """The variance the noise adds to one count (for intervals)."""
    return float(params.variance)


def mean_noise_variance(
    shown_n: np.ndarray, record_range: float, params: NoiseParams
) -> np.ndarray:
    """The variance the noise adds to a protected mean over n records: (share × range)² / 3n²."""
    n = np.asarray(shown_n, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return (float(params.sum_share) * float(record_range)) ** 2 / 3 / n**2


def rate_noise_variance(rate: np.ndarray, shown_n: np.ndarray, params: NoiseParams) -> np.ndarray:
    """The variance the noise adds to a rate x/n formed from two protected counts (delta
    method, independent noises): V (1 + p²) / n²."""
    p = np.asarray(rate, dtype="float64")
    n = np.asarray(shown_n, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(params.variance) * (1 + p**2) / n**2


def widen(
    centre: np.ndarray, low: np.ndarray, high: np.ndarray, extra_variance: np.ndarray, z: float
) -> tuple[np.ndarray, np.ndarray]:
    """An interval widened for the noise: each half-width h becomes √(h² + z² × variance)."""
    c = np.asarray(centre, dtype="float64")
    extra = z**2 * np.asarray(extra_variance, dtype="float64")
    lo = c - np.sqrt((c - np.asarray(low, dtype="float64")) ** 2 + extra)
    hi = c + np.sqrt((np.asarray(high, dtype="float64") - c) ** 2 + extra)
    return lo, hi
