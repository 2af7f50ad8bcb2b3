"""Report packs: the deck, the PDF and the ZIP open and hold what they claim, for the page's
content and the command's.

The default monthly QI pack is built once per format over the demo clinic's last 12 months, from
views built once (as the page does with its cached views).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile

import pandas as pd
import pytest
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pypdf import PdfReader
from streamlit.testing.v1 import AppTest

from alliance import cli, exports, report
from alliance.filters import Filters
from alliance.metrics import overview as overview_metrics
from alliance.panel import Context, Panel
from alliance.settings import Settings
from alliance.views import overview
from tests.conftest import ROOT

PERIOD = Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1))


@pytest.fixture(scope="session")
def export_server():
    exports.ensure_server()
    yield
    exports.stop_server()


@pytest.fixture(scope="module")
def ctx(demo_con) -> Context:
    return Context(demo_con, PERIOD, Settings(clinic_name="Lakeside Counselling"))


@pytest.fixture(scope="module")
def views(ctx):
    return report.build_views(ctx, report.default_sections())


@pytest.fixture(scope="module")
def packs(export_server, ctx, views):
    """{format: (bytes, pack, seconds, progress calls)}: the default pack as deck and PDF; the
    ZIP (twice the drawing: PNG and SVG) of two sections, to keep the tests quick."""
    out = {}
    for fmt in report.FORMATS:
        calls: list[tuple[float, str]] = []
        started = time.perf_counter()
        data, pack = report.build(
            ctx,
            fmt,
            ["overview", "dropout"] if fmt == "zip" else None,
            views=views,
            progress=lambda f, m, calls=calls: calls.append((f, m)),
        )
        out[fmt] = (data, pack, time.perf_counter() - started, calls)
    return out


def _ended(ctx) -> str:
    """'1,383 ended episodes': from the overview's protected headline, not from the charts
    (the pack shows the protected count, as the page does)."""
    shown, _ = overview_metrics.protected_headline(ctx, overview_metrics.headline(ctx))
    return f"{shown['ended']:,.0f} ended episodes"


def _dropout_tile(ctx):
    return next(t for t in overview.build(ctx).tiles if t.key == "dropout_rate")


# --------------------------------------------------------------------------- choosing


def test_sections_are_discovered_by_module_and_missing_ones_skipped(monkeypatch):
    keys = report.section_keys()
    assert keys[0] == "overview" and "dropout" in keys
    monkeypatch.setattr(
        report, "SECTIONS", [*report.SECTIONS, ("later", "Later", "alliance.views.not_written_yet")]
    )
    assert "later" not in report.section_keys()
    with pytest.raises(report.PackError, match="unknown section"):
        report.plan_sections(["later"], None)


def test_default_pack_is_the_monthly_qi_pack(views):
    chosen = report.resolve_selection(views, None)
    assert chosen[:2] == ["overview/alliance_trend", "overview/dropout_trend"]
    assert "dropout/dropout_spc" in chosen and "therapists/funnel_dropout" in chosen
    assert len(chosen) == len(set(chosen)) and 8 <= len(chosen) <= 16
    everything = report.resolve_selection(views, ["dropout/*"])
    assert everything == [report.chart_id("dropout", p) for p in views["dropout"].panels]
    assert report.resolve_selection(views, ["overview"]) == chosen[:2]
    with pytest.raises(report.PackError):
        report.resolve_selection(views, ["overview/no_such_chart"])


def test_headline_sentence_comes_from_the_view(ctx, views):
    panel = next(p for p in views["overview"].panels if p.key == "dropout_trend")
    text = report.headline("overview", panel, views["overview"], ctx)
    tile = _dropout_tile(ctx)
    assert text.startswith(f"Dropout rate was {tile.value:.1%} (n = {_ended(ctx)})")
    r_panel = next(p for p in views["outcomes"].panels if p.key == "alliance_outcome")
    assert re.match(
        r"Alliance–outcome r was 0\.\d\d \(95% CI",
        report.headline("outcomes", r_panel, views["outcomes"], ctx),
    )


def test_control_chart_headlines_name_their_signals():
    months = pd.date_range("2026-01-01", periods=8, freq="MS")
    data = pd.DataFrame(
        {
            "month": months,
            "value": [1.0, 1.0, 1.2, 1.2, 1.2, 1.2, 1.2, 1.6],
            "centre": 1.0,
            "lcl": 0.5,
            "ucl": 1.5,
            "shift": [False, False, True, True, True, True, True, True],
            "trend": False,
            "astronomical": [False] * 7 + [True],
        }
    )
    panel = Panel(key="x_spc", title="X", subtitle="", reading="", figure=None, data=data)
    assert report.spc_signals(panel) == (
        "Signals: a point outside the limits (Aug 2026); shift (Mar 2026 – Aug 2026)."
    )
    quiet = dataclasses.replace(panel, data=data.assign(shift=False, astronomical=False))
    assert report.spc_signals(quiet) == "No special-cause signal."
    not_spc = dataclasses.replace(panel, data=data.drop(columns=["ucl"]))
    assert report.spc_signals(not_spc) is None


# --------------------------------------------------------------------------- the deck


def test_pptx_slides_pictures_and_notes(packs, ctx):
    data, pack, _, _ = packs["pptx"]
    prs = Presentation(io.BytesIO(data))
    slides = list(prs.slides)
    n = len(pack.charts)
    assert n >= 8 and len(slides) == n + 2
    assert round(prs.slide_width / prs.slide_height, 2) == round(16 / 9, 2)

    def texts(slide):
        return " ".join(s.text_frame.text for s in slide.shapes if s.has_text_frame)

    title = texts(slides[0])
    assert "Lakeside Counselling" in title and "Nov 2025 – Oct 2026" in title
    assert "all sites, programs and clients" in title and "Data through 31 Oct 2026" in title
    tile = _dropout_tile(ctx)
    for slide, chart in zip(slides[1:-1], pack.charts, strict=True):
        pictures = [s for s in slide.shapes if s.shape_type == MSO_SHAPE_TYPE.PICTURE]
        assert len(pictures) == 1
        assert pictures[0].image.content_type == "image/png"
        assert chart.headline in texts(slide)
        notes = slide.notes_slide.notes_text_frame.text
        assert "How to read it:" in notes and "Settings in force:" in notes
        assert "SRS below cutoff: total < 36" in notes
        assert exports.plain_text(chart.panel.title) in notes
    dropout = pack.charts[1]
    assert dropout.id == "overview/dropout_trend"
    assert f"Dropout rate was {tile.value:.1%} (n = {_ended(ctx)})" in texts(slides[2])
    assert "Dropouts / ended episodes" in slides[2].notes_slide.notes_text_frame.text
    closing = texts(slides[-1])
    assert "Definitions and privacy" in closing and "fewer than 11 clients" in closing
    assert "Dropout rate." in closing and "reliable change ≥ 5" in closing


# --------------------------------------------------------------------------- the PDF


def test_pdf_pages_titles_n_and_definitions(packs, ctx):
    data, pack, _, _ = packs["pdf"]
    reader = PdfReader(io.BytesIO(data))
    n = len(pack.charts)
    pages = [p.extract_text() for p in reader.pages]
    assert n + 2 <= len(pages) <= n + 4  # cover, one page per chart, 1-2 appendix pages
    cover = pages[0]
    assert "Lakeside Counselling" in cover and "Contents" in cover
    assert "Nov 2025 – Oct 2026" in cover and "Data through 31 Oct 2026" in cover
    for i, chart in enumerate(pack.charts, start=1):
        page = pages[i]
        assert f"Figure {i}. {exports.plain_text(chart.panel.title)}" in " ".join(page.split())
        assert chart.headline.split(" (")[0] in " ".join(page.split())
        assert f"page {i + 1} of {len(pages)}" in page
    assert f"n = {_ended(ctx)}" in pages[2]  # the dropout trend's n, in its headline
    appendix = " ".join(pages[n + 1 :])
    for term in (
        "Definitions",
        "Dropout rate.",
        "Settings in force",
        "below cutoff = SRS total < 36",
    ):
        assert term in appendix
    assert pack.meta.data_version in appendix and "Generated" in appendix
    assert reader.metadata.title == "Lakeside Counselling: Quality-improvement pack"
    assert [o.title for o in reader.outline[:1]] == ["Overview"]


# --------------------------------------------------------------------------- the ZIP


def test_zip_holds_every_chart_as_png_svg_and_its_data_as_csv(packs, views):
    data, pack, _, _ = packs["zip"]
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = zf.namelist()
    assert sum(n.endswith("README.txt") for n in names) == 1
    for ext in ("png", "svg", "csv"):
        assert sum(n.endswith(f".{ext}") for n in names) == len(pack.charts)
    png = zf.read(
        next(
            n
            for n in names
            if n.endswith("overview-dropout-trend_2025-11_to_2026-10_all-sites.png")
        )
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 2 * exports.EXPORT_WIDTH
    for name in names:
        if name.endswith(".svg"):
            assert ET.fromstring(zf.read(name)).tag.endswith("svg")
    name = next(
        n for n in names if n.endswith("overview-dropout-trend_2025-11_to_2026-10_all-sites.csv")
    )
    rows = list(csv.DictReader(io.StringIO(zf.read(name).decode("utf-8-sig"))))
    panel = next(p for p in views["overview"].panels if p.key == "dropout_trend")
    shown = ~panel.data["suppressed"].to_numpy(dtype=bool)
    assert shown.any() and not shown.all()  # months with 1-10 dropouts are withheld
    assert [r["ended"] == "n < 11" for r in rows] == (~shown).tolist()
    kept = [r for r, ok in zip(rows, shown, strict=True) if ok]
    assert [int(r["ended"]) for r in kept] == panel.data["ended"][shown].astype(int).tolist()
    assert [float(r["dropout_rate"]) for r in kept] == pytest.approx(
        panel.data["dropout_rate"][shown].to_numpy(dtype=float), abs=5e-5
    )
    readme = zf.read(next(n for n in names if n.endswith("README.txt"))).decode()
    assert "Lakeside Counselling" in readme and "Dropout rate:" in readme


def test_progress_is_reported_from_start_to_done(packs):
    for fmt, (_, _, _, calls) in packs.items():
        fractions = [f for f, _ in calls]
        assert fractions == sorted(fractions), fmt
        assert fractions[0] <= 0.05 and fractions[-1] == 1.0
        assert calls[-1][1] == "Done" and any(m.startswith("Drawing") for _, m in calls)


def test_pack_timing(packs):
    """Printed with -s; the views were built before (as on the page), so this is drawing and
    writing. The command-line figure (views included) is in the report."""
    for fmt, (data, pack, seconds, _) in packs.items():
        print(f"\n{fmt}: {len(pack.charts)} charts, {len(data) / 1e6:.1f} MB in {seconds:.1f} s")
        assert seconds < 60


# --------------------------------------------------------------------------- privacy


def test_withheld_cells_stay_withheld_in_every_pack_format(export_server, demo_con):
    strict = Context(demo_con, PERIOD, Settings(privacy_k=400))
    views = report.build_views(strict, ["overview"])
    zip_data, pack = report.build(strict, "zip", ["overview"], views=views)
    assert pack.any_withheld
    zf = zipfile.ZipFile(io.BytesIO(zip_data))
    name = next(n for n in zf.namelist() if "dropout-trend" in n and n.endswith(".csv"))
    rows = list(csv.DictReader(io.StringIO(zf.read(name).decode("utf-8-sig"))))
    assert rows and all(
        r[c] == "n < 400" for r in rows for c in ("n_clients", "ended", "dropouts", "dropout_rate")
    )
    svg = zf.read(name.replace(".csv", ".svg")).decode()
    assert "fewer than 400 clients are withheld" in svg

    pptx_data, _ = report.build(strict, "pptx", ["overview"], views=views)
    slides = list(Presentation(io.BytesIO(pptx_data)).slides)
    notes = slides[2].notes_slide.notes_text_frame.text
    assert "Privacy: Cells describing fewer than 400 clients are withheld" in notes
    pdf_data, _ = report.build(strict, "pdf", ["overview"], views=views)
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf_data)).pages)
    assert "fewer than 400 clients" in " ".join(text.split())


def test_too_small_selection_gives_notes_not_numbers(export_server, demo_con):
    tiny = Context(
        demo_con,
        dataclasses.replace(PERIOD, site="Westbrook (opened 2026)"),
        Settings(privacy_k=100_000),
    )
    data, pack = report.build(tiny, "pptx", ["overview", "dropout"])
    assert pack.charts == [] and len(pack.notes) == 2
    slides = list(Presentation(io.BytesIO(data)).slides)
    assert len(slides) == 2  # title and closing slide, saying why
    closing = " ".join(s.text_frame.text for s in slides[-1].shapes if s.has_text_frame)
    assert "Not in this pack" in closing and "fewer than 100000 clients" in closing


# --------------------------------------------------------------------------- the command


def test_command_builds_a_pack(export_server, demo_db, tmp_path, capsys):
    out = tmp_path / "pack.zip"
    code = cli.main(
        [
            "report",
            "--db",
            str(demo_db),
            "--out",
            str(out),
            "--from",
            "2026-01",
            "--to",
            "2026-10",
            "--site",
            "Riverside",
            "--sections",
            "overview",
        ]
    )
    assert code == 0
    printed = capsys.readouterr()
    assert "Wrote" in printed.out and "Site: Riverside" in printed.out
    assert "[100%] Done" in printed.err  # progress lines
    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("overview-dropout-trend_2026-01_to_2026-10_riverside.png") for n in names)
    assert [p.name for p in tmp_path.iterdir()] == ["pack.zip"]  # no temporary file left


def test_python_dash_m_alliance_report_exits_2_on_a_bad_extension(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "alliance", "report", "--out", str(tmp_path / "x.docx")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "must end in .pptx, .pdf or .zip" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x.pdf", "--site", "Nowhere"], "--site 'Nowhere' is not in the data"),
        (["--out", "x.pdf", "--from", "2026-13"], "expected YYYY-MM"),
        (["--out", "x.pdf", "--sections", "nonsense"], "unknown section(s): nonsense"),
        (["--out", "x.pdf", "--sections", "dropout/no_such_chart"], "no chart"),
        (["--out", "missing-folder/x.pdf"], "does not exist"),
    ],
)
def test_command_rejects_bad_arguments(export_server, demo_db, tmp_path, capsys, args, message):
    args = [str(tmp_path / a) if a.endswith(".pdf") else a for a in args]
    assert cli.main(["report", "--db", str(demo_db), *args]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


# --------------------------------------------------------------------------- the page


def test_report_page_builds_a_pack(app_env, export_server):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180).run()
    at.switch_page("pages/reports.py").run()
    assert not at.exception
    sections = at.multiselect(key="rp_sections")
    assert sections.value == report.default_sections()
    sections.set_value(["overview"]).run()
    charts = next(m for m in at.multiselect if m.label == "Charts")
    assert charts.value == ["overview/alliance_trend", "overview/dropout_trend"]
    at.radio(key="rp_format").set_value("zip").run()
    build = next(b for b in at.button if b.label.startswith("Build the ZIP"))
    build.click().run()
    assert not at.exception
    assert any(d.proto.label.startswith("Download qi-pack_") for d in at.get("download_button"))
