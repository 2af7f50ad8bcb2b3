"""Ruptures & repair numbers: rupture and repair counts for the clinic and by month, site and
therapist (queries/rupture_rates.sql), the headline figures exactly as metrics.md defines them,
and the protected step the page's figures pass (the panels' numbers are
alliance.metrics.ruptures_panels).

Definitions (metrics.md "Rupture" and "Repair", settings rupture_threshold and repair_window):
a rupture is an SRS total at least `rupture_threshold` points below the same episode's previous
SRS; it is repaired when one of the next `repair_window` SRS administrations of the episode is at
or above that previous SRS; unrepaired when the window passes, or the episode ends, without one;
still open otherwise, and open ruptures are left out of the repair rate.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from alliance import noise, privacy, protected, queries
from alliance.filters import Filters
from alliance.panel import Context, beyond_chance, delta_interval
from alliance.stats import wilson_interval
from alliance.views.common import protect

UNITS = ("month", "site", "therapist")
# The units the rupture counts of each of the page's sections need.
SECTION_UNITS = {"time": ("month",), "units": ("site", "therapist"), "after": ()}
GROUP_LABELS = {
    "none": "No rupture",
    "repaired": "Ruptures, all repaired",
    "unrepaired": "At least one unrepaired",
}
RATE_COLS = [
    "administrations",
    "with_previous",
    "ruptures",
    "repaired",
    "unrepaired",
    "open",
    "fate_known",
    "fate_clients",
    "rupture_rate",
    "repair_rate",
]
# The protected-statistics step (alliance/protected.py): the counts of queries/rupture_rates.sql
# that carry a cell key, its two rates, and the client counts whose keys are derived from a
# count of the same records (noise.derived_key: no query sums distinct keys).
KEY = protected.KEY_SUFFIX
RATE_COUNTS = [
    "administrations",
    "with_previous",
    "ruptures",
    "repaired",
    "unrepaired",
    "open",
    "fate_known",
]
CLIENT_KEYS = {"n_clients": "with_previous", "fate_clients": "fate_known"}
RUPTURE_RATE = protected.Rate("rupture_rate", "ruptures", "with_previous")
REPAIR_RATE = protected.Rate("repair_rate", "repaired", "fate_known")
# record ranges of the protected means (alliance/noise.py: the sum noise is a share of one
# record's range): an SRS item's drop (twice the item's 0-10 range), an episode's attended
# sessions and its ruptures (the demo clinic's longest episodes have about 50 sessions)
ITEM_DROP_RANGE = 20.0
SESSIONS_RANGE = 50.0


def rupture_params(ctx: Context) -> dict[str, object]:
    return {
        "rupture_threshold": float(ctx.settings.rupture_threshold),
        "repair_window": int(ctx.settings.repair_window),
    }


# --------------------------------------------------------------------------- data


def rupture_table(
    ctx: Context, filters: Filters | None = None, *, groupings: Iterable[str] = UNITS
) -> pd.DataFrame:
    """Rupture and repair counts for the clinic and per month, site and therapist (those of
    `groupings`; () = the clinic row only), in one query.

    Unsuppressed: pass what you show through `protect`. Columns as in
    queries/rupture_rates.sql (grouping, unit, n_clients, administrations, with_previous,
    ruptures, repaired, unrepaired, open, fate_known, fate_clients, rupture_rate, repair_rate).
    """
    chosen = list(groupings)
    unknown = set(chosen) - set(UNITS)
    if unknown:
        raise ValueError(f"unknown groupings {sorted(unknown)}")
    return queries.run(
        ctx.con, "rupture_rates", **ctx.params(filters), **rupture_params(ctx), groupings=chosen
    )


def rupture_counts(
    ctx: Context,
    group_by: str = "clinic",
    filters: Filters | None = None,
    *,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The rows of one unit ('clinic', 'month', 'site', 'therapist') of `rupture_table`."""
    if group_by not in ("clinic", "month", "site", "therapist"):
        raise ValueError(f"unknown unit {group_by!r}")
    if table is None:
        table = rupture_table(ctx, filters, groupings=() if group_by == "clinic" else (group_by,))
    part = table[table["grouping"] == group_by].drop(columns="grouping")
    return part.reset_index(drop=True)


