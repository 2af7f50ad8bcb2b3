"""Alliance profile: the alliance in the clinic's own terms, dimension by dimension.

The clinic talks about trust and feeling heard, goals set together and an approach that fits the
person. The alliance measures carry these as items (metrics.md "Alliance dimensions"): SRS
relationship / goals and topics / approach or method / overall (0-10), WAI-SR Bond / Goal / Task
(mean item 1-5). Every number here is a mean over episodes of each episode's mean item score in
the period, so a long episode counts once and the intervals rest on episodes, not sessions.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from scipy import stats as sps

from alliance import charts, noise, protected, queries
from alliance.charts.dimensions import (
    COLOURS,
    DIMENSIONS,
    LABELS,
    dot_figure,
    fit_layout,
    funnel_grid,
    gap_heatmap,
    strip_figure,
)
from alliance.filters import Filters
from alliance.panel import (
    Context,
    Panel,
    Tile,
    View,
    beyond_chance,
    delta_interval,
    empty_panel,
    se_from_ci,
    with_delta_rule,
)
from alliance.spc import funnel, overdispersion, pooled_sd
from alliance.stats import empirical_bayes_shrink
from alliance.views.common import (
    SMALL_N_NOTE,
    any_withheld,
    chosen_sections,
    gather,
    mark_all_withheld,
    n_text,
    noise_note,
    protect_comparison,
    protect_counts,
    subtitle,
    too_small_notice,
    withheld_note,
)

TITLE = "Alliance profile"
QUESTION = (
    "Which part of the alliance is weakest (feeling heard, working on the client's goals, an "
    "approach that fits), and for whom?"
)

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
# report builds them all. Each section's panels, and the groupings its query computes.
SECTIONS = {
    "where": "Sites, programs and months",
    "therapists": "Therapists",
    "background": "Client background",
}
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


def scale_text(ctx: Context) -> str:
    if ctx.filters.alliance_measure == "wai":
        return "WAI-SR subscale mean item score (1–5)"
    return "SRS item score (0–10)"


def items_caption(ctx: Context, dims: Iterable[str] | None = None) -> str:
    """'Felt heard and respected = SRS item “Relationship” …' for the chart captions."""
    names = item_names(ctx)
    return "; ".join(f"{LABELS[d]} = {names[d]}" for d in (dims or dimensions(ctx)))


def weighting_text() -> str:
    return "mean over episodes of each episode's mean item score in the period"


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
    return _with_intervals(df, f)


def _clinic_table(ctx: Context, filters: Filters | None = None) -> pd.DataFrame:
    """The 'clinic' rows of `profile_table` alone, from the cheaper queries/profile_clinic.sql."""
    f = filters or ctx.filters
    df = queries.run(ctx.con, "profile_clinic", **ctx.params(f), alliance=f.alliance_measure)
    return _with_intervals(df, f)


def _with_intervals(df: pd.DataFrame, f: Filters) -> pd.DataFrame:
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
        table = _clinic_table(ctx, filters)
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


def _with_gaps(groups: pd.DataFrame, clinic: pd.DataFrame) -> pd.DataFrame:
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


def _order(df: pd.DataFrame) -> pd.DataFrame:
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
        floor=ctx.policy.k,
    )


# --------------------------------------------------------------------------- panels


def _n_text(ctx: Context, clinic: pd.DataFrame) -> str:
    """The clinic's episodes with items recorded (the largest dimension), or the label."""
    if clinic.empty:
        return ""
    shown = protect_dims(ctx, clinic, complementary=False)
    return n_text(ctx, shown["episodes"].max(), "episodes", int(clinic["n_clients"].max()))


