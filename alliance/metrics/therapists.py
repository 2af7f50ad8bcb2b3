"""The Therapists page's numbers: therapist funnels (dropout rate, early alliance, case-mix
adjusted improvement) and the therapist share of outcome variance (ICC).

Every therapist point describes that therapist's clients, so it passes the protected-statistics
step (alliance/protected.py) with all therapists of the funnel as one partition (their episodes
add up to the clinic-wide value drawn as the target): withheld therapists (threshold, numerator
rule, complements) are marked and left out of the funnel; counts carry their cell's noise, rates
and means come from protected counts, and the target and limits from protected values. The
ICC rests on the therapists with at least k clients and is released by
`privacy.statistic_released`; `therapist_icc_outcome` (the exact clinic-level figure that
`summary` prints) is not protected.

The funnels compare a therapist with all therapists: `comparison_context` drops the therapist
filter. No Plotly, no prose: alliance/views/therapists.py draws and words these.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from alliance import noise, privacy, protected, queries, spc, stats
from alliance.panel import Context
from alliance.settings import MEASURES
from alliance.views.common import gather, protect, protect_counts

SRS_RANGE = 40.0  # one record's range (the scale of a sum's noise): SRS total 0-40
WAI_RANGE = 4.0  # WAI-SR mean item 1-5

# why a funnel has nothing to draw (the view words each)
NO_UNITS = "no_units"  # no therapist with data
NO_SPREAD = "no_spread"  # σ not estimable
TOO_FEW = "too_few"  # fewer than two therapists
NONE_SHOWN = "none_shown"  # every therapist withheld, or no target
SALT = "Therapists"  # the view's part of the meeting labels' salt


def therapist_icc_outcome(ctx: Context, measure: str = "ors") -> stats.ICC:
    """Therapist share of variance in `measure` improvement: improvement ~ intake + (1 | therapist).

    Over ended episodes finished in the period with >= 2 administrations, under the context's
    filters as given (a therapist filter leaves one therapist: the ICC is then NaN, method
    "none"). A clinic-level number: it discloses no single therapist.
    """
    rows = queries.run_rows(ctx.con, "therapists_outcome_episodes", **ctx.params(), measure=measure)
    return stats.therapist_icc(rows["improvement"], rows["intake"], rows["therapist"])


def comparison_context(ctx: Context) -> Context:
    """The context the funnels use: every filter except the therapist (all are compared)."""
    if ctx.filters.therapist is None:
        return ctx
    return dataclasses.replace(ctx, filters=dataclasses.replace(ctx.filters, therapist=None))


def dropout_table(cmp: Context) -> tuple[pd.DataFrame, int]:
    """The exact dropout table by therapist and the clinic (`therapists_dropout`) and the
    clinic's exact clients (to judge the page's minimum cohort)."""
    dropout = queries.run(cmp.con, "therapists_dropout", **cmp.params())
    clinic = dropout[dropout["is_clinic"]]
    return dropout, int(clinic["n_clients"].iloc[0]) if len(clinic) else 0


def episode_tables(ctx: Context, cmp: Context) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(outcome episodes, early alliance by therapist), queried side by side."""
    return tuple(  # type: ignore[return-value]
        gather(
            lambda: queries.run_rows(
                ctx.con,
                "therapists_outcome_episodes",
                **cmp.params(),
                measure=ctx.filters.outcome_measure,
            ),
            lambda: queries.run(
                ctx.con,
                "therapists_alliance",
                **cmp.params(),
                alliance=ctx.filters.alliance_measure,
            ),
        )
    )


def protected_dropout(ctx: Context, df: pd.DataFrame) -> pd.DataFrame:
    """The dropout table as it may be shown: the therapists as one partition, the clinic row
    on its own (its total is shown beside them); counts with their cell's noise, the rate from
    protected counts, withheld rows (threshold, numerator rule, complements) with `suppressed`.
    Exact client counts are kept in `true_clients` for the threshold of totals only."""
    spec = {
        "counts": ["n_clients", "ended", "dropouts"],
        "rates": [protected.Rate("dropout_rate", "dropouts", "ended")],
        "value_cols": ["ended", "dropouts", "dropout_rate"],
        "n_key_from": "ended",
    }
    cols = ["is_clinic", "therapist", "n_clients", "ended", "dropouts", "dropout_rate"]
    cols += ["ended_cellkey", "dropouts_cellkey"]
    ther = df[~df["is_clinic"]][cols].reset_index(drop=True)
    clinic = df[df["is_clinic"]][cols].reset_index(drop=True)
    parts = []
    if len(ther):
        parts.append(protect_counts(ctx, ther, **spec).assign(true_clients=ther["n_clients"]))
    parts.append(
        protect_counts(ctx, clinic, complementary=False, **spec).assign(
            true_clients=clinic["n_clients"]
        )
    )
    return pd.concat(parts, ignore_index=True)


