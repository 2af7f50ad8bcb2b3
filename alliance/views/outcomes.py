"""Outcomes: do clients get better on the chosen measure, and does early alliance go with it?

Every number follows ``../shared/metrics.md`` ("Outcomes"): change between the first and last
administration of an ended episode finished in the period with at least two administrations,
improvement oriented so that positive = better (ORS last - first; PHQ-9 and GAD-7 first - last);
recovery over the episodes that started in the clinical range. Cutoffs and reliable change come
from the settings (``Settings.outcome_params``), never from constants here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import charts, noise, privacy, protected, queries
from alliance.charts import figure_edit
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
from alliance.settings import MEASURES
from alliance.stats import fisher_z_ci, mean_interval, wilson_interval
from alliance.views.common import (
    CORRELATION_NOTE,
    SMALL_N_NOTE,
    any_withheld,
    gather,
    n_text,
    noise_note,
    protect,
    protect_counts,
    subtitle,
    withheld_note,
)

TITLE = "Outcomes"
QUESTION = (
    "Do clients get better on the chosen measure, how many change reliably or recover, "
    "and does a stronger early alliance go with more improvement?"
)

# Flückiger, Del Re, Wampold & Horvath (2018), Psychotherapy 55(4): adult individual therapy.
PUBLISHED_R = 0.278
PUBLISHED_R_CI = (0.256, 0.299)
PUBLISHED_R_TEXT = "published r ≈ .28 (95% CI .26–.30; Flückiger et al. 2018)"

MAX_SESSION = 12  # trajectory: session numbers from 12 on are pooled as "12+"
BIN_WIDTH = 1.0  # improvement histogram: 1-point bins centred on whole points
# histogram end bins: every reliable deterioration in one bar (a rare outcome split into
# 1-point cells would mostly fall under the privacy threshold), improvements of 3 x the
# reliable change or more in another
TOP_FACTOR = 3
MAX_ALLIANCE_BINS = 10  # early-SRS tenths when there are enough episodes
EPISODES_PER_ALLIANCE_BIN = 40  # fewer groups for smaller selections

RATE_LABELS = {
    "reliable_improvement_rate": "Reliable improvement",
    "reliable_deterioration_rate": "Reliable deterioration",
    "recovery_rate": "Recovery",
    "reliable_recovery_rate": "Reliable recovery",
}
BAND_COLOURS = {
    "reliable deterioration": charts.VERMILLION,
    "no reliable change": "#B9B9B9",
    "reliable improvement": charts.BLUE,
}
TERCILE_NAMES = {1: "Lowest third", 2: "Middle third", 3: "Highest third"}
SRS_RANGE = 40.0  # one SRS total's range (0-40; an early SRS is a mean of them): sum noise scale


def _score_range(measure: str) -> float:
    """One score's range (ORS 40, PHQ-9 27, GAD-7 21): the scale of a mean score's sum noise."""
    return float(MEASURES[measure].max_score)


def _change_range(measure: str) -> float:
    """One change score's range: twice the measure's (-40..+40 on the ORS)."""
    return 2.0 * _score_range(measure)


# --------------------------------------------------------------------------- headline figures


def _num(x: object) -> float | None:
    if x is None or x is pd.NA:
        return None
    x = float(x)  # type: ignore[arg-type]
    return None if math.isnan(x) else x


def _wilson(x: int, n: int) -> list[float] | None:
    if n <= 0:
        return None
    low, high = wilson_interval(x, n)
    return [float(low[0]), float(high[0])]


def _mean_interval(mean: float | None, sd: float | None, n: int) -> list[float] | None:
    """Student t 95% interval of a mean from its summary statistics (SD with n - 1)."""
    if mean is None or sd is None or n < 2:
        return None
    low, high = mean_interval([mean], [sd], [n])
    return [float(low[0]), float(high[0])]


def _summary_row(ctx: Context, measure: str, filters: Filters | None = None) -> pd.Series:
    """The one row of ``outcomes_summary`` (exact aggregates and the counts' cell keys)."""
    return queries.run(
        ctx.con,
        "outcomes_summary",
        **ctx.params(filters),
        **ctx.settings.outcome_params(measure),
    ).iloc[0]


def _summary_raw(ctx: Context, measure: str, filters: Filters | None = None) -> dict:
    """The outcome headline figures for `measure`, unsuppressed (see `outcome_summary`)."""
    return _summary_from_row(_summary_row(ctx, measure, filters), measure)


def _summary_from_row(row: pd.Series, measure: str) -> dict:
    """The exact headline figures of one ``outcomes_summary`` row (`outcome_summary`'s own)."""
    n = int(row["outcome_n"])
    clinical_n = int(row["clinical_n"])
    r_n = int(row["r_n"])
    counts = {
        "reliable_improvement_rate": (int(row["reliable_improvement"]), n),
        "reliable_deterioration_rate": (int(row["reliable_deterioration"]), n),
        "recovery_rate": (int(row["recovered"]), clinical_n),
        "reliable_recovery_rate": (int(row["reliably_recovered"]), clinical_n),
    }
    out: dict = {"measure": measure}
    for key, (x, m) in counts.items():
        out[key] = x / m if m else None
        out[f"{key}_ci"] = _wilson(x, m)
    r = _num(row["r"]) if r_n >= 4 else None
    out["alliance_outcome_r"] = r
    ci = fisher_z_ci(r, r_n) if r is not None else (float("nan"), float("nan"))
    out["alliance_outcome_r_ci"] = None if math.isnan(ci[0]) else [ci[0], ci[1]]
    mean_imp, sd_first = _num(row["mean_improvement"]), _num(row["sd_first"])
    # metrics.md: mean improvement / SD of the first administration (as stats.pre_post_effect_size)
    out["pre_post_effect_size"] = mean_imp / sd_first if mean_imp is not None and sd_first else None
    out["mean_improvement"] = mean_imp
    out["mean_improvement_ci"] = _mean_interval(mean_imp, _num(row["sd_improvement"]), n)
    out["outcome_n"] = n
    out["outcome_clients"] = int(row["n_clients"])
    out["clinical_n"] = clinical_n
    out["clinical_clients"] = int(row["clinical_clients"])
    out["r_n"] = r_n
    out["r_clients"] = int(row["r_clients"])
    out["ended"] = int(row["ended"])
    out["counts"] = {key: x for key, (x, _) in counts.items()}
    return out


# which population (distinct clients) each headline figure describes, for the privacy step
_POPULATION = {
    "reliable_improvement_rate": "outcome_clients",
    "reliable_deterioration_rate": "outcome_clients",
    "recovery_rate": "clinical_clients",
    "reliable_recovery_rate": "clinical_clients",
    "alliance_outcome_r": "r_clients",
    "pre_post_effect_size": "outcome_clients",
    "mean_improvement": "outcome_clients",
    "outcome_n": "outcome_clients",
}


def _withheld_keys(ctx: Context, raw: dict) -> set[str]:
    frame = pd.DataFrame(
        {
            "key": list(_POPULATION),
            "n_clients": [raw[pop] for pop in _POPULATION.values()],
            "value": [0.0] * len(_POPULATION),
        }
    )
    safe = protect(ctx, frame, value_cols=["value"], complementary=False)
    return set(safe.loc[safe["suppressed"], "key"])


def outcome_summary(
    ctx: Context, measure: str = "ors", filters: Filters | None = None
) -> dict[str, object]:
    """Outcome headline figures for `measure` over the context's filters (metrics.md).

    Keys: ``reliable_improvement_rate``, ``reliable_deterioration_rate``, ``recovery_rate``,
    ``reliable_recovery_rate`` (0-1, each with ``<key>_ci`` = [low, high] Wilson 95%),
    ``alliance_outcome_r`` (Pearson r of early SRS and improvement) with
    ``alliance_outcome_r_ci`` (Fisher z 95%), ``pre_post_effect_size`` (mean improvement / SD of
    the first administration), ``mean_improvement`` (+ ``_ci``, t 95%), ``outcome_n`` (ended
    episodes finished in the period with >= 2 administrations), ``clinical_n`` (of those, in
    the clinical range at the start), ``r_n``, ``ended``, the matching distinct-client counts,
    and ``withheld``: the keys withheld by the privacy rule (their population has 1 .. k-1
    clients; value and interval are then None). Missing or undefined values are None, never NaN.
    """
    raw = _summary_raw(ctx, measure, filters)
    withheld = _withheld_keys(ctx, raw)
    out = {k: v for k, v in raw.items() if k != "counts"}
    for key in withheld:
        out[key] = None
        if f"{key}_ci" in out:
            out[f"{key}_ci"] = None
    out["withheld"] = sorted(withheld)
    return out


# --------------------------------------------------------------------------- protected figures
# What the page shows: every count with its cell's noise (alliance/noise.py), rates and means
# formed from protected counts, intervals from the protected values widened for the noise. The
# exact figures above only judge (threshold, numerator rule); `outcome_summary` stays exact.

_COUNTS = [
    "ended",
    "outcome_n",
    "reliable_improvement",
    "reliable_deterioration",
    "clinical_n",
    "recovered",
    "reliably_recovered",
    "r_n",
]
# distinct clients of a count's records: their key derives from that count's key, as in
# protected.protect_table (n_key_from), so the same cell shows the same value on every page
_CLIENTS = {"outcome_clients": "outcome_n", "clinical_clients": "clinical_n", "r_clients": "r_n"}
_CLIENT_COLS = {"outcome_clients": "n_clients"}  # the query's name where it differs
_RATES = {
    "reliable_improvement_rate": ("reliable_improvement", "outcome_n"),
    "reliable_deterioration_rate": ("reliable_deterioration", "outcome_n"),
    "recovery_rate": ("recovered", "clinical_n"),
    "reliable_recovery_rate": ("reliably_recovered", "clinical_n"),
}


def _protected_summary(ctx: Context, row: pd.Series, measure: str) -> dict:
    """The headline as the page may show it (same keys as `outcome_summary`).

    Counts carry their cell's noise; the four rates are protected events / protected total
    with a Wilson interval widened for the noise; the mean improvement is the exact mean plus
    the sum's bounded noise over the protected count (interval widened likewise); the effect
    size is that mean over the SD of the first scores; r is exact (a statistic, released when
    its episodes describe >= k clients) with its interval at the protected n. ``withheld``:
    the figures whose population has 1 .. k-1 clients or whose rate has 1 .. k-1 events or
    non-events (numerator rule); ``outcome_share`` (episodes with change scores / ended) and
    its withholding likewise.
    """
    k = ctx.policy.k
    raw = _summary_from_row(row, measure)
    counts = np.array([float(row[c]) for c in _COUNTS])
    keys = np.array([float(row[f"{c}_cellkey"]) for c in _COUNTS])
    shown = dict(zip(_COUNTS, noise.perturb_counts(counts, keys, ctx.noise, k), strict=True))
    for col, base in _CLIENTS.items():
        key = noise.derived_key(np.array([float(row[f"{base}_cellkey"])]), "n_clients")
        exact = float(row[_CLIENT_COLS.get(col, col)])
        shown[col] = float(noise.perturb_counts(np.array([exact]), key, ctx.noise, k)[0])
    out: dict = {"measure": measure}
    out.update({c: int(v) for c, v in shown.items()})
    withheld = set(_withheld_keys(ctx, raw))
    for key, (events, total) in _RATES.items():
        x, t = shown[events], shown[total]
        out[key] = x / t if t > 0 else None
        low, high = protected.wilson(pd.Series([x]), pd.Series([t]), ctx.noise)
        out[f"{key}_ci"] = None if t <= 0 else [float(low[0]), float(high[0])]
        ex, et = int(row[events]), int(row[total])
        if 0 < ex < k or 0 < et - ex < k:
            withheld.add(key)
    n, shown_n = raw["outcome_n"], shown["outcome_n"]
    mean = raw["mean_improvement"]
    if mean is not None and shown_n > 0:
        mean = float(
            noise.perturb_means(
                np.array([mean]),
                np.array([shown_n]),
                np.array([float(row["outcome_n_cellkey"])]),
                _change_range(measure),
                ctx.noise,
            )[0]
        )
    out["mean_improvement"] = mean
    sd = _num(row["sd_improvement"])
    if mean is not None and sd is not None and n >= 2:
        low, high = protected.mean_interval(
            pd.Series([mean]),
            pd.Series([sd]),
            pd.Series([shown_n]),
            _change_range(measure),
            ctx.noise,
        )
        out["mean_improvement_ci"] = [float(low[0]), float(high[0])]
    else:
        out["mean_improvement_ci"] = None
    sd_first = _num(row["sd_first"])
    out["pre_post_effect_size"] = mean / sd_first if mean is not None and sd_first else None
    r = raw["alliance_outcome_r"]
    out["alliance_outcome_r"] = r
    ci = fisher_z_ci(r, int(shown["r_n"])) if r is not None else (float("nan"),) * 2
    out["alliance_outcome_r_ci"] = None if math.isnan(ci[0]) else [ci[0], ci[1]]
    ended, x = shown["ended"], shown["outcome_n"]
    out["outcome_share"] = x / ended if ended > 0 else None
    rest = int(row["ended"]) - int(row["outcome_n"])
    out["outcome_share_withheld"] = 0 < n < k or 0 < rest < k
    for key in withheld:
        out[key] = None
        if f"{key}_ci" in out:
            out[f"{key}_ci"] = None
    out["withheld"] = sorted(withheld)
    return out


# --------------------------------------------------------------------------- tiles


def _tiles(ctx: Context, now: dict, before: dict) -> list[Tile]:
    """The tiles from the protected headlines (`_protected_summary`) of this and last period."""
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    rc = ctx.settings.reliable_change(measure)
    definition = ctx.settings.outcome_definition(measure)
    withheld = set(now["withheld"])
    before_withheld = set(before["withheld"]) if before["outcome_n"] else set(_POPULATION)
    episodes = f"ended episodes with ≥ 2 {m.label} scores"
    clinical = f"of them starting in the clinical range ({_clinical_text(ctx, measure)})"
    specs = [
        (
            "reliable_improvement_rate",
            "Reliable improvement",
            ".1%",
            True,
            f"Share of {episodes} that improved by ≥ {rc:g} points ({definition}).",
        ),
        (
            "reliable_deterioration_rate",
            "Reliable deterioration",
            ".1%",
            False,
            f"Share of {episodes} that worsened by ≥ {rc:g} points ({definition}).",
        ),
        (
            "recovery_rate",
            "Recovery",
            ".1%",
            True,
            f"Of the {episodes} {clinical}: share out of that range at the last score.",
        ),
        (
            "reliable_recovery_rate",
            "Reliable recovery",
            ".1%",
            True,
            f"Of the {episodes} {clinical}: share that recovered and improved by ≥ {rc:g} points.",
        ),
        (
            "pre_post_effect_size",
            "Pre–post effect size",
            ".2f",
            True,
            f"Mean {m.label} improvement / SD of the first score, over the {episodes}. "
            "Uncontrolled: it includes natural recovery and regression to the mean.",
        ),
        (
            "mean_improvement",
            "Mean improvement",
            "+.1f",
            True,
            f"Mean change in {m.label} points between first and last score, positive = better.",
        ),
        (
            "alliance_outcome_r",
            "Alliance–outcome r",
            ".2f",
            True,
            f"Pearson r between early SRS (mean of the first 3) and {m.label} improvement; "
            f"{PUBLISHED_R_TEXT}. {CORRELATION_NOTE}",
        ),
        (
            "outcome_n",
            "Episodes with change scores",
            ",.0f",
            None,
            f"Ended episodes finished in the period with at least two {m.label} scores: the "
            "episodes every figure on this page describes.",
        ),
    ]
    tiles = []
    for key, label, fmt, better, help_text in specs:
        is_withheld = key in withheld
        value = None if is_withheld else now.get(key)
        if key in ("recovery_rate", "reliable_recovery_rate"):
            shown_n = f"n = {now['clinical_n']:,} episodes in clinical range"
        elif key == "alliance_outcome_r":
            shown_n = f"n = {now['r_n']:,} episodes · published ≈ .28"
        elif key == "outcome_n":
            share = None if now["outcome_share_withheld"] else now["outcome_share"]
            shown_n = f"{share:.0%} of {now['ended']:,} ended episodes" if share is not None else ""
        else:
            shown_n = f"n = {now['outcome_n']:,} episodes"
        ci = now.get(f"{key}_ci")
        if ci and value is not None:
            ci_fmt = ".0%" if fmt.endswith("%") else ".2f" if key == "alliance_outcome_r" else ".1f"
            shown_n = f"95% CI {format(ci[0], ci_fmt)} to {format(ci[1], ci_fmt)} · {shown_n}"
        delta = None
        prev = before.get(key)
        if (
            value is not None
            and prev is not None
            and key not in before_withheld
            and better is not None
        ):
            delta = value - prev
        delta_fmt = {"%": "+.1%", "f": "+.2f"}[fmt[-1]] if fmt[-1] in "%f" else "+,.0f"
        tiles.append(
            Tile(
                key=key,
                label=label,
                value=value,
                fmt=fmt,
                n_text="" if is_withheld else shown_n,
                help=with_delta_rule(help_text) if delta is not None else help_text,
                delta=delta,
                delta_fmt=delta_fmt,
                higher_is_better=better,
                withheld=is_withheld,
                delta_significant=(
                    _delta_significant(ctx, key, now, before) if delta is not None else None
                ),
            )
        )
    return tiles


def _delta_significant(ctx: Context, key: str, now: dict, before: dict) -> bool | None:
    """Whether a tile's change is beyond chance: the 95% interval of the difference between
    the two periods' shown figures excludes zero (panel.delta_interval)."""
    a, b = now.get(key), before.get(key)
    if a is None or b is None:
        return None
    if key in _RATES:
        total = _RATES[key][1]
        return beyond_chance(delta_interval("rate", (a, now[total]), (b, before[total]), ctx.noise))
    if key == "alliance_outcome_r":
        return beyond_chance(delta_interval("r", (a, now["r_n"]), (b, before["r_n"]), ctx.noise))
    # means: the SE behind each period's shown interval (widened for the noise); the effect
    # size is the mean improvement over the SD of the first scores, so its SE scales alike
    se_a = se_from_ci(now.get("mean_improvement_ci"))
    se_b = se_from_ci(before.get("mean_improvement_ci"))
    if key == "pre_post_effect_size":
        ma, mb = now.get("mean_improvement"), before.get("mean_improvement")
        if not ma or not mb:
            return None
        se_a, se_b = se_a * abs(a / ma), se_b * abs(b / mb)
    elif key != "mean_improvement":
        return None
    return beyond_chance(delta_interval("se", (a, se_a), (b, se_b), ctx.noise))


def _clinical_text(ctx: Context, measure: str) -> str:
    cut = ctx.settings.clinical_cutoff(measure)
    label = MEASURES[measure].label
    return f"{label} < {cut:g}" if MEASURES[measure].higher_is_better else f"{label} ≥ {cut:g}"


def _measure_text(ctx: Context, measure: str) -> str:
    """'ORS (higher = better), change = last - first' for subtitles."""
    m = MEASURES[measure]
    change = "last − first" if m.higher_is_better else "first − last"
    return f"{m.label} ({m.direction_text}); improvement = {change}, positive = better"


def _cohort_text(measure: str) -> str:
    return f"ended episodes finished in the period with ≥ 2 {MEASURES[measure].label} scores"


def _fit_layout(fig: go.Figure, *, legend_below: bool = False) -> go.Figure:
    """Room for a long subtitle above the plot, and the legend under it where there is one."""
    sub = fig.layout.title.subtitle.text or ""
    lines = sub.count("<br>") + 1 if sub else 0
    extra = 19 * max(lines - 2, 0)  # the theme leaves room for a title and two subtitle lines
    margin = {"t": 95 + extra}
    if legend_below:
        margin["b"] = 120
        figure_edit.update_layout(
            fig,
            legend={
                "orientation": "h",
                "x": 0.0,
                "xanchor": "left",
                "y": -0.24,
                "yanchor": "top",
                "traceorder": "normal",
            },
        )
    figure_edit.update_layout(
        fig,
        margin=margin,
        height=int(fig.layout.height or 430) + extra + (40 if legend_below else 0),
        # pin the title to the top so a taller margin does not push it into the subtitle
        title={"yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": 14}},
    )
    return fig


