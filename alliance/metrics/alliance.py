"""The Alliance (trust) page's numbers: its scales, the headline (exact, then as it may be
shown) and the tiles' figures. The panels' protected frames are alliance.metrics.alliance_panels.

Definitions: ../shared/metrics.md ("Alliance", "Quality improvement views").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance import noise, privacy, protected, queries
from alliance.panel import Context

LAST_SESSION_NUMBER = 12  # session numbers from 12 on are pooled ("12+")
FIXED_COHORT_SESSIONS = 6  # the fixed cohort: episodes seen from session 1 through session 6
FIXED_LABEL = f"Same episodes, sessions 1–{FIXED_COHORT_SESSIONS}"


@dataclass(frozen=True)
class Scale:
    """How one alliance measure is binned, labelled and formatted."""

    key: str
    label: str  # e.g. "SRS total"
    long_label: str
    unit: str
    bin_floor: float  # scores below are pooled into one bin
    bin_width: float
    scale_max: float
    ticks: tuple[float, ...]
    decimals: int
    record_range: float  # one rating's range: the scale of a sum's noise (alliance/noise.py)

    @property
    def value_format(self) -> str:
        return "num1" if self.decimals == 1 else "num2"

    def fmt(self, value: float) -> str:
        return f"{value:.{self.decimals}f}"


SCALES = {
    "srs": Scale(
        "srs",
        "SRS total",
        "Session Rating Scale total (0–40)",
        "points",
        25.0,
        1.0,
        40.0,
        (30.0, 35.0),
        1,
        40.0,
    ),
    "wai": Scale(
        "wai",
        "WAI-SR mean item score",
        "WAI-SR mean item score (1–5)",
        "",
        2.5,
        0.25,
        5.0,
        (3.0, 3.5, 4.0, 4.5),
        2,
        4.0,
    ),
}
SUBSCALES = {
    "task": "Task: agreeing on what to work on",
    "bond": "Bond: liking and trusting each other",
    "goal": "Goal: agreeing on the goals",
    "total": "Whole scale (mean of 12 items)",
}


def scale_of(ctx: Context) -> Scale:
    """The alliance measure chosen in the filters (SRS unless WAI-SR)."""
    return SCALES.get(ctx.filters.alliance_measure, SCALES["srs"])


def _num(x: object) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def rate_interval(ctx: Context, x: float, n: float) -> tuple[float, float]:
    """The 95% Wilson interval of protected x / n, widened for the noise."""
    lo, hi = protected.wilson(pd.Series([x]), pd.Series([n]), ctx.noise)
    return lo[0], hi[0]


# --------------------------------------------------------------------------- headline


def summary(ctx: Context) -> dict[str, float | int | None]:
    """Alliance headline figures for the view (unsuppressed: callers pass them through protect)."""
    s = queries.run(
        ctx.con, "alliance_summary", **ctx.params(), srs_cutoff=ctx.settings.srs_cutoff
    ).iloc[0]
    d = queries.run(
        ctx.con, "alliance_drops", **ctx.params(), rupture_threshold=ctx.settings.rupture_threshold
    ).iloc[0]
    return {
        "sessions": int(s["sessions"]),
        "n_clients": int(s["n_clients"]),
        "srs_n": int(s["srs_n"]),
        "srs_clients": int(s["srs_clients"]),
        "mean_srs": _num(s["mean_srs"]),
        "sd_srs": _num(s["sd_srs"]),
        "srs_below": int(s["srs_below"]),
        "srs_below_rate": s["srs_below"] / s["srs_n"] if s["srs_n"] else None,
        "wai_n": int(s["wai_n"]),
        "wai_clients": int(s["wai_clients"]),
        "mean_wai": _num(s["mean_wai"]),
        "sd_wai": _num(s["sd_wai"]),
        "drop_clients": int(d["n_clients"]),
        "with_previous": int(d["with_previous"]),
        "drops": int(d["drops"]),
        "drop_rate": _num(d["drop_rate"]),
        # cell keys of the counts, for the protected-statistics step (never shown)
        **{c: int(s[c]) for c in s.index if c.endswith(protected.KEY_SUFFIX)},
        **{c: int(d[c]) for c in d.index if c.endswith(protected.KEY_SUFFIX)},
    }


def nothing_shown(ctx: Context, s: dict) -> bool:
    """No figure at all: an empty selection, or one of 1 .. k-1 clients."""
    n = s["n_clients"]
    return privacy.cohort_too_small(n, ctx.policy) or n == 0


# The headline's protected counts, means and rates. A client count takes its key from the
# count of its cell's records (noise.derived_key, as protect_counts' n_key_from), so the SRS
# clients of one month show what the control chart's month shows.
_CLIENTS_FROM = {
    "n_clients": "sessions",
    "srs_clients": "srs_n",
    "wai_clients": "wai_n",
    "drop_clients": "with_previous",
}
_COUNTS = [
    "sessions",
    "srs_n",
    "srs_below",
    "wai_n",
    "with_previous",
    "drops",
    *_CLIENTS_FROM,
]
_MEANS = [
    protected.Mean("mean_srs", "srs_n", SCALES["srs"].record_range),
    protected.Mean("mean_wai", "wai_n", SCALES["wai"].record_range),
]
_RATES = [
    protected.Rate("srs_below_rate", "srs_below", "srs_n"),
    protected.Rate("drop_rate", "drops", "with_previous"),
    protected.Rate("srs_recorded", "srs_n", "sessions"),
]


def protected_summary(ctx: Context, s: dict) -> dict:
    """The headline as it may be shown: every count with its cell's noise (never below k),
    means and rates from protected parts, and under "rule" the rates that the numerator rule
    withholds (1 .. k-1 events or non-events). The threshold on clients is the caller's."""
    raw = {c: s[c] for c in _COUNTS}
    raw.update({m.col: np.nan if s[m.col] is None else s[m.col] for m in _MEANS})
    raw.update({f"{c}_cellkey": s[f"{c}_cellkey"] for c in _COUNTS if c not in _CLIENTS_FROM})
    for clients, records in _CLIENTS_FROM.items():
        key = np.array([s[f"{records}_cellkey"]], dtype="float64")
        raw[f"{clients}_cellkey"] = noise.derived_key(key, "n_clients")[0]
    frame = pd.DataFrame([raw])
    shown, rule = protected.perturb_figures(
        frame, policy=ctx.policy, params=ctx.noise, counts=_COUNTS, means=_MEANS, rates=_RATES
    )
    row = shown.iloc[0]
    out: dict = {c: _num(row[c]) for c in [*_COUNTS, *(m.col for m in _MEANS)]}
    out.update({r.col: _num(row[r.col]) for r in _RATES})
    out["rule"] = rule
    return out