def therapist_count(ctx: Context, dropout: pd.DataFrame) -> tuple[int, int]:
    """(therapists with ended episodes, the clinic's exact clients) from the protected dropout
    table, the count passed through the threshold step with the clinic's clients."""
    ther = dropout[~dropout["is_clinic"]]
    clinic_clients = int(dropout.loc[dropout["is_clinic"], "true_clients"].iloc[0])
    raw = pd.DataFrame(
        {"key": ["therapists"], "n_clients": [clinic_clients], "value": [float(len(ther))]}
    )
    protect(ctx, raw, value_cols=["value"], complementary=False)
    return len(ther), clinic_clients


def _big(ctx: Context, rows: pd.DataFrame) -> pd.DataFrame:
    """The episodes of the therapists with at least k clients."""
    return rows[protected.at_least_k(ctx.policy, rows["therapist_clients"])]


def released_icc(ctx: Context, rows: pd.DataFrame) -> stats.ICC:
    """The page's therapist ICC: over the therapists with at least k clients, so that every
    group it rests on has k (privacy.statistic_released); NaN when fewer than two remain."""
    big = _big(ctx, rows)
    groups = big.groupby("therapist")["therapist_clients"].first()
    if len(groups) < 2 or not privacy.statistic_released(ctx.policy, *map(int, groups)):
        return stats.therapist_icc(
            big["improvement"].iloc[:0], big["intake"].iloc[:0], big["therapist"].iloc[:0]
        )
    return stats.therapist_icc(big["improvement"], big["intake"], big["therapist"])


def icc_counts_shown(ctx: Context, rows: pd.DataFrame) -> tuple[int, int]:
    """The episodes and clients behind the page's ICC (`released_icc`: therapists with >= k
    clients) as shown: counts with their cell's noise (the key: the sum of those therapists'
    episode keys; the clients' derived from it). Clients are summed over the therapists (a
    client seen by two of them counts twice: the query returns no client identifiers)."""
    big = _big(ctx, rows)
    if big.empty:
        return 0, 0
    per = big.groupby("therapist")[["therapist_clients", "therapist_episodes_cellkey"]].first()
    key = np.array([float(per["therapist_episodes_cellkey"].sum())])
    counts = np.array([len(big), per["therapist_clients"].sum()], dtype="float64")
    keys = np.concatenate([key, noise.derived_key(key, "n_clients")])
    shown = protected.shown_count_values(ctx.policy, ctx.noise, counts, keys)
    return int(shown[0]), int(shown[1])


# --------------------------------------------------------------------------- meeting labels


def meeting_labels(codes: Iterable[str], salt: str) -> dict[str, str]:
    """Labels A, B, C... (then AA, AB...) for therapist codes, in an order carrying no identity.

    The order is that of sha256(salt | code): neither code order nor any performance order, and
    a new shuffle for every different salt (the view and its filters).
    """
    unique = sorted(set(codes))
    order = sorted(unique, key=lambda c: hashlib.sha256(f"{salt}|{c}".encode()).hexdigest())
    return {code: _letters(i) for i, code in enumerate(order)}


def display_names(ctx: Context, codes: Iterable[str]) -> dict[str, str]:
    """code -> what is shown: the code itself, or in meeting mode a label A, B, C... salted
    with the view and its filters (the therapist filter aside)."""
    codes = list(codes)
    if not ctx.meeting_mode:
        return {c: c for c in codes}
    f = dataclasses.replace(ctx.filters, therapist=None)
    return meeting_labels(codes, salt=f"{SALT}|{f!r}|{ctx.allowed_sites!r}")


def label_sort_key(s: pd.Series) -> pd.Series:
    """Meeting labels in letter order: A..Z before AA.. (by length, then text)."""
    return s.astype(str).str.len() * 1000 + s.astype(str).rank(method="dense")