# --------------------------------------------------------------------------- panels


def _distribution(ctx: Context, now: dict, shown: dict) -> Panel:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    rc = ctx.settings.reliable_change(measure)
    title = f"How much did clients change? {m.label} improvement"
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
        return empty_panel("distribution", title, f"No episodes with ≥ 2 {m.label} scores.")
    # Each band's cells add up to a headline count (and all cells to the total): partitioning
    # by band keeps >= 2 withheld cells of >= k clients in any band with a withheld cell,
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
    total = shown["outcome_n"]
    fig = _improvement_histogram(
        safe,
        rc=rc,
        lowest=lowest,
        highest=highest,
        bin_width=BIN_WIDTH,
        label=m.label,
        total=total,
        title=title,
        subtitle=subtitle(
            ctx,
            _measure_text(ctx, measure),
            f"reliable change ≥ {rc:g} points (dashed lines)",
            _cohort_text(measure),
            n_text=n_text(ctx, total, "episodes", now["outcome_clients"]),
        ),
        suppressed_label=ctx.policy.label,
    )
    _fit_layout(fig, legend_below=True)
    return Panel(
        key="distribution",
        title=title,
        subtitle="",
        reading=(
            f"Each bar is the share of episodes whose {m.label} changed by that many points "
            f"(right = better). Blue bars improved by at least {rc:g} points, more than "
            "measurement error; red bars worsened that much. Change from first to last score "
            "includes natural recovery and regression to the mean, so it is not all the "
            "therapy's doing." + withheld_note(ctx, safe) + noise_note(ctx)
        ),
        figure=fig,
        data=_distribution_table(safe, lowest, highest, total),
        withheld=any_withheld(safe),
        stats={"reliable_change": rc},
    )


