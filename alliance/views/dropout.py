"""Dropout: who leaves therapy early, and how is that linked to the early alliance?

Panels: the monthly dropout rate as a p-chart with the IHI run-chart rules; dropout by
early-alliance band and quintile (Wilson intervals); the fitted logistic curve of dropout against
the early SRS with its confidence band; Cohen's d by site beside the published d ≈ .55; and when
dropouts leave compared with planned endings. Definitions: ../shared/metrics.md ("Dropout and its
link to alliance"). The statistics themselves, from grouped counts: dropout_stats.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import charts, noise, privacy, protected, queries
from alliance.charts import figure_edit
from alliance.charts.control import (
    baseline_mask,
    fit_layout,
    spc_baseline_end,
    spc_centre_label,
    spc_frame,
    spc_method_text,
    spc_note,
)
from alliance.panel import Context, Panel, Tile, View, empty_panel
from alliance.stats import Estimate, p_chart
from alliance.views.common import (
    CORRELATION_NOTE,
    SMALL_N_NOTE,
    any_withheld,
    chart_text,
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
from alliance.views.dropout_stats import (
    GroupedLogit,
    d_by_site,
    effect_groups,
    effect_stats,
    effects_released,
    pool,
)

TITLE = "Dropout"
QUESTION = (
    "How many clients leave therapy without a planned ending, when do they leave, and how is "
    "that linked to the alliance in the first sessions?"
)
LAST_SESSION = 13  # last sessions from 13 on are pooled ("13+")
PUBLISHED_D = 0.55  # Sharf, Primavera & Diener 2010, Psychotherapy 47:637 (11 studies, n = 1,301)
PUBLISHED_TEXT = "published d ≈ .55 (Sharf, Primavera & Diener 2010)"
SRS_RANGE = 40.0  # one SRS total's (and early SRS's) range: the scale of a sum's noise
EARLY_SRS_TEXT = "early SRS = mean SRS total of the episode's first 3 rated sessions"


# --------------------------------------------------------------------------- data


def summary(ctx: Context) -> dict[str, float | int | None]:
    """Dropout headline counts for the view (unsuppressed)."""
    s = queries.run(ctx.con, "dropout_summary", **ctx.params()).iloc[0]
    out: dict[str, float | int | None] = {}
    for key, value in s.items():
        if pd.isna(value):
            out[str(key)] = None
        elif key in ("dropout_rate", "median_last_dropout", "median_last_planned"):
            out[str(key)] = float(value)
        else:
            out[str(key)] = int(value)
    return out


# The headline's protected counts (each with its `<count>_cellkey`) and rates. A client count
# takes its key from the count of its cell's episodes (noise.derived_key, as protect_counts'
# n_key_from), so one month's endings show the clients the p-chart's month shows.
_CLIENTS_FROM = {
    "n_clients": "ended",
    "early_clients": "with_early_srs",
    "dropout_clients": "dropouts",
    "planned_clients": "planned",
}
_KEYED = ["ended", "dropouts", "with_early_srs", "early_dropouts", "planned"]
_COUNTS = [*_KEYED, *_CLIENTS_FROM]
_RATES = [
    protected.Rate("dropout_rate", "dropouts", "ended"),
    protected.Rate("early_dropout_rate", "early_dropouts", "with_early_srs"),
]


def protected_summary(ctx: Context, s: dict) -> dict:
    """The headline as it may be shown: counts with their cell's noise (never below k), rates
    from protected counts, and under "rule" the rates the numerator rule withholds (1 .. k-1
    events or non-events). The threshold on clients is the caller's."""
    row = {c: s[c] for c in _COUNTS}
    row.update({f"{c}_cellkey": s[f"{c}_cellkey"] for c in _KEYED})
    for clients, episodes in _CLIENTS_FROM.items():
        key = np.array([s[f"{episodes}_cellkey"]], dtype="float64")
        row[f"{clients}_cellkey"] = noise.derived_key(key, "n_clients")[0]
    raw = pd.DataFrame([row])
    k = ctx.policy.k
    shown = protected.perturb(raw, params=ctx.noise, counts=_COUNTS, rates=_RATES, floor=k)
    row = shown.iloc[0]
    out: dict = {
        c: (None if pd.isna(row[c]) else float(row[c]))
        for c in shown.columns
        if not c.endswith(protected.KEY_SUFFIX)
    }
    out["rule"] = {r.col for r in _RATES if protected.numerator_rule(raw, [r], k)[0]}
    return out