def _tiles(ctx: Context, clinic: pd.DataFrame, before: pd.DataFrame) -> list[Tile]:
    safe = protect_dims(ctx, clinic, complementary=False)
    before_shown = protect_dims(ctx, before, complementary=False)
    prev = before_shown.set_index("dimension")["mean_score"] if not before.empty else pd.Series()
    prev_ok = (
        before.set_index("dimension")["n_clients"] >= ctx.policy.k
        if not before.empty
        else pd.Series(dtype=bool)
    )
    names = item_names(ctx)
    tiles = []
    for _, row in _order(safe).iterrows():
        d = row["dimension"]
        value = None if pd.isna(row["mean_score"]) else float(row["mean_score"])
        delta = None
        significant = None
        if value is not None and d in prev.index and bool(prev_ok.get(d, False)):
            delta = value - float(prev[d])
            # the SE behind each period's shown 95% interval (widened for the noise)
            before_row = before_shown.set_index("dimension").loc[d]
            se_now = se_from_ci([row["low"], row["high"]]) if pd.notna(row["low"]) else None
            se_before = (
                se_from_ci([before_row["low"], before_row["high"]])
                if pd.notna(before_row["low"])
                else None
            )
            if se_now is not None and se_before is not None:
                significant = beyond_chance(
                    delta_interval("se", (value, se_now), (float(prev[d]), se_before), ctx.noise)
                )
        shown_n = ""
        if not row["suppressed"]:
            ci = f"95% CI {row['low']:.2f}–{row['high']:.2f} · " if pd.notna(row["low"]) else ""
            shown_n = f"{ci}n = {int(row['episodes']):,} episodes"
        tiles.append(
            Tile(
                key=f"dim_{d}",
                label=LABELS[d],
                value=value,
                fmt=".2f",
                n_text=shown_n,
                help=(
                    with_delta_rule(f"{names[d]}: {weighting_text()} ({scale_text(ctx)}).")
                    if delta is not None
                    else f"{names[d]}: {weighting_text()} ({scale_text(ctx)})."
                ),
                delta=delta,
                delta_significant=significant,
                delta_fmt="+.2f",
                higher_is_better=True,
                withheld=bool(row["suppressed"]),
            )
        )
    return tiles


def _side_by_side(
    ctx: Context, clinic: pd.DataFrame, by: pd.DataFrame, group_by: str, noun: str
) -> Panel:
    key, title = f"by_{group_by}", f"The alliance dimensions by {noun}"
    if by.empty:
        return empty_panel(key, title, f"No alliance items recorded for any {noun}.")
    rows = pd.concat([clinic.assign(unit="Whole clinic"), by], ignore_index=True)
    # the clinic row is the total of the others: never withheld by the partition rule
    whole = protect_dims(ctx, rows.iloc[: len(clinic)], complementary=False)
    parts = protect_dims(
        ctx, rows.iloc[len(clinic) :].reset_index(drop=True), partition_cols=["dimension"]
    )
    safe = pd.concat([whole, parts], ignore_index=True)
    cats = ["Whole clinic", *sorted(by["unit"].unique())]
    fig = dot_figure(
        safe,
        category="unit",
        value="mean_score",
        low="low",
        high="high",
        title=title,
        subtitle_text=subtitle(
            ctx,
            f"{scale_text(ctx)}, {weighting_text()}",
            "95% CI",
            n_text=_n_text(ctx, clinic),
        ),
        axis_label="Mean item score",
        horizontal=False,
        suppressed_label=ctx.policy.label,
        categories=cats,
    )
    table = safe[
        ["unit", "label", "n_clients", "episodes", "mean_score", "low", "high", "suppressed"]
    ].rename(columns={"unit": noun, "label": "dimension"})
    return Panel(
        key=key,
        title=title,
        subtitle="",
        reading=(
            f"Each dot is a dimension's mean for the {noun}, with its 95% interval. Compare "
            f"colours within a {noun} to see its weakest part, and the same colour across "
            f"{noun}s to see where a part is weaker. {items_caption(ctx)}. {SMALL_N_NOTE}"
            + noise_note(ctx)
            + withheld_note(ctx, safe)
        ),
        figure=fig,
        data=table,
        withheld=any_withheld(safe),
    )


