"""Alliance (trust): how strong is the alliance clients report, is it changing, does it build?

Panels: the distribution of the chosen alliance score (SRS total, or the WAI-SR mean item score
with its Task / Bond / Goal subscales), the monthly mean as an X-bar control chart with the IHI
run-chart rules, the alliance by session number, and alliance drops with the dropout that
followed. Definitions: ../shared/metrics.md ("Alliance", "Quality improvement views").

The control chart's frame, layout and captions are alliance.charts.control (shared with Dropout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance import charts, noise, protected, queries
from alliance.charts import figure_edit
from alliance.charts.control import (
    baseline_mask,
    fit_layout,
    spc_baseline_end,
    spc_baseline_text,
    spc_centre_label,
    spc_frame,
    spc_method_text,
    spc_note,
)
from alliance.panel import Context, Panel, Tile, View, empty_panel
from alliance.stats import mean_interval, risk_difference, xbar_chart
from alliance.views.common import (
    SMALL_N_NOTE,
    any_withheld,
    gather,
    mark_all_withheld,
    n_text,
    noise_note,
    protect_counts,
    srs_cutoff_text,
    subtitle,
    too_small_notice,
    withheld_note,
)

TITLE = "Alliance (trust)"
QUESTION = (
    "How strong is the alliance clients report, is it changing over time, and does it build "
    "over the first sessions?"
)
LAST_SESSION_NUMBER = 12  # session numbers from 12 on are pooled ("12+")
FIXED_COHORT_SESSIONS = 6  # the fixed cohort: episodes seen from session 1 through session 6


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


def _wilson_text(ctx: Context, x: float, n: float) -> str:
    """The 95% Wilson interval of protected x / n, widened for the noise."""
    lo, hi = protected.wilson(pd.Series([x]), pd.Series([n]), ctx.noise)
    return f"95% CI {lo[0]:.1%} to {hi[0]:.1%}"


def _num(x: object) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


# --------------------------------------------------------------------------- data


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
    k = ctx.policy.k
    shown = protected.perturb(
        frame, params=ctx.noise, counts=_COUNTS, means=_MEANS, rates=_RATES, floor=k
    ).iloc[0]
    out: dict = {c: _num(shown[c]) for c in [*_COUNTS, *(m.col for m in _MEANS)]}
    out.update({r.col: _num(shown[r.col]) for r in _RATES})
    out["rule"] = {r.col for r in _RATES if protected.numerator_rule(frame, [r], k)[0]}
    return out


# --------------------------------------------------------------------------- tiles


def _tiles(ctx: Context, s: dict, p: dict) -> list[Tile]:
    """The headline tiles from the protected summary `p`; the exact summary `s` only judges
    (a figure of 1 .. k-1 clients is withheld, and so is a rate under the numerator rule)."""
    measure = ctx.filters.alliance_measure
    k = ctx.policy.k
    rule = p["rule"]
    rows = []
    if measure == "wai":
        rows.append(
            (
                "mean_wai",
                "Mean WAI-SR item score",
                ".2f",
                p["mean_wai"],
                s["wai_clients"],
                False,
                f"n = {p['wai_n']:,.0f} ratings, {p['wai_clients']:,.0f} clients",
                "Mean WAI-SR mean item score (1–5, total / 12) over the WAI-SR ratings in the "
                "period. Recorded only where the WAI-SR is used.",
                True,
            )
        )
    else:
        rows.append(
            (
                "mean_srs",
                "Mean SRS",
                ".1f",
                p["mean_srs"],
                s["srs_clients"],
                False,
                f"n = {p['srs_n']:,.0f} ratings, {p['srs_clients']:,.0f} clients",
                "Mean Session Rating Scale total (0–40) over the SRS ratings in the period.",
                True,
            )
        )
    below_text = ""
    if p["srs_n"]:
        below_text = (
            f"{_wilson_text(ctx, p['srs_below'], p['srs_n'])} · n = {p['srs_n']:,.0f} ratings"
        )
    drop_text = ""
    if p["with_previous"]:
        drop_text = (
            f"{_wilson_text(ctx, p['drops'], p['with_previous'])} · "
            f"n = {p['with_previous']:,.0f} ratings"
        )
    thr = ctx.settings.rupture_threshold
    rows += [
        (
            "srs_below_cutoff_rate",
            "SRS below cutoff",
            ".1%",
            p["srs_below_rate"],
            s["srs_clients"],
            "srs_below_rate" in rule,
            below_text,
            f"Share of SRS ratings with {srs_cutoff_text(ctx)} (OpenFIT's cutoff; a setting). "
            "Interval: Wilson 95%.",
            False,
        ),
        (
            "drop_rate",
            "Alliance drops",
            ".1%",
            p["drop_rate"],
            s["drop_clients"],
            "drop_rate" in rule,
            drop_text,
            f"Share of SRS ratings at least {thr:g} points below the same episode's previous "
            "SRS (a setting), among ratings that have a previous one. Details on the "
            "Ruptures & repair page.",
            False,
        ),
        (
            "srs_recorded",
            "Sessions with an SRS",
            ".1%",
            p["srs_recorded"],
            s["n_clients"],
            "srs_recorded" in rule,
            f"n = {p['sessions']:,.0f} sessions",
            "Share of attended sessions in the period with an SRS total: low completion makes "
            "every alliance figure less representative.",
            True,
        ),
    ]
    note = noise_note(ctx).strip()
    tiles = []
    for key, label, fmt, value, n_clients, by_rule, text, help_text, better in rows:
        withheld = 0 < n_clients < k or by_rule
        tiles.append(
            Tile(
                key=key,
                label=label,
                value=None if withheld or value is None else float(value),
                fmt=fmt,
                n_text="" if withheld else text,
                help=f"{help_text} {note}",
                higher_is_better=better,
                withheld=withheld,
            )
        )
    return tiles


# --------------------------------------------------------------------------- panels


def _no_ratings(scale: Scale) -> str:
    if scale.key == "wai":
        return (
            "No WAI-SR ratings in this selection (the WAI-SR is recorded only at some sites and "
            "programs). Choose SRS as the alliance measure, or widen the filters."
        )
    return "No SRS ratings in this selection. Widen the period or clear a filter."


def _distribution(ctx: Context, scale: Scale, s: dict, p: dict) -> Panel:
    title = f"How clients rate the alliance: {scale.label}"
    df = queries.run(
        ctx.con,
        "alliance_distribution",
        **ctx.params(),
        alliance=scale.key,
        bin_floor=scale.bin_floor,
        bin_width=scale.bin_width,
        scale_max=scale.scale_max,
    )
    if df.empty:
        return empty_panel("distribution", title, _no_ratings(scale))
    # bins add up to all ratings shown in the subtitle: one partition (a client rates in
    # several bins: a withheld set is judged by its largest bin); each bin's share is its
    # protected count over the protected count of all ratings
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "n"],
        value_cols=["n", "share"],
        n_key_from="n",
        overlapping=True,
    )
    total = _rating_count(p, scale)
    safe["share"] = safe["n"].astype("float64") / total if total else np.nan
    half = scale.bin_width / 2
    low, high = safe["bin_low"], safe["bin_high"]
    pooled = low.isna()
    top = (low == high).fillna(False)
    x = np.where(pooled, scale.bin_floor - half, np.where(top, scale.scale_max + half, low + half))
    f = scale.fmt if scale.key == "wai" else (lambda v: f"{v:g}")
    labels = [
        f"below {f(scale.bin_floor)}"
        if p
        else f"{f(scale.scale_max)} (top score)"
        if t
        else f"{f(lo)} to under {f(hi)}"
        for p, t, lo, hi in zip(pooled, top, low, high, strict=True)
    ]
    plot = safe.assign(x=x, bin=labels)
    n_clients = _rating_clients(s, scale)
    shown_clients = _rating_clients(p, scale)
    cutoff = ctx.settings.srs_cutoff if scale.key == "srs" else None
    parts = [
        f"{scale.long_label} per session: share of ratings in each {scale.bin_width:g}-point bin",
        f"scores below {f(scale.bin_floor)} pooled, the top score on its own",
    ]
    if cutoff is not None:
        parts.append(srs_cutoff_text(ctx))
    fig = charts.histogram_bins(
        plot,
        bin_col="x",
        count_col="n",
        title=title,
        subtitle=subtitle(
            ctx,
            *parts,
            n_text=(
                n_text(ctx, total, "ratings", n_clients)
                + (f" from {shown_clients:,} clients" if n_clients >= ctx.policy.k else "")
            ),
        ),
        x_label=scale.long_label,
        y_label="Share of ratings",
        cutoff=cutoff,
        cutoff_label=f"cutoff {cutoff:g}" if cutoff is not None else "cutoff",
        suppressed_label=ctx.policy.label,
    )
    # histogram_bins rescales the visible counts to sum to 1; show each bin's share of ALL
    # ratings instead, so a withheld bin does not inflate the others
    fig.update_traces(
        y=plot["share"],
        customdata=plot[["bin"]].to_numpy(),
        hovertemplate="%{customdata[0]}: %{y:.1%} of ratings<extra></extra>",
        selector={"type": "bar"},
    )
    ticks = [scale.bin_floor - half, *scale.ticks, scale.scale_max + half]
    figure_edit.update_xaxes(
        fig,
        tickvals=ticks,
        ticktext=[f"<{f(scale.bin_floor)}", *(f(t) for t in scale.ticks), f(scale.scale_max)],
    )
    top_share = plot.loc[top, "share"]
    reading = ""
    if len(top_share) and pd.notna(top_share.iloc[0]):
        reading = (
            f"{top_share.iloc[0]:.0%} of ratings are the top score: the scale has a ceiling, so "
            "differences between high scores carry little information. "
        )
    below_shown = (
        bool(s["srs_n"])
        and s["srs_clients"] >= ctx.policy.k
        and "srs_below_rate" not in p["rule"]
        and p["srs_below_rate"] is not None
    )
    if scale.key == "srs" and below_shown:
        reading += (
            f"{p['srs_below_rate']:.1%} of ratings are below the cutoff "
            f"({_wilson_text(ctx, p['srs_below'], p['srs_n'])}): the sessions worth a "
            "conversation about how therapy is going. "
        )
    reading += "Each rating counts once, so clients seen more often weigh more."
    return Panel(
        key="distribution",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fit_layout(fig),
        data=safe.drop(columns=["x"], errors="ignore").assign(bin=labels)[
            ["bin", "n_clients", "n", "share", "suppressed", "suppression"]
        ],
        withheld=any_withheld(safe),
        stats={"srs_below_cutoff_rate": p["srs_below_rate"] if below_shown else np.nan},
    )


def _wai_subscales(ctx: Context) -> Panel:
    title = "WAI-SR subscales: task, bond and goal"
    df = queries.run(ctx.con, "alliance_wai_subscales", **ctx.params())
    if df.empty:
        return empty_panel("wai_subscales", title, _no_ratings(SCALES["wai"]))
    wai_range = SCALES["wai"].record_range
    df = df.assign(subscale=df["subscale"].map(SUBSCALES))
    # the four rows describe the same clients (not parts of a total): primary suppression only;
    # they are the same episodes, so the same keys: every row shows the same protected counts
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "episodes", "administrations"],
        means=[protected.Mean("mean_score", "episodes", wai_range)],
        value_cols=["episodes", "administrations", "mean_score", "sd_score"],
        complementary=False,
        n_key_from="episodes",
    )
    low, high = protected.mean_interval(
        safe["mean_score"], safe["sd_score"], safe["episodes"], wai_range, ctx.noise
    )
    safe = safe.assign(low=low, high=high)
    # every row describes the WAI-SR clients of the period (one population, four views)
    clients = int(df["n_clients"].max())
    total = n_text(ctx, safe["episodes"].max(), "episodes", clients)
    if clients >= ctx.policy.k:
        total += f", {int(safe['administrations'].max()):,} ratings"
    fig = charts.interval_dots(
        safe,
        category="subscale",
        value="mean_score",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "WAI-SR subscale = mean of its 4 items (1–5)",
            "mean over episodes of each episode's mean rating in the period, 95% CI",
            n_text=total,
        ),
        x_label="Mean item score (1 = seldom, 5 = always)",
        value_format="num2",
        suppressed_label=ctx.policy.label,
    )
    return Panel(
        key="wai_subscales",
        title=title,
        subtitle="",
        reading=(
            "Bond usually scores highest and Task lowest in published samples. A subscale well "
            "below the others points to where the alliance is weakest (e.g. agreeing on tasks). "
            "Each episode counts once, so the intervals allow for repeated ratings. "
            + SMALL_N_NOTE
            + noise_note(ctx)
            + withheld_note(ctx, safe)
        ),
        figure=fit_layout(fig),
        data=safe,
        withheld=any_withheld(safe),
    )


def _rating_clients(s: dict, scale: Scale) -> int:
    """Distinct clients with a rating of the scale in the period (exact from the summary,
    protected from protected_summary)."""
    return int(s["srs_clients"] if scale.key == "srs" else s["wai_clients"])


def _rating_count(p: dict, scale: Scale) -> float:
    """The protected count of the scale's ratings in the period."""
    return float(p["srs_n"] if scale.key == "srs" else p["wai_n"])