def _wilson_text(ctx: Context, x: float, n: float) -> str:
    lo, hi = protected.wilson(pd.Series([x]), pd.Series([n]), ctx.noise)
    return f"95% CI {lo[0]:.1%} to {hi[0]:.1%}"


# --------------------------------------------------------------------------- tiles


def _tiles(
    ctx: Context, s: dict, p: dict, effects: dict[str, Estimate], withheld: bool
) -> list[Tile]:
    k = ctx.policy.k
    rate_withheld = 0 < s["n_clients"] < k or "dropout_rate" in p["rule"]
    rate_text = ""
    if p["ended"] and not rate_withheld:
        rate_text = (
            f"{_wilson_text(ctx, p['dropouts'], p['ended'])} · n = {p['ended']:,.0f} ended episodes"
        )
    n_eff = f"n = {p['with_early_srs']:,.0f} ended episodes with an early SRS"

    def est_text(e: Estimate, fmt: str) -> str:
        if withheld or not np.isfinite(e.value):
            return ""
        return f"95% CI {e.low:{fmt}} to {e.high:{fmt}} · {n_eff}"

    def value(e: Estimate) -> float | None:
        return None if withheld or not np.isfinite(e.value) else e.value

    return [
        Tile(
            key="dropout_rate",
            label="Dropout rate",
            value=None if rate_withheld else p["dropout_rate"],
            fmt=".1%",
            n_text=rate_text,
            help="Ended episodes (finished in the period) whose end reason is dropout, over all "
            "ended episodes. Published clinics average about 20% (Swift & Greenberg 2012)."
            + noise_note(ctx),
            higher_is_better=False,
            withheld=rate_withheld,
        ),
        Tile(
            key="alliance_dropout_d",
            label="Alliance gap, Cohen's d",
            value=value(effects["d"]),
            fmt=".2f",
            n_text=" · ".join(p for p in (est_text(effects["d"], ".2f"), PUBLISHED_TEXT) if p),
            help="(Mean early SRS of episodes not ending in dropout − mean of dropouts) / pooled "
            f"SD; {EARLY_SRS_TEXT}. Positive = dropouts started with a weaker alliance. "
            "About .2 is small, .5 medium, .8 large.",
            higher_is_better=None,
            withheld=withheld,
        ),
        Tile(
            key="dropout_or_per_sd_lower",
            label="Dropout odds ratio",
            value=value(effects["or"]),
            fmt=".2f",
            n_text=est_text(effects["or"], ".2f"),
            help="Odds ratio per 1 SD lower early SRS, from a logistic regression of dropout on "
            "the standardized early SRS: how many times the odds of dropout multiply for an "
            "early SRS one SD lower. "
            "Published ≈ 1.7. Wald 95% CI.",
            higher_is_better=None,
            withheld=withheld,
        ),
        Tile(
            key="dropout_point_biserial_r",
            label="Early SRS – dropout r",
            value=value(effects["r"]),
            fmt=".2f",
            n_text=est_text(effects["r"], ".2f"),
            help="Point-biserial correlation of the early SRS with dropout (1 = dropout): "
            "negative when a higher early alliance goes with less dropout. Fisher-z 95% CI. "
            + CORRELATION_NOTE,
            higher_is_better=None,
            withheld=withheld,
        ),
    ]