def _distribution_table(
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


def _improvement_histogram(
    df: pd.DataFrame,
    *,
    rc: float,
    lowest: float,
    highest: float,
    bin_width: float,
    label: str,
    total: float,
    title: str,
    subtitle: str,
    suppressed_label: str,
) -> go.Figure:
    """Stacked bars of episode shares by improvement bin, coloured by reliable-change band.

    Shares are of `total` (all episodes, withheld cells included), so a withheld cell never
    inflates the others.
    """
    fig = go.Figure()
    for band, colour in BAND_COLOURS.items():
        part = df[df["band"] == band]
        if part.empty:
            continue
        share = part["episodes"] / total if total else part["episodes"] * np.nan
        fig.add_trace(
            go.Bar(
                x=part["bin"],
                y=share,
                name=band.capitalize(),
                marker_color=colour,
                width=bin_width * 0.95,
                customdata=np.column_stack([part["episodes"].to_numpy(dtype=float)]),
                hovertemplate=(
                    f"{band.capitalize()}<br>change %{{x:+g}} points: %{{y:.1%}} "
                    "(%{customdata[0]:,.0f} episodes)<extra></extra>"
                ),
            )
        )
    edge = rc - bin_width / 2  # the bar holding exactly ±rc lies outside these lines
    for x, text, pos in (
        (-edge, f"worse by ≥ {rc:g}", "top left"),
        (edge, f"better by ≥ {rc:g}", "top right"),
    ):
        figure_edit.add_vline(
            fig,
            x=x,
            line={"color": charts.GREY, "dash": "dash", "width": 1.8},
            annotation_text=text,
            annotation_position=pos,
            annotation_font={"color": charts.GREY, "size": 13},
        )
    hidden = df[df["suppressed"]] if "suppressed" in df else df.iloc[0:0]
    if len(hidden):
        fig.add_annotation(
            xref="paper",
            yref="paper",
            x=1.0,
            y=-0.24,
            xanchor="right",
            yanchor="top",
            showarrow=False,
            text=f"{len(hidden)} small cell(s) withheld ({suppressed_label})",
            font={"color": charts.GREY, "size": 13},
        )
    ticks = np.arange(lowest, highest + 0.1, rc)
    figure_edit.update_xaxes(
        fig,
        title=f"Improvement in {label} points (positive = better; end bars pool the tails)",
        tickvals=ticks,
        ticktext=[
            f"≤ −{-t:g}" if t == lowest else f"≥ {t:g}" if t == highest else f"{t:g}" for t in ticks
        ],
        range=[lowest - bin_width, highest + bin_width],
        zeroline=True,
        zerolinecolor="#999",
    )
    figure_edit.update_yaxes(fig, title="Share of episodes", tickformat=".0%", rangemode="tozero")
    figure_edit.update_layout(fig, barmode="stack", bargap=0.05)
    return charts.themed(fig, title=title, subtitle=subtitle)


def _monthly(ctx: Context, now: dict, shown: dict) -> list[Panel]:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    rc = ctx.settings.reliable_change(measure)
    df = queries.run(
        ctx.con, "outcomes_monthly", **ctx.params(), **ctx.settings.outcome_params(measure)
    )
    titles = (
        f"Reliable improvement and deterioration by month ({m.label})",
        f"Recovery and reliable recovery by month ({m.label})",
    )
    if df.empty:
        msg = f"No episodes with ≥ 2 {m.label} scores ended in this selection."
        return [
            empty_panel("monthly_change", titles[0], msg),
            empty_panel("monthly_recovery", titles[1], msg),
        ]
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
    panels = []
    specs = (
        (
            "monthly_change",
            titles[0],
            a,
            {
                "reliable_improvement": "Reliable improvement",
                "reliable_deterioration": "Reliable deterioration",
            },
            f"Share of ended episodes with ≥ 2 {m.label} scores that changed by ≥ {rc:g} points",
            (shown["outcome_n"], now["outcome_clients"]),
            "episodes",
            (
                f"Lines are the month's shares; bands are 95% Wilson intervals. Improvement by at "
                f"least {rc:g} points is more than the measure's error. Months with few endings "
                "have wide bands: look for sustained movement, not single months."
            ),
        ),
        (
            "monthly_recovery",
            titles[1],
            b,
            {"recovered": "Recovery", "reliably_recovered": "Reliable recovery"},
            f"Of ended episodes with ≥ 2 {m.label} scores starting in the clinical range "
            f"({_clinical_text(ctx, measure)})",
            f"share ending out of it (reliable recovery: and improved by ≥ {rc:g})",
            (shown["clinical_n"], now["clinical_clients"]),
            "episodes in clinical range",
            (
                "Recovery counts only episodes that started in the clinical range. Reliable "
                "recovery also needs a change larger than measurement error, so it is never "
                "above recovery. " + SMALL_N_NOTE
            ),
        ),
    )
    for key, title, frame, rates, *definition, n_total, n_unit, reading in specs:
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
        long = pd.concat(long_parts, ignore_index=True)
        if long["rate"].notna().sum() == 0:
            panels.append(
                empty_panel(
                    key,
                    title,
                    f"Every month describes fewer than {ctx.policy.k} clients here, or fewer "
                    "than that stand behind its rates' events or non-events, so no monthly "
                    "rates are shown. Widen the period or clear a filter.",
                )
            )
            continue
        fig = charts.lines(
            long,
            x="month",
            y="rate",
            group="rate_name",
            low="low",
            high="high",
            title=title,
            subtitle=subtitle(
                ctx,
                *definition,
                "by month the episode ended · 95% Wilson band",
                n_text=n_text(ctx, n_total[0], n_unit, n_total[1]),  # (episodes, clients)
            ),
            x_label="Month the episode ended",
            y_label="Share of episodes",
            value_format="pct",
            scale="rate",
        )
        figure_edit.update_yaxes(fig, rangemode="tozero")
        _fit_layout(fig, legend_below=True)
        data = _monthly_table(safe.assign(**lines), long)
        withheld = any_withheld(safe) or bool(long["rate"].isna().any())
        panels.append(
            Panel(
                key=key,
                title=title,
                subtitle="",
                reading=reading + withheld_note(ctx, safe) + noise_note(ctx),
                figure=fig,
                data=data,
                withheld=withheld,
            )
        )
    return panels


def _monthly_table(safe: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
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


def _trajectory(ctx: Context, now: dict, shown: dict) -> Panel:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    title = f"{m.label} session by session, by early alliance"
    df = queries.run(
        ctx.con,
        "outcomes_trajectory",
        **ctx.params(),
        measure=measure,
        max_session=MAX_SESSION,
    )
    if df.empty:
        return empty_panel(
            "trajectory", title, f"No episodes with both an early SRS and ≥ 2 {m.label} scores."
        )
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
    score_range = _score_range(measure)
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "episodes"],
        means=[protected.Mean("mean_score", "episodes", score_range)],
        value_cols=["episodes", "mean_score", "sd_score"],
        partition_cols=["session_number"],
        n_key_from="episodes",
    )
    low, high = protected.mean_interval(
        safe["mean_score"], safe["sd_score"], safe["episodes"], score_range, ctx.noise
    )
    one = pd.to_numeric(safe["episodes"]).to_numpy(dtype=float) < 2
    safe = safe.assign(low=np.where(one, np.nan, low), high=np.where(one, np.nan, high))
    if safe["mean_score"].notna().sum() == 0:
        return empty_panel(
            "trajectory",
            title,
            f"Each early-alliance third describes fewer than {ctx.policy.k} clients here, so no "
            "trajectories are shown. Widen the period or clear a filter.",
        )
    r_n = shown["r_n"]  # the same episodes: >= 2 scores and an early SRS
    fig = charts.lines(
        safe.sort_values(["tercile", "session_number"]),
        x="session_number",
        y="mean_score",
        group="group",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            f"Mean {m.label} score by session number ({m.direction_text}), 95% CI band",
            f"sessions {MAX_SESSION}+ pooled",
            _cohort_text(measure),
            "split into thirds by early SRS (mean of the first 3)",
            n_text=n_text(ctx, r_n, "episodes", now["r_clients"]),
        ),
        x_label="Session number in the episode",
        y_label=f"{m.label} score ({m.direction_text})",
        value_format="num1",
        scale=measure,
    )
    cut = ctx.settings.clinical_cutoff(measure)
    figure_edit.add_hline(
        fig,
        y=cut,
        line={"color": charts.GREY, "dash": "dot", "width": 1.5},
        annotation_text=f"clinical cutoff ({_clinical_text(ctx, measure)} = clinical range)",
        annotation_position="bottom left",
        annotation_font={"color": charts.GREY, "size": 12},
    )
    _fit_layout(fig, legend_below=True)
    figure_edit.update_xaxes(
        fig,
        tickvals=list(range(1, MAX_SESSION + 1)),
        ticktext=[str(i) if i < MAX_SESSION else f"{i}+" for i in range(1, MAX_SESSION + 1)],
    )
    direction = "rise" if m.higher_is_better else "fall"
    table = safe.drop(columns=["group", "label_low", "label_high", "tercile_clients"]).assign(
        early_srs_third=safe["tercile"].map(names)
    )
    return Panel(
        key="trajectory",
        title=title,
        subtitle="",
        reading=(
            f"Each line follows the episodes of one early-alliance third; better outcomes "
            f"{direction} on this scale. Later points describe only the episodes that lasted "
            "that long, so a line's shape mixes change within clients with who stays. "
            + CORRELATION_NOTE
            + withheld_note(ctx, safe)
            + noise_note(ctx)
        ),
        figure=fig,
        data=table[
            [
                "early_srs_third",
                "session",
                "n_clients",
                "episodes",
                "mean_score",
                "low",
                "high",
                "suppressed",
            ]
        ],
        withheld=any_withheld(safe),
        # the cut points as the labels show them (rounded), only where they are shown
        stats={
            k: v
            for k, v, shown in (
                ("cut_low", cut_low, "≈" in names[1]),
                ("cut_high", cut_high, "≈" in names[3]),
            )
            if shown
        },
    )


