"""Therapists: do therapists differ more than chance would explain, once case mix is allowed for?

Therapists are compared only with funnel plots (Spiegelhalter 2005; metrics.md "Therapists"),
never with a ranked table: each therapist's dropout rate, mean early alliance and case-mix
adjusted improvement is drawn against their volume, with 95% and 99.8% control limits around the
clinic-wide value (widened for overdispersion as the settings say). The therapist share of
outcome variance (ICC) says how much of the difference in outcomes lies between therapists at all.

The numbers, and how each passes the protected-statistics step, are alliance/metrics/
therapists.py; the figures alliance/charts/therapists.py; the words views/therapists_text.py.

Roles and privacy: a role without therapist-level access (``ctx.therapist_level`` False) gets a
notice and no therapist-level query is run; withheld therapists are removed from the plot,
counted in the caption and marked in the data; meeting mode replaces codes with labels A, B,
C... in an order drawn from a hash of the code salted with the view's filters (not performance,
not code order), everywhere, and turns the point selection off.

Selecting a point filters the dashboard to that therapist; the funnels themselves always compare
the therapist with all therapists (the therapist filter is dropped for them and the selected
therapist is ringed), so selecting someone never collapses a funnel to one dot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

from alliance import privacy, stats
from alliance.charts.therapists import share_estimate, therapist_funnel
from alliance.metrics import therapists as m
from alliance.panel import Context, Panel, Tile, View, empty_panel
from alliance.settings import MEASURES
from alliance.views import therapists_text as text
from alliance.views.common import SMALL_N_NOTE, gather, noise_note, subtitle
from alliance.views.therapists_text import QUESTION, ROLE_NOTICE  # noqa: F401 (the page's)

TITLE = "Therapists"


def build(ctx: Context) -> View:
    if not ctx.therapist_level:
        return View(TITLE, QUESTION, notice=ROLE_NOTICE)
    cmp = m.comparison_context(ctx)
    dropout, n_clients = m.dropout_table(cmp)
    if n_clients == 0 or privacy.cohort_too_small(n_clients, ctx.policy):
        return View(TITLE, QUESTION, notice=text.too_small(ctx, n_clients), n_clients=n_clients)
    outcome_rows, alliance = m.episode_tables(ctx, cmp)
    dropout = m.protected_dropout(ctx, dropout)
    codes = (
        set(dropout["therapist"].dropna().unique())
        | set(alliance["therapist"].dropna().unique())
        | set(outcome_rows["therapist"].dropna().unique())  # one row per episode: unique first
    )
    names = m.display_names(ctx, codes)
    icc, outcome, dropout_panel, alliance_panel = gather(
        lambda: m.released_icc(ctx, outcome_rows),
        lambda: _outcome_funnel(ctx, cmp, outcome_rows, names),
        lambda: _dropout_funnel(ctx, cmp, dropout, names),
        lambda: _alliance_funnel(ctx, cmp, alliance, names),
    )
    panels = [dropout_panel, alliance_panel, outcome, _icc_panel(ctx, cmp, icc, outcome_rows)]
    tiles = _tiles(ctx, dropout, icc, outcome_rows, panels, names)
    return View(TITLE, QUESTION, tiles=tiles, panels=panels, n_clients=n_clients)


def selected_therapist(event: object) -> str | None:
    """The therapist code picked in a funnel plot's selection event, if exactly one was picked.

    Points carry customdata [code]; limit lines are not selectable. A box or lasso around
    several therapists selects nobody.
    """
    points = _get(_get(event, "selection"), "points") or []
    codes = set()
    for point in points:
        data = _get(point, "customdata")
        if isinstance(data, list | tuple) and data:
            codes.add(str(data[0]))
        elif isinstance(data, str):
            codes.add(data)
    return codes.pop() if len(codes) == 1 else None


# --------------------------------------------------------------------------- panels


def _dropout_funnel(ctx: Context, cmp: Context, df: pd.DataFrame, names: dict) -> Panel:
    inp = m.dropout_input(df)
    words = text.dropout_words()
    total = text.total_text(ctx, inp.clinic, "ended", words.pop("unit"))
    extra = {"dropouts": "dropouts"}
    return _funnel_panel(ctx, cmp, inp, names, "dropout", "proportion", "pct", total, extra, words)


def _alliance_funnel(ctx: Context, cmp: Context, df: pd.DataFrame, names: dict) -> Panel:
    wai = ctx.filters.alliance_measure == "wai"
    inp = m.alliance_input(ctx, df)
    words = text.alliance_words(wai, getattr(inp, "sigma", None))
    if isinstance(inp, str):
        return _empty(ctx, "alliance", words["title"], text.EMPTY[inp].format(**words))
    total = text.total_text(ctx, inp.clinic, "episodes", words.pop("unit"))
    fmt = "num2" if wai else "num1"
    return _funnel_panel(ctx, cmp, inp, names, "alliance", "mean", fmt, total, {}, words)


def _outcome_funnel(ctx: Context, cmp: Context, rows: pd.DataFrame, names: dict) -> Panel:
    inp = m.outcome_input(ctx, rows)
    label = MEASURES[ctx.filters.outcome_measure].label
    words = text.outcome_words(label, getattr(inp, "sigma", None))
    if isinstance(inp, str):
        return _empty(ctx, "outcome", words["title"], text.EMPTY[inp].format(**words))
    total = text.total_text(ctx, inp.clinic, "n", words.pop("unit"))
    extra = {"raw_mean": "unadjusted improvement (points)"}
    return _funnel_panel(ctx, cmp, inp, names, "outcome", "mean", "num1", total, extra, words)


def _funnel_panel(
    ctx: Context,
    cmp: Context,
    inp: m.FunnelInput,
    names: Mapping[str, str],
    key: str,
    kind: str,
    value_format: str,
    total: str,
    extra_cols: dict[str, str],
    words: dict[str, str],
) -> Panel:
    """One funnel (alliance.metrics.therapists.funnel) with therapists named as shown, its
    figure and the data behind it; withheld therapists are not drawn."""
    title, n_name = words["title"], words["n_name"]
    f = m.funnel(ctx, inp, kind)
    if f == m.TOO_FEW:
        return _empty(ctx, key, title, text.TOO_FEW)
    if isinstance(f, str):
        return _empty(ctx, key, title, text.none_shown(ctx))
    table = f.table.copy()
    table.insert(0, "therapist", table["unit"].map(names))
    table = table.drop(columns=["unit"])
    table["flag"] = table["flag"].astype(object).where(~table["suppressed"], ctx.policy.label)
    order = m.label_sort_key if ctx.meeting_mode else None
    safe = table.sort_values("therapist", key=order).reset_index(drop=True)
    visible = safe[~safe["suppressed"]].assign(n=lambda d: d["n"].astype(float))
    withheld = f.primary + f.complementary
    shown_text = text.shown_text(ctx, len(visible), withheld)
    points = visible.rename(columns={"therapist": "unit"})
    code = ctx.filters.therapist
    fig = therapist_funnel(
        points,
        f.grid,
        target=inp.target,
        title=title,
        subtitle=subtitle(
            cmp,
            words["definition"],
            text.limits_text(f.info),
            n_text=f"{total} · {shown_text}" if total else shown_text,
        ),
        x_label=words["x_label"],
        y_label=words["y_label"],
        value_format=value_format,
        selected=None if code is None else points[points["unit"] == names.get(code, code)],
    )
    # the data behind the chart, with headers a meeting can read; rates in percent (the
    # headers say so). n_clients keeps its name: it is the privacy column of every table.
    pct = kind == "proportion"
    headers = text.data_headers(n_name, words["value_name"], pct, extra_cols)
    scaled = ["value", "low_95", "high_95", "low_998", "high_998"]
    data = safe.assign(**{c: safe[c] * (100 if pct else 1) for c in scaled}).rename(columns=headers)
    head = ["therapist", "n_clients", n_name, *extra_cols.values()]
    data = data[[*head, *(headers[c] for c in (*scaled, "flag", "z")), "suppressed", "suppression"]]
    caption = text.withheld_caption(ctx, f.primary, f.complementary)
    hint = "" if ctx.meeting_mode else " " + text.SELECTION_HINT
    return Panel(
        key=_key(ctx, key),
        title=title,
        subtitle="",
        reading=f"{words['reading']} {text.outside_text(f.outside, len(visible))}{text.FUNNEL_NOTE}"
        + (f" {caption}." if caption else "")
        + noise_note(ctx)
        + hint,
        figure=fig,
        data=data,
        withheld=bool(safe["suppressed"].any()),
        section="Funnel plots",
        stats={
            "target": float(inp.target),
            "phi": float(f.info["phi"]),  # type: ignore[arg-type]
            "tau2": float(f.info["tau2"]),  # type: ignore[arg-type]
            "shown": float(len(visible)),
            "outside_998": float(f.outside),
            "withheld": float(withheld),
        },
        selectable=not ctx.meeting_mode,
    )


def _icc_panel(ctx: Context, cmp: Context, icc: stats.ICC, rows: pd.DataFrame) -> Panel:
    label = MEASURES[ctx.filters.outcome_measure].label
    title = f"Therapist share of {label} outcome variance"
    if not np.isfinite(icc.icc):
        return empty_panel("therapist_icc", title, text.NO_ICC)
    episodes, clients = m.icc_counts_shown(ctx, rows)
    safe = pd.DataFrame(
        {
            "estimate": [f"This clinic ({label} improvement)"],
            "n_clients": [clients],
            "episodes": [episodes],
            "therapists": [icc.n_groups],
            "icc": [icc.icc],
            "low": [icc.low],
            "high": [icc.high],
            "tau2": [icc.tau2],
            "sigma2": [icc.sigma2],
            "method": [text.method_text(icc.method)],
            "suppressed": [False],
        }
    )
    fig = share_estimate(
        safe,
        title=title,
        subtitle=subtitle(
            cmp,
            f"ICC = τ² / (τ² + σ²) from {label} improvement ~ intake score + (1 | therapist)",
            f"{text.method_text(icc.method)}; 95% interval from the one-way ANOVA F",
            text.icc_basis(ctx),
            n_text=f"n = {episodes:,} ended episodes of {icc.n_groups} therapists",
        ),
        x_label="Share of outcome variance between therapists",
        reference=text.PUBLISHED_ICC,
        reference_label="published ≈ 5%",
        suppressed_label=ctx.policy.label,
    )
    return Panel(
        key="therapist_icc",
        title=title,
        subtitle="",
        reading=text.icc_reading(ctx, label, icc.icc, icc.low, icc.high)
        + SMALL_N_NOTE
        + noise_note(ctx),
        figure=fig,
        data=safe,
        section="Therapist effect",
        stats={"icc": icc.icc, "low": icc.low, "high": icc.high},
    )


# --------------------------------------------------------------------------- tiles


def _tiles(
    ctx: Context,
    dropout: pd.DataFrame,
    icc: stats.ICC,
    rows: pd.DataFrame,
    panels: list[Panel],
    names: Mapping[str, str],
) -> list[Tile]:
    label = MEASURES[ctx.filters.outcome_measure].label
    n_therapists, _ = m.therapist_count(ctx, dropout)
    shown = next((p for p in panels if p.stats and "shown" in p.stats), None)
    shown_text = (
        text.tile_shown_text(ctx, shown.stats["shown"], shown.stats.get("withheld", 0.0))
        if shown
        else text.tile_shown_text(ctx, 0, 0)
    )
    # the ICC is released by `released_icc` (every therapist it rests on has >= k clients)
    released = bool(np.isfinite(icc.icc))
    icc_text = (
        f"95% CI {icc.low:.1%} to {icc.high:.1%} · {text.method_text(icc.method)} · "
        f"n = {m.icc_counts_shown(ctx, rows)[0]:,} episodes, {icc.n_groups} "
        f"{text.icc_basis(ctx)} · published ≈ 5%"
        if released
        else ""
    )
    tiles = [
        Tile(
            key="therapists",
            label="Therapists with ended episodes",
            value=float(n_therapists),
            fmt=",.0f",
            n_text=shown_text,
            help="Therapists who were the main therapist of at least one episode that ended in "
            "the period.",
            higher_is_better=None,
        ),
        Tile(
            key="therapist_icc",
            label=f"Therapist share of {label} variance",
            value=float(icc.icc) if released else None,
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
        tiles.extend(_selected_tiles(ctx, names.get(code, code), panels))
    return tiles


def _selected_tiles(ctx: Context, name: str, panels: list[Panel]) -> list[Tile]:
    """The selected therapist's own dots, read from the (already protected) funnel data."""
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
        position = text.POSITION_TEXT.get(str(r["position"]), "")
        tiles.append(
            Tile(
                key=f"selected_{kind}",
                label=f"{name}: {label[0].lower()}{label[1:]}",
                value=value,
                fmt=fmt,
                n_text="" if withheld else f"clinic-wide {format(target, fmt)} · {position}",
                help=f"{panel.title}: the selected therapist's dot. " + text.FUNNEL_NOTE,
                higher_is_better=better,
                withheld=withheld,
            )
        )
    return tiles


# --------------------------------------------------------------------------- small helpers


def _key(ctx: Context, name: str) -> str:
    """Panel keys: 'funnel_*', or in meeting mode (where nothing can be selected) 'meeting_*'."""
    return f"{'meeting' if ctx.meeting_mode else 'funnel'}_{name}"


def _empty(ctx: Context, name: str, title: str, message: str) -> Panel:
    """A funnel with nothing to draw (selectable as its funnel would be)."""
    panel = empty_panel(_key(ctx, name), title, message)
    return dataclasses.replace(panel, selectable=not ctx.meeting_mode)


def _get(obj: object, name: str) -> object:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        return obj[name]  # type: ignore[index]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, name, None)
