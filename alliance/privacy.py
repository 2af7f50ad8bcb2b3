"""Small-cell suppression: no displayed or exported aggregate may describe fewer than k clients.

The rule (``../shared/metrics.md``, "Privacy threshold"):

* **Primary suppression**: a cell describing 1 .. k-1 distinct clients is withheld. A cell
  describing 0 clients discloses nothing and stays visible.
* Means, rates and any other value of a withheld cell are withheld with it.
* **Complementary suppression**: cells that add up to a shown total (or partition the same
  population) form a *partition*. Where a partition has a withheld cell, further cells of it are
  withheld, the smallest non-zero ones first, until at least two of its cells are withheld *and*
  together they describe at least k distinct clients, or until every cell of it is withheld. A
  single withheld value then cannot be recovered by subtracting the visible cells from the total.
  Where cells can share clients (months of one period: a client is seen in several), the
  withheld set is judged by the distinct clients of its union (``clients_col``), or, where
  those are unknown, as if the union were no larger than its largest cell (``overlapping``).
* Every withheld cell is marked (``"n < 11"``), never shown as 0 and never dropped.
* **Released statistics** (d, odds ratios, r, ICC, fitted curves, quantile cut points) follow one
  rule, :func:`statistic_released`: every group a statistic rests on has at least k clients.
  Cut points are shown only rounded to whole points and only between two released groups
  (:func:`cut_point_labels`), so that no label carries one client's value.

All functions are pure: they return new objects and never modify their inputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "SUPPRESSED_LABEL",
    "PrivacyError",
    "PrivacyPolicy",
    "assert_no_small_cells",
    "cohort_too_small",
    "cut_point_labels",
    "display_table",
    "neutralize_formula",
    "neutralize_frame",
    "statistic_released",
    "suppress",
    "suppress_total",
]

SUPPRESSED_LABEL = "n < {k}"
"""Marker shown in place of every withheld cell; formatted with ``k``."""

SUPPRESSED_COL = "suppressed"
"""Boolean column added by :func:`suppress`: True where the row is withheld."""

SUPPRESSION_COL = "suppression"
"""Column added by :func:`suppress`: ``""``, ``"primary"`` or ``"complementary"``."""

PRIMARY = "primary"
COMPLEMENTARY = "complementary"

_LABEL_RE = re.compile(r"^n < \d+$")


class PrivacyError(Exception):
    """Raised when a table about to be shown or exported would disclose a small cell."""


@dataclass(frozen=True)
class PrivacyPolicy:
    """Cell-size policy.

    Attributes:
        k: minimum number of distinct clients an aggregate may describe (CMS uses 11,
            NHS Digital 5 to 8). Counts 1 .. k-1 are withheld.
    """

    k: int = 11

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer):
            raise TypeError(f"k must be an integer, got {self.k!r}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")

    @property
    def label(self) -> str:
        """The marker shown for a withheld cell, e.g. ``"n < 11"``."""
        return SUPPRESSED_LABEL.format(k=self.k)


# --------------------------------------------------------------------------------------------
# Suppression
# --------------------------------------------------------------------------------------------


def _counts(values: pd.Series, what: str) -> np.ndarray:
    """Validate client counts and return them as an int64 array.

    Counts must be present, whole and non-negative: an aggregate whose client count is unknown
    cannot be judged, so it is an error rather than a guess.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        raise ValueError(f"{what} must hold client counts, not booleans")
    try:
        numeric = pd.to_numeric(values, errors="raise")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must hold client counts: {exc}") from exc
    if numeric.isna().any():
        raise ValueError(
            f"{what} has missing client counts; every cell needs its number of clients"
        )
    arr = numeric.to_numpy(dtype="float64")
    if (arr < 0).any():
        raise ValueError(f"{what} has negative client counts")
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.floor(arr)):
        raise ValueError(f"{what} has client counts that are not whole numbers")
    return arr.astype("int64")


