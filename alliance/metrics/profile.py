"""Alliance profile numbers: the dimension means (feeling heard, goals, approach, overall) by
site, program, month, therapist and client background, their gaps from the clinic's own value,
and the protected step they pass before anything is shown.

Every number is a mean over episodes of each episode's mean item score in the period
(metrics.md "Alliance dimensions"), so a long episode counts once and the intervals rest on
episodes, not sessions. The therapist comparisons are in `alliance.metrics.profile_therapists`.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats as sps

from alliance import noise, protected, queries
from alliance.filters import Filters
from alliance.metrics.dimensions import DIMENSIONS, LABELS
from alliance.panel import Context
from alliance.views.common import protect_counts

SRS_ITEMS = {
    "heard": "SRS item “Relationship” (felt heard, understood and respected)",
    "goals": "SRS item “Goals and topics”",
    "approach": "SRS item “Approach or method”",
    "overall": "SRS item “Overall”",
}
WAI_ITEMS = {
    "heard": "WAI-SR Bond subscale (items 3, 5, 7, 9)",
    "goals": "WAI-SR Goal subscale (items 4, 6, 8, 11)",
    "approach": "WAI-SR Task subscale (items 1, 2, 10, 12)",
}
GROUP_BYS = (
    "clinic",
    "site",
    "program",
    "therapist",
    "month",
    "age_band",
    "gender",
    "race_ethnicity",
)
DEMOGRAPHICS = {"race_ethnicity": "Race/ethnicity", "age_band": "Age band", "gender": "Gender"}
ALL_GROUPINGS = (*GROUP_BYS[1:], *(f"therapist/{d}" for d in DEMOGRAPHICS))
# The page shows one section at a time (a filter change builds only the section in view); a
# report builds them all. The groupings each section's query computes.
SECTION_GROUPINGS = {
    "where": ("site", "program", "month"),
    "therapists": ("therapist", *(f"therapist/{d}" for d in DEMOGRAPHICS)),
    "background": tuple(DEMOGRAPHICS),
}
NOT_A_GROUP = {"unknown", "(no program)"}
DIM_COUNTS = ["n_clients", "episodes", "administrations"]
DIM_VALUES = ["mean_score", "sd_score", "low", "high", "episodes", "administrations"]
Z95 = 1.959963984540054


# --------------------------------------------------------------------------- definitions


def dimensions(ctx: Context) -> tuple[str, ...]:
    """The dimensions of the chosen instrument (WAI-SR has no 'overall' item)."""
    return DIMENSIONS[:3] if ctx.filters.alliance_measure == "wai" else DIMENSIONS


def item_names(ctx: Context) -> dict[str, str]:
    return WAI_ITEMS if ctx.filters.alliance_measure == "wai" else SRS_ITEMS


def therapist_labels(codes: Iterable[str], ctx: Context, volume: pd.Series | None = None) -> dict:
    """Display names for therapist codes: the codes, or in meeting mode A, B, C… (by volume).

    The letters are assigned per view, largest caseload first, so a screen shared in a meeting
    shows no codes.
    """
    # a Series has one row per unit and dimension: its distinct codes first (in order)
    codes = list(dict.fromkeys(codes.unique() if isinstance(codes, pd.Series) else codes))
    if not ctx.meeting_mode:
        return {c: c for c in codes}
    if volume is not None:
        order = sorted(codes, key=lambda c: (-float(volume.get(c, 0)), c))
    else:
        order = sorted(codes)
    letters = list(string.ascii_uppercase)
    names = letters + [a + b for a in letters for b in letters]
    return {c: f"Therapist {names[i]}" for i, c in enumerate(order)}


# --------------------------------------------------------------------------- data


def profile_table(
    ctx: Context, filters: Filters | None = None, *, groupings: Iterable[str] | None = None
):
    """The dimension means of several groupings in one query (unsuppressed: pass what you show
    through `protect`).

    Columns: grouping ('clinic', 'site', 'program', 'therapist', 'month', 'age_band',
    'gender', 'race_ethnicity', 'therapist/<demographic>'), unit, subgroup, dimension, label,
    n_clients, episodes, administrations, mean_score, sd_score, low, high (95% t interval over
    episodes; NaN with one episode). `groupings`: those to compute besides 'clinic' (always
    there); None = all of them (ALL_GROUPINGS).
    """
    f = filters or ctx.filters
    chosen = ALL_GROUPINGS if groupings is None else tuple(groupings)
    unknown = set(chosen) - set(ALL_GROUPINGS) - {"clinic"}
    if unknown:
        raise ValueError(f"unknown groupings {sorted(unknown)}")
    df = queries.run(
        ctx.con,
        "profile_dimensions",
        **ctx.params(f),
        alliance=f.alliance_measure,
        groupings=[g for g in chosen if g != "clinic"],
    )
    return with_intervals(df, f)


def clinic_table(ctx: Context, filters: Filters | None = None) -> pd.DataFrame:
    """The 'clinic' rows of `profile_table` alone, from the cheaper queries/profile_clinic.sql."""
    f = filters or ctx.filters
    df = queries.run(ctx.con, "profile_clinic", **ctx.params(f), alliance=f.alliance_measure)
    return with_intervals(df, f)


def with_intervals(df: pd.DataFrame, f: Filters) -> pd.DataFrame:
    """The instrument's dimensions, with label and the 95% t interval over episodes; the
    administrations' cell key derived from the episodes' (the same records: the queries need
    not sum a second key, noise.derived_key)."""
    keep = DIMENSIONS[:3] if f.alliance_measure == "wai" else DIMENSIONS
    df = df[df["dimension"].isin(keep)].reset_index(drop=True)
    df["administrations_cellkey"] = noise.derived_key(
        df["episodes_cellkey"].to_numpy(dtype="float64"), "administrations"
    )
    n = df["episodes"].to_numpy(dtype=float)
    # the t quantile once per distinct number of episodes (tens of thousands of rows share a
    # few thousand values)
    sizes, which = np.unique(n, return_inverse=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sizes >= 2, sps.t.ppf(0.975, np.maximum(sizes - 1, 1)), np.nan)[which]
        half = t * df["sd_score"].to_numpy(dtype=float) / np.sqrt(n)
    return df.assign(
        label=df["dimension"].map(LABELS),
        low=df["mean_score"] - half,
        high=df["mean_score"] + half,
    )


def dimension_scores(
    ctx: Context,
    group_by: str = "clinic",
    subgroup_by: str = "none",
    filters: Filters | None = None,
    *,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Dimension means per unit of one grouping (unsuppressed), from `table` if given.

    group_by: one of GROUP_BYS; subgroup_by: 'none', or a demographic with group_by
    'therapist'. Columns as `profile_table` without 'grouping'.
    """
    key = group_by if subgroup_by == "none" else f"{group_by}/{subgroup_by}"
    if group_by not in GROUP_BYS or (
        subgroup_by != "none" and (group_by != "therapist" or subgroup_by not in DEMOGRAPHICS)
    ):
        raise ValueError(f"unknown grouping {group_by!r} / {subgroup_by!r}")
    if table is None and key == "clinic":
        table = clinic_table(ctx, filters)
    if table is None:
        table = profile_table(ctx, filters, groupings=(key,))
    # the query returns the rows ordered by grouping: one grouping's rows are a slice (no
    # copy of the text columns, which a boolean mask would take row by row)
    rows = np.flatnonzero((table["grouping"] == key).to_numpy())
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        part = table.iloc[rows[0] : rows[-1] + 1]
    else:
        part = table.iloc[rows]
    return part.drop(columns="grouping").reset_index(drop=True)


