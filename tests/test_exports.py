"""Chart and data exports: the files open, say what they show, and withhold what the screen does.

One export server (headless Chromium via kaleido) serves the whole test session.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import time
import xml.etree.ElementTree as ET

import openpyxl
import pandas as pd
import pytest
from pypdf import PdfReader

from alliance import exports
from alliance.filters import Filters
from alliance.metrics import overview as overview_metrics
from alliance.panel import Context, Panel
from alliance.privacy import PrivacyError, PrivacyPolicy, display_table
from alliance.settings import Settings
from alliance.views import overview

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def export_server():
    """The one warm export server of the test session."""
    exports.ensure_server()
    yield
    exports.stop_server()


@pytest.fixture(scope="module")
def clinic_ctx(demo_con) -> Context:
    """Last 12 months of the demo clinic, with a clinic name set."""
    filters = Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1))
    return Context(demo_con, filters, Settings(clinic_name="Lakeside Counselling"))


@pytest.fixture(scope="module")
def view(clinic_ctx):
    return overview.build(clinic_ctx)


@pytest.fixture(scope="module")
def dropout_panel(view) -> Panel:
    return next(p for p in view.panels if p.key == "dropout_trend")


@pytest.fixture(scope="module")
def ended(clinic_ctx) -> int:
    """Ended episodes in the period as shown: the overview's protected headline (its own query,
    not the chart's), the count with its cell's noise."""
    shown, _ = overview_metrics.protected_headline(
        clinic_ctx, overview_metrics.headline(clinic_ctx)
    )
    return int(shown["ended"])


@pytest.fixture(scope="module")
def meta(clinic_ctx) -> exports.ExportMeta:
    return exports.export_meta(clinic_ctx)


@pytest.fixture(scope="module")
def strict_ctx(demo_con) -> Context:
    """k = 400: monthly dropout cells (about 115 clients each) are all withheld, monthly
    alliance cells (several hundred clients) partly not."""
    filters = Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1))
    return Context(demo_con, filters, Settings(privacy_k=400))


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _svg_text(data: bytes) -> str:
    root = ET.fromstring(data)  # parses as XML
    assert root.tag.endswith("svg")
    return " ".join(t for t in root.itertext() if t.strip())


# --------------------------------------------------------------------------- names


def test_file_names_say_what_and_when():
    f = Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1))
    assert (
        exports.file_name("dropout_trend", f, "png")
        == "dropout-trend_2025-11_to_2026-10_all-sites.png"
    )
    one = dataclasses.replace(
        f,
        first_month=dt.date(2026, 3, 1),
        last_month=dt.date(2026, 3, 1),
        site="Westbrook (opened 2026)",
    )
    assert exports.file_name("funnel_dropout", one, "XLSX") == (
        "funnel-dropout_2026-03_westbrook-opened-2026.xlsx"
    )
    odd = dataclasses.replace(f, site="../../etc/passwd; rm -rf")
    name = exports.file_name("x", odd, "csv")
    assert "/" not in name and " " not in name and ";" not in name
    assert exports.slugify("Café – São Paulo") == "cafe-sao-paulo"


# --------------------------------------------------------------------------- figures


def test_export_figure_carries_title_subtitle_and_footer(dropout_panel, meta, ended):
    before = dropout_panel.figure.to_json()
    fig = exports.export_figure(dropout_panel, meta)
    assert dropout_panel.figure.to_json() == before  # the page's figure is untouched
    assert fig.layout.title.text == "Dropout rate by month"
    sub = fig.layout.title.subtitle.text
    assert "Nov 2025 – Oct 2026" in sub and "all sites" in sub
    assert f"n = {ended:,} ended episodes" in sub and "Dropouts / ended episodes" in sub
    footer = fig.layout.annotations[-1].text
    assert "Lakeside Counselling" in footer and "Data through 31 Oct 2026" in footer
    # months with 1-10 dropouts are withheld (numerator rule), and the footer says so
    assert ("withheld" in footer) == dropout_panel.withheld
    assert (fig.layout.width, fig.layout.height) == (exports.EXPORT_WIDTH, exports.EXPORT_HEIGHT)


def test_png_svg_pdf_are_valid_and_a_warm_png_is_fast(export_server, view, meta, ended):
    alliance, dropout_panel = view.panels
    exports.panel_image(alliance, meta, "svg")  # warm-up (browser start)
    started = time.perf_counter()
    png = exports.panel_image(dropout_panel, meta, "png")
    took = time.perf_counter() - started
    print(f"\nwarm PNG export: {took:.2f} s")
    assert took < 2.0  # under 1 s on an idle machine; slack for a busy CI box
    assert _png_size(png) == (2 * exports.EXPORT_WIDTH, 2 * exports.EXPORT_HEIGHT)

    text = _svg_text(exports.panel_image(dropout_panel, meta, "svg"))
    assert "Dropout rate by month" in text
    assert f"n = {ended:,} ended episodes" in text
    assert "Lakeside Counselling" in text and "Data through 31 Oct 2026" in text

    pdf = exports.panel_image(dropout_panel, meta, "pdf")
    assert pdf[:5] == b"%PDF-"
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    page_text = reader.pages[0].extract_text()
    assert "Dropout rate by month" in page_text and "Lakeside Counselling" in page_text


# --------------------------------------------------------------------------- data


def test_csv_numbers_equal_the_table_on_screen(dropout_panel, view, clinic_ctx, ended):
    csv = pd.read_csv(
        io.BytesIO(exports.panel_csv(dropout_panel, clinic_ctx.policy)),
        encoding="utf-8-sig",
        dtype=str,
    )
    screen = display_table(dropout_panel.data, policy=clinic_ctx.policy)  # ui.display_data
    assert list(csv.columns) == list(screen.columns)
    assert len(csv) == len(screen) == 12
    for col in ("n_clients", "ended", "dropouts"):  # counts: identical text
        assert csv[col].tolist() == screen[col].tolist()
    shown = ~dropout_panel.data["suppressed"].to_numpy(dtype=bool)
    assert (csv["ended"][~shown] == "n < 11").all()
    for col in ("dropout_rate", "low", "high"):  # rates: 4 decimals in the file, 2 on screen
        for a, b in zip(csv[col][shown], screen[col][shown], strict=True):
            assert abs(float(a) - float(b)) <= 0.005 + 1e-9
        raw = dropout_panel.data[col][shown].to_numpy(dtype=float)
        assert [float(v) for v in csv[col][shown]] == pytest.approx(raw, abs=5e-5)
    # each month and the total carry their own noise (at most 2 each), and withheld months
    # are missing from the sum: the shown months add up to no more than the tile's n allows
    months = sum(int(v.replace(",", "")) for v in csv["ended"][shown])
    assert months <= ended + 2 * (1 + int(shown.sum()))
    tile = next(t for t in view.tiles if t.key == "dropout_rate")
    assert f"n = {ended:,} ended episodes" in tile.n_text


def test_xlsx_holds_numbers_and_says_what_it_is(dropout_panel, meta, ended):
    book = openpyxl.load_workbook(io.BytesIO(exports.panel_xlsx(dropout_panel, meta)))
    assert book.sheetnames == ["data", "about"]
    rows = list(book["data"].iter_rows(values_only=True))
    header = rows[0]
    months = [r[header.index("ended")] for r in rows[1:]]
    shown = ~dropout_panel.data["suppressed"].to_numpy(dtype=bool)
    assert all(isinstance(v, int) for v, ok in zip(months, shown, strict=True) if ok)
    assert all(v == "n < 11" for v, ok in zip(months, shown, strict=True) if not ok)
    rates = [r[header.index("dropout_rate")] for r, ok in zip(rows[1:], shown, strict=True) if ok]
    expected = dropout_panel.data["dropout_rate"][shown].to_numpy(dtype=float)
    assert rates == pytest.approx(expected, abs=5e-5)
    about = dict(book["about"].iter_rows(min_row=2, values_only=True))
    assert about["Chart"] == "Dropout rate by month"
    assert about["Clinic"] == "Lakeside Counselling"
    assert about["Data through"] == "31 Oct 2026"
    assert f"n = {ended:,}" in about["Definition and n"]


def test_withheld_cells_stay_withheld_in_every_format(export_server, strict_ctx, demo_con):
    strict = overview.build(strict_ctx)
    panel = next(p for p in strict.panels if p.key == "dropout_trend")
    assert panel.withheld and bool(panel.data["suppressed"].all())
    # the same months unsuppressed (k = 1), to know which numbers must not appear
    raw_ctx = dataclasses.replace(strict_ctx, settings=Settings(privacy_k=1))
    raw = next(p for p in overview.build(raw_ctx).panels if p.key == "dropout_trend").data
    assert int(raw["n_clients"].max()) < 400
    meta = exports.export_meta(strict_ctx)

    csv = pd.read_csv(
        io.BytesIO(exports.panel_csv(panel, strict_ctx.policy)), encoding="utf-8-sig", dtype=str
    )
    for col in ("n_clients", "ended", "dropouts", "dropout_rate", "low", "high"):
        assert set(csv[col]) == {"n < 400"}, col
    book = openpyxl.load_workbook(io.BytesIO(exports.panel_xlsx(panel, meta)))
    rows = list(book["data"].iter_rows(values_only=True))
    header = rows[0]
    for row, (_, raw_row) in zip(rows[1:], raw.iterrows(), strict=True):
        for col in ("n_clients", "ended", "dropouts", "dropout_rate"):
            assert row[header.index(col)] == "n < 400"
        assert raw_row["ended"] not in row  # the small count is nowhere in the row

    svg = _svg_text(exports.panel_image(panel, meta, "svg"))
    assert "fewer than 400 clients are withheld" in svg  # the privacy note in the footer
    pdf_text = PdfReader(io.BytesIO(exports.panel_image(panel, meta, "pdf"))).pages[0]
    assert "fewer than 400 clients" in pdf_text.extract_text()
    # a panel with nothing withheld carries no privacy note
    visible = next(p for p in strict.panels if p.key == "alliance_trend")
    if not visible.withheld:
        assert "withheld" not in exports.export_figure(visible, meta).layout.annotations[-1].text


def _panel(data: pd.DataFrame) -> Panel:
    return Panel(key="t", title="T", subtitle="", reading="", figure=None, data=data)


def test_formula_like_text_is_neutralized_in_csv_and_xlsx():
    data = pd.DataFrame(
        {
            "group": ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "ok"],
            "note": ["-0.5", "\tx", "=1", "fine", "=A1"],
            "n_clients": [20, 30, 40, 50, 60],
            "rate": [0.1, 0.2, 0.3, 0.4, 0.5],
        }
    ).rename(columns={"note": "=evil()"})
    pol = PrivacyPolicy(k=11)
    csv = exports.panel_csv(_panel(data), pol).decode("utf-8-sig")
    lines = csv.splitlines()
    assert lines[0].startswith("group,'=evil()")
    assert "'=HYPERLINK" in csv and "'+cmd" in csv and "'@SUM" in csv and "'-2+3" in csv
    back = pd.read_csv(io.StringIO(csv), dtype=str)
    assert back["'=evil()"].tolist()[0] == "-0.5"  # a negative number is not a formula
    meta = exports.ExportMeta(
        clinic_name="=cmd()",
        filters=Filters(first_month=dt.date(2026, 1, 1), last_month=dt.date(2026, 1, 1)),
        policy=pol,
    )
    book = openpyxl.load_workbook(io.BytesIO(exports.panel_xlsx(_panel(data), meta)))
    for sheet in book:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str) and cell.value[:1] in "=+@":
                    pytest.fail(f"formula-like text left in {sheet.title}!{cell.coordinate}")
    values = [c.value for c in next(book["data"].iter_rows(min_row=2, max_row=2))]
    assert values[0] == '\'=HYPERLINK("http://x")'
    assert values[2] == 20 and values[3] == pytest.approx(0.1)


def test_data_without_client_counts_is_not_exported():
    data = pd.DataFrame({"group": ["a"], "value": [3]})
    with pytest.raises(PrivacyError):
        exports.panel_csv(_panel(data), PrivacyPolicy(k=11))


def test_downloads_are_built_only_when_asked(dropout_panel, meta, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(exports, "render", lambda fig, fmt, **_: calls.append(fmt) or b"x")
    downloads = exports.panel_downloads(dropout_panel, meta)
    assert [d.fmt for d in downloads] == ["png", "svg", "pdf", "csv", "xlsx"]
    assert calls == []  # nothing rendered yet
    assert downloads[0].file_name == "dropout-trend_2025-11_to_2026-10_all-sites.png"
    assert downloads[4].mime.endswith("spreadsheetml.sheet")
    downloads[1].build()
    assert calls == ["svg"]
    empty = dataclasses.replace(dropout_panel, figure=None)
    assert exports.panel_downloads(empty, meta) == []
