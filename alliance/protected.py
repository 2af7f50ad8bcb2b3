"""Protected statistics: the one step between a query's exact aggregates and what a person sees.

``protect_table`` takes a table of exact aggregates (one row per cell) with the cell keys of its
counts (``<count>_cellkey`` columns, see ``alliance/noise.py``) and returns what may be shown:

1. **Threshold and numerator rule**: a cell describing 1 .. k-1 clients is withheld, and so is
   a cell whose rate has 1 .. k-1 events or 1 .. k-1 non-events (``"5.9% of 17"`` would be one
   dropout); complementary suppression follows (``alliance/privacy.py``).
2. **Cell-key perturbation**: every count gets its cell's noise, every mean is formed from the
   protected sum and count, every rate from the protected events and total.
3. The key columns are dropped: they never reach a table, chart or file.

Intervals are computed afterwards from the protected values (``wilson``, ``mean_interval``),
widened for the noise, so a band never gives back an exact count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance import noise, privacy
from alliance.stats import wilson_interval

KEY_SUFFIX = "_cellkey"
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Mean:
    """A mean column over the records counted by ``n`` (whose key is ``n + "_cellkey"``)."""

    col: str
    n: str
    record_range: float


@dataclass(frozen=True)
class Rate:
    """A rate column = ``events`` / ``total``; both are counts with keys."""

    col: str
    events: str
    total: str


def key_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.endswith(KEY_SUFFIX)]


def numerator_rule(df: pd.DataFrame, rates: Sequence[Rate], k: int) -> np.ndarray:
    """Rows where a rate has 1 .. k-1 events or 1 .. k-1 non-events."""
    bad = np.zeros(len(df), dtype=bool)
    for rate in rates:
        x = pd.to_numeric(df[rate.events]).fillna(0).to_numpy(dtype="float64")
        t = pd.to_numeric(df[rate.total]).fillna(0).to_numpy(dtype="float64")
        rest = t - x
        bad |= ((x > 0) & (x < k)) | ((rest > 0) & (rest < k))
    return bad


def perturb(
    df: pd.DataFrame,
    *,
    params: noise.NoiseParams,
    counts: Sequence[str],
    means: Sequence[Mean] = (),
    rates: Sequence[Rate] = (),
    floor: int = 1,
) -> pd.DataFrame:
    """The table with every listed count, mean and rate protected (keys kept); a non-zero
    count never shows below `floor` (the protect step passes k)."""
    out = df.copy()
    for col in counts:
        key = col + KEY_SUFFIX
        if key not in df.columns:
            raise KeyError(f"count column {col!r} has no cell key column {key!r}")
        out[col] = noise.perturb_counts(
            pd.to_numeric(df[col]).to_numpy(dtype="float64", na_value=np.nan),
            df[key].to_numpy(dtype="float64", na_value=np.nan),
            params,
            floor,
        )
    for m in means:
        if m.n not in counts:
            raise ValueError(f"mean {m.col!r}: its count {m.n!r} must be protected too")
        out[m.col] = noise.perturb_means(
            pd.to_numeric(df[m.col]).to_numpy(dtype="float64", na_value=np.nan),
            out[m.n].to_numpy(dtype="float64"),
            df[m.n + KEY_SUFFIX].to_numpy(dtype="float64", na_value=np.nan),
            m.record_range,
            params,
        )
    for r in rates:
        if r.events not in counts or r.total not in counts:
            raise ValueError(f"rate {r.col!r}: its events and total must be protected counts")
        x = out[r.events].to_numpy(dtype="float64")
        t = out[r.total].to_numpy(dtype="float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            out[r.col] = np.where(t > 0, x / t, np.nan)
    return out


def protect_table(
    df: pd.DataFrame,
    *,
    policy: privacy.PrivacyPolicy,
    params: noise.NoiseParams,
    counts: Sequence[str],
    means: Sequence[Mean] = (),
    rates: Sequence[Rate] = (),
    value_cols: Sequence[str] | None = None,
    partition_cols: Sequence[str] = (),
    complementary: bool = True,
    n_col: str = "n_clients",
    n_key_from: str | None = None,
    overlapping: bool = False,
    also_partition_by: Sequence[Sequence[str]] = (),
    clients_col: privacy.ClientSets | None = None,
) -> pd.DataFrame:
    """Threshold, numerator rule, complementary suppression and perturbation of one table.

    Args:
        df: one row per cell: exact aggregates from a named query, with ``n_col`` (distinct
            clients) and a ``<count>_cellkey`` column for each of ``counts``.
        counts: count columns to perturb (``n_col`` among them when it is shown).
        means, rates: the means and rates to form from the protected counts.
        value_cols: columns withheld with a withheld cell (default: every numeric column but
            ``n_col``, the partition columns and the keys).
        partition_cols, complementary: as :func:`alliance.privacy.suppress`.
        n_key_from: the count of the same cell whose records the clients are counted from
            (e.g. ``"n"`` for sessions): the client count's key is derived from its key
            (:func:`alliance.noise.derived_key`), so no query sums distinct keys.
        overlapping: the cells may share clients (months of one period): a withheld set is
            judged by its largest cell, not by the sum of their counts.
        also_partition_by, clients_col: as :func:`alliance.privacy.suppress` (further
            partitionings; the client ids behind each cell, to judge a withheld set by the
            distinct clients of its union).

    Returns:
        The table as :func:`alliance.privacy.suppress` returns it (``suppressed``,
        ``suppression``), with protected values and without key columns. ``n_col`` shows the
        protected client count.
    """
    if n_col not in counts:
        raise ValueError(f"the client count {n_col!r} must be among the protected counts")
    k = policy.k
    if n_key_from is not None:
        df = df.assign(
            **{
                n_col + KEY_SUFFIX: noise.derived_key(
                    df[n_key_from + KEY_SUFFIX].to_numpy(dtype="float64"), n_col
                )
            }
        )
    keys = key_columns(df)
    true_n = pd.to_numeric(df[n_col]).to_numpy(dtype="int64")
    ruled = numerator_rule(df, rates, k)
    judged = np.where(ruled & (true_n > 0), np.minimum(true_n, k - 1), true_n)
    shown = perturb(df, params=params, counts=counts, means=means, rates=rates, floor=k)
    shown_n = shown[n_col].to_numpy(dtype="float64")
    if value_cols is None:
        skip = {n_col, *partition_cols, *keys}
        value_cols = [
            c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c].dtype)
        ]
    frame = shown.drop(columns=keys).assign(**{n_col: judged})
    if clients_col is not None and ruled.any():
        # a cell withheld by the numerator rule is judged as no larger than its judged size:
        # its client ids do not count towards the distinct clients of a withheld set
        clients_col = _ids_without(frame, clients_col, ruled)
    safe = privacy.suppress(
        frame,
        policy=policy,
        n_col=n_col,
        value_cols=[c for c in value_cols if c not in keys],
        partition_cols=partition_cols,
        complementary=complementary,
        overlapping=overlapping,
        also_partition_by=also_partition_by,
        clients_col=clients_col,
    )
    withheld = safe[privacy.SUPPRESSED_COL].to_numpy(dtype=bool)
    safe[n_col] = pd.Series(shown_n, index=df.index).round().astype("Int64").mask(withheld)
    return safe


def _ids_without(
    frame: pd.DataFrame, clients_col: privacy.ClientSets, ruled: np.ndarray
) -> privacy.ClientSets:
    """`clients_col` as a callable that gives no ids (unknown) for the `ruled` rows."""
    if callable(clients_col):
        source = clients_col
    else:
        values = list(frame[clients_col])
        frame.drop(columns=clients_col, inplace=True)

        def source(_: pd.DataFrame) -> list[object]:
            return values

    def ids(table: pd.DataFrame) -> list[object]:
        return [None if r else x for x, r in zip(source(table), ruled, strict=True)]

    return ids


def wilson(
    events: pd.Series, total: pd.Series, params: noise.NoiseParams
) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson interval of protected events / total, widened for the noise of both."""
    x = pd.to_numeric(events).to_numpy(dtype="float64", na_value=np.nan)
    n = pd.to_numeric(total).to_numpy(dtype="float64", na_value=np.nan)
    ok = np.isfinite(x) & np.isfinite(n) & (n > 0)
    low = np.full(len(x), np.nan)
    high = np.full(len(x), np.nan)
    if ok.any():
        lo, hi = wilson_interval(x[ok], n[ok])
        p = x[ok] / n[ok]
        lo, hi = noise.widen(p, lo, hi, noise.rate_noise_variance(p, n[ok], params), Z95)
        low[ok], high[ok] = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
    return low, high