def _default_value_cols(df: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Every numeric (including boolean) column not in ``exclude``."""
    return [
        c for c in df.columns if c not in exclude and pd.api.types.is_numeric_dtype(df[c].dtype)
    ]


def _groups(df: pd.DataFrame, cols: Sequence[str]) -> list[np.ndarray]:
    """Row positions of each partition defined by ``cols`` (missing keys form their own group)."""
    if len(df) == 0:
        return []
    if not cols:
        return [np.arange(len(df))]
    codes = np.zeros(len(df), dtype="int64")
    for col in cols:
        col_codes, uniques = pd.factorize(df[col], use_na_sentinel=False)
        codes, _ = pd.factorize(codes * (len(uniques) + 1) + col_codes)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds)


ClientSets = str | Callable[[pd.DataFrame], Sequence[object]]
"""Where :func:`suppress` finds each cell's distinct clients: a column name, or a callable that
is given the table and returns one collection of client ids per row (in row order)."""

UnionSize = Callable[[np.ndarray], int]
"""The number of distinct clients (a lower bound) behind the cells at some row positions."""


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _client_set(value: object, count: int, row: object) -> frozenset | None:
    """One cell's client ids as a set (None when unknown), checked against its count."""
    if _is_missing(value):
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Collection | np.ndarray):
        raise ValueError(
            f"row {row!r}: client ids must be a collection (list, array, set), got {value!r}"
        )
    ids = frozenset(np.asarray(value).ravel().tolist() if isinstance(value, np.ndarray) else value)
    if len(ids) != count:
        raise ValueError(
            f"row {row!r}: {len(ids)} distinct client ids for a cell of {count} clients"
        )
    return ids


def _union_size(
    df: pd.DataFrame, n: np.ndarray, clients_col: ClientSets | None, overlapping: bool
) -> UnionSize:
    """How a withheld set is judged: by the sum of its counts (cells share no client), by the
    distinct clients of its union (client sets known), or, where a cell's set is unknown and
    cells may share clients, as if the union were no larger than its largest such cell."""
    if clients_col is None:
        if overlapping:
            return lambda pos: int(n[pos].max()) if len(pos) else 0
        return lambda pos: int(n[pos].sum())
    sets: list[frozenset | None] = []

    def load() -> list[frozenset | None]:
        # read once, and only when a partition with a withheld cell has to be judged
        if not sets:
            raw = df[clients_col] if isinstance(clients_col, str) else clients_col(df)
            values = list(raw)
            if len(values) != len(df):
                raise ValueError(f"client ids for {len(values)} rows, the table has {len(df)}")
            sets.extend(
                _client_set(v, int(c), r) for v, c, r in zip(values, n, df.index, strict=True)
            )
        return sets

    def size(pos: np.ndarray) -> int:
        cells = load()
        known = [cells[p] for p in pos if cells[p] is not None]
        unknown = [int(n[p]) for p in pos if cells[p] is None]
        return max(len(frozenset().union(*known)), max(unknown, default=0))

    return size


def _partition_safe(pos: np.ndarray, withheld: np.ndarray, k: int, union: UnionSize) -> bool:
    """Whether the withheld cells of one partition (rows ``pos``; ``withheld`` over the whole
    table) resist recovery by subtraction."""
    w = withheld[pos]
    count = int(w.sum())
    if count == 0 or count == len(pos):
        return True
    return count >= 2 and union(pos[w]) >= k


def _complementary(
    n: np.ndarray,
    withheld: np.ndarray,
    partitionings: list[list[np.ndarray]],
    k: int,
    union: UnionSize,
) -> np.ndarray:
    """Extend ``withheld`` until every partition of every partitioning is safe.

    Withheld cells only ever get added, so the loop reaches a fixed point. Within a partition the
    candidates are the visible cells ordered by count, non-zero cells before zero cells (a zero
    cell adds nothing to the combined count), ties by row order.
    """
    withheld = withheld.copy()
    changed = True
    while changed:
        changed = False
        for groups in partitionings:
            for pos in groups:
                if not withheld[pos].any() or _partition_safe(pos, withheld, k, union):
                    continue
                visible = pos[~withheld[pos]]
                vn = n[visible]
                for p in visible[np.lexsort((visible, vn, vn == 0))]:
                    withheld[p] = True
                    changed = True
                    if _partition_safe(pos, withheld, k, union):
                        break
    return withheld


