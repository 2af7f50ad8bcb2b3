"""Overview: the clinic's alliance, dropout and outcome picture at a glance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance import charts, noise, protected, queries
from alliance.panel import (
    Context,
    Panel,
    Tile,
    View,
    beyond_chance,
    delta_interval,
    empty_panel,
    with_delta_rule,
)
from alliance.settings import MEASURES
from alliance.stats import fisher_z_ci
from alliance.views.common import (
    CORRELATION_NOTE,
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

TITLE = "Overview"
SRS_RANGE = 40.0  # one SRS rating's range (0-40): the scale of a sum's noise
QUESTION = "How strong is the alliance, who drops out, and do clients get better?"


def headline(ctx: Context, filters=None) -> dict[str, float | int | None]:
    """The headline figures for one period (unsuppressed: callers pass them through `protect`).

    The client count behind each figure is there for the privacy step: n_clients (sessions),
    ended_clients, outcome_clients exactly; srs_clients, clinical_clients and r_clients
    exactly when below k, else possibly a lower bound that is already at least k (see
    `_clients_behind`): compare them with k, do not show them.
    """
    f = filters or ctx.filters
    p = ctx.params(f)
    measure = f.outcome_measure
    s, e = (
        df.iloc[0]
        for df in gather(
            lambda: queries.run(
                ctx.con, "overview_sessions", **p, srs_cutoff=ctx.settings.srs_cutoff
            ),
            lambda: queries.run(
                ctx.con, "overview_episodes", **p, **ctx.settings.outcome_params(measure)
            ),
        )
    )

    def num(x: object) -> float | None:
        return None if x is None or pd.isna(x) else float(x)

    k = ctx.policy.k
    sessions, clients, srs_n = int(s["sessions"]), int(s["n_clients"]), int(s["srs_n"])
    outcome_n, outcome_clients = int(e["outcome_n"]), int(e["outcome_clients"])
    # Clients with an SRS: at least the clients minus the sessions without one (a client with
    # no SRS has at least one such session); settled exactly only when that bound is below k.
    srs_clients = _clients_behind(
        srs_n, clients - (sessions - srs_n), k, lambda: _alliance_clients(ctx, f)
    )
    # Clients of a subset of the outcome episodes: at least its episodes minus the outcome
    # episodes beyond each client's first (outcome_n - outcome_clients).
    exact: dict[str, int] = {}

    def outcome_exact(key: str) -> int:
        if not exact:
            exact.update(_outcome_clients(ctx, f))
        return exact[key]

    extra = outcome_n - outcome_clients
    clinical_n, r_n = int(e["clinical_n"]), int(e["r_n"])
    clinical_clients = _clients_behind(
        clinical_n, clinical_n - extra, k, lambda: outcome_exact("clinical_clients")
    )
    r_clients = _clients_behind(r_n, r_n - extra, k, lambda: outcome_exact("r_clients"))

    return {
        "sessions": int(s["sessions"]),
        "n_clients": int(s["n_clients"]),
        "active_episodes": int(s["active_episodes"]),
        "therapists": int(s["therapists"]),
        "srs_n": srs_n,
        "srs_clients": srs_clients,
        "mean_srs": num(s["mean_srs"]),
        "sd_srs": num(s["sd_srs"]),
        "srs_below": int(s["srs_below"]),
        "srs_below_cutoff_rate": num(s["srs_below_rate"]),
        "ended": int(e["ended"]),
        "ended_clients": int(e["n_clients"]),
        "dropouts": int(e["dropouts"]),
        "dropout_rate": num(e["dropout_rate"]),
        "outcome_n": int(e["outcome_n"]),
        "outcome_clients": int(e["outcome_clients"]),
        "reliable_improvement_rate": num(e["reliable_improvement"] / e["outcome_n"])
        if e["outcome_n"]
        else None,
        "reliable_deterioration_rate": num(e["reliable_deterioration"] / e["outcome_n"])
        if e["outcome_n"]
        else None,
        "clinical_n": clinical_n,
        "clinical_clients": clinical_clients,
        "recovery_rate": num(e["recovered"] / e["clinical_n"]) if e["clinical_n"] else None,
        "reliable_recovery_rate": num(e["reliably_recovered"] / e["clinical_n"])
        if e["clinical_n"]
        else None,
        "alliance_outcome_r": num(e["r"]),
        "r_n": r_n,
        "r_clients": r_clients,
        # cell keys of the counts, for the protected-statistics step (never shown)
        **{c: int(s[c]) for c in s.index if c.endswith("_cellkey")},
        **{c: int(e[c]) for c in e.index if c.endswith("_cellkey")},
        # distinct clients and episodes of the sessions: keys derived from the sessions' key
        **{
            f"{c}_cellkey": int(noise.derived_key(np.array([s["sessions_cellkey"]]), c)[0])
            for c in ("n_clients", "active_episodes")
        },
        "reliable_improvement": int(e["reliable_improvement"]),
        "recovered": int(e["recovered"]),
    }


# The headline's protected counts (each with its `<count>_cellkey`), means and rates.
_COUNTS = [
    "sessions",
    "n_clients",
    "active_episodes",
    "srs_n",
    "srs_below",
    "ended",
    "dropouts",
    "outcome_n",
    "reliable_improvement",
    "clinical_n",
    "recovered",
    "r_n",
]
_MEANS = [protected.Mean("mean_srs", "srs_n", 40.0)]
_RATES = {
    "srs_below_cutoff_rate": protected.Rate("srs_below_cutoff_rate", "srs_below", "srs_n"),
    "dropout_rate": protected.Rate("dropout_rate", "dropouts", "ended"),
    "reliable_improvement_rate": protected.Rate(
        "reliable_improvement_rate", "reliable_improvement", "outcome_n"
    ),
    "recovery_rate": protected.Rate("recovery_rate", "recovered", "clinical_n"),
}


def now_shown(ctx: Context, head: dict, count: str) -> float:
    """One headline count as shown (with its cell's noise)."""
    return protected_headline(ctx, head)[0][count] or 0


def protected_headline(ctx: Context, head: dict) -> tuple[dict, set[str]]:
    """The headline as it may be shown: counts with their cell's noise, means and rates from
    protected parts, and the keys withheld by the numerator rule (a rate with 1 .. k-1 events
    or non-events). The threshold on each figure's clients is the caller's (`_population`)."""
    # the same arithmetic as protected.perturb on one row, in numpy (a frame per call would
    # cost more than the rest of the step)
    k = ctx.policy.k
    counts = np.array([head[c] for c in _COUNTS], dtype="float64")
    keys = np.array([head[f"{c}_cellkey"] for c in _COUNTS], dtype="float64")
    shown = dict(zip(_COUNTS, noise.perturb_counts(counts, keys, ctx.noise, k), strict=True))
    out: dict[str, float | None] = {c: float(v) for c, v in shown.items()}
    for m in _MEANS:
        value = noise.perturb_means(
            np.array([np.nan if head[m.col] is None else head[m.col]], dtype="float64"),
            np.array([shown[m.n]]),
            np.array([head[f"{m.n}_cellkey"]], dtype="float64"),
            m.record_range,
            ctx.noise,
        )[0]
        out[m.col] = None if np.isnan(value) else float(value)
    for key, rate in _RATES.items():
        total = shown[rate.total]
        out[key] = float(shown[rate.events] / total) if total > 0 else None
    withheld = set()
    for key, rate in _RATES.items():
        x, t = head[rate.events], head[rate.total]
        if 0 < x < k or 0 < t - x < k:
            withheld.add(key)
    out["alliance_outcome_r"] = head["alliance_outcome_r"]
    return out, withheld


def _clients_behind(count: int, lower_bound: int, k: int, exact) -> int:
    """Distinct clients behind a headline figure, for the privacy step: 0 without data; the
    count itself when it is below k (fewer items than k means fewer clients than k); a lower
    bound when it already reaches k; otherwise the exact number from `exact()` (a query, run
    only for such small selections). Not shown, only compared with k."""
    if count <= 0:
        return 0
    if count < k:
        return count
    if lower_bound >= k:
        return lower_bound
    return int(exact())


def _alliance_clients(ctx: Context, f) -> int:
    s = queries.run(
        ctx.con, "alliance_summary", **ctx.params(f), srs_cutoff=ctx.settings.srs_cutoff
    )
    return int(s["srs_clients"].iloc[0])


def _outcome_clients(ctx: Context, f) -> dict[str, int]:
    o = queries.run(
        ctx.con,
        "outcomes_summary",
        **ctx.params(f),
        **ctx.settings.outcome_params(f.outcome_measure),
    ).iloc[0]
    return {"clinical_clients": int(o["clinical_clients"]), "r_clients": int(o["r_clients"])}


def _tiles(ctx: Context, now: dict, before: dict) -> list[Tile]:
    m = MEASURES[ctx.filters.outcome_measure].label
    rc = ctx.settings.reliable_change(ctx.filters.outcome_measure)
    specs = [
        (
            "active_episodes",
            "Active episodes",
            ",.0f",
            "n_clients",
            "clients",
            "Episodes with at least one attended session in the period.",
            None,
            "+,.0f",
        ),
        (
            "sessions",
            "Sessions",
            ",.0f",
            "n_clients",
            "clients",
            "Attended sessions dated in the period.",
            None,
            "+,.0f",
        ),
        (
            "mean_srs",
            "Mean SRS",
            ".1f",
            "srs_n",
            "SRS ratings",
            "Mean Session Rating Scale total (0–40) over sessions in the period.",
            True,
            "+.2f",
        ),
        (
            "srs_below_cutoff_rate",
            "SRS below cutoff",
            ".1%",
            "srs_n",
            "SRS ratings",
            f"Share of SRS ratings with {srs_cutoff_text(ctx)}.",
            False,
            "+.1%",
        ),
        (
            "dropout_rate",
            "Dropout rate",
            ".1%",
            "ended",
            "ended episodes",
            "Ended episodes (finished in period) whose end reason is dropout (client-unilateral).",
            False,
            "+.1%",
        ),
        (
            "reliable_improvement_rate",
            "Reliable improvement",
            ".1%",
            "outcome_n",
            "episodes",
            f"Ended episodes with ≥ 2 {m} scores improving by ≥ {rc:g} points.",
            True,
            "+.1%",
        ),
        (
            "recovery_rate",
            "Recovery",
            ".1%",
            "clinical_n",
            "episodes",
            f"Of ended episodes starting in the {m} clinical range, share ending out of it "
            f"({ctx.settings.outcome_definition(ctx.filters.outcome_measure)}).",
            True,
            "+.1%",
        ),
        (
            "alliance_outcome_r",
            "Alliance–outcome r",
            ".2f",
            "r_n",
            "episodes",
            f"Pearson r between early SRS (mean of first 3) and {m} improvement. "
            "Published: r ≈ .28 (Flückiger et al. 2018). " + CORRELATION_NOTE,
            True,
            "+.2f",
        ),
    ]
    # the protected-statistics step: every figure from protected counts (cell-key noise); a
    # tile whose population has fewer than k clients, or whose rate has 1 .. k-1 events or
    # non-events, is withheld; its change is shown only when last period's figure was shown
    # too (the change and this period's value would give last period's away)
    k = ctx.policy.k
    shown_now, rule_now = protected_headline(ctx, now)
    shown_before, rule_before = protected_headline(ctx, before) if before else ({}, set())
    tiles = []
    for spec in specs:
        key, label, fmt, n_key, n_unit, help_text, better, delta_fmt = spec
        hidden = 0 < _population(now, key) < k or key in rule_now
        value = None if hidden else shown_now.get(key)
        prev = shown_before.get(key)
        delta = None
        if (
            value is not None
            and prev is not None
            and _population(before, key) >= k
            and key not in rule_before
        ):
            delta = value - prev
        significant = _delta_significant(ctx, key, shown_now, shown_before, now, before)
        n_shown = shown_now.get(n_key) or 0
        shown_n = f"n = {n_shown:,.0f} {n_unit}" if not hidden else ""
        if key == "alliance_outcome_r" and value is not None and n_shown > 3:
            lo, hi = fisher_z_ci(value, int(n_shown))
            shown_n = f"95% CI {lo:.2f} to {hi:.2f} · {shown_n}"
        tiles.append(
            Tile(
                key=key,
                label=label,
                value=value,
                fmt=fmt,
                n_text=shown_n,
                help=with_delta_rule(help_text) if delta is not None else help_text,
                delta=delta,
                delta_fmt=delta_fmt,
                higher_is_better=better,
                withheld=hidden,
                delta_significant=significant if delta is not None else None,
            )
        )
    return tiles


def _delta_significant(
    ctx: Context, key: str, shown_now: dict, shown_before: dict, now: dict, before: dict
) -> bool | None:
    """Whether a tile's change is beyond chance: the 95% interval of the difference between
    the two periods' shown figures excludes zero (panel.delta_interval)."""
    a, b = shown_now.get(key), shown_before.get(key)
    if a is None or b is None:
        return None
    if key in _RATES:
        total = _RATES[key].total
        return beyond_chance(
            delta_interval("rate", (a, shown_now[total]), (b, shown_before[total]), ctx.noise)
        )
    if key == "mean_srs":
        sd_a, sd_b = now.get("sd_srs"), before.get("sd_srs")
        if sd_a is None or sd_b is None:
            return None
        return beyond_chance(
            delta_interval(
                "mean",
                (a, shown_now["srs_n"], sd_a),
                (b, shown_before["srs_n"], sd_b),
                ctx.noise,
                record_range=SRS_RANGE,
            )
        )
    if key == "alliance_outcome_r":
        return beyond_chance(
            delta_interval("r", (a, shown_now["r_n"]), (b, shown_before["r_n"]), ctx.noise)
        )
    return None  # counts: no better direction, never coloured


# the clients each tile's figure describes (headline keys)
POPULATION = {
    "active_episodes": "n_clients",
    "sessions": "n_clients",
    "mean_srs": "srs_clients",
    "srs_below_cutoff_rate": "srs_clients",
    "dropout_rate": "ended_clients",
    "reliable_improvement_rate": "outcome_clients",
    "recovery_rate": "clinical_clients",
    "alliance_outcome_r": "r_clients",
}


def _population(head: dict, key: str) -> int:
    return int(head.get(POPULATION[key]) or 0)


def _alliance_trend(ctx: Context, now: dict) -> Panel:
    f = ctx.filters
    df = queries.run(
        ctx.con,
        "monthly_alliance",
        **ctx.params(),
        alliance="srs",
        srs_cutoff=ctx.settings.srs_cutoff,
    )
    title = "Alliance by month"
    if df.empty:
        return empty_panel("alliance_trend", title, "No SRS ratings in this selection.")
    # months add up to the ratings in the subtitle: one partition, so a withheld month cannot
    # be recovered by subtraction; the band is formed from the protected mean and count
    safe = protect_counts(
        ctx,
        df[["month", "n_clients", "n", "mean_score", "sd_score", "n_cellkey"]],
        counts=["n_clients", "n"],
        means=[protected.Mean("mean_score", "n", SRS_RANGE)],
        value_cols=["n", "mean_score", "sd_score"],
        n_key_from="n",
        overlapping=True,  # a client is rated in many months
    )
    low, high = protected.mean_interval(
        safe["mean_score"], safe["sd_score"], safe["n"], SRS_RANGE, ctx.noise
    )
    safe = safe.drop(columns="sd_score").assign(low=low, high=high)
    fig = charts.lines(
        safe,
        x="month",
        y="mean_score",
        group=None,
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Mean SRS total per calendar month (0–40), 95% CI band",
            n_text=n_text(ctx, now_shown(ctx, now, "srs_n"), "ratings", now["srs_clients"]),
        ),
        x_label="Month",
        y_label="Mean SRS",
        value_format="num1",
        scale="srs",
    )
    if safe["mean_score"].isna().all():
        mark_all_withheld(fig, ctx, "month")
    return Panel(
        key="alliance_trend",
        title=title,
        subtitle="",
        figure=fig,
        data=safe,
        reading=(
            "Each point is the month's mean SRS; the band is its 95% confidence interval. "
            "A few tenths of a point either way is usual month-to-month noise; the Alliance "
            "page tests for real shifts with control-chart rules."
            + withheld_note(ctx, safe)
            + noise_note(ctx)
        ),
        withheld=any_withheld(safe),
        section=f.period_text(),
    )