def _weakest(ctx: Context, clinic: pd.DataFrame, by_site: pd.DataFrame, by_prog: pd.DataFrame):
    key, title = "weakest", "Which dimension is weakest, for whom"
    parts = []
    clinic_shown = protect_dims(ctx, clinic, complementary=False)
    for kind, df in (("Site", by_site), ("Program", by_prog)):
        if df.empty:
            continue
        # gaps from the protected means and counts (withheld cells have none)
        safe_part = protect_dims(
            ctx, df.reset_index(drop=True).assign(kind=kind), partition_cols=["kind", "dimension"]
        )
        parts.append(_with_gaps(safe_part, clinic_shown))
    if not parts:
        return empty_panel(key, title, "No alliance items recorded in this selection.")
    safe = pd.concat(parts, ignore_index=True)
    safe["row"] = safe["kind"] + ": " + safe["unit"].astype(str)
    # weakest = the most negative gap from the clinic's own mean of that dimension
    shown = safe[safe["gap"].notna()]
    # weakest: the row's lowest dimension among those clearly below the clinic (CI below 0)
    below = shown[shown["gap_high"] < 0]
    idx = below.groupby("row")["gap"].idxmin()
    safe["weakest"] = safe.index.isin(idx.to_numpy())
    rows = list(dict.fromkeys(safe["row"]))
    dims = dimensions(ctx)
    fig = gap_heatmap(
        safe,
        rows=rows,
        dims=dims,
        title=title,
        subtitle_text=subtitle(
            ctx,
            f"{scale_text(ctx)}: site or program mean minus the clinic's mean of the same "
            "dimension (points)",
            "* = 95% CI excludes 0",
            n_text=_n_text(ctx, clinic),
        ),
        suppressed_label=ctx.policy.label,
    )
    weakest = safe[safe["weakest"]]
    summary = "; ".join(
        f"{r}: {LABELS[d]}" for r, d in zip(weakest["row"], weakest["dimension"], strict=True)
    )
    table = safe[
        [
            "kind",
            "unit",
            "label",
            "n_clients",
            "episodes",
            "mean_score",
            "gap",
            "gap_low",
            "gap_high",
            "weakest",
            "suppressed",
        ]
    ].rename(columns={"label": "dimension"})
    return Panel(
        key=key,
        title=title,
        subtitle="",
        reading=(
            "Each cell is how far a site's or program's mean lies above (blue) or below "
            "(orange-red) the clinic's own mean of that dimension; * marks a gap whose 95% "
            "interval excludes zero, ◀ the row's lowest such dimension below the clinic. "
            "Items differ in level everywhere "
            "(approach usually scores lowest), so the comparison is with the clinic's value "
            "of the same item. Small gaps without * are noise. "
            + (
                f"Clearly below the clinic: {summary}."
                if summary
                else "No site or program is clearly below the clinic on any dimension."
            )
            + withheld_note(ctx, safe)
            + noise_note(ctx)
        ),
        figure=fig,
        data=table,
        withheld=any_withheld(safe),
    )


def _monthly(ctx: Context, monthly: pd.DataFrame, clinic: pd.DataFrame) -> Panel:
    key, title = "by_month", "The alliance dimensions by month"
    if monthly.empty:
        return empty_panel(key, title, "No alliance items recorded in this selection.")
    # a dimension's months add up to its administrations (the subtitle's total): one partition
    # per dimension, so a withheld month cannot be recovered by subtraction
    # an episode is rated in many months: a withheld set is judged by its largest month
    safe = protect_dims(ctx, monthly, partition_cols=["dimension"], overlapping=True)
    safe = _order(safe).assign(month=pd.to_datetime(safe["unit"]))
    safe = safe.sort_values(["month"], kind="stable")
    fig = charts.lines(
        _order(safe),
        x="month",
        y="mean_score",
        group="label",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            f"{scale_text(ctx)}, episodes' mean item score within each calendar month",
            "95% CI band",
            n_text=n_text(
                ctx,
                protect_dims(ctx, clinic, complementary=False)["administrations"].max(),
                "administrations",
                int(clinic["n_clients"].max()),
            ),
        ),
        x_label="Month",
        y_label="Mean item score",
        value_format="num2",
        scale="wai" if ctx.filters.alliance_measure == "wai" else "srs_item",
    )
    fit_layout(fig)
    if safe["mean_score"].isna().all():
        mark_all_withheld(fig, ctx, "month")
    for tr in fig.data:
        name = getattr(tr, "name", None)
        for d in DIMENSIONS:
            if name == LABELS[d]:
                tr.line.color = COLOURS[d]
                tr.marker.color = COLOURS[d]
    # colour the bands like their lines (bands come just before their line)
    traces = list(fig.data)
    for i, tr in enumerate(traces[:-1]):
        if getattr(tr, "fill", None) == "toself":
            tr.fillcolor = traces[i + 1].line.color
    table = safe[
        ["unit", "label", "n_clients", "episodes", "mean_score", "low", "high", "suppressed"]
    ].rename(columns={"unit": "month", "label": "dimension"})
    return Panel(
        key=key,
        title=title,
        subtitle="",
        reading=(
            "One line per dimension; bands are 95% intervals. Lines moving together mean the "
            "whole alliance moved; one line moving alone points at that part. Month-to-month "
            "wiggles inside the bands are noise." + withheld_note(ctx, safe) + noise_note(ctx)
        ),
        figure=fig,
        data=table,
        withheld=any_withheld(safe),
    )