def suppress(
    df: pd.DataFrame,
    *,
    policy: PrivacyPolicy,
    n_col: str = "n_clients",
    value_cols: Sequence[str] | None = None,
    partition_cols: Sequence[str] = (),
    complementary: bool = True,
    also_partition_by: Sequence[Sequence[str]] = (),
    clients_col: ClientSets | None = None,
    overlapping: bool = False,
) -> pd.DataFrame:
    """Withhold every cell that describes too few clients, plus complementary cells.

    This is the one suppression step; run it on every table before it is shown or exported.

    Args:
        df: one row per displayed cell. ``df[n_col]`` is the number of distinct clients the
            cell describes; it must be present, whole and non-negative for every row.
        policy: the cell-size policy (``k``).
        n_col: the client-count column.
        value_cols: columns holding values that describe the cell (means, rates, CIs, other
            counts). Default: every numeric or boolean column except ``n_col`` and the partition
            columns. Pass it explicitly when a table has numeric label columns (e.g. an integer
            quintile or year) or non-numeric value columns (e.g. a text signal).
        partition_cols: the columns that identify one partition: the cells of one partition add
            up to the same shown total or split the same population. For a by-month-by-band
            table pass ``["month"]``: the cells of one month are one partition. With no
            partition columns all rows are one partition.
        complementary: apply complementary suppression (default). With False only primary
            suppression is done; the caller must then withhold the totals beside any partition
            with a withheld cell (see :func:`suppress_total`).
        also_partition_by: further partitionings of the same cells, each a list of columns,
            for tables whose cells add up in more than one direction (e.g. a month x band table
            that also shows band totals: ``partition_cols=["month"]``,
            ``also_partition_by=[["band"]]``). Every partition of every partitioning then meets
            the rule. This is the per-line rule, not a full audit of a multi-way table.
        clients_col: the distinct clients behind each cell, for tables whose cells can share
            clients (a client seen in several months of a by-month table). Either the name of a
            column holding, per row, a collection of client ids (list, numpy array, set; its
            size must equal the row's count; None where unknown), or a callable given the table
            that returns one such collection per row. It is read at most once, and only when a
            partition has a withheld cell to judge, so a caller can fetch the ids lazily. A
            partition's withheld cells must then together describe at least k *distinct*
            clients (the size of their union), not k by the sum of their counts. A cell whose
            ids are unknown is judged conservatively: the union may be no larger than the
            largest such cell. Default None: cells share no client, the counts add up.
        overlapping: with no ``clients_col``, cells may share clients but their ids are
            unknown: every withheld set is judged by its largest cell (the conservative
            bound). Default False (the counts add up).

    Returns:
        A copy of ``df`` (same rows, order and index) with

        * ``suppressed``: True where the cell is withheld (primary or complementary);
        * ``suppression``: ``"primary"``, ``"complementary"`` or ``""``;
        * ``value_cols`` set to missing (NaN; ``<NA>`` for nullable dtypes) where withheld;
          integer columns become float, boolean columns become nullable ``boolean``;
        * ``n_col`` as nullable ``Int64``, ``<NA>`` where withheld;
        * without the ``clients_col`` column (client ids are never shown or exported).

        Rows with a count of 0 are kept visible and unchanged.

    Raises:
        KeyError: a named column is missing.
        ValueError: a count is missing, negative or not whole, ``value_cols`` overlaps the
            partition columns, or a cell's client ids are not a collection of as many distinct
            ids as its count.
    """
    if n_col not in df.columns:
        raise KeyError(f"count column {n_col!r} not in table")
    partitionings = [list(partition_cols), *(list(cols) for cols in also_partition_by)]
    part_cols = {c for cols in partitionings for c in cols}
    missing = [c for c in part_cols if c not in df.columns]
    if missing:
        raise KeyError(f"partition columns not in table: {missing}")
    if value_cols is None:
        values = _default_value_cols(df, {n_col, SUPPRESSED_COL} | part_cols)
    else:
        values = [c for c in value_cols if c != n_col]
        missing = [c for c in values if c not in df.columns]
        if missing:
            raise KeyError(f"value columns not in table: {missing}")
        overlap = sorted(set(values) & part_cols)
        if overlap:
            raise ValueError(f"value columns are also partition columns: {overlap}")

    n = _counts(df[n_col], f"column {n_col!r}")
    k = policy.k
    primary = (n > 0) & (n < k)
    if isinstance(clients_col, str) and clients_col not in df.columns:
        raise KeyError(f"client ids column {clients_col!r} not in table")
    if complementary:
        groups = [_groups(df, cols) for cols in partitionings]
        union = _union_size(df, n, clients_col, overlapping)
        withheld = _complementary(n, primary, groups, k, union)
    else:
        withheld = primary

    out = df.copy()
    for col in values:
        column = out[col]
        if pd.api.types.is_bool_dtype(column.dtype):
            column = column.astype("boolean")
        out[col] = column.mask(withheld)
    out[n_col] = pd.Series(n, index=df.index, dtype="Int64").mask(withheld)
    out[SUPPRESSED_COL] = withheld
    kind = np.where(primary, PRIMARY, np.where(withheld, COMPLEMENTARY, ""))
    out[SUPPRESSION_COL] = pd.Series(kind, index=df.index, dtype="str")
    if isinstance(clients_col, str):
        out = out.drop(columns=clients_col)  # client ids are never shown or exported
    return out


