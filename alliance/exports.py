"""Chart and data exports: the panel on screen, as a file a director can put in a report.

Images (PNG at slide resolution, SVG, PDF) are rendered by plotly + kaleido through ONE warm
export server per process (`kaleido.start_sync_server`: a headless Chromium kept open, so an
export costs a fraction of a second instead of a browser start). The exported figure is a copy of
the panel's figure carrying everything a reader needs away from the dashboard: the title, the
subtitle (measure, definition, period and filters, n), and a footer with the clinic's name, the
date the data runs through and, where a cell was withheld, the privacy note.

Data (CSV, XLSX) is the panel's data passed through `privacy.display_table` (withheld cells read
"n < 11", exactly as on screen) and `privacy.neutralize_frame` (no cell can run as a spreadsheet
formula). Nothing here queries client rows: only the panel's suppressed aggregates leave.

File names say what and when: ``<chart-key>_<period>_<site or all-sites>.<ext>``.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import html
import io
import json
import re
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import db
from alliance.charts import figure_edit
from alliance.filters import Filters
from alliance.panel import Context, Panel
from alliance.privacy import PrivacyPolicy, display_table, neutralize_frame

# Layout size of an exported chart: 16:9, the shape of a slide. PNG is rendered at twice that
# (2240 × 1260 px, about 170 dpi across a 13.33-inch slide), so it stays sharp when projected.
EXPORT_WIDTH = 1120
EXPORT_HEIGHT = 630
PNG_SCALE = 2
IMAGE_FORMATS = ("png", "svg", "pdf")
DATA_FORMATS = ("csv", "xlsx")
FORMATS = IMAGE_FORMATS + DATA_FORMATS
MIME = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "zip": "application/zip",
}
FOOTER_FONT_SIZE = 12
RENDER_TIMEOUT_S = 90.0  # a render that takes longer means the export browser is stuck
# Charts inside a pack sit under a headline on a 16:9 slide (or an A4 landscape page): wider.
SLIDE_BODY_WIDTH = 1100
SLIDE_BODY_HEIGHT = 520
EXPORT_TABS = 2  # browser tabs of the export server: a pack renders two charts at a time
DATA_DECIMALS = 4  # exported tables carry 4 decimals (the screen table rounds to 2)


class ExportError(RuntimeError):
    """The chart could not be rendered (export browser missing, crashed or stuck)."""


# --------------------------------------------------------------------------- what a file says


@dataclass(frozen=True)
class ExportMeta:
    """What every exported file states besides the chart: who, which data, which rule."""

    clinic_name: str
    filters: Filters
    policy: PrivacyPolicy
    through_date: str = ""  # ISO date of the last session in the database
    data_version: str = ""
    dataset_kind: str = ""  # 'demo', 'clinic' or 'empty'
    generated_at: dt.datetime = field(
        default_factory=lambda: dt.datetime.now().astimezone().replace(microsecond=0)
    )

    @property
    def through_text(self) -> str:
        """'31 Oct 2026' (or '' when unknown)."""
        try:
            return dt.date.fromisoformat(self.through_date).strftime("%-d %b %Y")
        except ValueError:
            return self.through_date

    @property
    def generated_text(self) -> str:
        return self.generated_at.strftime("%-d %b %Y %H:%M %Z").strip()

    def privacy_note(self) -> str:
        k = self.policy.k
        return (
            f"Cells describing fewer than {k} clients are withheld (“{self.policy.label}”), "
            "with others where needed so they cannot be recovered by subtraction."
        )

    def footer_parts(self, *, withheld: bool) -> list[str]:
        parts = [self.clinic_name]
        if self.through_text:
            parts.append(f"Data through {self.through_text}")
        if self.dataset_kind == "demo":
            parts.append("Demo data: a synthetic clinic, not real clients")
        if withheld:
            parts.append(self.privacy_note())
        return parts


def export_meta(
    ctx: Context, *, now: dt.datetime | None = None, meta: Mapping[str, str] | None = None
) -> ExportMeta:
    """The footer facts for exports under this context: from the database's meta table, read
    here unless the caller has it already (`meta`)."""
    if meta is None:
        meta = db.get_meta(ctx.con.cursor())  # own cursor: the page's connection is shared
    return ExportMeta(
        clinic_name=ctx.settings.clinic_name,
        filters=ctx.filters,
        policy=ctx.policy,
        through_date=meta.get("through_date", ""),
        data_version=meta.get("data_version", ""),
        dataset_kind=meta.get("dataset_kind", ""),
        **({"generated_at": now} if now is not None else {}),
    )


# --------------------------------------------------------------------------- file names


def slugify(text: str) -> str:
    """'Dropout rate by month' -> 'dropout-rate-by-month' (ASCII, lowercase, no spaces)."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug or "x"


