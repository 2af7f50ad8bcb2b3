"""Alliance profile numbers, panel by panel: the tiles' means and changes, the dimensions side by
side, the weakest dimension per site and program, the months and the client-background gaps, each
as the protected frame the page shows (alliance.metrics.profile holds the tables they read)."""

from __future__ import annotations

import pandas as pd

from alliance import protected
from alliance.metrics.profile import (
    NOT_A_GROUP,
    order_dims,
    protect_dims,
    with_gaps,
)
from alliance.panel import Context, beyond_chance, delta_interval, se_from_ci


def clinic_shown(ctx: Context, clinic: pd.DataFrame) -> pd.DataFrame:
    """The clinic rows as shown (the total of every partition: never withheld by one)."""
    return protect_dims(ctx, clinic, complementary=False)


def tile_rows(ctx: Context, clinic: pd.DataFrame, before: pd.DataFrame) -> list[dict]:
    """Per dimension (in the dimensions' order): the protected row of the period (`row`), its
    mean (`value`, None when withheld), the change from the previous period's protected mean
    (`delta`, None when not shown) and whether the change is beyond chance (`significant`)."""
    safe = clinic_shown(ctx, clinic)
    before_shown = clinic_shown(ctx, before)
    prev = before_shown.set_index("dimension")["mean_score"] if not before.empty else pd.Series()
    prev_ok = (
        pd.Series(
            protected.enough_clients_rows(before["n_clients"], ctx.policy),
            index=before["dimension"].to_numpy(),
        )
        if not before.empty
        else pd.Series(dtype=bool)
    )
    out = []
    for _, row in order_dims(safe).iterrows():
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
        out.append({"row": row, "value": value, "delta": delta, "significant": significant})
    return out


def side_by_side_rows(ctx: Context, clinic: pd.DataFrame, by: pd.DataFrame) -> pd.DataFrame:
    """The clinic ('Whole clinic') and each unit of `by`, protected: the clinic row is the
    total of the others, never withheld by the partition rule; the units one partition per
    dimension."""
    rows = pd.concat([clinic.assign(unit="Whole clinic"), by], ignore_index=True)
    whole = protect_dims(ctx, rows.iloc[: len(clinic)], complementary=False)
    parts = protect_dims(
        ctx, rows.iloc[len(clinic) :].reset_index(drop=True), partition_cols=["dimension"]
    )
    return pd.concat([whole, parts], ignore_index=True)


def weakest_rows(
    ctx: Context, clinic: pd.DataFrame, by_site: pd.DataFrame, by_prog: pd.DataFrame
) -> pd.DataFrame | None:
    """Sites and programs (`kind`, `row` = 'Site: …') protected, with their gap from the
    clinic's mean of the same dimension and `weakest` (the row's lowest dimension among those
    clearly below the clinic, CI below 0); None when neither has rows."""
    parts = []
    shown = clinic_shown(ctx, clinic)
    for kind, df in (("Site", by_site), ("Program", by_prog)):
        if df.empty:
            continue
        # gaps from the protected means and counts (withheld cells have none)
        safe_part = protect_dims(
            ctx, df.reset_index(drop=True).assign(kind=kind), partition_cols=["kind", "dimension"]
        )
        parts.append(with_gaps(safe_part, shown))
    if not parts:
        return None
    safe = pd.concat(parts, ignore_index=True)
    safe["row"] = safe["kind"] + ": " + safe["unit"].astype(str)
    # weakest = the most negative gap from the clinic's own mean of that dimension
    gaps = safe[safe["gap"].notna()]
    # weakest: the row's lowest dimension among those clearly below the clinic (CI below 0)
    below = gaps[gaps["gap_high"] < 0]
    idx = below.groupby("row")["gap"].idxmin()
    safe["weakest"] = safe.index.isin(idx.to_numpy())
    return safe


def monthly_rows(ctx: Context, monthly: pd.DataFrame) -> pd.DataFrame:
    """The months protected, in the dimensions' order and by month (`month` a timestamp)."""
    # a dimension's months add up to its administrations (the subtitle's total): one partition
    # per dimension, so a withheld month cannot be recovered by subtraction
    # an episode is rated in many months: a withheld set is judged by its largest month
    safe = protect_dims(ctx, monthly, partition_cols=["dimension"], overlapping=True)
    safe = order_dims(safe).assign(month=pd.to_datetime(safe["unit"]))
    return safe.sort_values(["month"], kind="stable")


def background_gap_rows(ctx: Context, clinic: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """A demographic's groups protected, with their gap from the clinic-wide value."""
    # gaps from the protected means and counts (withheld cells have none)
    return with_gaps(
        protect_dims(ctx, df, partition_cols=["dimension"]),
        clinic_shown(ctx, clinic),
    )


def background_order(safe: pd.DataFrame) -> list[str]:
    """The groups in order, 'unknown' last."""
    return sorted(safe["unit"].unique(), key=lambda u: (u in NOT_A_GROUP, u))