# --------------------------------------------------------------------------- panels


def _p_chart(ctx: Context, s: dict, p: dict) -> Panel:
    title = "Dropout rate by month: control chart"
    df = queries.run(ctx.con, "monthly_dropout", **ctx.params())
    if df.empty:
        return empty_panel("dropout_spc", title, "No episodes ended in this selection.")
    # months add up to the period's endings: one partition (a client may end two episodes in
    # the period: a withheld set is judged by its largest month); a month with 1 .. k-1
    # dropouts or other endings is withheld (numerator rule); the chart is drawn from the
    # protected counts (as the Overview's monthly chart)
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "ended", "dropouts"],
        rates=[protected.Rate("dropout_rate", "dropouts", "ended")],
        value_cols=["ended", "dropouts", "dropout_rate"],
        n_key_from="ended",
        overlapping=True,
    )
    base = baseline_mask(safe["dropout_rate"], ctx.settings.spc_baseline_months)
    if not base.any():
        return empty_panel(
            "dropout_spc",
            title,
            f"Every month describes fewer than {ctx.policy.k} clients: widen the selection.",
        )
    chart = p_chart(safe["dropouts"], safe["ended"], baseline=base)
    frame = spc_frame(safe["month"], chart["p"], chart["centre"], chart["lcl"], chart["ucl"], base)
    frame = frame.assign(
        n_clients=safe["n_clients"].to_numpy(),
        ended=safe["ended"].to_numpy(),
        dropouts=safe["dropouts"].to_numpy(),
        suppressed=safe["suppressed"].to_numpy(),
        suppression=safe["suppression"].to_numpy(),
    )
    fig = charts.spc_chart(
        frame,
        title=title,
        subtitle=subtitle(
            ctx,
            "Dropouts / ended episodes by month of the last session (p-chart)",
            *spc_method_text(frame, ctx.settings.spc_baseline_months, "with endings"),
            n_text=n_text(ctx, p["ended"] or 0, "ended episodes", s["n_clients"]),
        ),
        y_label="Dropout rate",
        value_format="pct",
        baseline_end=spc_baseline_end(frame),
        scale="rate",
        centre_label=spc_centre_label(frame),
    )
    return Panel(
        key="dropout_spc",
        title=title,
        subtitle="",
        reading=(
            spc_note(frame)
            + " Limits are wider in months with few endings."
            + noise_note(ctx)
            + withheld_note(ctx, safe)
        ),
        figure=fit_layout(fig, rate_axis="y"),
        data=frame,
        withheld=any_withheld(safe),
    )


def _band_labels(cutoff: float) -> dict[str, str]:
    return {
        "below": f"Early SRS below {cutoff:g}",
        "at_or_above": f"Early SRS {cutoff:g} or above",
    }


QUINTILE_NAMES = (
    "Q1 lowest fifth",
    "Q2 second fifth",
    "Q3 middle fifth",
    "Q4 fourth fifth",
    "Q5 highest fifth",
)


def quintile_labels(ctx: Context, quint: pd.DataFrame, withheld: pd.Series) -> pd.Series:
    """One label per quintile row that never carries a client's early SRS: the quintile's name,
    with the cut points that bound it (interpolated percentiles rounded to whole SRS points,
    queries/dropout_by_quintile.sql) only where both quintiles a cut point separates are shown
    and have at least k clients (privacy.cut_point_labels). Quintiles without episodes (cut
    points that coincide) count as groups of 0 clients."""
    by_q = quint.set_index("quintile")
    cuts: list[float | None] = []
    for q in range(1, 5):
        hi = by_q["label_high"].get(q)
        lo = by_q["label_low"].get(q + 1)
        value = hi if hi is not None and not pd.isna(hi) else lo
        cuts.append(None if value is None or pd.isna(value) else float(value))
    hidden = pd.Series(withheld.to_numpy(dtype=bool), index=quint["quintile"].to_numpy())
    labels = privacy.cut_point_labels(
        QUINTILE_NAMES,
        cuts,
        [int(by_q["n_clients"].get(q, 0)) for q in range(1, 6)],
        policy=ctx.policy,
        withheld=[bool(hidden.get(q, False)) for q in range(1, 6)],
    )
    return quint["quintile"].map(dict(zip(range(1, 6), labels, strict=True)))