def mean_interval(
    mean: pd.Series,
    sd: pd.Series,
    n: pd.Series,
    record_range: float,
    params: noise.NoiseParams,
) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of a protected mean (normal, SD / √n), widened for the sum's noise."""
    m = pd.to_numeric(mean).to_numpy(dtype="float64", na_value=np.nan)
    s = pd.to_numeric(sd).to_numpy(dtype="float64", na_value=np.nan)
    size = pd.to_numeric(n).to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        half2 = (Z95 * s) ** 2 / size + Z95**2 * noise.mean_noise_variance(
            size, record_range, params
        )
    half = np.sqrt(half2)
    return m - half, m + half


# --------------------------------------------------------------------------------------------
# The rules for single figures (the Overview's and the Alliance page's headlines)
# --------------------------------------------------------------------------------------------


def shown_counts(
    counts: np.ndarray,
    cell_keys: np.ndarray,
    *,
    policy: privacy.PrivacyPolicy,
    params: noise.NoiseParams,
) -> np.ndarray:
    """Counts with their cell's noise, a non-zero count never shown below k (the arithmetic of
    ``perturb`` on arrays, for one headline row without a frame)."""
    return noise.perturb_counts(counts, cell_keys, params, policy.k)


def rate_withheld(events: float, total: float, policy: privacy.PrivacyPolicy) -> bool:
    """The numerator rule for one rate: withheld when it has 1 .. k-1 events or 1 .. k-1
    non-events (``numerator_rule`` for one figure)."""
    k = policy.k
    return bool(0 < events < k or 0 < total - events < k)