def _alliance_bins(ctx: Context, now: dict, shown: dict) -> Panel:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    title = f"Early alliance and {m.label} improvement"
    if now["r_n"] < 4:
        return empty_panel(
            "alliance_outcome",
            title,
            f"Too few episodes with both an early SRS and ≥ 2 {m.label} scores to relate them.",
        )
    r_n = int(shown["r_n"])  # the protected count: neither the text nor the groups give the exact
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
    change_range = _change_range(measure)
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "episodes"],
        means=[
            protected.Mean("mean_early_srs", "episodes", SRS_RANGE),
            protected.Mean("mean_improvement", "episodes", change_range),
        ],
        value_cols=["episodes", "mean_early_srs", "mean_improvement", "sd_improvement"],
        n_key_from="episodes",
    )
    low, high = protected.mean_interval(
        safe["mean_improvement"], safe["sd_improvement"], safe["episodes"], change_range, ctx.noise
    )
    one = pd.to_numeric(safe["episodes"]).to_numpy(dtype=float) < 2
    safe = safe.assign(low=np.where(one, np.nan, low), high=np.where(one, np.nan, high))
    safe = safe.assign(group=_bin_labels(ctx, safe, bins))
    r = shown["alliance_outcome_r"]
    ci = shown["alliance_outcome_r_ci"]
    r_withheld = now["r_clients"] < ctx.policy.k
    if r is None or r_withheld:
        r_text = "r not computable" if not r_withheld else f"r withheld ({ctx.policy.label})"
    else:
        ci_text = f" (95% CI {ci[0]:.2f} to {ci[1]:.2f})" if ci else ""
        r_text = f"r = {r:.2f}{ci_text}, n = {r_n:,}"
    share = f"about {100 / bins:.0f}% of episodes each" if bins > 2 else "halves"
    group_word = f"episodes grouped by early SRS ({share}; tied scores kept together)"
    # the band's name above its cut points: nine or ten long labels side by side would be
    # turned on the page and push the chart's margin (the table keeps them on one line)
    fig = charts.bars(
        safe.assign(group=safe["group"].str.replace(" (", "<br>(", regex=False)),
        x="group",
        y="mean_improvement",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            f"Mean {m.label} improvement (points, positive = better), 95% CI",
            group_word,
            "early SRS = mean of the first 3 SRS totals (0–40)",
            _cohort_text(measure),
            n_text=n_text(ctx, r_n, "episodes with an early SRS", now["r_clients"]),
        ),
        x_label="Early SRS (mean of the first 3 SRS totals)",
        y_label=f"Mean {m.label} improvement (points)",
        value_format="num1",
        suppressed_label=ctx.policy.label,
    )
    figure_edit.update_yaxes(fig, rangemode="normal", zeroline=True, zerolinecolor="#999")
    _fit_layout(fig)
    if r is not None and not r_withheld:
        fig.add_annotation(
            xref="paper",
            yref="paper",
            x=0.01,
            y=0.99,
            xanchor="left",
            yanchor="top",
            showarrow=False,
            align="left",
            bgcolor="rgba(255,255,255,0.9)",
            bordercolor="#bbb",
            borderpad=6,
            text=(
                f"<b>This clinic:</b> Pearson {r_text}<br>"
                "<b>Published:</b> r = .28 (95% CI .26–.30), Flückiger et al. 2018"
            ),
            font={"size": 13},
        )
    return Panel(
        key="alliance_outcome",
        title=title,
        subtitle="",
        reading=(
            "Bars are the mean improvement of episodes grouped by their early SRS; whiskers "
            "are 95% intervals. A rising pattern means a stronger early alliance goes with more "
            f"improvement. {CORRELATION_NOTE} Change scores also carry regression to the mean: "
            "clients who start worse tend to improve more whatever happens, and intake "
            "severity can colour how they rate the alliance."
            + withheld_note(ctx, safe)
            + noise_note(ctx)
        ),
        figure=fig,
        data=safe[
            [
                "group",
                "n_clients",
                "episodes",
                "mean_early_srs",
                "mean_improvement",
                "low",
                "high",
                "suppressed",
            ]
        ],
        withheld=any_withheld(safe),
        stats={
            "r": float("nan") if r is None else r,
            "r_low": float("nan") if not ci else ci[0],
            "r_high": float("nan") if not ci else ci[1],
            "r_n": r_n,
            "published_r": PUBLISHED_R,
        },
    )


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