def _bands_and_quintiles(ctx: Context, s: dict, p: dict) -> tuple[Panel, pd.DataFrame]:
    title = "Dropout by early alliance"
    cutoff = ctx.settings.srs_cutoff
    bands = queries.run(ctx.con, "dropout_by_alliance_band", **ctx.params(), srs_cutoff=cutoff)
    quint = queries.run(ctx.con, "dropout_by_quintile", **ctx.params())
    if bands.empty:
        return (
            empty_panel(
                "dropout_bands", title, "No ended episode with an early SRS in this selection."
            ),
            pd.DataFrame(),
        )
    bands = bands.assign(split="Cutoff", group=bands["band"].map(_band_labels(cutoff)))
    quint = quint.assign(split="Early-SRS quintile", group=quint["quintile"].astype(str))
    cols = [
        "split",
        "group",
        "n_clients",
        "episodes",
        "dropouts",
        "dropout_rate",
        "mean_early_srs",
        "episodes_cellkey",
        "dropouts_cellkey",
    ]
    both = pd.concat([bands[cols], quint[cols]], ignore_index=True)
    # the bands split the episodes, and so do the quintiles: one partition each; a group with
    # 1 .. k-1 dropouts or other endings is withheld (numerator rule); rates, means and
    # intervals from the protected counts
    safe = protect_counts(
        ctx,
        both,
        counts=["n_clients", "episodes", "dropouts"],
        means=[protected.Mean("mean_early_srs", "episodes", SRS_RANGE)],
        rates=[protected.Rate("dropout_rate", "dropouts", "episodes")],
        value_cols=["episodes", "dropouts", "dropout_rate", "mean_early_srs"],
        partition_cols=["split"],
        n_key_from="episodes",
        overlapping=True,
    )
    low, high = protected.wilson(safe["dropouts"], safe["episodes"], ctx.noise)
    safe = safe.assign(low=low, high=high)
    # the quintiles' labels once their cells are judged: no cut point beside a withheld one
    is_q = (safe["split"] == "Early-SRS quintile").to_numpy()
    safe.loc[is_q, "group"] = quintile_labels(
        ctx, quint.reset_index(drop=True), safe.loc[is_q, "suppressed"].reset_index(drop=True)
    ).to_numpy()
    early_ok = s["early_clients"] >= ctx.policy.k and "early_dropout_rate" not in p["rule"]
    overall = p["early_dropout_rate"] if p["with_early_srs"] and early_ok else None
    fig = charts.interval_dots(
        safe,
        category="group",
        value="dropout_rate",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Dropout rate of ended episodes by early SRS: below vs at or above the cutoff "
            "(a setting), and in fifths (quintiles) of the early SRS; 95% Wilson CI",
            EARLY_SRS_TEXT,
            n_text=n_text(ctx, p["with_early_srs"] or 0, "ended episodes", s["early_clients"]),
        ),
        x_label="Dropout rate",
        reference=overall,
        reference_label="all these episodes",
        value_format="pct",
        colour_by="split",
        suppressed_label=ctx.policy.label,
    )
    reading = ""
    vis = safe[safe["split"] == "Cutoff"].dropna(subset=["dropout_rate"])
    if len(vis) == 2:
        below, above = vis.iloc[0], vis.iloc[1]
        reading = (
            f"{below['dropout_rate']:.0%} of episodes that started below the cutoff ended in "
            f"dropout, against {above['dropout_rate']:.0%} of those at or above it. "
        )
    reading += (
        "Quintiles with the same early SRS stay together, so their sizes can differ. Their "
        "cut points are rounded to whole SRS points (≈) and named only between two quintiles "
        f"that are shown with at least {ctx.policy.k} clients each. "
        + CORRELATION_NOTE
        + " "
        + SMALL_N_NOTE
    )
    panel = Panel(
        key="dropout_bands",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fit_layout(fig, rate_axis="x"),
        data=safe[
            [
                "split",
                "group",
                "n_clients",
                "episodes",
                "dropouts",
                "dropout_rate",
                "low",
                "high",
                "mean_early_srs",
                "suppressed",
            ]
        ],
        withheld=any_withheld(safe),
    )
    return panel, safe[safe["split"] == "Early-SRS quintile"]