def _control_chart(ctx: Context, scale: Scale, s: dict, p: dict) -> Panel:
    title = f"Monthly mean {scale.label}: control chart"
    df = queries.run(
        ctx.con,
        "monthly_alliance",
        **ctx.params(),
        alliance=scale.key,
        srs_cutoff=ctx.settings.srs_cutoff,
    )
    if df.empty:
        return empty_panel("alliance_spc", title, _no_ratings(scale))
    # months add up to the period's ratings: one partition, so a withheld month stays hidden
    # (a client is rated in many months: a withheld set is judged by its largest month); the
    # chart is drawn from the protected means and counts (as the Overview's monthly chart)
    safe = protect_counts(
        ctx,
        df[["month", "n_clients", "n", "mean_score", "sd_score", "n_cellkey"]],
        counts=["n_clients", "n"],
        means=[protected.Mean("mean_score", "n", scale.record_range)],
        value_cols=["n", "mean_score", "sd_score"],
        n_key_from="n",
        overlapping=True,
    )
    base = baseline_mask(safe["mean_score"], ctx.settings.spc_baseline_months)
    if not base.any():
        return empty_panel(
            "alliance_spc",
            title,
            f"Every month describes fewer than {ctx.policy.k} clients: widen the selection.",
        )
    chart = xbar_chart(safe["mean_score"], safe["sd_score"], safe["n"], baseline=base)
    frame = spc_frame(
        safe["month"], chart["mean"], chart["centre"], chart["lcl"], chart["ucl"], base
    )
    frame = frame.assign(
        n_clients=safe["n_clients"].to_numpy(),
        n=safe["n"].to_numpy(),
        suppressed=safe["suppressed"].to_numpy(),
        suppression=safe["suppression"].to_numpy(),
    )
    fig = charts.spc_chart(
        frame,
        title=title,
        subtitle=subtitle(
            ctx,
            f"Mean {scale.long_label} per month (X-bar chart)",
            *spc_method_text(frame, ctx.settings.spc_baseline_months, "with ratings"),
            n_text=n_text(ctx, _rating_count(p, scale), "ratings", _rating_clients(s, scale)),
        ),
        y_label=f"Mean {scale.label}",
        value_format=scale.value_format,
        baseline_end=spc_baseline_end(frame),
        scale=scale.key,
        centre_label=spc_centre_label(frame),
    )
    few = int(base.sum()) < 8
    return Panel(
        key="alliance_spc",
        title=title,
        subtitle="",
        reading=(
            spc_note(frame)
            + " Limits are narrow when a month has many ratings."
            + (" With so few baseline months the limits are rough." if few else "")
            + noise_note(ctx)
            + withheld_note(ctx, safe)
        ),
        figure=fit_layout(fig),
        data=frame,
        withheld=any_withheld(safe),
    )


