"""The Outcomes page's panel numbers, each a protected frame from its named query: the
improvement distribution (outcomes_distribution), the monthly rates (outcomes_monthly), the
trajectories by early-alliance third (outcomes_trajectory) and improvement by early-SRS group
(outcomes_alliance_bins). Counts carry their cell's noise, means and rates are formed from the
protected counts, intervals from those (alliance/protected.py). No figures and no sentences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance import privacy, protected, queries
from alliance.metrics.outcomes import SRS_RANGE, change_range, score_range
from alliance.panel import Context
from alliance.views.common import protect_counts

MAX_SESSION = 12  # trajectory: session numbers from 12 on are pooled as "12+"
BIN_WIDTH = 1.0  # improvement histogram: 1-point bins centred on whole points
# histogram end bins: every reliable deterioration in one bar (a rare outcome split into
# 1-point cells would mostly fall under the privacy threshold), improvements of 3 x the
# reliable change or more in another
TOP_FACTOR = 3
MAX_ALLIANCE_BINS = 10  # early-SRS tenths when there are enough episodes
EPISODES_PER_ALLIANCE_BIN = 40  # fewer groups for smaller selections
TERCILE_NAMES = {1: "Lowest third", 2: "Middle third", 3: "Highest third"}


# --------------------------------------------------------------------------- distribution


def distribution(ctx: Context, measure: str, rc: float) -> tuple[pd.DataFrame, float, float] | None:
    """Episodes by improvement bin and reliable-change band, protected, with the end bins'
    edges (lowest, highest); None when no episode has two scores."""
    lowest, highest = -rc, TOP_FACTOR * rc
    df = queries.run(
        ctx.con,
        "outcomes_distribution",
        **ctx.params(),
        measure=measure,
        reliable_change=rc,
        bin_width=BIN_WIDTH,
        lowest_bin=lowest,
        highest_bin=highest,
    )
    if df.empty:
        return None
    # Each band's cells add up to a headline count (and all cells to the total): partitioning
    # by band keeps >= 2 withheld cells of at least k clients in any band with a withheld cell,
    # which also protects the grand total. Counts carry their cell's noise; shares are of the
    # protected total.
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "episodes"],
        value_cols=["episodes"],
        partition_cols=["band"],
        n_key_from="episodes",
    )
    return safe, lowest, highest


def distribution_table(
    safe: pd.DataFrame, lowest: float, highest: float, total: float
) -> pd.DataFrame:
    """The suppressed cells as shown under the chart: bin label, band, counts and share."""
    labels = [
        f"≤ {b:g}" if b == lowest else f"≥ {b:g}" if b == highest else f"{b:g}" for b in safe["bin"]
    ]
    return pd.DataFrame(
        {
            "improvement_points": labels,
            "band": safe["band"],
            "n_clients": safe["n_clients"],
            "episodes": safe["episodes"],
            "share_of_episodes": safe["episodes"] / total if total else np.nan,
            "suppressed": safe["suppressed"],
        }
    )


# --------------------------------------------------------------------------- monthly rates


def monthly(ctx: Context, measure: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The months' exact counts as two frames of one shape (month, n_clients, n, n_cellkey and
    the events with their keys): improvement and deterioration over all outcome episodes, and
    recovery over those that started in the clinical range; None when there are none."""
    df = queries.run(
        ctx.con, "outcomes_monthly", **ctx.params(), **ctx.settings.outcome_params(measure)
    )
    if df.empty:
        return None
    events = ["reliable_improvement", "reliable_deterioration", "recovered", "reliably_recovered"]
    keys = [f"{c}_cellkey" for c in events]
    # improvement / deterioration over all outcome episodes of the month
    a = df.rename(columns={"outcome_n": "n", "outcome_n_cellkey": "n_cellkey"})[
        ["month", "n_clients", "n", "n_cellkey", *events[:2], *keys[:2]]
    ]
    # recovery over the month's episodes that started in the clinical range
    b = df.drop(columns="n_clients").rename(
        columns={
            "clinical_n": "n",
            "clinical_n_cellkey": "n_cellkey",
            "clinical_clients": "n_clients",
        }
    )[["month", "n_clients", "n", "n_cellkey", *events[2:], *keys[2:]]]
    return a, b


