"""Small-cell suppression: no displayed or exported aggregate may describe fewer than k clients.

The rule (``../shared/metrics.md``, "Privacy threshold"):

* **Primary suppression**: a cell describing 1 .. k-1 distinct clients is withheld. A cell
  describing 0 clients discloses nothing and stays visible.
* Means, rates and any other value of a withheld cell are withheld with it.
* **Complementary suppression**: cells that add up to a shown total (or partition the same
  population) form a *partition*. Where a partition has a withheld cell, further cells of it are
  withheld, the smallest non-zero ones first, until at least two of its cells are withheld *and*
  their combined client count is at least k, or until every cell of it is withheld. A single
  withheld value then cannot be recovered by subtracting the visible cells from the total.
* Every withheld cell is marked (``"n < 11"``), never shown as 0 and never dropped.

All functions are pure: they return new objects and never modify their inputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "SUPPRESSED_LABEL",
    "PrivacyError",
    "PrivacyPolicy",
    "assert_no_small_cells",
    "cohort_too_small",
    "display_table",
    "neutralize_formula",
    "neutralize_frame",
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


def _partition_safe(n: np.ndarray, withheld: np.ndarray, k: int) -> bool:
    """Whether the withheld cells of one partition resist recovery by subtraction."""
    count = int(withheld.sum())
    if count == 0 or count == len(withheld):
        return True
    return count >= 2 and int(n[withheld].sum()) >= k


def _complementary(
    n: np.ndarray, withheld: np.ndarray, partitionings: list[list[np.ndarray]], k: int
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
                w = withheld[pos]
                if not w.any() or _partition_safe(n[pos], w, k):
                    continue
                visible = pos[~w]
                vn = n[visible]
                for p in visible[np.lexsort((visible, vn, vn == 0))]:
                    withheld[p] = True
                    changed = True
                    if _partition_safe(n[pos], withheld[pos], k):
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

    Returns:
        A copy of ``df`` (same rows, order and index) with

        * ``suppressed``: True where the cell is withheld (primary or complementary);
        * ``suppression``: ``"primary"``, ``"complementary"`` or ``""``;
        * ``value_cols`` set to missing (NaN; ``<NA>`` for nullable dtypes) where withheld;
          integer columns become float, boolean columns become nullable ``boolean``;
        * ``n_col`` as nullable ``Int64``, ``<NA>`` where withheld.

        Rows with a count of 0 are kept visible and unchanged.

    Raises:
        KeyError: a named column is missing.
        ValueError: a count is missing, negative or not whole, or ``value_cols`` overlaps the
            partition columns.
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
    if complementary:
        groups = [_groups(df, cols) for cols in partitionings]
        withheld = _complementary(n, primary, groups, k)
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