def _by_session_number(ctx: Context, scale: Scale, s: dict, p: dict) -> Panel:
    title = f"Does the alliance build? {scale.label} by session number"
    df = queries.run(
        ctx.con,
        "alliance_by_session_number",
        **ctx.params(),
        alliance=scale.key,
        last_number=LAST_SESSION_NUMBER,
        cohort_sessions=FIXED_COHORT_SESSIONS,
    )
    if df.empty:
        return empty_panel("by_session", title, _no_ratings(scale))
    fixed_label = f"Same episodes, sessions 1–{FIXED_COHORT_SESSIONS}"
    df = df.assign(
        group=df["cohort"].map({"all": "All episodes", "fixed": fixed_label}),
        session=np.where(
            df["session_number"] >= LAST_SESSION_NUMBER,
            f"{LAST_SESSION_NUMBER}+",
            df["session_number"].astype(str),
        ),
    )
    # the points of a line add up to its ratings (the subtitle's total for all episodes): one
    # partition per line, so a withheld point cannot be recovered by subtraction (a client is
    # rated at many session numbers: a withheld set is judged by its largest point); means and
    # bands from the protected sums and counts
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "n"],
        means=[protected.Mean("mean_score", "n", scale.record_range)],
        value_cols=["n", "mean_score", "sd_score"],
        partition_cols=["cohort"],
        n_key_from="n",
        overlapping=True,
    )
    low, high = protected.mean_interval(
        safe["mean_score"], safe["sd_score"], safe["n"], scale.record_range, ctx.noise
    )
    safe = safe.assign(low=low, high=high)
    all_rows = safe[safe["cohort"] == "all"]
    fig = charts.lines(
        safe,
        x="session",
        y="mean_score",
        group="group",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            f"Mean {scale.long_label} at each session number (the episode's n-th attended "
            f"session), 95% CI; {LAST_SESSION_NUMBER}+ pools later sessions",
            f"dashed: episodes seen from session 1 through {FIXED_COHORT_SESSIONS} in the period",
            n_text=n_text(ctx, _rating_count(p, scale), "ratings", _rating_clients(s, scale)),
        ),
        x_label="Session number",
        y_label=f"Mean {scale.label}",
        value_format=scale.value_format,
        dash_groups={fixed_label: "dash"},
        scale=scale.key,
    )
    figure_edit.update_xaxes(fig, type="category")
    if safe["mean_score"].isna().all():
        mark_all_withheld(fig, ctx, "session number")
    reading = ""
    vis = all_rows.dropna(subset=["mean_score"])
    if len(vis) >= 2:
        first, last = vis.iloc[0], vis.iloc[-1]
        reading = (
            f"Across all episodes the mean goes from {scale.fmt(first['mean_score'])} at session "
            f"{first['session']} to {scale.fmt(last['mean_score'])} at session {last['session']}. "
        )
    reading += (
        "Clients with a weak alliance tend to leave early, so later sessions hold the clients "
        "who stayed: part of any rise in all episodes is who remains. The dashed line follows "
        "the same episodes and shows how much the alliance builds within them."
    )
    return Panel(
        key="by_session",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fit_layout(fig),
        data=safe[
            ["group", "session", "n_clients", "n", "mean_score", "low", "high", "suppressed"]
        ],
        withheld=any_withheld(safe),
    )