def clients_behind(
    count: int, lower_bound: int, policy: privacy.PrivacyPolicy, exact: Callable[[], int]
) -> int:
    """Distinct clients behind a figure, for the threshold: 0 without data; the count itself
    when it is below k (fewer items than k means fewer clients than k); a lower bound when it
    already reaches k; otherwise the exact number from ``exact()`` (a query, run only for such
    small selections). Not shown, only compared with k."""
    k = policy.k
    if count <= 0:
        return 0
    if count < k:
        return count
    if lower_bound >= k:
        return lower_bound
    return int(exact())


def perturb_figures(
    df: pd.DataFrame,
    *,
    policy: privacy.PrivacyPolicy,
    params: noise.NoiseParams,
    counts: Sequence[str],
    means: Sequence[Mean] = (),
    rates: Sequence[Rate] = (),
) -> tuple[pd.DataFrame, set[str]]:
    """Figures that are not cells of a table (a headline, a total): ``perturb`` with every
    non-zero count shown at least k, and the rates the numerator rule withholds in any row."""
    shown = perturb(df, params=params, counts=counts, means=means, rates=rates, floor=policy.k)
    ruled = {r.col for r in rates if numerator_rule(df, [r], policy.k).any()}
    return shown, ruled


def min_clients(policy: privacy.PrivacyPolicy) -> int:
    """The fewest distinct clients a shown figure may describe (k), for a sentence that names
    the threshold ("every month describes fewer than 11 clients"); never for a decision."""
    return policy.k


def enough_clients_rows(
    n_clients: pd.Series | np.ndarray, policy: privacy.PrivacyPolicy
) -> np.ndarray:
    """Per row: True where the count describes at least k clients (a row that may be used)."""
    return pd.to_numeric(pd.Series(n_clients)).to_numpy(dtype="float64") >= policy.k


def shown_counts_of(
    counts: np.ndarray, keys: np.ndarray, params: noise.NoiseParams, policy: privacy.PrivacyPolicy
) -> np.ndarray:
    """Counts as a person sees them: each with its cell's noise, a non-zero count never below
    k (``noise.perturb_counts`` with the policy's floor)."""
    return noise.perturb_counts(counts, keys, params, policy.k)


# wt-b: the Outcomes and Dropout pages


def numerator_withheld(
    policy: privacy.PrivacyPolicy, events: int | None, total: int | None
) -> bool:
    """The numerator rule for one exact rate: True when its events or its non-events (total -
    events) number 1 .. k-1 (a missing count counts as 0, as in `numerator_rule`)."""
    x = float(events or 0)
    rest = float(total or 0) - x
    return bool((0 < x < policy.k) or (0 < rest < policy.k))


def perturb_shown(
    df: pd.DataFrame,
    *,
    policy: privacy.PrivacyPolicy,
    params: noise.NoiseParams,
    counts: Sequence[str],
    rates: Sequence[Rate] = (),
) -> pd.DataFrame:
    """`perturb` as for a shown figure: a non-zero count never shows below k."""
    return perturb(df, params=params, counts=counts, rates=rates, floor=policy.k)


def perturb_count_values(
    values: np.ndarray, keys: np.ndarray, policy: privacy.PrivacyPolicy, params: noise.NoiseParams
) -> np.ndarray:
    """Counts with their cells' noise as shown (never below k when not 0): noise.perturb_counts."""
    return noise.perturb_counts(values, keys, params, policy.k)


def all_have_enough_clients(policy: privacy.PrivacyPolicy, *group_clients: int) -> bool:
    """Every group given has at least k distinct clients (a threshold test, not the release
    rule of a statistic: privacy.statistic_released)."""
    return all(int(n) >= policy.k for n in group_clients)


# wt-d: the Therapists and Demographics pages


def at_least_k(policy: privacy.PrivacyPolicy, n_clients: object) -> np.ndarray:
    """Which groups have at least k distinct clients (so a statistic may rest on them), one
    boolean per count; a missing count is not enough."""
    return np.asarray(n_clients, dtype="float64") >= policy.k


def shown_count_values(
    policy: privacy.PrivacyPolicy, params: noise.NoiseParams, counts: object, keys: object
) -> np.ndarray:
    """Exact counts as the protected step shows them: each with its cell's noise, a non-zero
    count never below k (as `protect_table` shows them)."""
    return noise.perturb_counts(
        np.asarray(counts, dtype="float64"), np.asarray(keys, dtype="float64"), params, policy.k
    )


def rate_withheld_for(policy: privacy.PrivacyPolicy, events: float, total: float) -> bool:
    """The numerator rule for one rate (see `numerator_rule`): 1 .. k-1 events or 1 .. k-1
    non-events."""
    rest = float(total) - float(events)
    return bool(0 < float(events) < policy.k or 0 < rest < policy.k)