def _weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x)
    cum = np.cumsum(w[order]) / w.sum()
    return float(x[order][np.searchsorted(cum, q)])


def _logistic_curve(
    ctx: Context,
    pooled: pd.DataFrame,
    quintiles: pd.DataFrame,
    withheld: bool,
    n_clients: int,
    p: dict,
) -> Panel:
    title = "Chance of dropout by early alliance: fitted curve"
    if pooled.empty or withheld:
        msg = (
            "No ended episode with an early SRS in this selection."
            if pooled.empty
            else f"Dropouts or other endings describe fewer than {ctx.policy.k} clients here: "
            "the curve is withheld."
        )
        return empty_panel("dropout_curve", title, msg)
    model = GroupedLogit(pooled)
    if model.res is None:
        return empty_panel(
            "dropout_curve", title, "The logistic model cannot be fitted here (e.g. no dropouts)."
        )
    x, w = pooled["early_srs"].to_numpy(float), pooled["episodes"].to_numpy(float)
    # drawn over the middle 95% of episodes, rounded outward to whole points: no single
    # client's score marks an end of the line, and the ends are not extrapolated far
    lo = max(0.0, np.floor(_weighted_quantile(x, w, 0.025)))
    hi = min(40.0, np.ceil(_weighted_quantile(x, w, 0.975)))
    if hi <= lo:
        hi = min(40.0, lo + 1)
    curve = model.curve(np.linspace(lo, hi, 81))
    fig = charts.lines(
        curve,
        x="x",
        y="p",
        group=None,
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Logistic regression of dropout on the early SRS, 95% confidence band; dots: "
            "observed dropout rate of each early-SRS quintile (95% Wilson CI)",
            EARLY_SRS_TEXT,
            n_text=n_text(ctx, p["with_early_srs"] or 0, "ended episodes", n_clients),
        ),
        x_label="Early SRS (mean of the first 3 rated sessions, 0–40)",
        y_label="Chance of dropout",
        value_format="pct",
    )
    fig.update_traces(name="fitted chance of dropout", selector={"mode": "lines+markers"})
    fig.update_traces(mode="lines", selector={"mode": "lines+markers"})
    vis = quintiles.dropna(subset=["dropout_rate", "mean_early_srs"])
    if len(vis):
        fig.add_trace(
            go.Scatter(
                x=vis["mean_early_srs"],
                y=vis["dropout_rate"],
                mode="markers",
                name="observed, by quintile",
                marker={"size": 10, "color": charts.ORANGE, "symbol": "diamond"},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": vis["high"] - vis["dropout_rate"],
                    "arrayminus": vis["dropout_rate"] - vis["low"],
                    "thickness": 1.5,
                    "color": charts.ORANGE,
                },
                customdata=vis[["group"]].to_numpy(),
                hovertemplate="%{customdata[0]}: %{y:.1%}<extra></extra>",
            )
        )
    figure_edit.update_yaxes(fig, rangemode="tozero")
    figure_edit.update_layout(fig, showlegend=True)
    return Panel(
        key="dropout_curve",
        title=title,
        subtitle="",
        reading=(
            f"Read the line at an early SRS to see the chance of dropout for episodes starting "
            f"there: {curve['p'].iloc[0]:.0%} at {lo:g} points, {curve['p'].iloc[-1]:.0%} at "
            f"{hi:g}. The dots check the curve against the data. A steeper curve means the "
            "first sessions' SRS says more about who will leave. "
            + CORRELATION_NOTE
            + noise_note(ctx)
        ),
        figure=fit_layout(fig),
        # every point of the curve comes from the model fitted to all these episodes
        data=curve.rename(columns={"x": "early_srs", "p": "fitted_dropout_chance"}).assign(
            n_clients=p["early_clients"]
        ),
    )


