"""Tests for alliance.privacy: small-cell suppression, display, export guards."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance.privacy import (
    SUPPRESSED_LABEL,
    PrivacyError,
    PrivacyPolicy,
    assert_no_small_cells,
    cohort_too_small,
    display_table,
    neutralize_formula,
    neutralize_frame,
    suppress,
    suppress_total,
)

K11 = PrivacyPolicy()


def table(counts: list[int], part: list[str] | None = None) -> pd.DataFrame:
    """One row per cell: band label, client count, a mean and an integer count of sessions."""
    df = pd.DataFrame(
        {
            "band": [f"b{i}" for i in range(len(counts))],
            "n_clients": counts,
            "mean_srs": [30.0 + i for i in range(len(counts))],
            "n_sessions": [3 * c for c in counts],
        }
    )
    if part is not None:
        df.insert(0, "month", part)
    return df


def kinds(out: pd.DataFrame) -> list[str]:
    return out["suppression"].tolist()


# --------------------------------------------------------------------------------------------
# Hand examples
# --------------------------------------------------------------------------------------------


def test_policy_default_and_label() -> None:
    assert K11.k == 11
    assert K11.label == "n < 11"
    assert SUPPRESSED_LABEL.format(k=11) == "n < 11"
    assert PrivacyPolicy(k=5).label == "n < 5"


@pytest.mark.parametrize("bad", [0, -3])
def test_policy_rejects_bad_k(bad: int) -> None:
    with pytest.raises(ValueError):
        PrivacyPolicy(k=bad)


def test_policy_rejects_non_integer_k() -> None:
    with pytest.raises(TypeError):
        PrivacyPolicy(k=10.5)  # type: ignore[arg-type]


def test_no_small_cell_nothing_withheld() -> None:
    out = suppress(table([11, 15, 40]), policy=K11)
    assert not out["suppressed"].any()
    assert kinds(out) == ["", "", ""]
    assert out["n_clients"].tolist() == [11, 15, 40]
    assert out["mean_srs"].tolist() == [30.0, 31.0, 32.0]


def test_one_small_cell_gets_one_complement_the_next_smallest() -> None:
    out = suppress(table([20, 3, 40, 15]), policy=K11)
    assert kinds(out) == ["", "primary", "", "complementary"]
    assert out["suppressed"].tolist() == [False, True, False, True]


def test_two_small_cells_summing_below_k_withhold_a_third() -> None:
    out = suppress(table([30, 3, 4, 20]), policy=K11)
    assert kinds(out) == ["", "primary", "primary", "complementary"]


def test_two_small_cells_summing_to_k_need_no_complement() -> None:
    out = suppress(table([30, 5, 6, 20]), policy=K11)
    assert kinds(out) == ["", "primary", "primary", ""]


def test_all_small_all_withheld() -> None:
    out = suppress(table([2, 3, 4]), policy=K11)
    assert out["suppressed"].all()
    assert kinds(out) == ["primary"] * 3


def test_single_small_cell_alone_in_partition() -> None:
    out = suppress(table([4]), policy=K11)
    assert kinds(out) == ["primary"]


def test_values_withheld_with_the_cell() -> None:
    out = suppress(table([20, 3, 40, 15]), policy=K11)
    assert math.isnan(out.loc[1, "mean_srs"]) and math.isnan(out.loc[3, "mean_srs"])
    assert math.isnan(out.loc[1, "n_sessions"]) and math.isnan(out.loc[3, "n_sessions"])
    assert out.loc[0, "mean_srs"] == 30.0 and out.loc[2, "n_sessions"] == 120
    assert str(out["n_clients"].dtype) == "Int64"
    assert out["n_clients"].isna().tolist() == [False, True, False, True]
    assert out["band"].tolist() == ["b0", "b1", "b2", "b3"]  # labels stay


def test_explicit_value_cols_only_those_masked() -> None:
    out = suppress(table([3, 40]), policy=K11, value_cols=["mean_srs"])
    assert out["mean_srs"].isna().all()
    assert out["n_sessions"].tolist() == [9, 120]
    assert out["n_clients"].isna().all()


def test_bool_and_nullable_value_columns_are_masked() -> None:
    df = table([3, 40, 30])
    df["above_limit"] = [True, False, True]
    df["rate"] = pd.array([0.5, None, 0.25], dtype="Float64")
    out = suppress(df, policy=K11)
    assert out["above_limit"].isna().tolist() == [True, False, True]
    assert out["rate"].isna().tolist() == [True, True, True]


def test_partitions_are_independent() -> None:
    df = table([20, 3, 15, 12, 13, 14], part=["jan"] * 3 + ["feb"] * 3)
    out = suppress(df, policy=K11, partition_cols=["month"])
    assert kinds(out) == ["", "primary", "complementary", "", "", ""]


def test_whole_table_partition_picks_smallest_anywhere() -> None:
    df = table([20, 3, 15, 12, 13, 14], part=["jan"] * 3 + ["feb"] * 3)
    out = suppress(df, policy=K11)
    assert kinds(out) == ["", "primary", "", "complementary", "", ""]


def test_missing_partition_key_is_its_own_partition() -> None:
    df = table([3, 40, 30, 50], part=["jan", "jan", None, None])
    out = suppress(df, policy=K11, partition_cols=["month"])
    assert kinds(out) == ["primary", "complementary", "", ""]


def test_zero_count_is_not_a_disclosure_and_not_a_complement() -> None:
    df = table([0, 3, 40, 20])
    df.loc[0, "mean_srs"] = np.nan
    out = suppress(df, policy=K11)
    assert kinds(out) == ["", "primary", "", "complementary"]
    assert out.loc[0, "n_clients"] == 0
    assert math.isnan(out.loc[0, "mean_srs"])


def test_zero_cells_withheld_only_when_nothing_else_is_left() -> None:
    out = suppress(table([5, 0, 0]), policy=K11)
    assert kinds(out) == ["primary", "complementary", "complementary"]
    assert out["n_clients"].isna().all()


def test_all_zero_partition_untouched() -> None:
    out = suppress(table([0, 0]), policy=K11)
    assert not out["suppressed"].any()
    assert out["n_clients"].tolist() == [0, 0]


def test_k_is_a_setting() -> None:
    df = table([7, 4, 30, 9])
    five = suppress(df, policy=PrivacyPolicy(k=5))
    assert kinds(five) == ["complementary", "primary", "", ""]  # 4 + 7 >= 5
    eleven = suppress(df, policy=K11)
    assert kinds(eleven) == ["primary", "primary", "", "primary"]  # 7 + 4 + 9 >= 11
    shown = display_table(five, policy=PrivacyPolicy(k=5), value_cols=["mean_srs"])
    assert shown["n_clients"].tolist() == ["n < 5", "n < 5", "30", "9"]
    assert shown["mean_srs"].tolist() == ["n < 5", "n < 5", "32", "33"]


def test_complementary_off_only_primary() -> None:
    out = suppress(table([20, 3, 40]), policy=K11, complementary=False)
    assert kinds(out) == ["", "primary", ""]


def test_two_way_table_with_both_margins() -> None:
    # 2 months x 3 bands; band totals are shown too, so bands are a second partitioning.
    df = pd.DataFrame(
        {
            "month": ["jan"] * 3 + ["feb"] * 3,
            "band": ["lo", "mid", "hi"] * 2,
            "n_clients": [3, 20, 30, 25, 40, 50],
        }
    )
    by_month = suppress(df, policy=K11, partition_cols=["month"])
    assert by_month["suppressed"].tolist() == [True, True, False, False, False, False]
    both = suppress(df, policy=K11, partition_cols=["month"], also_partition_by=[["band"]])
    # jan: lo + mid; lo column needs feb-lo, mid column needs feb-mid
    assert both["suppressed"].tolist() == [True, True, False, True, True, False]


def test_index_and_order_preserved_and_input_unchanged() -> None:
    df = table([20, 3, 40, 15]).set_index(pd.Index([10, 7, 7, 2]))
    before = df.copy()
    out = suppress(df, policy=K11)
    pd.testing.assert_frame_equal(df, before)
    assert out.index.tolist() == [10, 7, 7, 2]
    assert kinds(out) == ["", "primary", "", "complementary"]


def test_empty_table() -> None:
    df = table([]).astype({"n_clients": "int64"})
    out = suppress(df, policy=K11, partition_cols=["band"])
    assert len(out) == 0 and {"suppressed", "suppression"} <= set(out.columns)


@pytest.mark.parametrize(
    "counts",
    [[3, None], [3, -1], [3, 2.5], ["a", 3]],
)
def test_bad_counts_rejected(counts: list[object]) -> None:
    df = pd.DataFrame({"n_clients": counts})
    with pytest.raises(ValueError):
        suppress(df, policy=K11)


def test_float_whole_counts_accepted() -> None:
    out = suppress(pd.DataFrame({"n_clients": [3.0, 40.0]}), policy=K11)
    assert kinds(out) == ["primary", "complementary"]


def test_missing_columns_rejected() -> None:
    df = table([3, 40])
    with pytest.raises(KeyError):
        suppress(df, policy=K11, n_col="clients")
    with pytest.raises(KeyError):
        suppress(df, policy=K11, partition_cols=["month"])
    with pytest.raises(KeyError):
        suppress(df, policy=K11, value_cols=["nope"])
    with pytest.raises(ValueError):
        suppress(df, policy=K11, partition_cols=["band"], value_cols=["band"])


# --------------------------------------------------------------------------------------------
# Totals, minimum cohort
# --------------------------------------------------------------------------------------------


def test_suppress_total() -> None:
    parts = table([20, 3, 40])
    # raw parts: one withheld part would be total minus the visible ones
    assert suppress_total(63, parts, policy=K11) is True
    assert suppress_total(63, table([20, 40]), policy=K11) is False
    # a small total is withheld anyway
    assert suppress_total(7, table([7]), policy=K11) is True
    assert suppress_total(0, table([0]), policy=K11) is False
    # after complementary suppression the total can stay
    assert suppress_total(63, suppress(parts, policy=K11), policy=K11) is False
    # primary only, two small parts adding up to fewer than k
    only = suppress(table([3, 4, 40]), policy=K11, complementary=False)
    assert suppress_total(47, only, policy=K11) is True
    only = suppress(table([5, 6, 40]), policy=K11, complementary=False)
    assert suppress_total(51, only, policy=K11) is False
    with pytest.raises(ValueError):
        suppress_total(30, suppress(table([5, 6, 40]), policy=K11, complementary=False), policy=K11)


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [
        (0, 11, False),
        (1, 11, True),
        (10, 11, True),
        (11, 11, False),
        (500, 11, False),
        (4, 5, True),
    ],
)
def test_cohort_too_small(n: int, k: int, expected: bool) -> None:
    assert cohort_too_small(n, PrivacyPolicy(k=k)) is expected


def test_cohort_too_small_rejects_negative() -> None:
    with pytest.raises(ValueError):
        cohort_too_small(-1, K11)


# --------------------------------------------------------------------------------------------
# Guard and display
# --------------------------------------------------------------------------------------------


def test_guard_raises_on_raw_small_cell() -> None:
    with pytest.raises(PrivacyError):
        assert_no_small_cells(table([20, 3]), policy=K11)
    assert_no_small_cells(table([0, 11, 40]), policy=K11)


def test_guard_accepts_suppressed_and_displayed() -> None:
    out = suppress(table([20, 3, 40, 15]), policy=K11)
    assert_no_small_cells(out, policy=K11)
    assert_no_small_cells(display_table(out, policy=K11, value_cols=["mean_srs"]), policy=K11)


def test_guard_rejects_marked_row_that_shows_count() -> None:
    out = suppress(table([20, 3, 40, 15]), policy=K11)
    out["n_clients"] = [20, 3, 40, 15]
    with pytest.raises(PrivacyError):
        assert_no_small_cells(out, policy=K11)


def test_guard_rejects_unknown_count_and_missing_column() -> None:
    with pytest.raises(PrivacyError):
        assert_no_small_cells(pd.DataFrame({"n_clients": [20, None]}), policy=K11)
    with pytest.raises(PrivacyError):
        assert_no_small_cells(pd.DataFrame({"x": [1]}), policy=K11)
    with pytest.raises(PrivacyError):
        assert_no_small_cells(pd.DataFrame({"n_clients": ["20", "7"]}), policy=K11)
    with pytest.raises(PrivacyError):
        assert_no_small_cells(pd.DataFrame({"n_clients": ["many"]}), policy=K11)


def test_display_table_marks_withheld_never_zero() -> None:
    df = table([20, 3, 40, 0, 15])
    df.loc[3, "mean_srs"] = np.nan
    df["rate"] = [0.25, 0.5, 0.125, np.nan, 0.0]
    out = suppress(df, policy=K11)
    shown = display_table(
        out,
        policy=K11,
        value_cols=["mean_srs", "rate", "n_sessions"],
        formats={"mean_srs": "{:.1f}", "rate": ".0%", "n_clients": "{:,}"},
    )
    assert "suppressed" not in shown.columns and "suppression" not in shown.columns
    assert shown["n_clients"].tolist() == ["20", "n < 11", "40", "0", "n < 11"]
    assert shown["mean_srs"].tolist() == ["30.0", "n < 11", "32.0", "", "n < 11"]
    assert shown["rate"].tolist() == ["25%", "n < 11", "12%", "", "n < 11"]
    assert shown["n_sessions"].tolist() == ["60", "n < 11", "120", "0", "n < 11"]
    assert shown["band"].tolist() == out["band"].tolist()
    assert out["suppressed"].tolist() == [False, True, False, False, True]  # input unchanged


def test_display_table_refuses_unsuppressed_small_cells() -> None:
    with pytest.raises(PrivacyError):
        display_table(table([20, 3]), policy=K11, value_cols=["mean_srs"])


# --------------------------------------------------------------------------------------------
# Formula injection
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "=cmd|' /C calc'!A0",
        "=1+1",
        "+1",
        "-2+3",
        "@SUM(A1:A2)",
        "\tx",
        "\r=1",
        "-",
        "-1e3",
        "- 5",
        "\uff1dSUM(A1)",
    ],
)
def test_neutralize_formula_quotes_payloads(payload: str) -> None:
    assert neutralize_formula(payload) == "'" + payload


@pytest.mark.parametrize(
    "value",
    ["plain", "", " =1", "n < 11", "a=b", "-0.12", "-12", "-1,234.5", "-12%", "'=x"],
)
def test_neutralize_formula_leaves_safe_strings(value: str) -> None:
    assert neutralize_formula(value) == value


@pytest.mark.parametrize("value", [-2, -2.5, 0, 3.25, np.int64(-4), np.float64(-1.5), None, True])
def test_neutralize_formula_leaves_numbers(value: object) -> None:
    result = neutralize_formula(value)
    assert result is value


def test_neutralize_frame() -> None:
    df = pd.DataFrame(
        {
            "=label": ["=cmd|' /C calc'!A0", "ok", None],
            "delta": [-2.0, -0.5, 1.0],
            "mixed": np.array(["@SUM(A1)", -3, "+1"], dtype=object),
            "cat": pd.Categorical(["-2+3", "x", "x"]),
            "n": [1, 2, 3],
        },
        index=pd.Index(["=a", "b", "c"], name="@idx"),
    )
    before = df.copy()
    out = neutralize_frame(df)
    pd.testing.assert_frame_equal(df, before)
    assert out.columns.tolist() == ["'=label", "delta", "mixed", "cat", "n"]
    assert out["'=label"].iloc[0] == "'=cmd|' /C calc'!A0"
    assert out["'=label"].iloc[1] == "ok"
    assert pd.isna(out["'=label"].iloc[2])
    assert out["'=label"].dtype == df["=label"].dtype
    assert out["delta"].tolist() == [-2.0, -0.5, 1.0]
    assert out["delta"].dtype == np.float64
    assert out["mixed"].tolist() == ["'@SUM(A1)", -3, "'+1"]
    assert out["cat"].tolist() == ["'-2+3", "x", "x"]
    assert out["n"].tolist() == [1, 2, 3]
    assert out.index.tolist() == ["'=a", "b", "c"]
    assert out.index.name == "'@idx"


def test_export_pipeline_keeps_negative_numbers_readable() -> None:
    df = table([20, 3, 40, 15])
    df["diff"] = [-0.12, 0.3, -1.5, 0.0]
    shown = neutralize_frame(
        display_table(suppress(df, policy=K11), policy=K11, value_cols=["diff"])
    )
    assert shown["diff"].tolist() == ["-0.12", "n < 11", "-1.50", "n < 11"]


# --------------------------------------------------------------------------------------------
# Properties on random tables
# --------------------------------------------------------------------------------------------


@st.composite
def random_tables(draw: st.DrawFn) -> tuple[pd.DataFrame, int]:
    k = draw(st.integers(2, 20))
    cells = draw(
        st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 60)), min_size=1, max_size=30)
    )
    index = draw(st.permutations(range(100, 100 + len(cells))))
    df = pd.DataFrame(
        {
            "part": [p for p, _ in cells],
            "n_clients": [n for _, n in cells],
            "mean": [float(n) / 3 + 0.5 for _, n in cells],
            "events": [n // 2 for _, n in cells],
        },
        index=pd.Index(index),
    )
    return df, k


def check_partition(n: np.ndarray, withheld: np.ndarray, k: int) -> None:
    count = int(withheld.sum())
    assert count == 0 or count == len(n) or (count >= 2 and int(n[withheld].sum()) >= k), (
        n.tolist(),
        withheld.tolist(),
        k,
    )


def check_common(df: pd.DataFrame, before: pd.DataFrame, out: pd.DataFrame, k: int) -> None:
    pd.testing.assert_frame_equal(df, before)  # (4) input unchanged
    assert out.index.equals(df.index)  # (5) no row dropped or reordered
    assert out["part"].tolist() == df["part"].tolist()
    n = df["n_clients"].to_numpy()
    withheld = out["suppressed"].to_numpy(dtype=bool)
    # (1) no visible cell has 0 < n < k; every small cell is primary
    shown = out["n_clients"]
    assert not ((shown > 0) & (shown < k)).fillna(False).any()
    assert (out["suppression"] == "primary").tolist() == ((n > 0) & (n < k)).tolist()
    assert (out["suppression"] != "").tolist() == withheld.tolist()
    # (3) withheld values are missing, visible values unchanged
    for col in ("n_clients", "mean", "events"):
        assert out[col][withheld].isna().all()
        assert (out[col][~withheld].to_numpy() == df[col][~withheld].to_numpy()).all()
    assert_no_small_cells(out, policy=PrivacyPolicy(k=k))


@settings(max_examples=80, deadline=None)
@given(random_tables())
def test_property_partitioned(case: tuple[pd.DataFrame, int]) -> None:
    df, k = case
    before = df.copy()
    out = suppress(df, policy=PrivacyPolicy(k=k), partition_cols=["part"])
    check_common(df, before, out, k)
    n = df["n_clients"].to_numpy()
    withheld = out["suppressed"].to_numpy(dtype=bool)
    for part in df["part"].unique():
        sel = (df["part"] == part).to_numpy()
        # (2) no single withheld value recoverable from the partition total
        check_partition(n[sel], withheld[sel], k)
        # complements only where the partition has a small cell
        if not ((n[sel] > 0) & (n[sel] < k)).any():
            assert not withheld[sel].any()


@settings(max_examples=50, deadline=None)
@given(random_tables())
def test_property_single_partition(case: tuple[pd.DataFrame, int]) -> None:
    df, k = case
    before = df.copy()
    out = suppress(df, policy=PrivacyPolicy(k=k))
    check_common(df, before, out, k)
    check_partition(df["n_clients"].to_numpy(), out["suppressed"].to_numpy(dtype=bool), k)


@settings(max_examples=50, deadline=None)
@given(random_tables())
def test_property_primary_only(case: tuple[pd.DataFrame, int]) -> None:
    df, k = case
    before = df.copy()
    policy = PrivacyPolicy(k=k)
    out = suppress(df, policy=policy, partition_cols=["part"], complementary=False)
    check_common(df, before, out, k)
    n = df["n_clients"].to_numpy()
    assert out["suppressed"].tolist() == ((n > 0) & (n < k)).tolist()


@st.composite
def grids(draw: st.DrawFn) -> tuple[pd.DataFrame, int]:
    k = draw(st.integers(2, 20))
    rows = draw(st.integers(1, 4))
    cols = draw(st.integers(1, 5))
    counts = draw(st.lists(st.integers(0, 60), min_size=rows * cols, max_size=rows * cols))
    df = pd.DataFrame(
        {
            "row": [r for r in range(rows) for _ in range(cols)],
            "col": [c for _ in range(rows) for c in range(cols)],
            "n_clients": counts,
            "rate": [c / 61 for c in counts],
        }
    )
    return df, k


@settings(max_examples=50, deadline=None)
@given(grids())
def test_property_two_way(case: tuple[pd.DataFrame, int]) -> None:
    df, k = case
    before = df.copy()
    out = suppress(
        df,
        policy=PrivacyPolicy(k=k),
        partition_cols=["row"],
        also_partition_by=[["col"]],
        value_cols=["rate"],
    )
    pd.testing.assert_frame_equal(df, before)
    assert len(out) == len(df)
    n = df["n_clients"].to_numpy()
    withheld = out["suppressed"].to_numpy(dtype=bool)
    assert out["rate"][withheld].isna().all()
    for axis in ("row", "col"):
        for key in df[axis].unique():
            sel = (df[axis] == key).to_numpy()
            check_partition(n[sel], withheld[sel], k)


@settings(max_examples=40, deadline=None)
@given(random_tables())
def test_property_display_never_shows_small_or_zero_for_withheld(
    case: tuple[pd.DataFrame, int],
) -> None:
    df, k = case
    policy = PrivacyPolicy(k=k)
    out = suppress(df, policy=policy, partition_cols=["part"])
    shown = display_table(out, policy=policy, value_cols=["mean", "events"])
    withheld = out["suppressed"].to_numpy(dtype=bool)
    for col in ("n_clients", "mean", "events"):
        assert (shown[col][withheld] == policy.label).all()
        assert (shown[col][~withheld] != policy.label).all()
    assert_no_small_cells(shown, policy=policy)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_property_neutralized_text_never_starts_a_formula(text: str) -> None:
    result = neutralize_formula(text)
    assert isinstance(result, str)
    assert result in (text, "'" + text)
    if result == text:
        assert not text.startswith(("=", "+", "@", "\t", "\r"))
        if text.startswith("-"):  # only a plain negative number may stay as it is
            rest = text[1:]
            assert rest[:1].isdigit() and set(rest) <= set("0123456789,.%")