def rupture_summary(
    ctx: Context, filters: Filters | None = None, *, table: pd.DataFrame | None = None
) -> dict[str, object]:
    """The headline rupture and repair figures, exactly as metrics.md defines them.

    Keys: rupture_rate_per_100 (ruptures per 100 SRS administrations that have a previous SRS
    in the episode), repair_rate (repaired / (repaired + unrepaired), open ruptures left out),
    repair_rate_ci (Wilson 95%, [low, high]), ruptures, repaired, unrepaired, open,
    with_previous, n_clients (clients the rupture rate describes), fate_clients (clients the
    repair rate describes), rupture_threshold, repair_window. Rates are None when their
    denominator is 0. Unsuppressed: a caller that shows them applies the privacy rule with the
    two client counts.
    """
    df = rupture_counts(ctx, "clinic", filters, table=table)
    row = df.iloc[0] if len(df) else None

    def count(col: str) -> int:
        return 0 if row is None or pd.isna(row[col]) else int(row[col])

    with_prev, ruptures = count("with_previous"), count("ruptures")
    repaired, unrepaired = count("repaired"), count("unrepaired")
    known = repaired + unrepaired
    ci = None
    if known:
        low, high = wilson_interval(repaired, known)
        ci = [float(low[0]), float(high[0])]
    return {
        "rupture_rate_per_100": 100.0 * ruptures / with_prev if with_prev else None,
        "repair_rate": repaired / known if known else None,
        "repair_rate_ci": ci,
        "ruptures": ruptures,
        "repaired": repaired,
        "unrepaired": unrepaired,
        "open": count("open"),
        "with_previous": with_prev,
        "n_clients": count("n_clients"),
        "fate_clients": count("fate_clients"),
        "rupture_threshold": float(ctx.settings.rupture_threshold),
        "repair_window": int(ctx.settings.repair_window),
    }


def with_client_keys(df: pd.DataFrame) -> pd.DataFrame:
    """rupture_table rows with the cell keys of their two client counts, derived from the key of
    the count of the same records (n_clients from with_previous, fate_clients from fate_known)."""
    return df.assign(
        **{
            f"{c}{KEY}": noise.derived_key(df[f"{src}{KEY}"].to_numpy(dtype="float64"), c)
            for c, src in CLIENT_KEYS.items()
        }
    )


def perturbed_rows(ctx: Context, df: pd.DataFrame) -> pd.DataFrame:
    """rupture_table rows as they may be shown: every count (the two client counts too) with its
    cell's noise (never below k), the two rates from the protected counts, the numerator rule
    judged on the exact counts (``rupture_rule``, ``repair_rule``: True = that rate is
    withheld), and the exact client counts kept, for judging only, as ``exact_n_clients`` and
    ``exact_fate_clients``. No key column."""
    least = protected.min_clients(ctx.policy)
    raw = with_client_keys(df)
    shown = protected.perturb(
        raw,
        params=ctx.noise,
        counts=[*RATE_COUNTS, *CLIENT_KEYS],
        rates=[RUPTURE_RATE, REPAIR_RATE],
        floor=least,
    )
    shown = shown.assign(
        rupture_rule=protected.numerator_rule(raw, [RUPTURE_RATE], least),
        repair_rule=protected.numerator_rule(raw, [REPAIR_RATE], least),
        exact_n_clients=df["n_clients"].to_numpy(),
        exact_fate_clients=df["fate_clients"].to_numpy(),
    )
    return shown.drop(columns=protected.key_columns(shown))