def _drops_and_dropout(ctx: Context, s: dict, p: dict) -> Panel:
    title = "Alliance drops and what followed them"
    thr = ctx.settings.rupture_threshold
    k = ctx.policy.k
    df = queries.run(ctx.con, "alliance_drops_dropout", **ctx.params(), rupture_threshold=thr)
    if df.empty:
        return empty_panel(
            "drops",
            title,
            "No ended episode with two or more SRS ratings finished in this selection.",
        )
    df = df.sort_values("had_drop", ascending=False, ignore_index=True)
    df = df.assign(
        group=np.where(df["had_drop"], f"With a drop of {thr:g}+ points", "Without a drop")
    )
    rate = protected.Rate("dropout_rate", "dropouts", "episodes")
    # the two groups split the same episodes: withholding one withholds both; a group with
    # 1 .. k-1 dropouts or other endings is withheld (numerator rule)
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "episodes", "dropouts"],
        rates=[rate],
        value_cols=["episodes", "dropouts", "dropout_rate"],
        n_key_from="episodes",
    )
    low, high = protected.wilson(safe["dropouts"], safe["episodes"], ctx.noise)
    safe = safe.assign(low=low, high=high)
    # both groups together: a cell of their own, whose key is the sum of theirs
    both = pd.DataFrame(
        {c: [df[c].sum()] for c in ["episodes", "dropouts", "episodes_cellkey", "dropouts_cellkey"]}
    )
    total = protected.perturb(
        both, params=ctx.noise, counts=["episodes", "dropouts"], rates=[rate], floor=k
    ).iloc[0]
    # the two groups' clients: at least the larger group's (a client can be in both)
    clients = int(df["n_clients"].max())
    overall_ok = clients >= k and not protected.numerator_rule(both, [rate], k)[0]
    overall = _num(total["dropout_rate"]) if overall_ok else None
    drops_shown = (
        p["drop_rate"] is not None and s["drop_clients"] >= k and "drop_rate" not in p["rule"]
    )
    fig = charts.interval_dots(
        safe,
        category="group",
        value="dropout_rate",
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Dropout rate of ended episodes with 2+ SRS ratings, by whether any SRS was "
            f"≥ {thr:g} points below the episode's previous SRS (a setting); 95% Wilson CI",
            f"drops: {p['drop_rate']:.1%} of {p['with_previous']:,.0f} SRS ratings with a "
            "previous one in the period"
            if drops_shown
            else "",
            n_text=n_text(ctx, total["episodes"], "ended episodes", clients),
        ),
        x_label="Dropout rate",
        reference=overall,
        reference_label="these episodes overall",
        value_format="pct",
        suppressed_label=ctx.policy.label,
    )
    reading = ""
    if not any_withheld(safe) and len(safe) == 2:
        # from the protected counts, like every figure shown
        yes, no = safe[safe["had_drop"]].iloc[0], safe[~safe["had_drop"]].iloc[0]
        rd = risk_difference(
            float(yes["dropouts"]),
            float(yes["episodes"]),
            float(no["dropouts"]),
            float(no["episodes"]),
        )
        if np.isfinite(rd.value):
            chance = rd.low <= 0 <= rd.high
            reading = (
                f"Dropout: {yes['dropout_rate']:.1%} of episodes with a drop, "
                f"{no['dropout_rate']:.1%} without, a difference of {rd.value * 100:+.1f} "
                f"percentage points (95% CI {rd.low * 100:+.1f} to {rd.high * 100:+.1f})"
                + (", within what chance alone produces. " if chance else ". ")
            )
    reading += (
        "An association, not a cause: longer episodes have more chances of a drop, and clients "
        "who drop out may differ in other ways. Whether drops were repaired, and by whom, is on "
        "the Ruptures & repair page."
    )
    return Panel(
        key="drops",
        title=title,
        subtitle="",
        reading=reading + noise_note(ctx) + withheld_note(ctx, safe),
        figure=fit_layout(fig, rate_axis="x"),
        data=safe[
            [
                "group",
                "n_clients",
                "episodes",
                "dropouts",
                "dropout_rate",
                "low",
                "high",
                "suppressed",
            ]
        ],
        withheld=any_withheld(safe),
    )