def _effect_by_site(
    ctx: Context,
    groups: pd.DataFrame,
    clients: pd.DataFrame,
    overall: dict[str, Estimate],
    early_clients: int,
    p: dict,
) -> Panel:
    title = "How much lower was the early alliance of dropouts? Cohen's d"
    if groups.empty:
        return empty_panel(
            "dropout_d", title, "No ended episode with an early SRS in this selection."
        )
    rows = [("All sites in view", "__all__", overall["d"])]
    by_site = d_by_site(groups)
    if len(by_site) > 1:
        rows += [(str(site), site, d) for site, d in by_site.items()]
    c = clients.set_index("site").reindex([r[1] for r in rows], fill_value=0)
    frame = pd.DataFrame(
        {
            "group": [r[0] for r in rows],
            "scope": ["clinic" if r[1] == "__all__" else "site" for r in rows],
            "dropout_clients": c["dropout_clients"].to_numpy(),
            "other_clients": c["other_clients"].to_numpy(),
            "episodes": [r[2].n for r in rows],
            "episodes_cellkey": (
                c["dropout_episodes_cellkey"] + c["other_episodes_cellkey"]
            ).to_numpy(dtype="float64"),
            "d": [r[2].value for r in rows],
            "low": [r[2].low for r in rows],
            "high": [r[2].high for r in rows],
        }
    )
    # d compares dropouts with other endings and describes both: a row is withheld when either
    # has 1 .. k-1 clients (or, with no dropouts at a site, when its other endings have). Sites
    # split the clinic's episodes: one partition; the clinic row stands alone.
    values = ["episodes", "d", "low", "high"]
    safe = pd.concat(
        [
            protect_comparison(
                ctx,
                frame[frame["scope"] == "clinic"],
                first="dropout_clients",
                second="other_clients",
                value_cols=values,
                complementary=False,
            ),
            protect_comparison(
                ctx,
                frame[frame["scope"] == "site"],
                first="dropout_clients",
                second="other_clients",
                value_cols=values,
            ),
        ]
    )
    # d itself only where the one release rule lets it out (both groups >= k clients; a row
    # with one empty group stays visible above, its d is not computable anyway)
    released = np.array(
        [
            effects_released(ctx.policy, int(a), int(b))
            for a, b in zip(frame["dropout_clients"], frame["other_clients"], strict=True)
        ]
    )
    safe[["d", "low", "high"]] = safe[["d", "low", "high"]].mask(
        pd.Series(~released, index=frame.index).reindex(safe.index), axis=0
    )
    # shown counts are protected: each row's episodes and clients with the noise of the row's
    # episodes (the clinic's clients exactly, as on the other panels: dropout + other clients
    # counts a client with both twice)
    exact_n = np.where(
        frame["scope"] == "clinic", early_clients, frame["dropout_clients"] + frame["other_clients"]
    )
    keyed = frame.assign(
        n_clients=exact_n,
        n_clients_cellkey=noise.derived_key(frame["episodes_cellkey"].to_numpy(), "n_clients"),
    )
    shown = protected.perturb(
        keyed, params=ctx.noise, counts=["episodes", "n_clients"], floor=ctx.policy.k
    ).reindex(safe.index)
    hidden = safe["suppressed"].to_numpy(dtype=bool)
    for col in ("episodes", "n_clients"):
        safe[col] = shown[col].round().astype("Int64").mask(hidden)
    fig = charts.interval_dots(
        safe.assign(group=safe["group"].map(chart_text)),  # site names as text in the chart
        category="group",
        value="d",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Cohen's d = (mean early SRS of other endings − mean of dropouts) / pooled SD, "
            "95% CI; positive = dropouts started with a weaker alliance",
            "dotted line: " + PUBLISHED_TEXT,
            n_text=n_text(ctx, p["with_early_srs"] or 0, "ended episodes", early_clients),
        ),
        x_label="Cohen's d (early SRS, other endings minus dropouts)",
        reference=PUBLISHED_D,
        reference_label="published .55",
        value_format="num2",
        suppressed_label=ctx.policy.label,
    )
    figure_edit.add_vline(fig, x=0, line={"color": charts.GREY, "width": 1})
    d = overall["d"]
    clinic_released = bool(released[0])  # the clinic row comes first
    reading = ""
    if np.isfinite(d.value) and clinic_released and not bool(safe["suppressed"].iloc[0]):
        inside = d.low <= PUBLISHED_D <= d.high
        reading = f"Here d = {d.value:.2f} (95% CI {d.low:.2f} to {d.high:.2f}): " + (
            "in line with the published .55. "
            if inside
            else "the interval excludes the published .55. "
        )
    reading += (
        "A site whose interval crosses the dotted line does not differ from the literature. "
        + SMALL_N_NOTE
        + " "
        + CORRELATION_NOTE
    )
    return Panel(
        key="dropout_d",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fit_layout(fig),
        data=safe[["group", "n_clients", "episodes", "d", "low", "high", "suppressed"]],
        withheld=any_withheld(safe),
        # the clinic's d only where it is released (as on the tiles)
        stats={"alliance_dropout_d": d.value} if clinic_released else {},
    )


