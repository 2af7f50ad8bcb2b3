"""The Client demographics page's words: metric definitions, readings, notices and the data
tables' headers."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from alliance.metrics.demographics import UNKNOWN
from alliance.panel import Context
from alliance.settings import MEASURES
from alliance.views.common import srs_cutoff_text

TITLE = "Client demographics (equity)"
QUESTION = (
    "Do alliance, dropout and outcomes differ between groups of clients, and by how much "
    "compared with the clinic as a whole?"
)
DIMENSIONS = {
    "race_ethnicity": "Race/ethnicity",
    "age_band": "Age band",
    "gender": "Gender",
}
DEFAULT_DIMENSION = "race_ethnicity"
UNKNOWN_LABEL = "Not recorded"
EQUITY_NOTE = (
    "Differences between groups are associations that may reflect referral, case mix or "
    "measurement, not the clients themselves; small groups have wide intervals."
)


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    definition: str
    unit: str  # what n counts
    rate: bool
    higher_is_better: bool
    empty: str = ""  # the message when there is nothing to compare


def metrics(ctx: Context, dimension: str) -> dict[str, Metric]:
    """Every metric the page compares between groups of `dimension`."""
    dim = DIMENSIONS[dimension].lower()
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    rc = ctx.settings.reliable_change(measure)
    no_outcomes = f"No ended episodes with two or more {m.label} scores in this selection."
    return {
        "mean_srs": Metric(
            "mean_srs",
            "Mean SRS by " + dim,
            "Mean SRS total (0–40) over sessions in the period; 95% t interval allowing for "
            "several ratings per client",
            "SRS ratings",
            rate=False,
            higher_is_better=True,
            empty="No SRS ratings in this selection.",
        ),
        "srs_below": Metric(
            "srs_below",
            "SRS below cutoff by " + dim,
            f"Share of SRS ratings with {srs_cutoff_text(ctx)}; 95% Wilson interval on the "
            "effective number of ratings (several per client)",
            "SRS ratings",
            rate=True,
            higher_is_better=False,
            empty="No SRS ratings in this selection.",
        ),
        "dropout": Metric(
            "dropout",
            "Dropout rate by " + dim,
            "Dropouts / ended episodes (finished in the period); 95% Wilson interval",
            "ended episodes",
            rate=True,
            higher_is_better=False,
            empty="No episodes ended in this selection.",
        ),
        "reliable_improvement": Metric(
            "reliable_improvement",
            f"Reliable improvement ({m.label}) by {dim}",
            f"Ended episodes with ≥ 2 {m.label} scores improving by ≥ {rc:g} points; "
            "95% Wilson interval",
            "episodes",
            rate=True,
            higher_is_better=True,
            empty=no_outcomes,
        ),
        "recovery": Metric(
            "recovery",
            f"Recovery ({m.label}) by {dim}",
            f"Of ended episodes starting in the {m.label} clinical range, the share ending out "
            f"of it ({ctx.settings.outcome_definition(measure)}); 95% Wilson interval",
            "episodes starting in the clinical range",
            rate=True,
            higher_is_better=True,
            empty=no_outcomes,
        ),
    }


def none_here(metric: Metric) -> str:
    return f"No {metric.unit} in this selection."


def clinic_withheld(ctx: Context, metric: Metric) -> str:
    return (
        f"The clinic-wide {x_label(metric).lower()} rests on fewer than {ctx.policy.k} "
        "events or non-events in this selection, so this comparison is withheld. Widen the "
        "period or clear a filter."
    )


def too_few_clients(ctx: Context, what: str, comparison: str = "comparison") -> str:
    return (
        f"The {what} in this selection describe fewer than {ctx.policy.k} clients, "
        f"so this {comparison} is withheld. Widen the period or clear a filter."
    )


def display_groups(values: pd.Series) -> pd.Series:
    return values.astype(str).replace({UNKNOWN: UNKNOWN_LABEL})


def site_legend(ctx: Context) -> str:
    return (
        f'"{ctx.policy.label}": fewer than {ctx.policy.k} clients (or withheld with such a '
        'cell); "–": no ended episodes'
    )


def site_reading(ctx: Context, withheld: int, cells: int) -> str:
    return (
        "Each cell is one group's dropout rate at one site; the last column is the "
        f"group across all sites. {withheld} of {cells} cells are withheld "
        f'("{ctx.policy.label}") because they describe fewer than {ctx.policy.k} clients, or '
        "so that such a cell cannot be worked out from the row or column totals. " + EQUITY_NOTE
    )


def x_label(metric: Metric) -> str:
    return {
        "mean_srs": "Mean SRS total (0–40)",
        "srs_below": "SRS ratings below cutoff",
        "dropout": "Dropout rate",
        "reliable_improvement": "Reliable improvement rate",
        "recovery": "Recovery rate",
    }[metric.key]


def reading(
    ctx: Context, metric: Metric, visible: pd.DataFrame, safe: pd.DataFrame, dimension: str
) -> str:
    unit = "percentage points" if metric.rate else "points"
    scale = 100 if metric.rate else 1
    digits = 1 if metric.rate else 2
    apart = visible[(visible["diff_low"] > 0) | (visible["diff_high"] < 0)]
    if len(apart):
        items = "; ".join(
            f"{display_groups(pd.Series([r.client_group])).iloc[0]} "
            f"{r.diff * scale:+.{digits}f} (95% CI {r.diff_low * scale:+.{digits}f} to "
            f"{r.diff_high * scale:+.{digits}f})"
            for r in apart.itertuples()
        )
        found = (
            f"Groups whose difference from the clinic-wide value ({unit}) has a 95% interval "
            f"excluding zero: {items}. With {len(visible)} groups, about one interval in 20 "
            "excludes zero by chance alone."
        )
    else:
        found = (
            "No group's difference from the clinic-wide value has a 95% interval that "
            "excludes zero."
        )
    withheld = int(safe["suppressed"].sum())
    note = (
        f" {withheld} group{'s are' if withheld != 1 else ' is'} withheld "
        f'("{ctx.policy.label}"): fewer than {ctx.policy.k} clients, or withheld with such a '
        "group so it cannot be worked out from the clinic-wide value."
        if withheld
        else ""
    )
    dim_filter = {
        "race_ethnicity": ctx.filters.race_ethnicity,
        "age_band": ctx.filters.age_band,
        "gender": ctx.filters.gender,
    }[dimension]
    filtered = (
        f" The selection is filtered to one {DIMENSIONS[dimension].lower()}, so there is only "
        "one group: choose another dimension or clear that filter."
        if dim_filter
        else ""
    )
    return (
        "Each dot is a group's value with its 95% interval; the dotted line is the clinic-wide "
        f"value. {found}{note}{filtered} {EQUITY_NOTE}"
    )


def data_table(safe: pd.DataFrame, metric: Metric, dimension: str) -> pd.DataFrame:
    scale = 100 if metric.rate else 1
    suffix = " %" if metric.rate else ""
    diff_unit = " (pct points)" if metric.rate else " (points)"
    name = {
        "mean_srs": "mean SRS",
        "srs_below": "below cutoff",
        "dropout": "dropout rate",
        "reliable_improvement": "reliable improvement",
        "recovery": "recovery",
    }[metric.key]
    return pd.DataFrame(
        {
            DIMENSIONS[dimension]: safe["group"].to_numpy(),
            "n_clients": safe["n_clients"].to_numpy(),
            metric.unit: safe["n"].to_numpy(),
            f"{name}{suffix}": (safe["value"] * scale).to_numpy(),
            f"95% CI low{suffix}": (safe["low"] * scale).to_numpy(),
            f"95% CI high{suffix}": (safe["high"] * scale).to_numpy(),
            f"difference from clinic-wide{diff_unit}": (safe["diff"] * scale).to_numpy(),
            "difference 95% CI low": (safe["diff_low"] * scale).to_numpy(),
            "difference 95% CI high": (safe["diff_high"] * scale).to_numpy(),
            "suppressed": safe["suppressed"].to_numpy(),
            "suppression": safe["suppression"].to_numpy(),
        }
    )