def _letters(i: int) -> str:
    out, i = "", i + 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


# --------------------------------------------------------------------------- funnel inputs


@dataclasses.dataclass(frozen=True)
class FunnelInput:
    """Protected units (code, n, value, n_clients, extra columns, suppressed, suppression), the
    clinic-wide target drawn from protected values (NaN when withheld), σ for a mean, and the
    clinic row as shown (its count, `suppressed` and exact `true_clients` to judge)."""

    units: pd.DataFrame
    target: float
    sigma: float | None
    clinic: pd.Series


def dropout_input(dropout: pd.DataFrame) -> FunnelInput:
    """`dropout`: the protected dropout table (`protected_dropout`)."""
    ther = dropout[~dropout["is_clinic"]]
    clinic = dropout[dropout["is_clinic"]].iloc[0]
    units = pd.DataFrame(
        {
            "code": ther["therapist"].to_numpy(),
            "n": ther["ended"].to_numpy(dtype="float64", na_value=np.nan),
            "value": ther["dropout_rate"].to_numpy(dtype="float64", na_value=np.nan),
            "n_clients": ther["n_clients"].to_numpy(),
            "dropouts": ther["dropouts"].to_numpy(dtype="float64", na_value=np.nan),
            "suppressed": ther["suppressed"].to_numpy(dtype=bool),
            "suppression": ther["suppression"].to_numpy(),
        }
    )
    # the clinic's rate and count as shown (protected); withheld by the numerator rule
    # (1 .. k-1 dropouts or other endings in the whole selection) there is no target
    target = np.nan if clinic["suppressed"] else float(clinic["dropout_rate"])
    return FunnelInput(units, target, None, clinic)


def alliance_input(ctx: Context, df: pd.DataFrame) -> FunnelInput | str:
    """The early-alliance funnel's protected units; NO_UNITS or NO_SPREAD when there is none."""
    if df[~df["is_clinic"]].empty:
        return NO_UNITS
    record_range = WAI_RANGE if ctx.filters.alliance_measure == "wai" else SRS_RANGE
    cols = ["therapist", "n_clients", "episodes", "mean_early", "sd_early", "episodes_cellkey"]
    spec = {
        "counts": ["n_clients", "episodes"],
        "means": [protected.Mean("mean_early", "episodes", record_range)],
        "value_cols": ["episodes", "mean_early", "sd_early"],
        "n_key_from": "episodes",
    }
    raw_ther = df[~df["is_clinic"]][cols].reset_index(drop=True)
    raw_clinic = df[df["is_clinic"]][cols].reset_index(drop=True)
    ther = protect_counts(ctx, raw_ther, **spec)
    clinic = protect_counts(ctx, raw_clinic, complementary=False, **spec).iloc[0]
    clinic["true_clients"] = raw_clinic["n_clients"].iloc[0]
    # σ from the therapists shown: their SDs and protected numbers of episodes
    shown = ther[~ther["suppressed"]]
    sigma = spc.pooled_sd(shown["sd_early"].astype(float), shown["episodes"].astype(float))
    if not np.isfinite(sigma) or sigma <= 0:
        return NO_SPREAD
    units = pd.DataFrame(
        {
            "code": ther["therapist"].to_numpy(),
            "n": ther["episodes"].to_numpy(dtype="float64", na_value=np.nan),
            "value": ther["mean_early"].to_numpy(dtype="float64", na_value=np.nan),
            "n_clients": ther["n_clients"].to_numpy(),
            "suppressed": ther["suppressed"].to_numpy(dtype=bool),
            "suppression": ther["suppression"].to_numpy(),
        }
    )
    target = np.nan if clinic["suppressed"] else float(clinic["mean_early"])
    return FunnelInput(units, target, sigma, clinic)