# --------------------------------------------------------------------------- the view


def build(ctx: Context) -> View:
    s = summary(ctx)
    if s["n_clients"] < ctx.policy.k:
        return View(
            TITLE, QUESTION, notice=too_small_notice(ctx, s["n_clients"]), n_clients=s["n_clients"]
        )
    p = protected_summary(ctx, s)
    scale = SCALES.get(ctx.filters.alliance_measure, SCALES["srs"])
    parts = [
        lambda: _by_session_number(ctx, scale, s, p),
        lambda: _drops_and_dropout(ctx, s, p),
        lambda: _distribution(ctx, scale, s, p),
        lambda: _control_chart(ctx, scale, s, p),
    ]
    if scale.key == "wai":
        parts.append(lambda: _wai_subscales(ctx))
    by_number, drops, distribution, control, *wai = gather(*parts)
    panels = [distribution, *wai, control, by_number, drops]
    return View(TITLE, QUESTION, tiles=_tiles(ctx, s, p), panels=panels, n_clients=s["n_clients"])


__all__ = [
    "QUESTION",
    "SCALES",
    "TITLE",
    "baseline_mask",
    "build",
    "mean_interval",
    "protected_summary",
    "spc_baseline_end",
    "spc_baseline_text",
    "spc_centre_label",
    "spc_method_text",
    "spc_frame",
    "spc_note",
    "summary",
]
