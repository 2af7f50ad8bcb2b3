"""Therapists: do therapists differ more than chance would explain, once case mix is allowed for?

Therapists are compared only with funnel plots (Spiegelhalter 2005; metrics.md "Therapists"),
never with a ranked table: each therapist's dropout rate, mean early alliance and case-mix
adjusted improvement is drawn against their volume, with 95% and 99.8% control limits around the
clinic-wide value (widened for overdispersion as the settings say). The therapist share of
outcome variance (ICC) says how much of the difference in outcomes lies between therapists at all.

Roles and privacy:

* a role without therapist-level access (``ctx.therapist_level`` False) gets a notice and no
  therapist-level query is run;
* every therapist point describes that therapist's clients, so it passes the protected-
  statistics step (alliance/protected.py) with all therapists of the funnel as one partition
  (their episodes add up to the clinic-wide value shown as the target): therapists with fewer
  than k clients, or a dropout rate with 1 .. k-1 dropouts or other endings (numerator rule), are
  withheld (plus, where needed, a complementary one), removed from the plot, counted in the
  caption and marked in the data; every count shown carries its cell's noise, every rate and
  mean is formed from protected counts, and the funnels (points, target, limits) are drawn from
  those protected values, so a site's figures minus its therapists' never give a small group's;
* statistics resting on therapists (the ICC) are computed over the therapists with at least k
  clients and released by `privacy.statistic_released`; `therapist_icc_outcome` (the exact
  clinic-level figure that `summary` prints) is unchanged;
* meeting mode replaces codes with labels A, B, C... in an order drawn from a hash of the code
  salted with the view's filters (not performance, not code order), everywhere, and turns the
  point selection off.

Selecting a point filters the dashboard to that therapist; the funnels themselves always compare
the therapist with all therapists (the therapist filter is dropped for them and the selected
therapist is ringed), so selecting someone never collapses a funnel to one dot.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import charts, noise, privacy, protected, queries, spc, stats
from alliance.charts import figure_edit
from alliance.charts.layout import fit_header
from alliance.panel import Context, Panel, Tile, View, empty_panel
from alliance.settings import MEASURES
from alliance.views.common import (
    SMALL_N_NOTE,
    gather,
    n_text,
    noise_note,
    protect,
    protect_counts,
    subtitle,
)

TITLE = "Therapists"
QUESTION = (
    "Do therapists differ more than chance would explain, once their caseloads are allowed for? "
    "Compared with funnel plots, never ranked."
)
ROLE_NOTICE = (
    "Therapist-level data is not available for your role. Clinic-, site- and group-level views "
    "are on the other pages; ask a director or supervisor if you need therapist comparisons."
)
SRS_RANGE = 40.0  # one record's range (the scale of a sum's noise): SRS total 0-40
WAI_RANGE = 4.0  # WAI-SR mean item 1-5
PUBLISHED_ICC = 0.05  # Wampold & Brown 2005; Johns et al. 2019 (routine practice about 5%)
SELECTION_HINT = "Select a therapist's dot to filter the whole dashboard to that therapist."
POSITION_TEXT = {
    "within": "inside the 95% limits",
    "above 95%": "above the 95% limit",
    "below 95%": "below the 95% limit",
    "above 99.8%": "above the 99.8% limit",
    "below 99.8%": "below the 99.8% limit",
}
FUNNEL_NOTE = (
    "A dot outside the limits is a prompt to look at case mix and context, not a verdict; "
    "the position of dots inside the funnel is chance, not a ranking."
)


# --------------------------------------------------------------------------- public helpers


def therapist_icc_outcome(ctx: Context, measure: str = "ors") -> stats.ICC:
    """Therapist share of variance in `measure` improvement: improvement ~ intake + (1 | therapist).

    Over ended episodes finished in the period with >= 2 administrations, under the context's
    filters as given (a therapist filter leaves one therapist: the ICC is then NaN, method
    "none"). A clinic-level number: it discloses no single therapist.
    """
    rows = queries.run_rows(ctx.con, "therapists_outcome_episodes", **ctx.params(), measure=measure)
    return stats.therapist_icc(rows["improvement"], rows["intake"], rows["therapist"])


def meeting_labels(codes: Iterable[str], salt: str) -> dict[str, str]:
    """Labels A, B, C... (then AA, AB...) for therapist codes, in an order carrying no identity.

    The order is that of sha256(salt | code): neither code order nor any performance order, and
    a new shuffle for every different salt (the view and its filters).
    """
    unique = sorted(set(codes))
    order = sorted(unique, key=lambda c: hashlib.sha256(f"{salt}|{c}".encode()).hexdigest())
    return {code: _letters(i) for i, code in enumerate(order)}


def selected_therapist(event: object) -> str | None:
    """The therapist code picked in a funnel plot's selection event, if exactly one was picked.

    Points carry customdata [code]; limit lines are not selectable. A box or lasso around
    several therapists selects nobody.
    """
    selection = _get(event, "selection")
    points = _get(selection, "points") or []
    codes = set()
    for point in points:
        data = _get(point, "customdata")
        if isinstance(data, list | tuple) and data:
            codes.add(str(data[0]))
        elif isinstance(data, str):
            codes.add(data)
    return codes.pop() if len(codes) == 1 else None


# --------------------------------------------------------------------------- the view


def build(ctx: Context) -> View:
    if not ctx.therapist_level:
        return View(TITLE, QUESTION, notice=ROLE_NOTICE)
    cmp = comparison_context(ctx)
    measure = ctx.filters.outcome_measure
    dropout = queries.run(ctx.con, "therapists_dropout", **cmp.params())
    clinic = dropout[dropout["is_clinic"]]
    n_clients = int(clinic["n_clients"].iloc[0]) if len(clinic) else 0
    if n_clients < ctx.policy.k:
        return View(TITLE, QUESTION, notice=_too_small(ctx, n_clients), n_clients=n_clients)
    outcome_rows, alliance = gather(
        lambda: queries.run_rows(
            ctx.con, "therapists_outcome_episodes", **cmp.params(), measure=measure
        ),
        lambda: queries.run(
            ctx.con, "therapists_alliance", **cmp.params(), alliance=ctx.filters.alliance_measure
        ),
    )
    dropout = _protected_dropout(ctx, dropout)
    codes = (
        set(dropout["therapist"].dropna().unique())
        | set(alliance["therapist"].dropna().unique())
        | set(outcome_rows["therapist"].dropna().unique())  # one row per episode: unique first
    )
    names = display_names(ctx, codes)
    icc, outcome, dropout_panel, alliance_panel = gather(
        lambda: _released_icc(ctx, outcome_rows),
        lambda: _outcome_funnel(ctx, cmp, outcome_rows, names),
        lambda: _dropout_funnel(ctx, cmp, dropout, names),
        lambda: _alliance_funnel(ctx, cmp, alliance, names),
    )
    panels = [dropout_panel, alliance_panel, outcome, _icc_panel(ctx, cmp, icc, outcome_rows)]
    tiles = _tiles(ctx, dropout, icc, outcome_rows, panels, names)
    return View(TITLE, QUESTION, tiles=tiles, panels=panels, n_clients=n_clients)


def _protected_dropout(ctx: Context, df: pd.DataFrame) -> pd.DataFrame:
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


def _released_icc(ctx: Context, rows: pd.DataFrame) -> stats.ICC:
    """The page's therapist ICC: over the therapists with at least k clients, so that every
    group it rests on has k (privacy.statistic_released); NaN when fewer than two remain."""
    big = rows[rows["therapist_clients"] >= ctx.policy.k]
    groups = big.groupby("therapist")["therapist_clients"].first()
    if len(groups) < 2 or not privacy.statistic_released(ctx.policy, *map(int, groups)):
        return stats.therapist_icc(
            big["improvement"].iloc[:0], big["intake"].iloc[:0], big["therapist"].iloc[:0]
        )
    return stats.therapist_icc(big["improvement"], big["intake"], big["therapist"])


def comparison_context(ctx: Context) -> Context:
    """The context the funnels use: every filter except the therapist (all are compared)."""
    if ctx.filters.therapist is None:
        return ctx
    return dataclasses.replace(ctx, filters=dataclasses.replace(ctx.filters, therapist=None))


def display_names(ctx: Context, codes: Iterable[str]) -> dict[str, str]:
    """code -> what is shown: the code itself, or in meeting mode a label A, B, C..."""
    codes = list(codes)
    if not ctx.meeting_mode:
        return {c: c for c in codes}
    return meeting_labels(codes, salt=_salt(ctx))


# --------------------------------------------------------------------------- panels


def _dropout_funnel(ctx: Context, cmp: Context, df: pd.DataFrame, names: dict) -> Panel:
    """`df`: the protected dropout table (`_protected_dropout`)."""
    title = "Dropout rate by therapist"
    ther = df[~df["is_clinic"]]
    clinic = df[df["is_clinic"]].iloc[0]
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
    return _funnel_panel(
        ctx,
        cmp,
        units,
        names,
        key="dropout",
        title=title,
        kind="proportion",
        target=target,
        sigma=None,
        definition="Dropouts / ended episodes (finished in the period), by main therapist",
        total=_total_text(ctx, clinic, "ended", "ended episodes"),
        x_label="Ended episodes",
        y_label="Dropout rate",
        value_format="pct",
        value_name="dropout rate",
        extra_cols={"dropouts": "dropouts"},
        n_name="ended episodes",
        reading="Each dot is one therapist's dropout rate against their number of ended "
        "episodes; the funnel narrows as numbers grow because small caseloads swing by chance. "
        "Dropout depends on who is referred (age, circumstances) as well as on the therapist.",
    )


def _total_text(ctx: Context, row: pd.Series, count: str, unit: str) -> str:
    """'n = 1,234 ended episodes' from a protected row (its exact clients only judge)."""
    if row["suppressed"] and not 0 < int(row["true_clients"]) < ctx.policy.k:
        return ""
    shown = row[count]
    return n_text(ctx, 0 if pd.isna(shown) else shown, unit, int(row["true_clients"]))


def _alliance_funnel(ctx: Context, cmp: Context, df: pd.DataFrame, names: dict) -> Panel:
    wai = ctx.filters.alliance_measure == "wai"
    label = "WAI-SR" if wai else "SRS"
    title = f"Early alliance ({label}) by therapist"
    if df[~df["is_clinic"]].empty:
        return empty_panel(
            _key(ctx, "alliance"), title, f"No ended episodes with an early {label} here."
        )
    record_range = WAI_RANGE if wai else SRS_RANGE
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
        return empty_panel(
            _key(ctx, "alliance"),
            title,
            "Too few episodes per therapist to estimate the spread of early alliance.",
        )
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
    scale = "WAI-SR mean item score (1–5)" if wai else "SRS total (0–40)"
    return _funnel_panel(
        ctx,
        cmp,
        units,
        names,
        key="alliance",
        title=title,
        kind="mean",
        target=np.nan if clinic["suppressed"] else float(clinic["mean_early"]),
        sigma=sigma,
        definition=f"Mean of each ended episode's first three {label} scores ({scale}), by "
        f"main therapist · σ = pooled within-therapist SD {sigma:.2f}",
        total=_total_text(ctx, clinic, "episodes", f"ended episodes with an early {label}"),
        x_label=f"Episodes with an early {label}",
        y_label=f"Mean early {label}",
        value_format="num2" if wai else "num1",
        value_name=f"mean early {label}",
        extra_cols={},
        n_name="episodes",
        reading=f"Each dot is the mean early {label} of one therapist's clients. Clients rate "
        "the alliance, and some client groups rate higher than others, so a therapist's "
        "caseload shapes the dot as well as their work.",
    )


def _outcome_funnel(ctx: Context, cmp: Context, rows: pd.DataFrame, names: dict) -> Panel:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    title = f"Case-mix adjusted {m.label} improvement by therapist"
    if rows.empty or rows["therapist"].nunique() < 2:
        return empty_panel(
            _key(ctx, "outcome"),
            title,
            f"Fewer than two therapists have ended episodes with two or more {m.label} scores "
            "here: there is nothing to compare.",
        )
    adjusted = stats.casemix_adjusted(
        rows,
        outcome="improvement",
        covariates=["intake"],
        categorical=["age_band", "program"],
        group="therapist",
    )
    sigma = float(adjusted["pooled_sd"].iloc[0])
    if not np.isfinite(sigma) or sigma <= 0:
        return empty_panel(
            _key(ctx, "outcome"), title, "Too few episodes to estimate the spread of improvement."
        )
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
    return _funnel_panel(
        ctx,
        cmp,
        units,
        names,
        key="outcome",
        title=title,
        kind="mean",
        target=np.nan if clinic["suppressed"] else float(clinic["mean"]),
        sigma=sigma,
        definition=f"Clinic mean + therapist's mean residual of {m.label} improvement ~ intake "
        f"+ age band + program (positive = better) · σ = pooled residual SD {sigma:.2f}",
        total=_total_text(ctx, clinic, "n", f"ended episodes with ≥ 2 {m.label} scores"),
        x_label=f"Ended episodes with ≥ 2 {m.label} scores",
        y_label=f"Adjusted {m.label} improvement (points)",
        value_format="num1",
        value_name="adjusted improvement (points)",
        extra_cols={"raw_mean": "unadjusted improvement (points)"},
        n_name="episodes",
        reading="Each dot is one therapist's mean improvement after allowing for how unwell "
        "their clients were at intake, their age bands and programs. Other differences between "
        "caseloads are not adjusted for, and clients who start low improve more partly by "
        "regression to the mean.",
    )


def _funnel_panel(
    ctx: Context,
    cmp: Context,
    units: pd.DataFrame,
    names: Mapping[str, str],
    *,
    key: str,
    title: str,
    kind: str,
    target: float,
    sigma: float | None,
    definition: str,
    total: str,
    x_label: str,
    y_label: str,
    value_format: str,
    value_name: str,
    extra_cols: dict[str, str],
    n_name: str,
    reading: str,
) -> Panel:
    """One funnel from protected units (columns code, n, value, n_clients, extra columns,
    suppressed, suppression: the output of the protected-statistics step): the points, the
    target and the limits all from protected values; withheld units are not drawn."""
    panel_key = _key(ctx, key)
    if len(units) < 2:
        return empty_panel(
            panel_key,
            title,
            "Fewer than two therapists have data here: a funnel plot needs several to compare.",
        )
    safe = units.rename(columns={"code": "unit"})
    visible_units = safe[~safe["suppressed"].to_numpy(dtype=bool)]
    if visible_units.empty or not np.isfinite(target):
        return empty_panel(
            panel_key,
            title,
            f"No therapist can be shown here: each has fewer than {ctx.policy.k} clients (or "
            f"fewer than {ctx.policy.k} events or non-events behind a rate), or showing them "
            "would reveal one who has.",
        )
    pts, grid, info = spc.funnel(
        visible_units[["unit", "n", "value"]].astype({"n": float, "value": float}),
        kind=kind,  # type: ignore[arg-type]
        target=target,
        sigma=sigma,
        method=ctx.settings.overdispersion,
    )
    limits = pts.drop(columns=["n", "value", "se", "z_adj"]).set_index("unit")
    table = safe.join(limits, on="unit")
    table.insert(0, "therapist", table["unit"].map(names))
    table = table.drop(columns=["unit"])
    table["n"] = pd.to_numeric(table["n"]).round().astype("Int64")
    table["n_clients"] = pd.to_numeric(table["n_clients"]).round().astype("Int64")
    table["flag"] = table["flag"].astype(object).where(~table["suppressed"], ctx.policy.label)
    order = _label_sort_key if ctx.meeting_mode else None
    safe = table.sort_values("therapist", key=order).reset_index(drop=True)
    visible = safe[~safe["suppressed"]].assign(n=lambda d: d["n"].astype(float))
    primary = int((safe["suppression"] == "primary").sum())
    complementary = int((safe["suppression"] == "complementary").sum())
    withheld_text = _withheld_caption(ctx, primary, complementary)
    shown_text = f"{len(visible)} therapists shown" + (
        f", {primary + complementary} withheld ({ctx.policy.label} clients)"
        if primary + complementary
        else ""
    )
    # limits over the observed range of volumes (not from n = 1, where they span 0-100%)
    grid = grid[grid["n"] >= max(1.0, 0.6 * float(visible["n"].min()))]
    fig = charts.funnel_plot(
        visible.rename(columns={"therapist": "unit"}),
        grid,
        target=target,
        title=title,
        subtitle=subtitle(
            cmp,
            definition,
            _limits_text(info),
            n_text=f"{total} · {shown_text}" if total else shown_text,
        ),
        x_label=x_label,
        y_label=y_label,
        value_format=value_format,
    )
    _ring_selected(fig, ctx, names, visible)
    fit_header(fig)
    figure_edit.update_layout(
        fig, legend={"orientation": "h", "yanchor": "top", "y": -0.3, "xanchor": "left", "x": 0.0}
    )
    figure_edit.update_layout(fig, margin={"b": 120})
    # Canonical key order: the figure a cache hit returns (a pickled copy) must serialise exactly
    # like the one built on the miss, or Streamlit sees a new chart and drops the first click.
    fig = go.Figure(fig.to_dict())
    outside = int(visible["flag"].isin(["above 99.8%", "below 99.8%"]).sum())
    # the data behind the chart, with headers a meeting can read; rates in percent (the
    # headers say so). n_clients keeps its name: it is the privacy column of every table.
    pct = kind == "proportion"
    unit = " (%)" if pct else ""
    headers = {
        "n": n_name,
        "value": value_name + unit,
        "low_95": "95% limit, low" + unit,
        "high_95": "95% limit, high" + unit,
        "low_998": "99.8% limit, low" + unit,
        "high_998": "99.8% limit, high" + unit,
        "flag": "position",
        "z": "z score",
        **extra_cols,
    }
    scaled = ["value", "low_95", "high_95", "low_998", "high_998"]
    data = safe.assign(**{c: safe[c] * (100 if pct else 1) for c in scaled}).rename(columns=headers)
    data = data[
        [
            "therapist",
            "n_clients",
            n_name,
            *extra_cols.values(),
            *(headers[c] for c in (*scaled, "flag", "z")),
            "suppressed",
            "suppression",
        ]
    ]
    sentence = (
        f"{outside} of {len(visible)} therapists shown lie outside the 99.8% limits. "
        if outside
        else f"All {len(visible)} therapists shown lie within the 99.8% limits. "
    )
    hint = "" if ctx.meeting_mode else " " + SELECTION_HINT
    return Panel(
        key=panel_key,
        title=title,
        subtitle="",
        reading=f"{reading} {sentence}{FUNNEL_NOTE}"
        + (f" {withheld_text}." if withheld_text else "")
        + noise_note(ctx)
        + hint,
        figure=fig,
        data=data,
        withheld=bool(safe["suppressed"].any()),
        section="Funnel plots",
        stats={
            "target": float(target),
            "phi": float(info["phi"]),
            "tau2": float(info["tau2"]),
            "shown": float(len(visible)),
            "outside_998": float(outside),
            "withheld": float(primary + complementary),
        },
    )


def _icc_panel(ctx: Context, cmp: Context, icc: stats.ICC, rows: pd.DataFrame) -> Panel:
    measure = ctx.filters.outcome_measure
    m = MEASURES[measure]
    title = f"Therapist share of {m.label} outcome variance"
    key = "therapist_icc"
    if not np.isfinite(icc.icc):
        return empty_panel(
            key,
            title,
            "Not enough therapists or episodes with two or more scores here to estimate the "
            "therapist share of outcome variance.",
        )
    episodes, clients = icc_counts_shown(ctx, rows)
    safe = pd.DataFrame(
        {
            "estimate": [f"This clinic ({m.label} improvement)"],
            "n_clients": [clients],
            "episodes": [episodes],
            "therapists": [icc.n_groups],
            "icc": [icc.icc],
            "low": [icc.low],
            "high": [icc.high],
            "tau2": [icc.tau2],
            "sigma2": [icc.sigma2],
            "method": [_method_text(icc.method)],
            "suppressed": [False],
        }
    )
    fig = charts.interval_dots(
        safe,
        category="estimate",
        value="icc",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            cmp,
            f"ICC = τ² / (τ² + σ²) from {m.label} improvement ~ intake score + (1 | therapist)",
            f"{_method_text(icc.method)}; 95% interval from the one-way ANOVA F",
            f"therapists with ≥ {ctx.policy.k} clients",
            n_text=f"n = {episodes:,} ended episodes of {icc.n_groups} therapists",
        ),
        x_label="Share of outcome variance between therapists",
        reference=PUBLISHED_ICC,
        reference_label="published ≈ 5%",
        value_format="pct1",
        suppressed_label=ctx.policy.label,
    )
    figure_edit.update_layout(fig, height=300, showlegend=False)
    figure_edit.update_xaxes(
        fig, range=[0.0, max(0.08, 1.15 * icc.high if np.isfinite(icc.high) else 0.0)]
    )
    fit_header(fig)
    return Panel(
        key=key,
        title=title,
        subtitle="",
        reading=f"Of the differences in {m.label} improvement left after allowing for intake "
        f"scores, {icc.icc:.1%} (95% CI {icc.low:.1%} to {icc.high:.1%}) lies between "
        "therapists; the rest lies between clients and episodes of the same therapist. "
        "Published estimates for routine practice are about 5% (Wampold & Brown 2005; Johns "
        f"et al. 2019). It rests on the therapists with at least {ctx.policy.k} clients here, "
        "so that no small caseload stands behind it. " + SMALL_N_NOTE + noise_note(ctx),
        figure=fig,
        data=safe,
        section="Therapist effect",
        stats={"icc": icc.icc, "low": icc.low, "high": icc.high},
    )


def icc_counts_shown(ctx: Context, rows: pd.DataFrame) -> tuple[int, int]:
    """The episodes and clients behind the page's ICC (`_released_icc`: therapists with >= k
    clients) as shown: counts with their cell's noise (the key: the sum of those therapists'
    episode keys; the clients' derived from it). Clients are summed over the therapists (a
    client seen by two of them counts twice: the query returns no client identifiers)."""
    big = rows[rows["therapist_clients"] >= ctx.policy.k]
    if big.empty:
        return 0, 0
    per = big.groupby("therapist")[["therapist_clients", "therapist_episodes_cellkey"]].first()
    key = np.array([float(per["therapist_episodes_cellkey"].sum())])
    counts = np.array([len(big), per["therapist_clients"].sum()], dtype="float64")
    keys = np.concatenate([key, noise.derived_key(key, "n_clients")])
    shown = noise.perturb_counts(counts, keys, ctx.noise, ctx.policy.k)
    return int(shown[0]), int(shown[1])


# --------------------------------------------------------------------------- tiles


def _tiles(
    ctx: Context,
    dropout: pd.DataFrame,
    icc: stats.ICC,
    rows: pd.DataFrame,
    panels: list[Panel],
    names: Mapping[str, str],
) -> list[Tile]:
    m = MEASURES[ctx.filters.outcome_measure]
    ther = dropout[~dropout["is_clinic"]]
    clinic_clients = int(dropout.loc[dropout["is_clinic"], "true_clients"].iloc[0])
    shown = next((p for p in panels if p.stats and "shown" in p.stats), None)
    shown_text = (
        f"{int(shown.stats['shown'])} shown in the funnels, {int(shown.stats['withheld'])} "
        f"withheld (fewer than {ctx.policy.k} clients, events or non-events)"
        if shown and shown.stats.get("withheld")
        else "all shown in the funnels"
    )
    raw = pd.DataFrame(
        {"key": ["therapists"], "n_clients": [clinic_clients], "value": [float(len(ther))]}
    )
    protect(ctx, raw, value_cols=["value"], complementary=False)
    # the ICC is released by `_released_icc` (every therapist it rests on has >= k clients)
    released = bool(np.isfinite(icc.icc))
    icc_value = icc.icc if released else np.nan
    icc_text = (
        f"95% CI {icc.low:.1%} to {icc.high:.1%} · {_method_text(icc.method)} · "
        f"n = {icc_counts_shown(ctx, rows)[0]:,} episodes, {icc.n_groups} therapists with "
        f"≥ {ctx.policy.k} clients · published ≈ 5%"
        if released
        else ""
    )
    tiles = [
        Tile(
            key="therapists",
            label="Therapists with ended episodes",
            value=float(len(ther)),
            fmt=",.0f",
            n_text=shown_text,
            help="Therapists who were the main therapist of at least one episode that ended in "
            "the period.",
            higher_is_better=None,
        ),
        Tile(
            key="therapist_icc",
            label=f"Therapist share of {m.label} variance",
            value=None if pd.isna(icc_value) else float(icc_value),
            fmt=".1%",
            n_text=icc_text,
            help="ICC: the share of the variance in improvement (after intake score) that lies "
            "between therapists rather than between their clients. About 5% in published "
            "routine-practice studies.",
            higher_is_better=None,
            withheld=not released,
        ),
    ]
    code = ctx.filters.therapist
    if code is not None:
        tiles.extend(_selected_tiles(ctx, code, names, panels))
    return tiles


def _selected_tiles(
    ctx: Context, code: str, names: Mapping[str, str], panels: list[Panel]
) -> list[Tile]:
    """The selected therapist's own dots, read from the (already protected) funnel data."""
    name = names.get(code, code)
    alliance_label = "WAI-SR" if ctx.filters.alliance_measure == "wai" else "SRS"
    specs = {
        "dropout": ("Dropout rate", ".1%", "dropout rate (%)", False),
        "alliance": (f"Mean early {alliance_label}", ".1f", None, True),
        "outcome": ("Adjusted improvement", ".1f", "adjusted improvement (points)", True),
    }
    tiles = []
    for panel in panels:
        kind = panel.key.split("_", 1)[-1]
        if kind not in specs or panel.data.empty:
            continue
        label, fmt, col, better = specs[kind]
        if col is None:
            col = next(c for c in panel.data.columns if c.startswith("mean early"))
            fmt = ".2f" if "WAI" in col else ".1f"
        row = panel.data[panel.data["therapist"] == name]
        if row.empty:
            continue
        r = row.iloc[0]
        withheld = bool(r["suppressed"])
        value = None if withheld or pd.isna(r[col]) else float(r[col])
        if value is not None and col.endswith("(%)"):
            value /= 100
        target = panel.stats.get("target")
        position = POSITION_TEXT.get(str(r["position"]), "")
        shown_n = "" if withheld else f"clinic-wide {format(target, fmt)} · {position}"
        tiles.append(
            Tile(
                key=f"selected_{kind}",
                label=f"{name}: {label[0].lower()}{label[1:]}",
                value=value,
                fmt=fmt,
                n_text=shown_n,
                help=f"{panel.title}: the selected therapist's dot. " + FUNNEL_NOTE,
                higher_is_better=better,
                withheld=withheld,
            )
        )
    return tiles