def outcome_input(ctx: Context, rows: pd.DataFrame) -> FunnelInput | str:
    """Case-mix adjusted improvement by therapist (improvement ~ intake + age band + program),
    protected; TOO_FEW (under two therapists) or NO_SPREAD when there is none."""
    if rows.empty or rows["therapist"].nunique() < 2:
        return TOO_FEW
    adjusted = stats.casemix_adjusted(
        rows,
        outcome="improvement",
        covariates=["intake"],
        categorical=["age_band", "program"],
        group="therapist",
    )
    sigma = float(adjusted["pooled_sd"].iloc[0])
    if not np.isfinite(sigma) or sigma <= 0:
        return NO_SPREAD
    m = MEASURES[ctx.filters.outcome_measure]
    record_range = 2 * float(m.max_score)  # a change score: twice the measure's range
    per = rows.groupby("therapist", sort=True)[["therapist_clients", "therapist_episodes_cellkey"]]
    per = per.first().reindex(adjusted["group"])
    raw = pd.DataFrame(
        {
            "code": adjusted["group"].to_numpy(),
            "n_clients": per["therapist_clients"].to_numpy(),
            "n": adjusted["n"].to_numpy(dtype=float),
            "value": adjusted["adjusted_mean"].to_numpy(dtype=float),
            "raw_mean": adjusted["raw_mean"].to_numpy(dtype=float),
            "n_cellkey": per["therapist_episodes_cellkey"].to_numpy(),
        }
    )
    units = protect_counts(
        ctx,
        raw,
        counts=["n_clients", "n"],
        means=[
            protected.Mean("value", "n", record_range),
            protected.Mean("raw_mean", "n", record_range),
        ],
        value_cols=["n", "value", "raw_mean"],
        n_key_from="n",
    )
    first = rows.iloc[0]
    clinic = protect_counts(
        ctx,
        pd.DataFrame(
            {
                "n_clients": [int(first["clinic_clients"])],
                "n": [len(rows)],
                "mean": [float(rows["improvement"].mean())],
                "n_cellkey": [int(first["clinic_episodes_cellkey"])],
            }
        ),
        counts=["n_clients", "n"],
        means=[protected.Mean("mean", "n", record_range)],
        value_cols=["n", "mean"],
        complementary=False,
        n_key_from="n",
    ).iloc[0]
    clinic["true_clients"] = int(first["clinic_clients"])
    target = np.nan if clinic["suppressed"] else float(clinic["mean"])
    return FunnelInput(units, target, sigma, clinic)


# --------------------------------------------------------------------------- the funnel


@dataclasses.dataclass(frozen=True)
class Funnel:
    """A funnel from protected units: `table` (unit, the units' columns, limits, flag, z) with
    whole `n` and `n_clients`; `grid` the limits over the observed range of volumes; `info`
    spc.funnel's overdispersion; the numbers of therapists withheld and of those shown outside
    the 99.8% limits."""

    table: pd.DataFrame
    grid: pd.DataFrame
    info: Mapping[str, object]
    primary: int
    complementary: int
    outside: int


def funnel(ctx: Context, inp: FunnelInput, kind: str) -> Funnel | str:
    """Points, limits and flags from protected values only (withheld units are not drawn);
    TOO_FEW (under two units) or NONE_SHOWN (none shown, or no target) when there is none."""
    if len(inp.units) < 2:
        return TOO_FEW
    safe = inp.units.rename(columns={"code": "unit"})
    visible_units = safe[~safe["suppressed"].to_numpy(dtype=bool)]
    if visible_units.empty or not np.isfinite(inp.target):
        return NONE_SHOWN
    pts, grid, info = spc.funnel(
        visible_units[["unit", "n", "value"]].astype({"n": float, "value": float}),
        kind=kind,  # type: ignore[arg-type]
        target=inp.target,
        sigma=inp.sigma,
        method=ctx.settings.overdispersion,
    )
    limits = pts.drop(columns=["n", "value", "se", "z_adj"]).set_index("unit")
    table = safe.join(limits, on="unit")
    table["n"] = pd.to_numeric(table["n"]).round().astype("Int64")
    table["n_clients"] = pd.to_numeric(table["n_clients"]).round().astype("Int64")
    visible = table[~table["suppressed"]]
    # limits over the observed range of volumes (not from n = 1, where they span 0-100%)
    grid = grid[grid["n"] >= max(1.0, 0.6 * float(visible["n"].astype(float).min()))]
    return Funnel(
        table=table,
        grid=grid,
        info=info,
        primary=int((table["suppression"] == "primary").sum()),
        complementary=int((table["suppression"] == "complementary").sum()),
        outside=int(visible["flag"].isin(["above 99.8%", "below 99.8%"]).sum()),
    )