def _cumulative_visible(part: pd.DataFrame) -> pd.Series:
    """Running total of the bins' shares, stopped at the first withheld bin.

    Beyond a withheld bin a running total would give its share away by subtraction; the part of
    the curve before it is safe, and what remains after it is the combined share of the later
    bins (at least two withheld bins of k clients together, by the complementary rule).
    """
    shares = part["share"].astype("float64")
    blocked = part["suppressed"].astype(bool).cummax()
    return shares.cumsum().mask(blocked)


def _when_they_leave(ctx: Context, s: dict, p: dict) -> Panel:
    title = "When do clients leave? Share of endings by each session"
    df = queries.run(ctx.con, "dropout_last_session", **ctx.params(), last_number=LAST_SESSION)
    if df.empty:
        return empty_panel("dropout_when", title, "No dropout or planned ending in this selection.")
    df = df.assign(ending=df["ending"].map({"dropout": "Dropout", "planned": "Planned ending"}))
    # the session bins of one kind of ending add up to its total: one partition per ending;
    # each bin's share is its protected count over the protected total of its ending
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "episodes"],
        value_cols=["episodes", "share"],
        partition_cols=["ending"],
        n_key_from="episodes",
        overlapping=True,
    )
    totals = safe["ending"].map({"Dropout": p["dropouts"], "Planned ending": p["planned"]})
    safe["share"] = safe["episodes"].astype("float64") / totals.astype("float64")
    safe = safe.sort_values(["ending", "bin_order"])
    safe["ended_by"] = safe.groupby("ending", group_keys=False)[["share", "suppressed"]].apply(
        _cumulative_visible
    )
    # the pooled last bin always completes 100%: the curve stops at the last single session
    plot = safe[safe["bin_order"] < LAST_SESSION]
    fig = charts.lines(
        plot,
        x="last_session",
        y="ended_by",
        group="ending",
        title=title,
        subtitle=subtitle(
            ctx,
            "Share of dropouts and of planned endings whose last session was at or before each "
            "session number (attended sessions, counting those before the period)",
            "'other' endings not shown",
            n_text=", ".join(
                n_text(ctx, count, unit, clients)
                if clients >= ctx.policy.k or not count
                # which total is withheld is said with the label
                else f"{unit}: {ctx.policy.label} clients"
                for count, unit, clients in (
                    (p["dropouts"] or 0, "dropouts", s["dropout_clients"]),
                    (p["planned"] or 0, "planned endings", s["planned_clients"]),
                )
            ),
        ),
        x_label="Session number",
        y_label="Share ended by this session",
        value_format="pct",
    )
    # sessions in their order (a line that starts later must not reorder the axis)
    order = plot.sort_values("bin_order")["last_session"].drop_duplicates().tolist()
    figure_edit.update_xaxes(fig, type="category", categoryorder="array", categoryarray=order)
    figure_edit.update_yaxes(fig, range=[0, 1.02])
    if plot["ended_by"].isna().all():
        mark_all_withheld(fig, ctx, "line's first session")
    reading = ""
    at4 = plot[plot["bin_order"] == 4].set_index("ending")["ended_by"]
    if at4.notna().all() and len(at4) == 2:
        reading = (
            f"By session 4, {at4['Dropout']:.0%} of the dropouts had left, against "
            f"{at4['Planned ending']:.0%} of the planned endings. "
        )
    k = ctx.policy.k
    if (
        s["median_last_dropout"] is not None
        and s["median_last_planned"] is not None
        and s["dropout_clients"] >= k
        and s["planned_clients"] >= k
    ):
        reading += (
            f"Half of the dropouts had left by session {s['median_last_dropout']:g}, half of the "
            f"planned endings came by session {s['median_last_planned']:g}. "
        )
    reading += (
        "Where the dropout line climbs steeply, engagement is won or lost: that is where asking "
        "for feedback, and acting on a low SRS, matters most."
    )
    if plot["ended_by"].isna().any():
        reading += " A line stops where the next session's count is withheld."
    return Panel(
        key="dropout_when",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fit_layout(fig),
        data=safe[
            ["ending", "last_session", "n_clients", "episodes", "share", "ended_by", "suppressed"]
        ],
        withheld=any_withheld(safe),
    )