def _funnels(ctx: Context, clinic: pd.DataFrame, by_ther: pd.DataFrame) -> list[Panel]:
    """One panel: a funnel plot per dimension, side by side (small multiples)."""
    key, title = "funnel_dimensions", "The alliance dimensions by therapist"
    if not ctx.therapist_level:
        return [
            empty_panel(key, title, "Therapist-level comparisons are not available for your role.")
        ]
    if by_ther.empty:
        return [empty_panel(key, title, "No therapist has alliance items recorded.")]
    names = therapist_labels(by_ther["unit"], ctx, by_ther.groupby("unit")["episodes"].max())
    # the target is the clinic's protected mean; the points protected means against protected
    # numbers of episodes; σ pools the SDs of the therapists shown
    clinic_shown = protect_dims(ctx, clinic, complementary=False)
    ref = clinic_shown[~clinic_shown["suppressed"]].set_index("dimension")
    safe = protect_dims(ctx, by_ther, partition_cols=["dimension"])
    funnels, tables, sigmas, methods = [], [], [], set()
    for d in dimensions(ctx):
        part_safe = safe[safe["dimension"] == d]
        shown = part_safe[part_safe["mean_score"].notna()]
        sigma = (
            pooled_sd(shown["sd_score"].astype(float), shown["episodes"].astype(float))
            if len(shown)
            else float("nan")
        )
        if d not in ref.index or len(shown) < 2 or not np.isfinite(sigma) or sigma <= 0:
            continue
        target = float(ref.loc[d, "mean_score"])
        pts, lim, info = funnel(
            pd.DataFrame(
                {
                    "unit": shown["unit"].map(names),
                    "n": shown["episodes"].astype(float),
                    "value": shown["mean_score"].astype(float),
                }
            ),
            kind="mean",
            target=target,
            sigma=sigma,
            method=ctx.settings.overdispersion,
        )
        funnels.append(
            {
                "name": f"“{LABELS[d]}”",
                "points": pts,
                "limits": lim,
                "target": target,
                "x_label": "Episodes",
                "y_label": "Mean item score",
                "value_format": "num2",
            }
        )
        sigmas.append(f"{sigma:.2f}")
        methods.add(info["method_used"])
        flags = pts.set_index("unit")["flag"]
        t = part_safe.assign(therapist=part_safe["unit"].map(names))
        tables.append(t.assign(flag=t["therapist"].map(flags)))
    if not funnels:
        return [
            empty_panel(
                key,
                title,
                f"Fewer than two therapists with at least {ctx.policy.k} clients: no funnel.",
            )
        ]
    widened = sorted(m for m in methods if m != "none")
    od = (
        f"limits widened for overdispersion ({', '.join(widened)}) where significant"
        if widened
        else "no significant overdispersion"
    )
    n_shown = pd.concat([f["points"]["unit"] for f in funnels]).nunique()
    fig = funnel_grid(
        funnels,
        title=title,
        subtitle_text=subtitle(
            ctx,
            f"{scale_text(ctx)}, {weighting_text()}",
            "95% and 99.8% limits μ0 ± z·σ/√n around the clinic's mean",
            "σ = pooled within-therapist SD, by panel " + " / ".join(sigmas),
            od,
            n_text=n_text(
                ctx,
                clinic_shown["episodes"].max(),
                "episodes",
                int(clinic["n_clients"].max()),
            )
            + f", {n_shown} therapists shown",
        ),
    )
    table = pd.concat(tables, ignore_index=True)[
        ["label", "therapist", "n_clients", "episodes", "mean_score", "flag", "suppressed"]
    ].rename(columns={"label": "dimension"})
    flagged = table[table["flag"].notna() & (table["flag"] != "within")]
    by_ther = flagged.groupby("therapist", sort=True)
    outside = (
        "Outside the 95% limits: "
        + "; ".join(
            f"{t} on "
            + ", ".join(
                f"“{d}” ({f.split()[0]})" for d, f in zip(g["dimension"], g["flag"], strict=True)
            )
            for t, g in by_ther
        )
        + ". "
        if len(flagged)
        else "No therapist lies outside the 95% limits. "
    )
    return [
        Panel(
            key=key,
            title=title,
            subtitle="",
            reading=(
                "One funnel per dimension. Each dot is a therapist's mean against their number of "
                "episodes; the line is the clinic's mean, the funnels are 95% and 99.8% limits. "
                "Dots inside the funnel differ from the clinic by no more than chance would; "
                f"this is not a ranking. {outside}Who a therapist sees (case mix) is not "
                f"adjusted for. {items_caption(ctx)}." + withheld_note(ctx, safe) + noise_note(ctx)
            ),
            figure=fig,
            data=table,
            withheld=any_withheld(safe),
        )
    ]