def monthly_lines(
    ctx: Context, frame: pd.DataFrame, rates: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.Series]]:
    """One monthly frame protected: the months (threshold, overlapping), each rate's line on its
    own (its numerator rule withholds only that line's month) in long form (month, rate_name,
    rate, low, high), and each line's protected events."""
    # the months' client threshold (a client may end two episodes: judged as overlapping);
    # then each line on its own: its numerator rule withholds only that line's month (a
    # rare deterioration does not take the month's improvement with it)
    safe = protect_counts(
        ctx,
        frame[["month", "n_clients", "n", "n_cellkey"]],
        counts=["n_clients", "n"],
        value_cols=["n"],
        n_key_from="n",
        overlapping=True,
    )
    months = pd.to_datetime(frame["month"])
    long_parts, lines = [], {}
    for col, name in rates.items():
        line = protect_counts(
            ctx,
            frame[["month", "n_clients", "n", col, "n_cellkey", f"{col}_cellkey"]],
            counts=["n_clients", "n", col],
            rates=[protected.Rate("rate", col, "n")],
            value_cols=["n", col, "rate"],
            n_key_from="n",
            overlapping=True,
        )
        low, high = protected.wilson(line[col], line["n"], ctx.noise)
        lines[col] = line[col]
        long_parts.append(
            pd.DataFrame(
                {
                    "month": months,
                    "rate_name": name,
                    "rate": line["rate"].to_numpy(dtype=float),
                    "low": low,
                    "high": high,
                }
            )
        )
    return safe, pd.concat(long_parts, ignore_index=True), lines


def monthly_table(safe: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """The protected monthly counts beside their rates and intervals (one row per month); a
    line's count, rate and interval are empty where its numerator rule withholds them."""
    out = safe.copy()
    out["month"] = pd.to_datetime(out["month"])
    for name, part in long.groupby("rate_name", sort=False):
        key = name.lower().replace(" ", "_")
        part = part.set_index("month")
        out[f"{key}_rate"] = out["month"].map(part["rate"]).to_numpy()
        out[f"{key}_low"] = out["month"].map(part["low"]).to_numpy()
        out[f"{key}_high"] = out["month"].map(part["high"]).to_numpy()
    out["month"] = out["month"].dt.strftime("%b %Y")
    return out


# --------------------------------------------------------------------------- trajectory


def trajectory(ctx: Context, measure: str) -> tuple[pd.DataFrame, dict, float, float] | None:
    """Mean score by session number for each early-SRS third, protected, with 95% intervals;
    the thirds' labels and the cut points (rounded); None when no episode qualifies."""
    df = queries.run(
        ctx.con,
        "outcomes_trajectory",
        **ctx.params(),
        measure=measure,
        max_session=MAX_SESSION,
    )
    if df.empty:
        return None
    # labels never carry a client's early SRS: cut points rounded to whole points, and only
    # between two thirds of at least k clients each (privacy.cut_point_labels)
    cut_low, cut_high = float(df["label_low"].iloc[0]), float(df["label_high"].iloc[0])
    third_clients = df.groupby("tercile")["tercile_clients"].max()
    names = dict(
        zip(
            (1, 2, 3),
            privacy.cut_point_labels(
                [f"{TERCILE_NAMES[1]} of early SRS", TERCILE_NAMES[2], TERCILE_NAMES[3]],
                [cut_low, cut_high],
                [int(third_clients.get(t, 0)) for t in (1, 2, 3)],
                policy=ctx.policy,
            ),
            strict=True,
        )
    )
    df = df.assign(
        group=df["tercile"].map(names),
        session=df["session_number"].map(lambda s: f"{s}+" if s >= MAX_SESSION else str(s)),
    )
    # the terciles split the episodes seen at one session number; counts carry their cell's
    # noise, means are formed from the protected sum and count, bands from those
    scores = score_range(measure)
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "episodes"],
        means=[protected.Mean("mean_score", "episodes", scores)],
        value_cols=["episodes", "mean_score", "sd_score"],
        partition_cols=["session_number"],
        n_key_from="episodes",
    )
    low, high = protected.mean_interval(
        safe["mean_score"], safe["sd_score"], safe["episodes"], scores, ctx.noise
    )
    one = pd.to_numeric(safe["episodes"]).to_numpy(dtype=float) < 2
    safe = safe.assign(low=np.where(one, np.nan, low), high=np.where(one, np.nan, high))
    return safe, names, cut_low, cut_high