def suppress_total(
    total_n: int,
    parts: pd.DataFrame,
    *,
    policy: PrivacyPolicy,
    n_col: str = "n_clients",
) -> bool:
    """Decide whether a total shown beside its parts must itself be withheld.

    Use it where the parts were suppressed without complementary suppression
    (``suppress(..., complementary=False)``), or to check a total placed beside a table.

    Args:
        total_n: number of distinct clients the total describes. The parts must split exactly
            these clients (their counts add up to ``total_n``).
        parts: the parts as they will be shown: either the output of :func:`suppress` (with
            its ``suppressed`` column) or raw counts, in which case cells of 1 .. k-1 clients
            count as withheld.
        policy: the cell-size policy.
        n_col: the client-count column of ``parts``.

    Returns:
        True if the total must be withheld: it describes 1 .. k-1 clients itself, or exactly one
        part is withheld (it would equal the total minus the visible parts), or several parts
        are withheld but together describe fewer than k clients.

    Raises:
        ValueError: ``total_n`` is not a non-negative whole number, a visible part has no
            count, or the visible parts add up to more than ``total_n``.
    """
    total = int(_counts(pd.Series([total_n]), "total_n")[0])
    k = policy.k
    if 0 < total < k:
        return True
    if SUPPRESSED_COL in parts.columns:
        withheld = parts[SUPPRESSED_COL].fillna(True).to_numpy(dtype=bool)
        visible_n = _counts(parts.loc[~withheld, n_col], f"visible parts' {n_col!r}")
    else:
        n = _counts(parts[n_col], f"column {n_col!r}")
        withheld = (n > 0) & (n < k)
        visible_n = n[~withheld]
    n_withheld = int(withheld.sum())
    if n_withheld == 0:
        return False
    if n_withheld == 1:
        return True
    withheld_sum = total - int(visible_n.sum())
    if withheld_sum < 0:
        raise ValueError("visible parts add up to more than the total")
    return withheld_sum < k