def _bin_labels(ctx: Context, safe: pd.DataFrame, bins: int) -> list[str]:
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


# --------------------------------------------------------------------------- the view


def _empty_notice(ctx: Context, now: dict) -> str:
    label = MEASURES[ctx.filters.outcome_measure].label
    if now["ended"] == 0:
        return (
            "No episodes ended in this selection, so there are no outcomes to show. Widen the "
            "period or clear a filter."
        )
    return (
        f"Episodes ended in this selection, but none had two or more {label} scores "
        f"(the {label} may not be used at these sites or programs). Choose another outcome "
        "measure, widen the period or clear a filter."
    )


def build(ctx: Context) -> View:
    measure = ctx.filters.outcome_measure
    row = _summary_row(ctx, measure)
    now = _summary_from_row(row, measure)  # exact: only to judge (threshold, numerator rule)
    n_clients = now["outcome_clients"]
    if n_clients == 0:
        return View(TITLE, QUESTION, notice=_empty_notice(ctx, now), n_clients=0)
    if n_clients < ctx.policy.k:
        return View(
            TITLE,
            QUESTION,
            notice=(
                f"The outcomes in this selection describe fewer than {ctx.policy.k} clients, so "
                "no numbers are shown: with so few people, figures could identify individuals "
                "and would be too noisy to act on. Widen the period or clear a filter."
            ),
            n_clients=n_clients,
        )
    shown = _protected_summary(ctx, row, measure)  # what the page shows
    trajectory, before, distribution, monthly, alliance_bins = gather(
        lambda: _trajectory(ctx, now, shown),
        lambda: _protected_summary(
            ctx, _summary_row(ctx, measure, ctx.filters.previous_period()), measure
        ),
        lambda: _distribution(ctx, now, shown),
        lambda: _monthly(ctx, now, shown),
        lambda: _alliance_bins(ctx, now, shown),
    )
    panels = [distribution, *monthly, trajectory, alliance_bins]
    return View(
        TITLE,
        QUESTION,
        tiles=_tiles(ctx, shown, before),
        panels=panels,
        n_clients=n_clients,
    )