# --------------------------------------------------------------------------- alliance bins


def alliance_bins(ctx: Context, measure: str, r_n: int) -> tuple[pd.DataFrame, int]:
    """Mean improvement of episodes grouped by early SRS (as many groups as the protected
    count `r_n` allows), protected, with 95% intervals and labels; and the number of groups."""
    bins = int(np.clip(r_n // EPISODES_PER_ALLIANCE_BIN, 2, MAX_ALLIANCE_BINS))
    fractions = [i / bins for i in range(1, bins)]
    df = queries.run(
        ctx.con,
        "outcomes_alliance_bins",
        **ctx.params(),
        measure=measure,
        fractions=fractions,
    )
    # the groups partition the episodes of the correlation; counts carry their cell's noise,
    # means are formed from the protected sums and counts, whiskers from those
    changes = change_range(measure)
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "episodes"],
        means=[
            protected.Mean("mean_early_srs", "episodes", SRS_RANGE),
            protected.Mean("mean_improvement", "episodes", changes),
        ],
        value_cols=["episodes", "mean_early_srs", "mean_improvement", "sd_improvement"],
        n_key_from="episodes",
    )
    low, high = protected.mean_interval(
        safe["mean_improvement"], safe["sd_improvement"], safe["episodes"], changes, ctx.noise
    )
    one = pd.to_numeric(safe["episodes"]).to_numpy(dtype=float) < 2
    safe = safe.assign(low=np.where(one, np.nan, low), high=np.where(one, np.nan, high))
    safe = safe.assign(group=bin_labels(ctx, safe, bins))
    return safe, bins


def r_withheld(ctx: Context, now: dict) -> bool:
    """The alliance-outcome r rests on fewer than k clients."""
    return not protected.all_have_enough_clients(ctx.policy, now["r_clients"])


PART_NAMES = {
    2: "half",
    3: "third",
    4: "quarter",
    5: "fifth",
    6: "sixth",
    7: "seventh",
    8: "eighth",
    9: "ninth",
    10: "tenth",
}


def bin_labels(ctx: Context, safe: pd.DataFrame, bins: int) -> list[str]:
    """The early-SRS groups' labels ("lowest tenth (up to ≈ 30)", "2nd tenth (≈ 30 to ≈ 32)",
    ...): cut points rounded to whole SRS points, named only between two groups that are shown
    with at least k clients each (privacy.cut_point_labels); never a client's value."""
    part = PART_NAMES.get(bins, "group")
    ordinal = {2: "2nd", 3: "3rd"}
    # tied scores at the top (SRS 40) merge the last groups: the last one there is the highest
    top = int(pd.to_numeric(safe["bin"]).max()) if len(safe) else bins
    names = [
        f"lowest {part}"
        if i == 1
        else f"highest {part}"
        if i >= top
        else f"{ordinal.get(i, f'{i}th')} {part}"
        for i in range(1, bins + 1)
    ]
    if bins == 2:
        names = ["lower half", "upper half"]
    by_bin = safe.set_index("bin")
    cuts: list[float | None] = []
    for j in range(1, bins):
        hi, lo = by_bin["label_high"].get(j), by_bin["label_low"].get(j + 1)
        value = hi if hi is not None and not pd.isna(hi) else lo
        cuts.append(None if value is None or pd.isna(value) else float(value))
    clients = [by_bin["n_clients"].get(i) for i in range(1, bins + 1)]
    labels = privacy.cut_point_labels(
        names,
        cuts,
        [0 if c is None or pd.isna(c) else int(c) for c in clients],
        policy=ctx.policy,
        withheld=[bool(by_bin["suppressed"].get(i, False)) for i in range(1, bins + 1)],
    )
    return [labels[int(b) - 1] for b in safe["bin"]]
