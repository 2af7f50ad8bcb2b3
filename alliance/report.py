"""Report packs for quality-improvement meetings: a deck, a PDF, or a ZIP of every chart.

A pack is made of the very panels the pages show (the same view functions, the same privacy
step), exported through `alliance.exports`: a PowerPoint deck, a PDF or a ZIP of charts and
data, each written by `alliance.report_files`. This module chooses the sections and charts,
words their headlines and definitions, and assembles the pack. The page (pages/reports.py) and
the command (`python -m alliance report`) build the same content.

Sections are discovered by module name: `SECTIONS` lists (key, title, module); a module that does
not exist (yet) is skipped, so the pack grows as views are added. A view module may define
``pack_headline(panel, view, ctx) -> str | None`` to word its charts' headline sentences; without
it the headline comes from the view's tiles or the panel's stats, else from its title and n.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from alliance import exports
from alliance.panel import Context, Panel, Tile, View
from alliance.settings import MEASURES, Settings
from alliance.spc import run_rules

Progress = Callable[[float, str], None]
BuildView = Callable[[str, Callable[[Context], View], Context], View]

# (section key, title, view module). Order = order in the pack.
SECTIONS: list[tuple[str, str, str]] = [
    ("overview", "Overview", "alliance.views.overview"),
    ("alliance", "Alliance (trust)", "alliance.views.alliance_page"),
    ("profile", "Alliance profile", "alliance.views.profile"),
    ("ruptures", "Ruptures & repair", "alliance.views.ruptures"),
    ("dropout", "Dropout", "alliance.views.dropout"),
    ("outcomes", "Outcomes", "alliance.views.outcomes"),
    ("therapists", "Therapists", "alliance.views.therapists"),
    ("demographics", "Client demographics", "alliance.views.demographics"),
]
# The monthly QI pack: the trends to watch, the alliance–dropout–outcome links, therapists by
# funnel plot and equity. A chosen section none of whose charts is listed here contributes all
# of its charts.
DEFAULT_SECTIONS = ("overview", "alliance", "dropout", "outcomes", "therapists", "demographics")
DEFAULT_CHARTS = (
    "overview/alliance_trend",
    "overview/dropout_trend",
    "alliance/alliance_spc",
    "dropout/dropout_spc",
    "dropout/dropout_bands",
    "outcomes/monthly_change",
    "outcomes/alliance_outcome",
    "therapists/funnel_dropout",
    "therapists/funnel_alliance",
    "therapists/funnel_outcome",
    "therapists/meeting_dropout",
    "therapists/meeting_alliance",
    "therapists/meeting_outcome",
    "demographics/demo_dropout",
    "demographics/demo_reliable_improvement",
    "profile/by_month",
    "profile/weakest",
    "ruptures/rupture_monthly",
    "ruptures/repair_monthly",
)
FORMATS = ("pptx", "pdf", "zip")
FORMAT_LABELS = {"pptx": "PowerPoint deck", "pdf": "PDF report", "zip": "ZIP of charts and data"}

# Which headline tile words a chart's headline (chart id -> tile key of the same view).
HEADLINE_TILES = {
    "overview/alliance_trend": "mean_srs",
    "overview/dropout_trend": "dropout_rate",
    "alliance/distribution": "srs_below_cutoff_rate",
    "alliance/alliance_spc": "mean_srs",
    "alliance/by_session": "mean_srs",
    "alliance/drops": "drop_rate",
    "dropout/dropout_spc": "dropout_rate",
    "dropout/dropout_bands": "dropout_or_per_sd_lower",
    "dropout/dropout_curve": "dropout_or_per_sd_lower",
    "dropout/dropout_d": "alliance_dropout_d",
    "dropout/dropout_when": "dropout_rate",
    "outcomes/distribution": "reliable_improvement_rate",
    "outcomes/monthly_change": "reliable_improvement_rate",
    "outcomes/monthly_recovery": "recovery_rate",
    "outcomes/trajectory": "alliance_outcome_r",
    "outcomes/alliance_outcome": "alliance_outcome_r",
    "therapists/therapist_icc": "therapist_icc",
    "ruptures/rupture_monthly": "rupture_rate",
    "ruptures/repair_monthly": "repair_rate",
}
SPC_SIGNALS = {
    "astronomical": "a point outside the limits",
    "shift": "shift",
    "trend": "trend",
}


class PackError(ValueError):
    """A bad request (unknown section or chart, unknown format): shown to the person as is."""


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    module: ModuleType


def _module(path: str) -> ModuleType | None:
    """The view module, or None if it does not exist (yet). Errors inside it are raised."""
    try:
        if importlib.util.find_spec(path) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(path)


def available_sections() -> list[Section]:
    """The sections whose view module exists, in pack order."""
    out = []
    for key, title, path in SECTIONS:
        module = _module(path)
        if module is not None and callable(getattr(module, "build", None)):
            out.append(Section(key, title, module))
    return out


def section_keys() -> list[str]:
    return [s.key for s in available_sections()]


def default_sections() -> list[str]:
    keys = section_keys()
    return [k for k in DEFAULT_SECTIONS if k in keys]


def _direct_build(_key: str, build: Callable[[Context], View], ctx: Context) -> View:
    return build(ctx)


def build_views(
    ctx: Context,
    sections: Sequence[str],
    *,
    build_view: BuildView | None = None,
    progress: Progress | None = None,
    span: tuple[float, float] = (0.0, 1.0),
) -> dict[str, View]:
    """Build (or, with the page's cached `build_view`, fetch) the views of these sections."""
    by_key = {s.key: s for s in available_sections()}
    unknown = [k for k in sections if k not in by_key]
    if unknown:
        raise PackError(f"unknown section(s): {', '.join(unknown)}; available: {', '.join(by_key)}")
    make = build_view or _direct_build
    views: dict[str, View] = {}
    lo, hi = span
    for i, key in enumerate(sections):
        if progress:
            progress(lo + (hi - lo) * i / max(len(sections), 1), f"Computing {by_key[key].title}")
        views[key] = make(key, by_key[key].module.build, ctx)
    return views


def chart_id(section: str, panel: Panel) -> str:
    return f"{section}/{panel.key}"


def catalog(views: dict[str, View]) -> list[tuple[str, str]]:
    """Every chart the views offer: (chart id, 'Section · Chart title'), in pack order."""
    titles = {key: title for key, title, _ in SECTIONS}
    return [
        (chart_id(key, p), f"{titles.get(key, key)} · {exports.plain_text(p.title)}")
        for key, view in views.items()
        if not view.notice
        for p in view.panels
        if p.figure is not None
    ]


def default_charts(views: dict[str, View]) -> list[str]:
    """The default pack's charts among these views (see DEFAULT_CHARTS)."""
    out: list[str] = []
    for key, view in views.items():
        ids = [chart_id(key, p) for p in view.panels if p.figure is not None]
        listed = [i for i in ids if i in DEFAULT_CHARTS]
        out.extend(listed or ids)
    return out


def plan_sections(selection: Iterable[str] | None, sections: Sequence[str] | None) -> list[str]:
    """The sections to build: `sections` if given, else those the selection names, else the
    default pack's. Raises PackError for a section that does not exist."""
    keys = section_keys()
    if sections is not None:
        wanted = list(dict.fromkeys(sections))
    elif selection:
        wanted = list(dict.fromkeys(item.split("/", 1)[0] for item in selection))
    else:
        return default_sections()
    unknown = [k for k in wanted if k not in keys]
    if unknown:
        raise PackError(f"unknown section(s): {', '.join(unknown)}; available: {', '.join(keys)}")
    return [k for k in keys if k in wanted]  # pack order


def resolve_selection(views: dict[str, View], selection: Iterable[str] | None) -> list[str]:
    """Chart ids from a selection of section keys ('dropout': its default charts), chart ids
    ('dropout/dropout_spc') or whole sections ('dropout/*'); items naming sections that are not
    among `views` are ignored. None: the default charts. Returned in pack order."""
    if selection is None:
        return default_charts(views)
    chosen: set[str] = set()
    for item in selection:
        section, _, key = item.partition("/")
        if section not in views:
            continue
        one = {section: views[section]}
        if not key:
            chosen.update(default_charts(one))
        elif key == "*":
            chosen.update(cid for cid, _ in catalog(one))
        elif item in {cid for cid, _ in catalog(one)}:
            chosen.add(item)
        else:
            raise PackError(f"no chart {item!r} for this selection")
    return [cid for cid, _ in catalog(views) if cid in chosen]


# --------------------------------------------------------------------------- headlines


def _fmt_number(value: float, key: str, title: str) -> str:
    key_l, title_l = key.lower(), title.lower()
    rate_words = ("rate", "%", "share", "below", "improvement", "recovery", "deterioration")
    if any(w in key_l for w in ("rate", "share", "pct", "proportion", "icc")) or (
        0 <= value <= 1 and any(w in title_l for w in rate_words)
    ):
        return f"{value:.1%}"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _short_n_text(n_text: str) -> str:
    """'95% CI … · n = … · published …' -> '95% CI …; n = …' (what a headline needs)."""
    parts = [p.strip() for p in n_text.split("·")]
    keep = [p for p in parts if p.startswith(("95% CI", "n =", "n ≈"))]
    return "; ".join(keep or parts[:1])


def _tile_sentence(tile: Tile, ctx: Context) -> str:
    if tile.withheld or tile.value is None:
        return (
            f"{tile.label} is withheld for this selection: it would describe fewer than "
            f"{ctx.policy.k} clients."
        )
    text = f"{tile.label} was {tile.value_text(ctx.policy.label)}"
    if tile.n_text:
        # a rate's interval is on the chart; a statistic (r, d, OR) is read with its interval
        n_text = _short_n_text(tile.n_text)
        if tile.fmt.endswith("%"):
            n_text = n_text.split("; ")[-1]
        text += f" ({n_text})"
    delta = tile.delta_text()
    if delta:
        text += f", {delta.replace('-', '−')} vs the previous period"
    return text + "."


def _subtitle_n(panel: Panel) -> str:
    sub = exports.plain_text(exports.panel_subtitle(panel)).replace("\n", " · ")
    match = re.search(r"\bn\s*[=≈]\s*[\d,]+[^·]*", sub)
    return match.group(0).strip() if match else ""


def _stats_sentence(panel: Panel, ctx: Context) -> str | None:
    s = {k: v for k, v in panel.stats.items() if v is not None and not _isnan(v)}
    title = exports.plain_text(panel.title)
    if "r" in s:
        text = f"{title}: r = {s['r']:.2f}"
        if "r_low" in s and "r_high" in s:
            text += f" (95% CI {s['r_low']:.2f} to {s['r_high']:.2f}"
            text += f"; n = {s['r_n']:,.0f})" if "r_n" in s else ")"
        return text + "."
    if "icc" in s:
        text = f"{title}: {s['icc']:.1%}"
        if "low" in s and "high" in s:
            text += f" (95% CI {s['low']:.1%} to {s['high']:.1%})"
        return text + "."
    if "shown" in s and "target" in s:
        target = _fmt_number(s["target"], "", title)
        who = " therapists" if "therapist" in title.lower() else ""
        text = f"{title}: {s['shown']:.0f}{who} shown around the clinic-wide {target}"
        if "outside_998" in s:
            outside = int(s["outside_998"])
            text += (
                f", {outside} outside the 99.8% limits"
                if outside
                else ", none outside the 99.8% limits"
            )
        if s.get("withheld"):
            text += f"; {s['withheld']:.0f} withheld (fewer than {ctx.policy.k} clients)"
        return text + "."
    if "risk_difference" in s:
        text = f"{title}: a difference of {s['risk_difference'] * 100:+.1f} percentage points"
        if "rd_low" in s and "rd_high" in s:
            text += f" (95% CI {s['rd_low'] * 100:+.1f} to {s['rd_high'] * 100:+.1f})"
        return text + "."
    if "clinic" in s:
        n = _subtitle_n(panel)
        value = _fmt_number(s["clinic"], "", title)
        return f"{title}: clinic-wide {value}" + (f" ({n})." if n else ".")
    return None


def _isnan(value: object) -> bool:
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _month_span(months: pd.Series) -> str:
    first, last = months.min(), months.max()
    a, b = first.strftime("%b %Y"), last.strftime("%b %Y")
    return a if a == b else f"{a} – {b}"


def spc_signals(panel: Panel) -> str | None:
    """'Signals: shift (Nov 2025 – Oct 2026).' for a control chart's data, 'No special-cause
    signal.' when none, None when the panel is not a control chart.

    Only a signal that holds is reported: on a month the rules judged (after the baseline, when
    the data say which), and true of the lines drawn: a shift's months all on one side of the
    drawn centre line, a point outside the limits outside the drawn limits. A run chart (the
    period too short for a separate baseline) judges nothing and reports no signal.
    """
    d = panel.data
    if not {"month", "centre", "ucl", "lcl"} <= set(d.columns):
        return None
    flagged = [c for c in SPC_SIGNALS if c in d.columns]
    if not flagged:
        return None
    if "run_chart" in d.columns and bool(d["run_chart"].fillna(False).astype(bool).any()):
        return "No signal judged: the period is too short for a separate baseline."
    months = pd.to_datetime(d["month"])
    value_col = next((c for c in ("value", "mean", "p") if c in d.columns), None)
    judged = np.ones(len(d), dtype=bool)
    if "judged" in d.columns:
        judged = d["judged"].fillna(False).astype(bool).to_numpy()
    elif "baseline" in d.columns and not bool(d["baseline"].fillna(False).all()):
        judged = ~d["baseline"].fillna(False).astype(bool).to_numpy()
    holds = None
    if value_col is not None:  # the rules again, against the lines that are drawn
        v = pd.to_numeric(d[value_col], errors="coerce").to_numpy(float)
        drawn = [
            pd.to_numeric(d[c], errors="coerce").to_numpy(float) for c in ("centre", "lcl", "ucl")
        ]
        holds = run_rules(np.where(judged, v, np.nan), *drawn)
    found = []
    for col in flagged:
        hit = d[col].fillna(False).astype(bool).to_numpy() & judged
        if holds is not None:
            hit &= holds[col].to_numpy()
        if hit.any():
            found.append(f"{SPC_SIGNALS[col]} ({_month_span(months[hit])})")
    if not found:
        return "No special-cause signal."
    return "Signals: " + "; ".join(found) + "."


def headline(section: str, panel: Panel, view: View, ctx: Context, module=None) -> str:
    """One or two plain sentences over the chart, e.g. 'Dropout rate was 18.8% (n = 1,383 ended
    episodes).', with a control chart's signals after it."""
    hook = getattr(module, "pack_headline", None) if module is not None else None
    if callable(hook):
        text = hook(panel, view, ctx)
        if text:
            return str(text)
    tiles = {t.key: t for t in view.tiles}
    tile_key = HEADLINE_TILES.get(chart_id(section, panel))
    if tile_key in tiles:
        text = _tile_sentence(tiles[tile_key], ctx)
    else:
        text = _stats_sentence(panel, ctx) or ""
    if not text:
        title = exports.plain_text(panel.title)
        n = _subtitle_n(panel)
        text = title + (f" ({n})." if n else ".")
    signals = spc_signals(panel)
    return f"{text} {signals}" if signals else text


# --------------------------------------------------------------------------- definitions


def settings_in_force(settings: Settings) -> list[tuple[str, str]]:
    """The settings every number depends on, as (setting, value) for the appendix."""
    rows = [
        ("SRS cutoff", f"below cutoff = SRS total < {settings.srs_cutoff:g}"),
    ]
    for key, m in MEASURES.items():
        rows.append((f"{m.label} definitions", settings.outcome_definition(key)))
    rows += [
        (
            "Rupture and repair",
            f"rupture = SRS drop of ≥ {settings.rupture_threshold:g} points from the previous "
            f"SRS; repaired within {settings.repair_window} SRS administrations",
        ),
        ("Funnel plot overdispersion", settings.overdispersion),
        (
            "Control-chart baseline",
            f"first {settings.spc_baseline_months} months of the period shown",
        ),
        ("Privacy threshold", f"k = {settings.privacy_k} clients"),
        ("Clinic name", settings.clinic_name),
    ]
    return rows


def settings_line(settings: Settings) -> str:
    """The settings in force in one line, e.g. for speaker notes and the README."""
    parts = [f"SRS below cutoff: total < {settings.srs_cutoff:g}"]
    for key, m in MEASURES.items():
        cut = settings.clinical_cutoff(key)
        clinical = f"< {cut:g}" if m.higher_is_better else f"≥ {cut:g}"
        parts.append(
            f"{m.label}: reliable change ≥ {settings.reliable_change(key):g}, "
            f"clinical range {clinical}"
        )
    parts += [
        f"rupture: drop ≥ {settings.rupture_threshold:g} points, repaired within "
        f"{settings.repair_window} SRS",
        f"funnel overdispersion: {settings.overdispersion}",
        f"control-chart baseline: first {settings.spc_baseline_months} months",
        f"privacy: k = {settings.privacy_k}",
    ]
    return " · ".join(parts)


def definitions(settings: Settings) -> list[tuple[str, str]]:
    """The metric definitions (../shared/metrics.md) with the settings in force filled in."""
    k = settings.privacy_k
    rc = {m: settings.reliable_change(m) for m in MEASURES}
    return [
        (
            "Period",
            "Session metrics use sessions dated in the period; dropout and outcome metrics use "
            "episodes that ended (last session) in it. Trends are by calendar month.",
        ),
        (
            "Ended episode",
            "An episode whose end reason is planned, dropout or other; open episodes count for "
            "session metrics only.",
        ),
        (
            "SRS and the cutoff",
            "Session Rating Scale total, 0–40, per session. Below cutoff = total < "
            f"{settings.srs_cutoff:g}; the rate is sessions below the cutoff / sessions with an SRS.",
        ),
        (
            "WAI-SR",
            "Working Alliance Inventory, short revised: mean item score 1–5; Task, Bond and Goal "
            "are the means of their four items.",
        ),
        (
            "Early alliance",
            "Mean SRS total of an episode's first three sessions with an SRS (fewer if it has "
            "fewer); the same for WAI-SR with the mean item score.",
        ),
        (
            "Alliance dimensions",
            "Felt heard (SRS relationship item, WAI-SR Bond), goals (SRS goals and topics, "
            "WAI-SR Goal), approach (SRS approach or method, WAI-SR Task), SRS overall: item "
            "means, shown where the items were recorded.",
        ),
        (
            "Rupture and repair",
            f"A rupture is an SRS total at least {settings.rupture_threshold:g} points below the "
            "same episode's previous SRS; it is repaired if, within the next "
            f"{settings.repair_window} SRS administrations, the total returns to at least its "
            "level before the drop. Rupture rate per 100 SRS administrations with a previous SRS.",
        ),
        (
            "Dropout rate",
            "Ended episodes whose end reason is dropout (client-unilateral) / ended episodes.",
        ),
        (
            "Alliance and dropout",
            "Cohen's d = difference in mean early SRS between non-dropout and dropout episodes / "
            "pooled SD; odds ratio of dropout per 1 SD lower early SRS (logistic regression, "
            "95% Wald CI); point-biserial r with a Fisher-z 95% CI.",
        ),
        (
            "Outcome change",
            "Between an ended episode's first and last administration (≥ 2 administrations); "
            "improvement is positive in every direction (ORS last − first; PHQ-9, GAD-7 first − "
            f"last). Reliable change: ORS ≥ {rc['ors']:g}, PHQ-9 ≥ {rc['phq9']:g}, GAD-7 ≥ "
            f"{rc['gad7']:g} points.",
        ),
        (
            "Recovery",
            "Starting in the clinical range (ORS < "
            f"{settings.clinical_cutoff('ors'):g}, PHQ-9 ≥ {settings.clinical_cutoff('phq9'):g}, "
            f"GAD-7 ≥ {settings.clinical_cutoff('gad7'):g}) and ending out of it; rate over "
            "ended episodes with ≥ 2 administrations that started in the clinical range. "
            "Reliable recovery: recovery with reliable improvement.",
        ),
        ("Pre–post effect size", "Mean improvement / SD of the first administration."),
        (
            "Alliance–outcome r",
            "Pearson r between early SRS and improvement over ended episodes having both, with "
            "a Fisher-z 95% CI. An association, not a cause.",
        ),
        (
            "Therapist funnel plots",
            "Each therapist's rate or mean against their number of episodes, with 95% and 99.8% "
            "limits around the clinic-wide value (Spiegelhalter 2005); overdispersion "
            f"adjustment: {settings.overdispersion}. Never a ranking.",
        ),
        (
            "Case-mix adjusted outcome; ICC",
            "A therapist's mean residual from a regression of improvement on intake score (and "
            "age band, program), plus the clinic mean. ICC = therapist share of outcome "
            "variance from a random-intercept model.",
        ),
        (
            "Control charts",
            "p-chart for rates, X-bar chart for means; centre line and 3-sigma limits from the "
            f"first {settings.spc_baseline_months} months shown; IHI rules flagged on the "
            "months after the baseline, against the centre line drawn (shift: 6+ points on one "
            "side of it; trend: 5+ rising or falling; a point outside the limits). A period "
            f"with fewer than {settings.spc_baseline_months} + 6 months is too short for a "
            "separate baseline: a run chart around the period's value, no rules applied.",
        ),
        (
            "Equity",
            "Each metric by age band, gender and race/ethnicity with its 95% interval and its "
            "difference from the clinic-wide value.",
        ),
        (
            "Privacy",
            f"No number describes fewer than {k} clients: such cells read “n < {k}”, with "
            "others withheld where needed so they cannot be recovered by subtraction.",
        ),
    ]


# Shown on the closing slide (the rest are in its speaker notes and the PDF appendix)
CLOSING_TERMS = (
    "Period",
    "Ended episode",
    "SRS and the cutoff",
    "Early alliance",
    "Dropout rate",
    "Outcome change",
    "Recovery",
    "Alliance–outcome r",
    "Therapist funnel plots",
    "Control charts",
)


# --------------------------------------------------------------------------- the pack


@dataclass(frozen=True)
class PackChart:
    section: str
    section_title: str
    panel: Panel
    headline: str

    @property
    def id(self) -> str:
        return chart_id(self.section, self.panel)

    @property
    def key(self) -> str:
        return f"{self.section}-{self.panel.key}"


@dataclass(frozen=True)
class Pack:
    """What goes into a pack: the charts (in order) and what every format says about them."""

    meta: exports.ExportMeta
    settings: Settings
    charts: list[PackChart]
    notes: list[str] = field(default_factory=list)  # sections or charts left out, and why
    meeting_mode: bool = False

    @property
    def title(self) -> str:
        return "Quality-improvement pack"

    @property
    def any_withheld(self) -> bool:
        return any(c.panel.withheld for c in self.charts)

    def file_name(self, fmt: str) -> str:
        return exports.file_name("qi-pack", self.meta.filters, fmt)

    def sections(self) -> list[tuple[str, list[PackChart]]]:
        out: dict[str, list[PackChart]] = {}
        for c in self.charts:
            out.setdefault(c.section_title, []).append(c)
        return list(out.items())


def _section_charts(
    key: str,
    view: View,
    selection: list[str] | None,
    ctx: Context,
    module: ModuleType | None,
) -> tuple[list[PackChart], list[str]]:
    """The chosen charts of one section (with headlines) and notes on what is left out."""
    title = dict((k, t) for k, t, _ in SECTIONS).get(key, key)
    if view.notice:
        return [], [f"{title}: {view.notice}"]
    chosen = set(resolve_selection({key: view}, selection))
    charts = [
        PackChart(key, title, p, headline(key, p, view, ctx, module))
        for p in view.panels
        if chart_id(key, p) in chosen
    ]
    notes = [
        f"{title} · {exports.plain_text(p.title)}: {p.message or 'nothing to show'}"
        for p in view.panels
        if p.figure is None
    ]
    return charts, notes


def _pack_figures(
    charts: Sequence[PackChart], meta: exports.ExportMeta, fmt: str
) -> list[tuple[tuple[str, str], object]]:
    """((chart id, image format), export figure) for every image the format needs."""
    out = []
    for chart in charts:
        if fmt == "zip":  # the standard 16:9 export, as single-chart downloads
            fig = exports.export_figure(chart.panel, meta)
            out += [((chart.id, "png"), fig), ((chart.id, "svg"), fig)]
        else:  # under a headline on a slide or an A4 landscape page: wider
            fig = exports.export_figure(
                chart.panel,
                meta,
                width=exports.SLIDE_BODY_WIDTH,
                height=exports.SLIDE_BODY_HEIGHT,
            )
            out.append(((chart.id, "png"), fig))
    return out


def collect(
    ctx: Context,
    selection: Iterable[str] | None = None,
    *,
    sections: Sequence[str] | None = None,
    build_view: BuildView | None = None,
    progress: Progress | None = None,
    views: dict[str, View] | None = None,
) -> Pack:
    """Assemble a pack without drawing it: build the views of the sections (see
    `plan_sections`) and pick the charts of `selection` (see `resolve_selection`)."""
    return _assemble(ctx, selection, sections, build_view, progress, views, fmt=None)[0]


def _assemble(
    ctx: Context,
    selection: Iterable[str] | None,
    sections: Sequence[str] | None,
    build_view: BuildView | None,
    progress: Progress | None,
    views: dict[str, View] | None,
    *,
    fmt: str | None,
) -> tuple[Pack, dict[tuple[str, str], bytes]]:
    """Build the views section by section; with `fmt`, draw each section's charts on the export
    server (another thread, and Chromium's own processes) while the next view is computed.
    Progress is reported from the calling thread only (Streamlit widgets need it)."""
    selection = list(selection) if selection is not None else None
    keys = plan_sections(selection, sections)
    by_key = {s.key: s for s in available_sections()}
    make = build_view or _direct_build
    say = progress or (lambda _f, _m: None)
    meta = exports.export_meta(ctx)
    charts: list[PackChart] = []
    notes: list[str] = []
    jobs: list[tuple[list[tuple[str, str]], Future]] = []
    share = 0.45 if fmt else 0.95
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="alliance-pack") as pool:
        for i, key in enumerate(keys):
            say(share * i / max(len(keys), 1), f"Computing {by_key[key].title}")
            view = (
                views[key] if views and key in views else make(key, by_key[key].module.build, ctx)
            )
            section_charts, section_notes = _section_charts(
                key, view, selection, ctx, by_key[key].module
            )
            charts += section_charts
            notes += section_notes
            if fmt and section_charts:
                todo = _pack_figures(section_charts, meta, fmt)
                items = [(fig, image_fmt) for (_, image_fmt), fig in todo]
                jobs.append(([k for k, _ in todo], pool.submit(exports.render_many, items)))
        images: dict[tuple[str, str], bytes] = {}
        total = sum(len(k) for k, _ in jobs)
        for image_keys, job in jobs:
            say(
                share + 0.45 * len(images) / max(total, 1),
                f"Drawing charts ({len(images)}/{total})",
            )
            images.update(zip(image_keys, job.result(), strict=True))
    pack = Pack(
        meta=meta, settings=ctx.settings, charts=charts, notes=notes, meeting_mode=ctx.meeting_mode
    )
    return pack, images