def protected_summary(ctx: Context, table: pd.DataFrame) -> dict[str, object]:
    """The clinic row of a rupture_table as the page may show it (``perturbed_rows``): counts
    protected, rupture_rate_per_100 and repair_rate from protected counts (None when their
    denominator is 0 or the numerator rule withholds them), repair_rate_ci from protected counts
    (widened for the noise); exact_n_clients, exact_fate_clients, exact_unrepaired and
    exact_open only to judge the threshold (never shown).
    """
    df = rupture_counts(ctx, "clinic", table=table)
    if df.empty:
        zero = dict.fromkeys([*RATE_COUNTS, *CLIENT_KEYS], 0)
        return {
            **zero,
            "exact_n_clients": 0,
            "exact_fate_clients": 0,
            "exact_unrepaired": 0,
            "exact_open": 0,
            "rupture_rate_per_100": None,
            "repair_rate": None,
            "repair_rate_ci": None,
            "rupture_rule": False,
            "repair_rule": False,
        }
    row = perturbed_rows(ctx, df).iloc[0]
    out: dict[str, object] = {c: int(row[c]) for c in [*RATE_COUNTS, *CLIENT_KEYS]}
    out.update(
        exact_n_clients=int(row["exact_n_clients"]),
        exact_fate_clients=int(row["exact_fate_clients"]),
        exact_unrepaired=int(df["unrepaired"].iloc[0]),
        exact_open=int(df["open"].iloc[0]),
        rupture_rule=bool(row["rupture_rule"]),
        repair_rule=bool(row["repair_rule"]),
    )
    rate_ok = out["with_previous"] > 0 and not out["rupture_rule"]
    repair_ok = out["fate_known"] > 0 and not out["repair_rule"]
    out["rupture_rate_per_100"] = 100.0 * float(row["rupture_rate"]) if rate_ok else None
    out["repair_rate"] = float(row["repair_rate"]) if repair_ok else None
    ci = None
    if repair_ok:
        low, high = protected.wilson(
            pd.Series([out["repaired"]]), pd.Series([out["fate_known"]]), ctx.noise
        )
        ci = [float(low[0]), float(high[0])]
    out["repair_rate_ci"] = ci
    return out


def tile_figures(ctx: Context, now: dict, before: dict) -> dict[str, object]:
    """What the four tiles may show, from `protected_summary` of the period (`now`) and of
    the previous one (`before`); the exact client counts only judge the threshold.

    Keys: rate_ok, repair_ok (the rate may be shown), withheld (per tile key 'rate', 'repair',
    'unrepaired', 'open': True = withheld), rate_delta, repair_delta (None when not shown) and
    rate_significant, repair_significant (the change is beyond chance: the 95% interval of the
    difference of the two periods' rates, protected counts with the noise's variance, excludes
    zero; None when unknown).
    """
    policy = ctx.policy
    rate_ok = (
        privacy.statistic_released(policy, now["exact_n_clients"])
        and now["rupture_rate_per_100"] is not None
    )
    repair_ok = (
        privacy.statistic_released(policy, now["exact_fate_clients"])
        and now["repair_rate"] is not None
    )
    prev_rate_ok = privacy.statistic_released(policy, before["exact_n_clients"])
    prev_repair_ok = privacy.statistic_released(policy, before["exact_fate_clients"])
    # a count of ruptures describes at most that many clients: the unrepaired and open counts
    # are withheld below k like any other small count (judged on the exact counts)
    unrepaired_clients = min(
        now["exact_fate_clients"], now["exact_unrepaired"] or now["exact_fate_clients"]
    )
    open_clients = min(now["exact_n_clients"], now["exact_open"] or now["exact_n_clients"])
    raw = pd.DataFrame(
        {
            "key": ["rate", "repair", "unrepaired", "open"],
            "n_clients": [
                now["exact_n_clients"],
                now["exact_fate_clients"],
                unrepaired_clients,
                open_clients,
            ],
        }
    )
    safe = protect(ctx, raw, value_cols=[], complementary=False)
    withheld = dict(zip(safe["key"], safe["suppressed"], strict=True))
    # the numerator rule: a rate with 1 .. k-1 events or non-events is withheld
    withheld["rate"] = bool(withheld["rate"]) or (
        now["exact_n_clients"] > 0 and now["rupture_rule"]
    )
    withheld["repair"] = bool(withheld["repair"]) or (
        now["exact_fate_clients"] > 0 and now["repair_rule"]
    )

    def delta(key: str, ok: bool) -> float | None:
        a, b = now[key], before[key]
        return None if a is None or b is None or not ok else a - b

    def significant(key: str, n_key: str, per: float, ok: bool) -> bool | None:
        if delta(key, ok) is None:
            return None
        return beyond_chance(
            delta_interval(
                "rate",
                (now[key] / per, now[n_key]),
                (before[key] / per, before[n_key]),
                ctx.noise,
            )
        )

    rate_both, repair_both = prev_rate_ok and rate_ok, prev_repair_ok and repair_ok
    return {
        "rate_ok": rate_ok,
        "repair_ok": repair_ok,
        "withheld": withheld,
        "rate_delta": delta("rupture_rate_per_100", rate_both),
        "repair_delta": delta("repair_rate", repair_both),
        "rate_significant": significant("rupture_rate_per_100", "with_previous", 100.0, rate_both),
        "repair_significant": significant("repair_rate", "fate_known", 1.0, repair_both),
    }