def _demographic_gaps(ctx: Context, clinic: pd.DataFrame, scores: pd.DataFrame) -> list[Panel]:
    panels = []
    for attr, label in DEMOGRAPHICS.items():
        key, title = f"gap_{attr}", f"The alliance dimensions by {label.lower()}"
        df = dimension_scores(ctx, attr, table=scores)
        if df.empty:
            panels.append(
                empty_panel(key, title, "No alliance items recorded.", SECTIONS["background"])
            )
            continue
        # gaps from the protected means and counts (withheld cells have none)
        safe = _with_gaps(
            protect_dims(ctx, df, partition_cols=["dimension"]),
            protect_dims(ctx, clinic, complementary=False),
        )
        cats = sorted(safe["unit"].unique(), key=lambda u: (u in NOT_A_GROUP, u))
        fig = dot_figure(
            safe,
            category="unit",
            value="gap",
            low="gap_low",
            high="gap_high",
            title=title,
            subtitle_text=subtitle(
                ctx,
                f"Group mean minus clinic-wide mean of the same dimension ({scale_text(ctx)})",
                "95% CI",
                n_text=_n_text(ctx, clinic),
            ),
            axis_label="Points above (+) or below (−) the clinic-wide value",
            horizontal=True,
            reference=0.0,
            reference_label="clinic-wide",
            suppressed_label=ctx.policy.label,
            value_format="+.2f",
            categories=cats,
        )
        table = safe[
            [
                "unit",
                "label",
                "n_clients",
                "episodes",
                "mean_score",
                "gap",
                "gap_low",
                "gap_high",
                "suppressed",
            ]
        ].rename(columns={"unit": label.lower(), "label": "dimension"})
        panels.append(
            Panel(
                key=key,
                title=title,
                subtitle="",
                reading=(
                    "Each dot is how far a group's mean lies from the clinic-wide value of the "
                    "same dimension, with its 95% interval; an interval crossing the dotted line "
                    "is no clear difference. A gap on “Approach fit me” but not on “Felt heard” "
                    "suggests the way of working, not the relationship, fits that group less. "
                    "Groups differ in other ways too: an association, not a cause."
                    + withheld_note(ctx, safe)
                    + noise_note(ctx)
                ),
                figure=fig,
                data=table,
                withheld=any_withheld(safe),
                section=SECTIONS["background"],
            )
        )
    return panels