def cohort_too_small(n_clients: int, policy: PrivacyPolicy) -> bool:
    """Minimum cohort: True when the whole filtered population has 1 .. k-1 clients.

    A page then shows only the notice that the selection is too small, no figures at all.
    An empty selection (0 clients) is not "too small"; it is simply empty.
    """
    n = int(_counts(pd.Series([n_clients]), "n_clients")[0])
    return 0 < n < policy.k


# --------------------------------------------------------------------------------------------
# Released statistics and cut points
# --------------------------------------------------------------------------------------------


def statistic_released(policy: PrivacyPolicy, *group_clients: int) -> bool:
    """The one release rule for a statistic that rests on groups of clients (Cohen's d and the
    odds ratio and r comparing dropouts with other endings, an ICC, a fitted curve, a quantile
    cut point): released only when every group it rests on has at least k distinct clients.

    A group of 0 clients is not enough either: the statistic then rests on nobody there and is
    not shown (it is not computable anyway). The pages, the report packs and the app's exports
    all decide with this function; the ``summary`` command reports exact figures for data staff
    and says so.

    Raises:
        ValueError: no group given, or a count is missing, negative or not whole.
    """
    if not group_clients:
        raise ValueError("a statistic rests on at least one group of clients")
    counts = _counts(pd.Series(list(group_clients), dtype="object"), "group client counts")
    return bool((counts >= policy.k).all())


def cut_point_labels(
    names: Sequence[str],
    cuts: Sequence[float | None],
    group_clients: Sequence[int | None],
    *,
    policy: PrivacyPolicy,
    withheld: Sequence[bool] | None = None,
) -> list[str]:
    """Labels for ordered bands (quintiles, terciles, bins of a score) that never carry one
    client's value.

    Args:
        names: one name per band, lowest first ("lowest fifth", ..., "highest fifth").
        cuts: the cut points between neighbouring bands (one fewer than ``names``), e.g. an
            interpolated quantile (``quantile_cont``); None where unknown. They are shown only
            rounded to whole points, marked "≈".
        group_clients: each band's distinct clients (None = unknown, never released).
        policy: the cell-size policy.
        withheld: per band, True where the band's cell is withheld (primary or
            complementary); its bounds are then not shown either.

    Returns:
        One label per band: the name, with "up to ≈ c", "≈ a to ≈ b" (or "≈ a" when both round
        to the same point) or "above ≈ a" for the cut points that may be shown. A cut point is shown only when both bands it bounds are
        released (:func:`statistic_released`) and not withheld; otherwise the band keeps its
        name alone, without values.

    Raises:
        ValueError: the lengths do not fit.
    """
    bands = len(names)
    if len(cuts) != bands - 1 or len(group_clients) != bands:
        raise ValueError("need one name and one client count per band and one cut between two")
    hidden = list(withheld) if withheld is not None else [False] * bands
    if len(hidden) != bands:
        raise ValueError("need one withheld flag per band")
    ok = [
        not hidden[i] and c is not None and not _is_missing(c) and statistic_released(policy, c)
        for i, c in enumerate(group_clients)
    ]
    shown: list[float | None] = []
    for i, c in enumerate(cuts):
        usable = c is not None and not _is_missing(c) and math.isfinite(float(c))
        shown.append(float(round(float(c))) if usable and ok[i] and ok[i + 1] else None)
    labels = []
    for i, name in enumerate(names):
        lo = shown[i - 1] if i > 0 else None
        hi = shown[i] if i < bands - 1 else None
        if lo is not None and hi is not None:
            labels.append(f"{name} (≈ {lo:g})" if lo == hi else f"{name} (≈ {lo:g} to ≈ {hi:g})")
        elif hi is not None:
            labels.append(f"{name} (up to ≈ {hi:g})")
        elif lo is not None:
            labels.append(f"{name} (above ≈ {lo:g})")
        else:
            labels.append(str(name))
    return labels