def _dropout_trend(ctx: Context, now: dict) -> Panel:
    df = queries.run(ctx.con, "monthly_dropout", **ctx.params())
    title = "Dropout rate by month"
    if df.empty:
        return empty_panel("dropout_trend", title, "No episodes ended in this selection.")
    # the numerator rule withholds a month with 1 .. k-1 dropouts or other endings
    safe = protect_counts(
        ctx,
        df,
        counts=["n_clients", "ended", "dropouts"],
        rates=[protected.Rate("dropout_rate", "dropouts", "ended")],
        value_cols=["ended", "dropouts", "dropout_rate"],
        n_key_from="ended",
        overlapping=True,  # a client may end two episodes in the period
    )
    low, high = protected.wilson(safe["dropouts"], safe["ended"], ctx.noise)
    safe = safe.assign(low=low, high=high)
    fig = charts.lines(
        safe,
        x="month",
        y="dropout_rate",
        group=None,
        low="low",
        high="high",
        title=title,
        subtitle=subtitle(
            ctx,
            "Dropouts / ended episodes by month of the last session",
            "95% Wilson band",
            n_text=n_text(
                ctx, now_shown(ctx, now, "ended"), "ended episodes", now["ended_clients"]
            ),
        ),
        x_label="Month the episode ended",
        y_label="Dropout rate",
        value_format="pct",
        scale="rate",
    )
    if safe["dropout_rate"].isna().all():
        mark_all_withheld(fig, ctx, "month")
    return Panel(
        key="dropout_trend",
        title=title,
        subtitle="",
        figure=fig,
        data=safe,
        reading=(
            "Share of episodes ending that month whose end reason was dropout. "
            "Months with few endings have wide bands; published clinics average ≈ 20% "
            "(Swift & Greenberg 2012)." + withheld_note(ctx, safe) + noise_note(ctx)
        ),
        withheld=any_withheld(safe),
    )


def build(ctx: Context) -> View:
    now = headline(ctx)
    if 0 < now["n_clients"] < ctx.policy.k or now["n_clients"] == 0:
        return View(
            TITLE,
            QUESTION,
            notice=too_small_notice(ctx, now["n_clients"]),
            n_clients=now["n_clients"],
        )
    before, *panels = gather(
        lambda: headline(ctx, ctx.filters.previous_period()),
        lambda: _alliance_trend(ctx, now),
        lambda: _dropout_trend(ctx, now),
    )
    tiles = _tiles(ctx, now, before)
    return View(TITLE, QUESTION, tiles=tiles, panels=panels, n_clients=now["n_clients"])