# --------------------------------------------------------------------------- the view


def build(ctx: Context) -> View:
    s = summary(ctx)
    if s["n_clients"] == 0:
        return View(
            TITLE,
            QUESTION,
            notice="No episodes ended in this selection. Dropout counts episodes by the month "
            "of their last session: widen the period or clear a filter.",
        )
    if s["n_clients"] < ctx.policy.k:
        return View(
            TITLE, QUESTION, notice=too_small_notice(ctx, s["n_clients"]), n_clients=s["n_clients"]
        )
    p = protected_summary(ctx, s)
    groups, clients, (bands, quintiles), p_chart, when = gather(
        lambda: queries.run(ctx.con, "dropout_early_srs", **ctx.params()),
        lambda: effect_groups(ctx),
        lambda: _bands_and_quintiles(ctx, s, p),
        lambda: _p_chart(ctx, s, p),
        lambda: _when_they_leave(ctx, s, p),
    )
    pooled = pool(groups)
    effects = effect_stats(pooled)
    # the one release rule for d, OR, r and the curve (dropout_stats.effects_released)
    withheld = not effects_released(
        ctx.policy, s["early_dropout_clients"], s["early_other_clients"]
    )
    panels = [
        p_chart,
        bands,
        _logistic_curve(ctx, pooled, quintiles, withheld, s["early_clients"], p),
        _effect_by_site(ctx, groups, clients, effects, s["early_clients"], p),
        when,
    ]
    return View(
        TITLE,
        QUESTION,
        tiles=_tiles(ctx, s, p, effects, withheld),
        panels=panels,
        n_clients=s["n_clients"],
    )