@dataclass(frozen=True)
class TileFigure:
    value: float | None
    withheld: bool


def tile_figures(ctx: Context, s: dict, p: dict) -> dict[str, TileFigure]:
    """The tiles' figures from the protected summary `p`; the exact summary `s` only judges
    (a figure of 1 .. k-1 clients is withheld, and so is a rate under the numerator rule)."""
    mean = "mean_wai" if ctx.filters.alliance_measure == "wai" else "mean_srs"
    rule = p["rule"]
    rows = [
        (mean, p[mean], s["wai_clients" if mean == "mean_wai" else "srs_clients"], False),
        (
            "srs_below_cutoff_rate",
            p["srs_below_rate"],
            s["srs_clients"],
            "srs_below_rate" in rule,
        ),
        ("drop_rate", p["drop_rate"], s["drop_clients"], "drop_rate" in rule),
        ("srs_recorded", p["srs_recorded"], s["n_clients"], "srs_recorded" in rule),
    ]
    out = {}
    for key, value, n_clients, by_rule in rows:
        withheld = privacy.cohort_too_small(n_clients, ctx.policy) or by_rule
        out[key] = TileFigure(None if withheld or value is None else float(value), withheld)
    return out


def rating_clients(s: dict, scale: Scale) -> int:
    """Distinct clients with a rating of the scale in the period (exact from the summary,
    protected from protected_summary)."""
    return int(s["srs_clients"] if scale.key == "srs" else s["wai_clients"])


def rating_count(p: dict, scale: Scale) -> float:
    """The protected count of the scale's ratings in the period."""
    return float(p["srs_n"] if scale.key == "srs" else p["wai_n"])


def below_cutoff_shown(ctx: Context, s: dict, p: dict) -> bool:
    """Whether the share of SRS ratings below the cutoff may be shown."""
    return (
        bool(s["srs_n"])
        and privacy.statistic_released(ctx.policy, s["srs_clients"])
        and "srs_below_rate" not in p["rule"]
        and p["srs_below_rate"] is not None
    )