# --------------------------------------------------------------------------------------------
# Guard and display
# --------------------------------------------------------------------------------------------


def _parse_count(value: object) -> float | None:
    """A shown count as a number; None when it is missing or a withheld marker."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "" or _LABEL_RE.fullmatch(text):
            return None
        cleaned = re.sub(r"[,\s\u00a0\u202f_']", "", text)
        try:
            return float(cleaned)
        except ValueError as exc:
            raise PrivacyError(f"cannot read client count {value!r}") from exc
    if isinstance(value, bool | np.bool_):
        raise PrivacyError(f"client count is a boolean: {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise PrivacyError(f"cannot read client count {value!r}") from exc
    return None if np.isnan(number) else number


def assert_no_small_cells(
    df: pd.DataFrame, *, policy: PrivacyPolicy, n_col: str = "n_clients"
) -> None:
    """Last guard before a table is shown or exported.

    Accepts both the output of :func:`suppress` and a formatted table from
    :func:`display_table` (counts as strings, withheld cells as ``"n < 11"``).

    Raises:
        PrivacyError: the count column is missing or unreadable; a visible row has
            0 < n < k; a row has no count but is not marked withheld; or a row marked withheld
            (``suppressed`` True) still shows its count.
    """
    if n_col not in df.columns:
        raise PrivacyError(f"cannot check cell sizes: no column {n_col!r}")
    if SUPPRESSED_COL in df.columns:
        marked = df[SUPPRESSED_COL].fillna(False).to_numpy(dtype=bool)
    else:
        marked = np.zeros(len(df), dtype=bool)
    column = df[n_col]
    for pos, value in enumerate(column.tolist()):
        is_label = isinstance(value, str) and bool(_LABEL_RE.fullmatch(value.strip()))
        number = _parse_count(value)
        if number is None:
            if not is_label and not marked[pos]:
                raise PrivacyError(
                    f"row {df.index[pos]!r} has no client count and is not marked withheld"
                )
            continue
        if marked[pos]:
            raise PrivacyError(f"row {df.index[pos]!r} is marked withheld but shows its count")
        if 0 < number < policy.k:
            raise PrivacyError(
                f"row {df.index[pos]!r} shows a cell of {number:g} clients (k = {policy.k})"
            )


def _format(value: object, spec: str) -> str:
    """Format with a ``str.format`` template (``"{:.1f}"``) or a bare spec (``".1f"``)."""
    if "{" in spec:
        return spec.format(value)
    return format(value, spec)


def _default_spec(column: pd.Series) -> str:
    """Whole numbers without decimals, other numbers with two, anything else as text."""
    present = column.dropna()
    if present.empty or not pd.api.types.is_numeric_dtype(present.dtype):
        return "{}"
    if pd.api.types.is_bool_dtype(present.dtype):
        return "{}"
    arr = present.to_numpy(dtype="float64")
    if np.all(arr == np.floor(arr)):
        return "{:.0f}"
    return "{:.2f}"


def display_table(
    df: pd.DataFrame,
    *,
    policy: PrivacyPolicy,
    value_cols: Sequence[str] | None = None,
    formats: Mapping[str, str] | None = None,
    n_col: str = "n_clients",
    na_rep: str = "",
) -> pd.DataFrame:
    """Format a suppressed table for screen, CSV and XLSX.

    Args:
        df: the output of :func:`suppress` (a table without a ``suppressed`` column is accepted
            only if it has no small cell).
        policy: the cell-size policy; its label (``"n < 11"``) marks withheld cells.
        value_cols: columns to format and mark. Default: every numeric column except
            ``n_col``. Pass it explicitly when there are numeric label columns.
        formats: column -> format, either a ``str.format`` template (``"{:.1f}"``,
            ``"{:.0%}"``) or a bare spec (``".1f"``). Unlisted columns: whole numbers without
            decimals, others with two decimals. The count column is formatted too.
        n_col: the client-count column.
        na_rep: text for a missing value in a visible row (e.g. the mean of a zero-count row).

    Returns:
        A new frame with the same rows and index, without the ``suppressed`` and
        ``suppression`` columns; ``n_col`` and ``value_cols`` as strings, every withheld cell
        showing the label (never ``"0"``); other columns unchanged.

    Raises:
        PrivacyError: the table still shows a small cell (see :func:`assert_no_small_cells`).
    """
    assert_no_small_cells(df, policy=policy, n_col=n_col)
    formats = dict(formats or {})
    if SUPPRESSED_COL in df.columns:
        withheld = df[SUPPRESSED_COL].fillna(False).to_numpy(dtype=bool)
    else:
        withheld = np.zeros(len(df), dtype=bool)
    if value_cols is None:
        cols = _default_value_cols(df, {n_col, SUPPRESSED_COL, SUPPRESSION_COL})
    else:
        cols = [c for c in value_cols if c != n_col]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise KeyError(f"value columns not in table: {missing}")

    out = df.drop(columns=[c for c in (SUPPRESSED_COL, SUPPRESSION_COL) if c in df.columns])
    label = policy.label
    for col in [n_col, *cols]:
        column = df[col]
        spec = formats.get(col) or _default_spec(column)
        texts = []
        for value, hidden in zip(column.tolist(), withheld, strict=True):
            if hidden:
                texts.append(label)
            elif value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
                texts.append(na_rep)
            else:
                texts.append(_format(value, spec))
        out[col] = pd.Series(texts, index=df.index, dtype="str")
    return out


# --------------------------------------------------------------------------------------------
# Export safety (CSV / spreadsheet formula injection)
# --------------------------------------------------------------------------------------------

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# A negative number written as text ("-0.12", "-1,234.5", "-12%") cannot run anything and
# spreadsheets read it as a number, so it is left alone (display tables format numbers as text).
_NEGATIVE_NUMBER_RE = re.compile(r"^-(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.[0-9]+)?%?$")


def neutralize_formula(value: object) -> object:
    """Defuse a value that a spreadsheet would read as a formula (OWASP CSV injection).

    A string starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return (or the
    full-width ``=``, ``+``, ``-``, ``@``) gets a leading single quote, except a plain negative
    number written as text (``"-0.12"``). Anything that is not a string, including negative
    numbers, is returned unchanged.
    """
    if (
        isinstance(value, str)
        and value.startswith(_FORMULA_PREFIXES)
        and not _NEGATIVE_NUMBER_RE.fullmatch(value)
    ):
        return "'" + value
    return value


def _neutralize_index(index: pd.Index) -> pd.Index:
    """Neutralize the labels and names of an index (flat or multi-level)."""
    names = [neutralize_formula(name) for name in index.names]
    if isinstance(index, pd.MultiIndex):
        tuples = [tuple(neutralize_formula(v) for v in t) for t in index]
        return pd.MultiIndex.from_tuples(tuples, names=names)
    if pd.api.types.is_numeric_dtype(index.dtype) or isinstance(index, pd.DatetimeIndex):
        return index.set_names(names)
    return pd.Index([neutralize_formula(v) for v in index], name=names[0])


def neutralize_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy safe to write to CSV/XLSX.

    :func:`neutralize_formula` is applied to every string cell of text, object and categorical
    columns (categoricals become object), to the column names and to the index labels.
    Numeric columns are untouched.
    """
    out = df.copy()
    for pos in range(out.shape[1]):
        column = out.iloc[:, pos]
        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            column = column.astype(object)
        elif not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
            continue
        mapped = column.map(neutralize_formula, na_action="ignore")
        if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
            mapped = mapped.astype(dtype)
        out.isetitem(pos, mapped)
    out.columns = _neutralize_index(out.columns)
    out.index = _neutralize_index(out.index)
    return out