def therapist_gaps(ctx: Context, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each demographic group's gap within each therapist's caseload, shrunken (unsuppressed).

    For therapist t and group g: raw gap = mean of t's g-episodes - mean of t's other episodes
    (episode means of the dimension). Its sampling variance is s^2 (1/n_g + 1/n_rest) with s^2
    the pooled within-cell variance, i.e. s^2 / n_eff with n_eff = 1 / (1/n_g + 1/n_rest);
    stats.empirical_bayes_shrink pulls each raw gap toward the n_eff-weighted average gap by
    tau2 / (tau2 + s^2 / n_eff), so small caseloads say little. Heterogeneity between therapists
    is Cochran's Q about the precision-weighted mean (spc.overdispersion without winsorising).

    Columns: attribute, group, dimension, therapist, n_clients (the therapist's clients with the
    dimension recorded: group_clients + rest_clients), group_clients, rest_clients, n_group,
    n_rest (episodes), raw_gap, shrunk, centre, tau, p_value. A row compares two groups of
    clients, so the privacy step judges it by both (`common.protect_comparison`).
    """
    cols = [
        "attribute",
        "group",
        "dimension",
        "therapist",
        "n_clients",
        "group_clients",
        "rest_clients",
        "n_group",
        "n_rest",
        "raw_gap",
        "shrunk",
        "centre",
        "tau",
        "p_value",
    ]
    if table is None:
        table = profile_table(ctx, groupings=SECTION_GROUPINGS["therapists"])
    totals = dimension_scores(ctx, "therapist", table=table).set_index(["unit", "dimension"])
    out = []
    for attr in DEMOGRAPHICS:
        cells = dimension_scores(ctx, "therapist", attr, table=table)
        cells = cells[~cells["subgroup"].isin(NOT_A_GROUP)]
        if cells.empty:
            continue
        tot = totals.reindex(pd.MultiIndex.from_frame(cells[["unit", "dimension"]]))
        n_t = tot["episodes"].to_numpy(dtype=float)
        sum_t = n_t * tot["mean_score"].to_numpy(dtype=float)
        n_g = cells["episodes"].to_numpy(dtype=float)
        n_r = n_t - n_g
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_r = (sum_t - n_g * cells["mean_score"].to_numpy(dtype=float)) / n_r
            raw = cells["mean_score"].to_numpy(dtype=float) - mean_r
            n_eff = np.where((n_g > 0) & (n_r > 0), 1 / (1 / n_g + 1 / n_r), 0.0)
        clients_all = tot["n_clients"].to_numpy(dtype=float)
        clients_group = cells["n_clients"].to_numpy(dtype=float)
        frame = pd.DataFrame(
            {
                "attribute": attr,
                "group": cells["subgroup"].to_numpy(),
                "dimension": cells["dimension"].to_numpy(),
                "therapist": cells["unit"].to_numpy(),
                "n_clients": clients_all,
                "group_clients": clients_group,
                "rest_clients": (clients_all - clients_group).clip(0),
                "n_group": n_g,
                "n_rest": n_r,
                "raw_gap": np.where(n_r > 0, raw, np.nan),
                "n_eff": n_eff,
            }
        )
        # within-cell variance of episode means, pooled per dimension (items differ in spread)
        s2_by_dim = {
            d: pooled_sd(part["sd_score"], part["episodes"]) ** 2
            for d, part in cells.groupby("dimension")
        }
        # per group and dimension (groups in order of first appearance, as a groupby with
        # sort=False iterates them): the shrunken gaps and the heterogeneity test
        raw_all, n_eff_all = frame["raw_gap"].to_numpy(), frame["n_eff"].to_numpy()
        shrunk = np.full(len(frame), np.nan)
        centre, tau, p = (np.full(len(frame), np.nan) for _ in range(3))
        order = []
        groups = frame.groupby(["group", "dimension"], sort=False).indices
        for (_, dim), idx in sorted(groups.items(), key=lambda kv: kv[1][0]):
            order.append(idx)
            s2 = s2_by_dim[dim]
            ok = n_eff_all[idx] > 0
            if ok.sum() >= 2 and np.isfinite(s2) and s2 > 0:
                y, n = raw_all[idx][ok], n_eff_all[idx][ok]
                shrunk[idx[ok]] = empirical_bayes_shrink(y, n, s2)
                centre[idx] = float(np.sum(n * y) / n.sum())
                w = n / s2
                od = overdispersion(y, float(np.sum(w * y) / w.sum()), np.sqrt(s2 / n), winsor=0)
                tau[idx], p[idx] = float(np.sqrt(od.tau2)), float(od.p_value)
        rows = np.concatenate(order)
        out.append(
            frame.drop(columns="n_eff")
            .assign(shrunk=shrunk, centre=centre, tau=tau, p_value=p)
            .iloc[rows]
        )
    if not out:
        return pd.DataFrame(columns=cols)
    df = pd.concat(out, ignore_index=True)
    for col in ("n_clients", "group_clients", "rest_clients"):
        df[col] = df[col].astype("int64")
    return df[cols]


def _therapist_gap_panel(ctx: Context, scores: pd.DataFrame) -> Panel:
    key, title = "therapist_gaps", "Does a group's gap differ between therapists?"
    if not ctx.therapist_level:
        return empty_panel(
            key, title, "Therapist-level comparisons are not available for your role."
        )
    # the gaps are formed from protected means and numbers of episodes (the clients stay exact:
    # the comparison's privacy step judges the row by them); the clients shown are protected
    shown_scores = perturbed_dims(ctx, scores)
    df = therapist_gaps(ctx, shown_scores)
    if df.empty:
        return empty_panel(key, title, "Not enough alliance items recorded by group.")
    # a row compares the group's clients with the rest of the caseload: withheld when either
    # side has 1 .. k-1 clients, or the group is the whole caseload and has fewer than k
    safe = protect_comparison(
        ctx,
        df,
        first="group_clients",
        second="rest_clients",
        value_cols=["n_group", "n_rest", "raw_gap", "shrunk", "centre", "tau", "p_value"],
        partition_cols=["attribute", "group", "dimension"],
    )
    safe["n_clients"] = _shown_therapist_clients(ctx, shown_scores, safe)
    visible = safe[safe["shrunk"].notna()]
    if visible.empty:
        return empty_panel(
            key,
            title,
            f"No therapist has at least {ctx.policy.k} clients both in and outside a group, so "
            "no within-caseload gap can be shown.",
            section=SECTIONS["therapists"],
        )
    names = therapist_labels(df["therapist"], ctx, df.groupby("therapist")["n_rest"].max())
    visible = visible.assign(
        row=visible["attribute"].map(DEMOGRAPHICS) + ": " + visible["group"],
        therapist=visible["therapist"].map(names),
    )
    pairs = visible.drop_duplicates(["attribute", "group"])  # one row label per pair
    rows = list(
        dict.fromkeys(
            pairs.sort_values(["attribute", "group"], key=lambda s: s.map(_attr_rank))["row"]
        )
    )
    centres = visible.drop_duplicates(["row", "dimension"])[["row", "dimension", "centre"]]
    stats_rows = visible.drop_duplicates(["row", "dimension"])
    differ = stats_rows[stats_rows["p_value"] < 0.05]
    differ_text = (
        "Gaps that differ between therapists (p < .05): "
        + "; ".join(
            f"{r} on “{LABELS[d]}” (between-therapist SD {t:.2f})"
            for r, d, t in zip(differ["row"], differ["dimension"], differ["tau"], strict=True)
        )
        + "."
        if len(differ)
        else "No group's gap differs clearly between therapists (no p < .05)."
    )
    fig = strip_figure(
        visible,
        centres,
        rows=rows,
        title=title,
        subtitle_text=subtitle(
            ctx,
            f"Group mean minus the same therapist's other clients ({scale_text(ctx)}), "
            "empirical-Bayes shrunken",
            f"therapists with ≥ {ctx.policy.k} clients in and outside the group",
            n_text=f"{visible['therapist'].nunique()} therapists shown",
        ),
        axis_label="Gap within a therapist's caseload (points)",
    )
    table = safe.assign(therapist=safe["therapist"].map(names))[
        [
            "attribute",
            "group",
            "dimension",
            "therapist",
            "n_clients",
            "n_group",
            "raw_gap",
            "shrunk",
            "tau",
            "p_value",
            "suppressed",
        ]
    ]
    return Panel(
        key=key,
        title=title,
        subtitle="",
        reading=(
            "Each short tick is one therapist: how their clients in the group rate that "
            "dimension compared with their other clients, shrunk toward the average gap (the "
            "diamond) in proportion to how little data the therapist has, so a few clients "
            "cannot make an extreme. Ticks bunched at the diamond: the gap is much the same with "
            f"every therapist; spread out: it depends on the therapist. {differ_text} With "
            f"{len(stats_rows)} group-and-dimension tests, about one in twenty crosses p < .05 "
            "by chance alone." + withheld_note(ctx, safe) + noise_note(ctx)
        ),
        figure=fig,
        data=table,
        withheld=any_withheld(safe),
        section=SECTIONS["therapists"],
    )


def _shown_therapist_clients(ctx: Context, scores: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    """The therapist's clients with the dimension recorded (a gap row's `n_clients`) as shown:
    the count with its cell's noise (key derived from the episodes' key), withheld rows NA."""
    tot = scores[scores["grouping"] == "therapist"]
    keys = noise.derived_key(tot["episodes_cellkey"].to_numpy(dtype="float64"), "n_clients")
    shown = noise.perturb_counts(
        tot["n_clients"].to_numpy(dtype="float64"), keys, ctx.noise, ctx.policy.k
    )
    lookup = pd.Series(shown, index=pd.MultiIndex.from_frame(tot[["unit", "dimension"]]))
    got = lookup.reindex(pd.MultiIndex.from_frame(rows[["therapist", "dimension"]])).to_numpy()
    out = pd.Series(got, index=rows.index).round().astype("Int64")
    return out.mask(rows["suppressed"].to_numpy(dtype=bool))


def _attr_rank(s: object) -> object:
    order = list(DEMOGRAPHICS)
    return order.index(s) if s in order else s


# --------------------------------------------------------------------------- view


def sections(ctx: Context) -> dict[str, str]:
    """The sections this role may see (therapist comparisons need therapist-level access)."""
    return {k: v for k, v in SECTIONS.items() if k != "therapists" or ctx.therapist_level}


def _where_panels(ctx: Context, clinic: pd.DataFrame, table: pd.DataFrame) -> list[Panel]:
    """The section on sites, programs and months."""
    by_site = dimension_scores(ctx, "site", table=table)
    by_prog = dimension_scores(ctx, "program", table=table)
    by_prog = by_prog[~by_prog["unit"].isin(NOT_A_GROUP)]
    monthly = dimension_scores(ctx, "month", table=table)
    where = [
        _side_by_side(ctx, clinic, by_site, "site", "site"),
        _weakest(ctx, clinic, by_site, by_prog),
        _side_by_side(ctx, clinic, by_prog, "program", "program"),
        _monthly(ctx, monthly, clinic),
    ]
    return [dataclasses.replace(p, section=SECTIONS["where"]) for p in where]


def _therapist_panels(ctx: Context, clinic: pd.DataFrame, table: pd.DataFrame) -> list[Panel]:
    """The section on therapists: the funnels and the gaps within caseloads."""
    by_ther = dimension_scores(ctx, "therapist", table=table)
    return [
        dataclasses.replace(p, section=SECTIONS["therapists"])
        for p in (*_funnels(ctx, clinic, by_ther), _therapist_gap_panel(ctx, table))
    ]


def build(ctx: Context, section: str | None = None) -> View:
    """The page's view: the tiles and one section's panels, or with section=None every
    section's (a report)."""
    chosen = chosen_sections(SECTIONS, section)
    groupings = [
        g
        for s in chosen
        for g in SECTION_GROUPINGS[s]
        if ctx.therapist_level or not g.startswith("therapist")
    ]
    table = profile_table(ctx, groupings=groupings)
    clinic = dimension_scores(ctx, "clinic", table=table)
    n_clients = int(clinic["n_clients"].max()) if len(clinic) else 0
    if n_clients < ctx.policy.k:
        if n_clients == 0:
            what = "WAI-SR" if ctx.filters.alliance_measure == "wai" else "SRS item"
            return View(
                TITLE,
                QUESTION,
                notice=(
                    f"No {what} scores in this selection: alliance dimensions need item-level "
                    "scores, which only some sites record. Widen the period, clear a filter, or "
                    "switch the alliance measure."
                ),
            )
        return View(TITLE, QUESTION, notice=too_small_notice(ctx, n_clients), n_clients=n_clients)
    sections_built: list[Callable[[], list[Panel]]] = []
    if "where" in chosen:
        sections_built.append(lambda: _where_panels(ctx, clinic, table))
    if "therapists" in chosen:
        sections_built.append(lambda: _therapist_panels(ctx, clinic, table))
    if "background" in chosen:
        sections_built.append(lambda: _demographic_gaps(ctx, clinic, table))
    # the previous period's clinic means (the tiles' change) are queried while the panels are
    # built in Python: the period's query has had both cores to itself
    before, *built = gather(
        lambda: dimension_scores(ctx, "clinic", filters=ctx.filters.previous_period()),
        *sections_built,
    )
    panels = [p for part in built for p in part]
    return View(
        TITLE,
        QUESTION,
        tiles=_tiles(ctx, clinic, before),
        panels=panels,
        n_clients=n_clients,
    )