# --------------------------------------------------------------------------- small helpers


def _key(ctx: Context, name: str) -> str:
    """Panel keys: 'funnel_*' switches point selection on in ui.render_panel; meeting mode
    uses 'meeting_*' so nothing can be selected there."""
    return f"{'meeting' if ctx.meeting_mode else 'funnel'}_{name}"


def _salt(ctx: Context) -> str:
    f = dataclasses.replace(ctx.filters, therapist=None)
    return f"{TITLE}|{f!r}|{ctx.allowed_sites!r}"


def _letters(i: int) -> str:
    out, i = "", i + 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _label_sort_key(s: pd.Series) -> pd.Series:
    """Meeting labels in letter order: A..Z before AA.. (by length, then text)."""
    return s.astype(str).str.len() * 1000 + s.astype(str).rank(method="dense")


def _get(obj: object, name: str) -> object:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        return obj[name]  # type: ignore[index]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, name, None)


def _limits_text(info: Mapping[str, object]) -> str:
    phi = float(info["phi"])  # type: ignore[arg-type]
    used = info["method_used"]
    exact = "exact binomial" if info["kind"] == "proportion" else "normal"
    if used == "additive":
        return (
            f"95% and 99.8% limits widened for overdispersion (φ = {phi:.2f}; additive, "
            f"τ = {np.sqrt(float(info['tau2'])):.3g})"  # type: ignore[arg-type]
        )
    if used == "multiplicative":
        return f"95% and 99.8% limits widened for overdispersion (φ = {phi:.2f}, multiplicative)"
    if info["significant"]:
        return f"95% and 99.8% {exact} limits (overdispersion φ = {phi:.2f}, not adjusted)"
    return f"95% and 99.8% {exact} limits (no significant overdispersion, φ = {phi:.2f})"