def gap_vs_overall(
    mean_g: np.ndarray,
    sd_g: np.ndarray,
    n_g: np.ndarray,
    mean_all: float,
    sd_all: float,
    n_all: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Difference between a group's mean and the overall mean that includes it, with a 95% CI.

    The rest of the clinic is recovered from the totals (n_r = N - n_g, its mean and SD from
    the sums and sums of squares); the gap is (1 - w)(mean_g - mean_rest) with w = n_g / N and
    SE (1 - w) sqrt(sd_g^2 / n_g + sd_rest^2 / n_rest) (normal approximation, as
    stats.risk_difference_vs_overall does for rates). Returns (gap, low, high); the interval
    is NaN where either side has fewer than 2 observations; a group that is the whole clinic
    has gap 0.
    """
    mg, sg, ng = (np.asarray(a, dtype=float) for a in (mean_g, sd_g, n_g))
    sg = np.nan_to_num(sg, nan=0.0)
    nr = n_all - ng
    sum_all, sum_g = n_all * mean_all, ng * mg
    sq_all = (n_all - 1) * sd_all**2 + n_all * mean_all**2
    sq_g = (ng - 1) * sg**2 + ng * mg**2
    with np.errstate(divide="ignore", invalid="ignore"):
        mr = (sum_all - sum_g) / nr
        var_r = np.clip((sq_all - sq_g - nr * mr**2) / (nr - 1), 0, None)
        w = ng / n_all
        gap = np.where(nr > 0, (1 - w) * (mg - mr), 0.0)
        se = (1 - w) * np.sqrt(sg**2 / ng + var_r / nr)
    ok = (ng >= 2) & (nr >= 2)
    low = np.where(ok, gap - Z95 * se, np.nan)
    high = np.where(ok, gap + Z95 * se, np.nan)
    low = np.where(nr == 0, 0.0, low)
    high = np.where(nr == 0, 0.0, high)
    return gap, low, high


def with_gaps(groups: pd.DataFrame, clinic: pd.DataFrame) -> pd.DataFrame:
    """Add gap, gap_low, gap_high (group mean - clinic-wide mean of the same dimension)."""
    ref = clinic.set_index("dimension")
    out = []
    for dim, part in groups.groupby("dimension", sort=False):
        if dim not in ref.index:
            continue
        r = ref.loc[dim]
        gap, low, high = gap_vs_overall(
            part["mean_score"].to_numpy(),
            part["sd_score"].to_numpy(),
            part["episodes"].to_numpy(),
            float(r["mean_score"]),
            float(r["sd_score"]),
            float(r["episodes"]),
        )
        # a withheld cell (no mean) has no gap either
        none = part["mean_score"].isna().to_numpy()
        gap, low, high = (np.where(none, np.nan, a) for a in (gap, low, high))
        out.append(part.assign(gap=gap, gap_low=low, gap_high=high))
    if not out:
        return groups.assign(gap=np.nan, gap_low=np.nan, gap_high=np.nan)
    return pd.concat(out, ignore_index=True)


def order_dims(df: pd.DataFrame) -> pd.DataFrame:
    rank = {d: i for i, d in enumerate(DIMENSIONS)}
    return (
        df.assign(_r=df["dimension"].map(rank))
        .sort_values(["_r"], kind="stable")
        .drop(columns="_r")
    )


def record_range(ctx: Context) -> float:
    """One record's range (the scale of a sum's noise): SRS item 0-10, WAI-SR mean item 1-5."""
    return 4.0 if ctx.filters.alliance_measure == "wai" else 10.0


def protect_dims(
    ctx: Context,
    df: pd.DataFrame,
    *,
    partition_cols: Iterable[str] = (),
    complementary: bool = True,
    overlapping: bool = False,
    extra_values: Iterable[str] = (),
) -> pd.DataFrame:
    """Dimension rows of `profile_table` through the protected-statistics step: clients,
    episodes and administrations with their cell's noise, the mean from the protected episodes
    (and its sum's noise), withheld cells (threshold, complements) masked, the 95% interval
    recomputed from the protected mean and n (widened for the noise); no key column leaves."""
    if df.empty:
        return df.drop(columns=protected.key_columns(df)).assign(
            suppressed=pd.Series(dtype=bool), suppression=pd.Series(dtype=object)
        )
    safe = protect_counts(
        ctx,
        df,
        counts=DIM_COUNTS,
        means=[protected.Mean("mean_score", "episodes", record_range(ctx))],
        value_cols=[*DIM_VALUES, *extra_values],
        partition_cols=list(partition_cols),
        complementary=complementary,
        n_key_from="episodes",
        overlapping=overlapping,
    )
    low, high = protected.mean_interval(
        safe["mean_score"], safe["sd_score"], safe["episodes"], record_range(ctx), ctx.noise
    )
    many = pd.to_numeric(safe["episodes"]).fillna(0).to_numpy() >= 2
    return safe.assign(
        low=np.where(many, low, np.nan),
        high=np.where(many, high, np.nan),
        episodes=pd.to_numeric(safe["episodes"]).round().astype("Int64"),
        administrations=pd.to_numeric(safe["administrations"]).round().astype("Int64"),
    )


def perturbed_dims(ctx: Context, df: pd.DataFrame) -> pd.DataFrame:
    """Dimension rows with protected episodes, administrations and means but nothing withheld
    and exact `n_clients` (for statistics formed from protected parts whose own privacy step
    judges them by their clients, e.g. `therapist_gaps`); the keys are kept for the caller."""
    if df.empty:
        return df
    return protected.perturb(
        df,
        params=ctx.noise,
        counts=["episodes", "administrations"],
        means=[protected.Mean("mean_score", "episodes", record_range(ctx))],
        floor=protected.min_clients(ctx.policy),
    )