def render_images(pack: Pack, fmt: str) -> dict[tuple[str, str], bytes]:
    """Every image the format needs for this pack: {(chart id, 'png'|'svg'): bytes}."""
    todo = _pack_figures(pack.charts, pack.meta, fmt)
    rendered = exports.render_many([(fig, image_fmt) for (_, image_fmt), fig in todo])
    return dict(zip([k for k, _ in todo], rendered, strict=True))


def build(
    ctx: Context,
    fmt: str,
    selection: Iterable[str] | None = None,
    *,
    sections: Sequence[str] | None = None,
    build_view: BuildView | None = None,
    progress: Progress | None = None,
    views: dict[str, View] | None = None,
) -> tuple[bytes, Pack]:
    """Build a pack as 'pptx', 'pdf' or 'zip'. Returns (file bytes, the pack it holds).

    `selection`: section keys and/or chart ids (see `resolve_selection`); None: the default
    monthly QI pack. `build_view(key, build, ctx)` lets the page reuse its cached views.
    `progress(fraction, message)` is called as it goes.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise PackError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    say = progress or (lambda _f, _m: None)
    pack, images = _assemble(ctx, selection, sections, build_view, say, views, fmt=fmt)
    say(0.92, f"Writing the {FORMAT_LABELS[fmt]}")
    from alliance.report_files import WRITERS  # the writers import this module's pack types

    data = WRITERS[fmt](pack, images)
    say(1.0, "Done")
    return data, pack


def with_meeting_mode(ctx: Context, on: bool) -> Context:
    return dataclasses.replace(ctx, meeting_mode=on)


# --------------------------------------------------------------------------- command line


def run_command(
    args, make_context: Callable[[object], Context], progress: Progress | None = None
) -> int:
    """`python -m alliance report --out FILE.pptx|.pdf|.zip [--sections ...] [filters]`.

    Raises PackError (the caller prints it and exits 2) for a bad extension, a missing
    folder or an unknown section/chart; `make_context` raises for bad filters. Every pack is
    recorded in the audit log first (the operating-system user, role "command line"); when the
    entry cannot be written, no file is written and the exit code is 1.
    """
    import os
    import sys
    import time

    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise PackError(f"--out {out}: the file name must end in .pptx, .pdf or .zip")
    if not out.parent.is_dir():
        raise PackError(f"--out {out}: the folder {out.parent} does not exist")
    ctx = make_context(args)
    if getattr(args, "meeting_mode", False):
        ctx = with_meeting_mode(ctx, True)
    plan_sections(args.sections, None)  # unknown sections fail before any work
    started = time.perf_counter()
    exports.ensure_server()
    try:
        data, pack = build(ctx, fmt, args.sections, progress=progress)
    except exports.ExportError as exc:  # the charts could not be drawn: nothing is written
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from alliance import audit

    try:  # recorded before the file exists, under the computer account that ran the command
        audit.record(
            Path(args.db),
            user=audit.os_user(),
            role=audit.COMMAND_LINE,
            sites=None,  # the command reads the database file itself: every site
            event=f"report_{fmt}",
            detail={
                "file": out.name,
                "charts": [c.id for c in pack.charts],
                "meeting_mode": ctx.meeting_mode,
                "filters": ctx.filters.to_query_params(),
            },
        )
    except audit.AuditError as exc:
        print(f"error: {audit.not_written(exc, 'report', 'written')}", file=sys.stderr)
        return 1
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)  # a scheduled job never leaves half a file
    took = time.perf_counter() - started
    print(
        f"Wrote {out} ({FORMAT_LABELS[fmt]}, {len(data) / 1e6:.1f} MB): {len(pack.charts)} charts, "
        f"{pack.meta.filters.describe()}, data through {pack.meta.through_text}, in {took:.1f} s"
    )
    for note in pack.notes:
        print(f"note: {note}", file=sys.stderr)
    if not pack.charts:
        print("warning: the pack holds no chart for this selection", file=sys.stderr)
    return 0