def _withheld_caption(ctx: Context, primary: int, complementary: int) -> str:
    if not primary and not complementary:
        return ""
    k = ctx.policy.k
    text = (
        f"{primary} therapist{'s' if primary != 1 else ''} with fewer than {k} clients (or, "
        f"for a rate, fewer than {k} events or non-events) not shown"
    )
    if complementary:
        text += (
            f"; {complementary} more withheld with {'them' if primary != 1 else 'it'} so "
            "no withheld figure can be worked out from the clinic total"
        )
    return text


def _method_text(method: str) -> str:
    if method == "reml":
        return "REML random-intercept model"
    if method == "anova":
        return "ANOVA (method of moments) estimate"
    return "not estimable"


def _ring_selected(
    fig: go.Figure, ctx: Context, names: Mapping[str, str], visible: pd.DataFrame
) -> None:
    """Ring the therapist the dashboard is filtered to (if their dot is shown)."""
    code = ctx.filters.therapist
    if code is None:
        return
    row = visible[visible["therapist"] == names.get(code, code)]
    if row.empty:
        return
    fig.add_trace(
        go.Scatter(
            x=row["n"],
            y=row["value"],
            mode="markers",
            name=f"selected: {names.get(code, code)}",
            customdata=row[["therapist"]].to_numpy(),
            marker={
                "size": 24,
                "symbol": "circle-open",
                "color": charts.BLACK,
                "line": {"width": 3, "color": charts.BLACK},
            },
            hoverinfo="skip",
        )
    )


def _too_small(ctx: Context, n_clients: int) -> str:
    if n_clients == 0:
        return "No episodes ended in this selection. Widen the period or clear a filter."
    return (
        f"This selection describes fewer than {ctx.policy.k} clients, so no numbers are shown: "
        "with so few people, figures could identify individuals and would be too noisy to act "
        "on. Widen the period or clear a filter."
    )