def period_slug(filters: Filters) -> str:
    """'2025-11_to_2026-10', or '2026-10' for a single month."""
    a, b = filters.first_month.strftime("%Y-%m"), filters.last_month.strftime("%Y-%m")
    return a if a == b else f"{a}_to_{b}"


def file_name(chart_key: str, filters: Filters, ext: str) -> str:
    """``<chart-key>_<period>_<site or all-sites>.<ext>``, e.g.
    ``dropout-trend_2025-11_to_2026-10_all-sites.png``."""
    site = slugify(filters.site) if filters.site else "all-sites"
    return f"{slugify(chart_key)}_{period_slug(filters)}_{site}.{ext.lower().lstrip('.')}"


# --------------------------------------------------------------------------- the export figure


def plain_text(text: str | None) -> str:
    """Plotly rich text as plain text: '<br>' becomes a line break, other tags go, and names
    escaped for the chart (views.common.chart_text: '&lt;' etc.) read as written."""
    if not text:
        return ""
    out = re.sub(r"<br\s*/?>", "\n", str(text), flags=re.IGNORECASE)
    out = re.sub(r"<[^>]+>", "", out)
    return html.unescape(out).strip()


def panel_subtitle(panel: Panel) -> str:
    """The subtitle a panel shows (views put it in the figure; `Panel.subtitle` otherwise)."""
    if panel.figure is not None:
        sub = panel.figure.layout.title.subtitle.text
        if sub:
            return str(sub)
    return panel.subtitle or ""


def panel_title(panel: Panel) -> str:
    if panel.figure is not None and panel.figure.layout.title.text:
        return str(panel.figure.layout.title.text)
    return panel.title


def _wrap(parts: Sequence[str], width: int) -> list[str]:
    """Join parts with ' · ' into lines of at most `width` characters (words wrap too)."""
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current} · {part}" if current else part
        if len(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = part
        while len(current) > width:  # one very long part: break it between words
            cut = current.rfind(" ", 0, width)
            cut = cut if cut > 0 else width
            lines.append(current[:cut])
            current = current[cut:].lstrip()
    if current:
        lines.append(current)
    return lines


def export_figure(
    panel: Panel,
    meta: ExportMeta,
    *,
    width: int = EXPORT_WIDTH,
    height: int = EXPORT_HEIGHT,
) -> go.Figure:
    """A copy of the panel's figure sized for a slide, with title, subtitle and footer.

    `height` is a minimum: a chart drawn taller on screen (many groups) keeps its height.
    The panel's own figure is never modified.
    """
    if panel.figure is None:
        raise ValueError(f"panel {panel.key!r} has no chart: {panel.message or 'nothing to show'}")
    fig = go.Figure(panel.figure)  # a new figure built from the panel's (a copy)
    title = panel_title(panel)
    subtitle = panel_subtitle(panel)
    sub_lines = subtitle.count("<br>") + 1 if subtitle else 0
    footer_lines = _wrap(meta.footer_parts(withheld=panel.withheld), width=170)
    height = max(height, int(fig.layout.height or 0))
    margin = fig.layout.margin
    bottom = int(margin.b if margin.b is not None else 60)
    footer_px = 8 + len(footer_lines) * (FOOTER_FONT_SIZE + 6)
    top = 58 + 18 * sub_lines
    right = max(int(margin.r or 30), 40)
    legend = fig.layout.legend
    if legend.y is not None and legend.yref == "container" and legend.y < 0.5:
        # a legend pinned to the bottom of the figure: lift it above the footer
        figure_edit.update_layout(fig, legend={"y": (footer_px + 4) / height, "yanchor": "bottom"})
    elif legend.y is not None and legend.yref != "container" and legend.y < 0:
        # a legend hanging under the plot would collide with the footer: put it where the
        # theme does, above the plot
        figure_edit.update_layout(
            fig,
            legend={
                "orientation": "h",
                "x": 1.0,
                "xanchor": "right",
                "y": 1.0,
                "yanchor": "bottom",
            },
        )
    legend_on_top = fig.layout.legend.y is not None and fig.layout.legend.y >= 1
    if legend_on_top:
        top += 26  # the theme puts the legend above the plot, under the subtitle
    figure_edit.update_layout(
        fig,
        width=width,
        height=height,
        title={
            "text": title,
            "x": 0.0,
            "xref": "container",
            "xanchor": "left",
            "pad": {"l": 24},
            "y": 1.0,
            "yref": "container",
            "yanchor": "top",
            "subtitle": {"text": subtitle},
        },
        margin={
            "t": top,
            "b": bottom + footer_px,
            "l": max(int(margin.l or 70), 80),
            "r": right,
            "pad": 0,
        },
        paper_bgcolor="white",
    )
    # title block: plotly positions the title from the top of the container with this padding
    fig.layout.title.pad.t = 18
    if legend_on_top:
        figure_edit.update_layout(fig, legend={"y": 1.0, "yanchor": "bottom", "yref": "paper"})
    data = panel.data
    if len(data) and "suppressed" in data.columns and bool(data["suppressed"].fillna(True).all()):
        # nothing left to draw: say why instead of leaving an empty axis
        fig.add_annotation(
            text=(
                f"Every value is withheld: each describes fewer than {meta.policy.k} clients"
                f" (“{meta.policy.label}”).<br>Widen the period or clear a filter."
            ),
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            showarrow=False,
            font={"size": 16, "color": "#555"},
            bgcolor="white",
        )
    # The footer sits in the bottom margin, right-aligned to the figure's right edge: the right
    # margin is the one plotly rarely widens (long category labels widen the left one).
    fig.add_annotation(
        text="<br>".join(footer_lines),
        xref="paper",
        yref="paper",
        x=1,
        y=0,
        xanchor="right",
        yanchor="bottom",
        xshift=right - 24,
        yshift=-(bottom + footer_px) + 6,
        align="right",
        showarrow=False,
        font={"size": FOOTER_FONT_SIZE, "color": "#555"},
    )
    return fig


# --------------------------------------------------------------------------- the export server

_LOCK = threading.RLock()  # kaleido's sync server is not safe for concurrent callers
_CACHE: collections.OrderedDict[str, bytes] = collections.OrderedDict()
_CACHE_MAX = 64


def _server():  # the kaleido singleton (imported lazily: pages import this module cheaply)
    import kaleido

    return kaleido._global_server  # noqa: SLF001 (to check its thread is alive; see _call)


def server_running() -> bool:
    with _LOCK:
        server = _server()
        thread = getattr(server, "_thread", None)
        return bool(server.is_running() and thread is not None and thread.is_alive())


def ensure_server() -> None:
    """Start the process's export server if it is not running (returns at once: the browser
    starts in the background and the first export waits for it)."""
    import kaleido

    with _LOCK:
        server = _server()
        if server.is_running() and not server_running():
            # its browser died (crash, or failed to start): reset so it can start again
            kaleido.stop_sync_server(silence_warnings=True)
        if not server.is_running():
            # mathjax off: it would come from a CDN, which an offline clinic cannot reach
            kaleido.start_sync_server(
                n=EXPORT_TABS, mathjax=False, timeout=RENDER_TIMEOUT_S, silence_warnings=True
            )


def stop_server() -> None:
    import kaleido

    with _LOCK:
        kaleido.stop_sync_server(silence_warnings=True)


def _call(fn: Callable[[], object], timeout: float) -> object:
    """Run one call on the export server, giving up (instead of hanging) if it never answers."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    server_thread = getattr(_server(), "_thread", None)
    worker = threading.Thread(target=run, name="alliance-export", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(0.2)
        if worker.is_alive() and server_thread is not None and not server_thread.is_alive():
            # the server's browser is gone (not installed, or crashed): the call would wait
            # for ever; the next export starts a new one
            raise ExportError(
                "The chart export browser stopped. Chromium must be installed "
                "(/usr/bin/chromium); try again, and restart the dashboard if it keeps failing."
            )
    if worker.is_alive():
        raise ExportError(
            "The chart export browser did not answer. Try again in a moment; if it keeps "
            "failing, restart the dashboard (Chromium must be installed: /usr/bin/chromium)."
        )
    if "error" in result:
        error = result["error"]
        if isinstance(error, ExportError):
            raise error
        raise ExportError(f"Chart export failed: {error}") from error  # type: ignore[misc]
    return result["value"]


def _opts(fmt: str, fig: go.Figure, scale: float | None) -> dict[str, object]:
    return {
        "format": fmt,
        "width": int(fig.layout.width or EXPORT_WIDTH),
        "height": int(fig.layout.height or EXPORT_HEIGHT),
        "scale": scale if scale is not None else (PNG_SCALE if fmt == "png" else 1),
    }


def _cache_key(fig_json: str, opts: dict[str, object]) -> str:
    h = hashlib.sha1(fig_json.encode(), usedforsecurity=False)
    h.update(repr(sorted(opts.items())).encode())
    return h.hexdigest()


def _cache_put(key: str, data: bytes) -> None:
    _CACHE[key] = data
    _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)


def render(fig: go.Figure, fmt: str, *, scale: float | None = None) -> bytes:
    """Render a figure to png/svg/pdf bytes on the warm export server (cached by content)."""
    return render_many([(fig, fmt)], scale=scale)[0]


def render_many(
    items: Sequence[tuple[go.Figure, str]],
    *,
    scale: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[bytes]:
    """Render several (figure, format) pairs, two at a time (one per server tab).

    `progress(done, total)` is called as batches finish. Identical requests are served from a
    small in-process cache (a chart downloaded twice, or a deck then a PDF of the same pack).
    """
    import kaleido

    fmts = [fmt.lower() for _, fmt in items]
    bad = sorted({f for f in fmts if f not in IMAGE_FORMATS})
    if bad:
        raise ValueError(f"unknown image format(s) {bad}; choose from {IMAGE_FORMATS}")
    specs = []
    for (fig, _), fmt in zip(items, fmts, strict=True):
        fig_json = fig.to_json()
        opts = _opts(fmt, fig, scale)
        specs.append((fig_json, opts, _cache_key(fig_json, opts)))
    with _LOCK:
        out: list[bytes | None] = [_CACHE.get(key) for *_, key in specs]
    todo = [i for i, data in enumerate(out) if data is None]
    total = len(items)
    done = total - len(todo)
    if progress:
        progress(done, total)
    batch = 2 * EXPORT_TABS
    with tempfile.TemporaryDirectory(prefix="alliance-export-") as tmp:
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            jobs = [
                {
                    "fig": json.loads(specs[i][0]),
                    "path": Path(tmp) / f"{i}.{specs[i][1]['format']}",
                    "opts": specs[i][1],
                }
                for i in chunk
            ]
            # one chunk at a time holds the server: another session's single chart can slip
            # in between the chunks of a pack
            with _LOCK:
                ensure_server()
                errors = _call(
                    lambda jobs=jobs: kaleido.write_fig_from_object_sync(jobs),
                    RENDER_TIMEOUT_S + 15 * len(jobs),
                )
                if errors:
                    raise ExportError(f"Chart export failed: {errors[0]}")  # type: ignore[index]
                for i, job in zip(chunk, jobs, strict=True):
                    data = Path(job["path"]).read_bytes()
                    out[i] = data
                    _cache_put(specs[i][2], data)
            done += len(chunk)
            if progress:
                progress(done, total)
    return [data for data in out if data is not None]


def panel_image(panel: Panel, meta: ExportMeta, fmt: str) -> bytes:
    """One chart as png/svg/pdf, with its title, subtitle and footer."""
    return render(export_figure(panel, meta), fmt)


# --------------------------------------------------------------------------- data exports


def _formats(df: pd.DataFrame, n_col: str) -> dict[str, str]:
    """Whole-number columns without decimals, other numbers with DATA_DECIMALS."""
    out: dict[str, str] = {}
    for col in df.columns:
        if col == n_col or col in ("suppressed", "suppression"):
            continue
        s = df[col]
        if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
            continue
        values = s.dropna().to_numpy(dtype="float64")
        if len(values) and not np.all(values == np.floor(values)):
            out[col] = f"{{:.{DATA_DECIMALS}f}}"
    return out


def export_table(panel: Panel, policy: PrivacyPolicy) -> pd.DataFrame:
    """The data behind a chart as it leaves the dashboard: suppressed and formula-safe.

    Raises `privacy.PrivacyError` if the table would show a cell of fewer than k clients or has
    no client counts to check (then nothing is exported).
    """
    data = panel.data
    if "n_clients" not in data.columns and data.empty:
        return pd.DataFrame()
    shown = display_table(data, policy=policy, formats=_formats(data, "n_clients"))
    for col in shown.columns:  # dates as plain ISO text in every format
        if pd.api.types.is_datetime64_any_dtype(shown[col].dtype):
            shown[col] = shown[col].dt.strftime("%Y-%m-%d")
    return neutralize_frame(shown)


def table_csv(table: pd.DataFrame) -> bytes:
    # UTF-8 with a byte-order mark so Excel reads "–", "≥" and "·" correctly
    return table.to_csv(index=False).encode("utf-8-sig")


def panel_csv(panel: Panel, policy: PrivacyPolicy) -> bytes:
    return table_csv(export_table(panel, policy))


_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers written as text become numbers again for the spreadsheet; markers stay text."""
    out = table.copy()
    for pos in range(out.shape[1]):
        col = out.iloc[:, pos]
        if not (pd.api.types.is_string_dtype(col.dtype) or pd.api.types.is_object_dtype(col.dtype)):
            continue
        values = [
            (float(v) if "." in v else int(v)) if isinstance(v, str) and _NUMBER_RE.match(v) else v
            for v in col.tolist()
        ]
        out.isetitem(pos, pd.Series(values, index=out.index, dtype=object))
    return out


def panel_xlsx(panel: Panel, meta: ExportMeta) -> bytes:
    """The data behind a chart as a workbook: sheet 'data' and sheet 'about' (what it is)."""
    table = _typed(export_table(panel, meta.policy))
    about = neutralize_frame(
        pd.DataFrame(
            [
                ("Chart", plain_text(panel_title(panel))),
                ("Definition and n", plain_text(panel_subtitle(panel)).replace("\n", " ")),
                ("How to read it", panel.reading),
                ("Filters", meta.filters.describe()),
                ("Clinic", meta.clinic_name),
                ("Data through", meta.through_text),
                ("Data version", meta.data_version),
                ("Generated", meta.generated_text),
                ("Privacy", meta.privacy_note()),
            ],
            columns=["item", "value"],
        )
    )
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as writer:
        table.to_excel(writer, sheet_name="data", index=False)
        about.to_excel(writer, sheet_name="about", index=False)
        sheet = writer.sheets["data"]
        sheet.freeze_panes = "A2"
        for i, col in enumerate(table.columns, start=1):
            width = max([len(str(col))] + [len(str(v)) for v in table.iloc[:, i - 1].tolist()])
            sheet.column_dimensions[sheet.cell(row=1, column=i).column_letter].width = min(
                max(10, width + 2), 60
            )
        info = writer.sheets["about"]
        info.column_dimensions["A"].width = 18
        info.column_dimensions["B"].width = 110
    return buf.getvalue()


# --------------------------------------------------------------------------- downloads


@dataclass(frozen=True)
class Download:
    """One download of a panel: built only when `build()` is called (e.g. on click)."""

    fmt: str
    label: str
    file_name: str
    mime: str
    build: Callable[[], bytes]


def panel_downloads(panel: Panel, meta: ExportMeta) -> list[Download]:
    """PNG, SVG, PDF of the chart and CSV, XLSX of its data (empty data: images only)."""
    if panel.figure is None:
        return []
    builders: dict[str, Callable[[], bytes]] = {
        "png": lambda: panel_image(panel, meta, "png"),
        "svg": lambda: panel_image(panel, meta, "svg"),
        "pdf": lambda: panel_image(panel, meta, "pdf"),
    }
    if not panel.data.empty:
        builders["csv"] = lambda: panel_csv(panel, meta.policy)
        builders["xlsx"] = lambda: panel_xlsx(panel, meta)
    return [
        Download(
            fmt=fmt,
            label=fmt.upper(),
            file_name=file_name(panel.key, meta.filters, fmt),
            mime=MIME[fmt],
            build=build,
        )
        for fmt, build in builders.items()
    ]
