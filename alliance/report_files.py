"""A report pack written as a file: a PowerPoint deck (python-pptx) with one chart per slide, a
headline sentence and the definitions in the speaker notes; a PDF (fpdf2) with a cover, captioned
charts and a definitions appendix; or a ZIP with each chart as PNG and SVG and the data behind it
as CSV. `alliance.report` assembles the pack and calls `WRITERS[format](pack, images)`.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

from alliance import exports
from alliance.privacy import PrivacyError
from alliance.report import (
    CLOSING_TERMS,
    Pack,
    PackChart,
    definitions,
    settings_in_force,
    settings_line,
)

# --------------------------------------------------------------------------- shared text


def cover_lines(pack: Pack) -> list[str]:
    m = pack.meta
    lines = [m.filters.describe()]
    facts = []
    if m.through_text:
        facts.append(f"Data through {m.through_text}")
    if m.data_version:
        facts.append(f"data version {m.data_version}")
    facts.append(f"generated {m.generated_text}")
    lines.append(" · ".join(facts))
    if pack.meeting_mode:
        lines.append("Meeting mode: therapists are shown as A, B, C… (labels carry no identity).")
    if m.dataset_kind == "demo":
        lines.append("Demo data: a synthetic clinic, not real clients.")
    return lines


def chart_notes(chart: PackChart, pack: Pack) -> str:
    """Speaker notes / caption text: definition, how to read it, settings, privacy."""
    p = chart.panel
    sub = exports.plain_text(exports.panel_subtitle(p)).replace("\n", " · ")
    parts = [
        f"Headline: {chart.headline}",
        f"What it shows: {exports.plain_text(p.title)}. {sub}",
    ]
    if p.reading:
        parts.append(f"How to read it: {p.reading}")
    parts.append(f"Settings in force: {settings_line(pack.settings)}.")
    if p.withheld:
        parts.append(f"Privacy: {pack.meta.privacy_note()}")
    parts.append(
        f"Data: {pack.meta.filters.describe()} · data through {pack.meta.through_text or '?'}"
        f" · version {pack.meta.data_version or '?'}."
    )
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- PowerPoint

SLIDE_W_IN = 13.333
SLIDE_H_IN = 7.5
DARK = (0x22, 0x22, 0x22)
GREY = (0x6B, 0x6B, 0x6B)
BLUE = (0x00, 0x72, 0xB2)


def pptx_bytes(pack: Pack, images: dict[tuple[str, str], bytes]) -> bytes:
    """The deck: title slide, one chart per slide (headline + notes), closing slide."""
    from pptx import Presentation
    from pptx.dml.color import RGBColor
    from pptx.util import Emu, Inches, Pt

    prs = Presentation()
    prs.slide_width = Inches(SLIDE_W_IN)
    prs.slide_height = Inches(SLIDE_H_IN)
    blank = prs.slide_layouts[6]
    prs.core_properties.title = f"{pack.meta.clinic_name}: {pack.title}"
    prs.core_properties.author = pack.meta.clinic_name
    prs.core_properties.subject = pack.meta.filters.describe()

    def text(slide, left, top, width, height, lines, *, size, color=DARK, bold=False):
        box = slide.shapes.add_textbox(Inches(left), Inches(top), Inches(width), Inches(height))
        frame = box.text_frame
        frame.word_wrap = True
        for i, line in enumerate(lines):
            para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
            items = line if isinstance(line, list) else [(line, bold)]
            for chunk, chunk_bold in items:
                run = para.add_run()
                run.text = chunk
                run.font.size = Pt(size)
                run.font.bold = chunk_bold
                run.font.color.rgb = RGBColor(*color)
            para.space_after = Pt(size * 0.35)
        return box

    def footer(slide, number: int) -> None:
        text(
            slide,
            0.5,
            7.05,
            12.3,
            0.35,
            [f"{pack.meta.clinic_name} · {pack.meta.filters.period_text()} · {number}"],
            size=10,
            color=GREY,
        )

    # title slide: what, who, when on the left; what is in it on the right
    slide = prs.slides.add_slide(blank)
    text(slide, 0.8, 1.2, 7.2, 0.5, [pack.title.upper()], size=16, color=BLUE, bold=True)
    text(slide, 0.8, 1.8, 7.2, 1.0, [pack.meta.clinic_name], size=36, bold=True)
    text(slide, 0.8, 2.9, 7.2, 0.7, [pack.meta.filters.period_text()], size=28)
    text(slide, 0.8, 3.9, 7.0, 2.8, cover_lines(pack), size=14, color=GREY)
    contents = [[("In this pack", True)]] + [
        f"{title}: {len(charts)} chart{'s' if len(charts) != 1 else ''}"
        for title, charts in pack.sections()
    ]
    if not pack.charts:
        contents.append("No chart for this selection (see the last slide).")
    contents.append("Definitions and privacy")
    text(slide, 8.5, 1.8, 4.3, 5.0, contents, size=15)
    slide.notes_slide.notes_text_frame.text = (
        f"{pack.title} for {pack.meta.filters.describe()}. "
        + " ".join(cover_lines(pack)[1:])
        + " Definitions are in each slide's notes and on the closing slide."
    )

    # one chart per slide: section label, headline (one or two lines), the chart below
    for number, chart in enumerate(pack.charts, start=2):
        slide = prs.slides.add_slide(blank)
        text(slide, 0.5, 0.22, 12.3, 0.35, [chart.section_title.upper()], size=12, color=BLUE)
        size = 22 if len(chart.headline) <= 140 else 18
        lines = 1 if len(chart.headline) <= (70 if size == 22 else 92) else 2
        text(slide, 0.5, 0.5, 12.3, 0.45 * lines + 0.1, [chart.headline], size=size, bold=True)
        box_top = 0.55 + 0.42 * lines + 0.15
        box_left, box_w, box_h = 0.4, SLIDE_W_IN - 0.8, 7.0 - box_top
        png = images[(chart.id, "png")]
        width_px, height_px = _png_size(png)
        scale = min(box_w / width_px, box_h / height_px)
        w_in, h_in = width_px * scale, height_px * scale
        left = box_left + (box_w - w_in) / 2
        pic = slide.shapes.add_picture(
            io.BytesIO(png), Inches(left), Inches(box_top), Emu(Inches(w_in)), Emu(Inches(h_in))
        )
        pic.name = f"Chart: {exports.plain_text(chart.panel.title)}"
        footer(slide, number)
        slide.notes_slide.notes_text_frame.text = chart_notes(chart, pack)

    # closing slide: definitions and privacy
    slide = prs.slides.add_slide(blank)
    text(slide, 0.5, 0.3, 12.3, 0.7, ["Definitions and privacy"], size=28, bold=True)
    terms = [(t, d) for t, d in definitions(pack.settings) if t in CLOSING_TERMS]
    half = (len(terms) + 1) // 2
    for col, chunk in enumerate((terms[:half], terms[half:])):
        text(
            slide,
            0.5 + col * 6.25,
            1.1,
            6.0,
            4.5,
            [[(f"{term}. ", True), (desc, False)] for term, desc in chunk],
            size=12,
        )
    closing = [
        [("Privacy. ", True), (pack.meta.privacy_note(), False)],
        [("Settings in force. ", True), (settings_line(pack.settings) + ".", False)],
    ]
    if pack.notes:
        closing.append([("Not in this pack. ", True), (" ".join(pack.notes), False)])
    text(slide, 0.5, 5.55, 12.3, 1.45, closing, size=11, color=GREY)
    footer(slide, len(pack.charts) + 2)
    slide.notes_slide.notes_text_frame.text = "\n\n".join(
        [f"{t}: {d}" for t, d in definitions(pack.settings)]
        + ["".join(chunk for chunk, _ in line) for line in closing]
    )

    out = io.BytesIO()
    prs.save(out)
    return out.getvalue()


def _opaque(png: bytes):
    """The chart as an RGB image: its background is opaque white anyway, and without an alpha
    channel fpdf2 compresses half the data (no soft mask)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return im.convert("RGB")


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# --------------------------------------------------------------------------- PDF

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
)


def _font_files() -> dict[str, Path] | None:
    """DejaVu Sans (covers –, ≥, ·, φ, τ²); None if not installed (then core fonts, ASCII)."""
    names = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf"}
    for folder in FONT_DIRS:
        files = {style: folder / name for style, name in names.items()}
        if all(f.is_file() for f in files.values()):
            return files
    return None


_ASCII = str.maketrans(
    {"–": "-", "—": "-", "−": "-", "≥": ">=", "≤": "<=", "≈": "~", "·": "-", "“": '"', "”": '"'}
)


def pdf_bytes(pack: Pack, images: dict[tuple[str, str], bytes]) -> bytes:
    """The PDF: cover, one captioned chart per page, definitions appendix."""
    from fpdf import FPDF

    fonts = _font_files()

    class Doc(FPDF):
        def footer(self) -> None:
            if self.page_no() == 1:
                return
            self.set_y(-11)
            self.set_font(family, "", 8)
            self.set_text_color(*GREY)
            self.cell(
                0,
                5,
                clean(
                    f"{pack.meta.clinic_name} · {pack.title} · "
                    f"{pack.meta.filters.period_text()} · page {self.page_no()} of {{nb}}"
                ),
                align="R",
            )

    pdf = Doc(orientation="L", unit="mm", format="A4")
    if fonts:
        for style, path in fonts.items():
            pdf.add_font("DejaVu", style, str(path))
        family = "DejaVu"

        def clean(s: str) -> str:
            return s
    else:
        family = "Helvetica"

        def clean(s: str) -> str:
            return s.translate(_ASCII).encode("latin-1", "replace").decode("latin-1")

    pdf.set_title(clean(f"{pack.meta.clinic_name}: {pack.title}"))
    pdf.set_author(clean(pack.meta.clinic_name))
    pdf.set_subject(clean(pack.meta.filters.describe()))
    pdf.set_creator("Alliance dashboard")
    pdf.set_creation_date(pack.meta.generated_at)
    pdf.set_auto_page_break(auto=True, margin=14)
    pdf.set_margins(15, 13, 15)
    width = pdf.w - 30

    def para(text: str, size: float, style: str = "", color=DARK, height: float | None = None):
        pdf.set_font(family, style, size)
        pdf.set_text_color(*color)
        pdf.multi_cell(
            width, height or size * 0.5, clean(text), new_x="LMARGIN", new_y="NEXT", align="L"
        )

    # cover: title block on the left, contents (with real page numbers) on the right
    pdf.add_page()
    col = 128.0

    def block(text_: str, size: float, style: str = "", color=DARK, height: float = 0) -> None:
        pdf.set_font(family, style, size)
        pdf.set_text_color(*color)
        pdf.multi_cell(
            col, height or size * 0.5, clean(text_), new_x="LMARGIN", new_y="NEXT", align="L"
        )

    pdf.set_y(32)
    block(pack.title.upper(), 12, "B", BLUE)
    pdf.ln(3)
    block(pack.meta.clinic_name, 28, "B", height=12)
    pdf.ln(2)
    block(pack.meta.filters.period_text(), 20, height=10)
    pdf.ln(5)
    for line in cover_lines(pack):
        block(line, 11, color=GREY, height=5.6)
        pdf.ln(1)

    def contents(pdf_: FPDF, outline) -> None:
        entries = list(outline)
        top, bottom = 32.0, pdf_.h - 18
        line_h = max(3.6, min(6.0, (bottom - top - 10) / max(len(entries), 1)))
        size = min(10.5, line_h * 1.9)
        x = 160.0
        pdf_.set_xy(x, top)
        pdf_.set_font(family, "B", 13)
        pdf_.set_text_color(*DARK)
        pdf_.cell(0, 8, "Contents", new_x="LEFT", new_y="NEXT")
        for entry in entries:
            pdf_.set_x(x)
            pdf_.set_font(family, "B" if entry.level == 0 else "", size)
            label = clean(entry.name)
            if entry.level == 0:
                pdf_.cell(110, line_h, label, new_x="LEFT", new_y="NEXT")
            else:
                pdf_.cell(10, line_h, str(entry.page_number), align="R")
                pdf_.cell(100, line_h, "  " + label, new_x="LMARGIN", new_y="NEXT")

    pdf.insert_toc_placeholder(contents, pages=1)

    # charts
    current_section = None
    for i, chart in enumerate(pack.charts, start=1):
        if i > 1:
            pdf.add_page()
        if chart.section_title != current_section:
            current_section = chart.section_title
            pdf.start_section(clean(chart.section_title), level=0)
        pdf.start_section(clean(exports.plain_text(chart.panel.title)), level=1)
        para(chart.section_title.upper(), 9, "B", BLUE, height=5)
        para(chart.headline, 14, "B", height=6.5)
        pdf.ln(2)
        png = images[(chart.id, "png")]
        w_px, h_px = _png_size(png)
        caption = f"Figure {i}. {exports.plain_text(chart.panel.title)}. {chart.panel.reading}"
        if chart.panel.withheld:
            caption += " " + pack.meta.privacy_note()
        pdf.set_font(family, "", 9)
        caption_lines = len(
            pdf.multi_cell(width, 4.3, clean(caption), dry_run=True, output="LINES")
        )
        room = pdf.h - 14 - pdf.get_y() - caption_lines * 4.3 - 4
        scale = min(width / w_px, room / h_px)
        w_mm, h_mm = w_px * scale, h_px * scale
        pdf.image(
            _opaque(png),
            x=15 + (width - w_mm) / 2,
            y=pdf.get_y(),
            w=w_mm,
            h=h_mm,
            alt_text=clean(exports.plain_text(chart.panel.title)),
        )
        pdf.set_y(pdf.get_y() + h_mm + 2)
        para(caption, 9, color=DARK, height=4.3)

    # appendix
    if pack.charts:
        pdf.add_page()
    pdf.start_section("Definitions, settings in force, data version", level=0)
    para("Definitions", 16, "B", height=8)
    pdf.ln(1)
    for term, desc in definitions(pack.settings):
        para_mixed(pdf, family, clean, term, desc, width)
        pdf.ln(1.2)
    pdf.ln(3)
    if pdf.get_y() > pdf.h - 60:  # keep the heading with what follows
        pdf.add_page()
    para("Settings in force", 13, "B", height=7)
    for name, value in settings_in_force(pack.settings):
        para_mixed(pdf, family, clean, name, value, width)
    pdf.ln(3)
    if pdf.get_y() > pdf.h - 50:
        pdf.add_page()
    para("About this pack", 13, "B", height=7)
    about = [
        ("Filters", pack.meta.filters.describe()),
        ("Data through", pack.meta.through_text or "unknown"),
        ("Data version", pack.meta.data_version or "unknown"),
        ("Generated", pack.meta.generated_text),
        ("Privacy", pack.meta.privacy_note()),
    ]
    if pack.meeting_mode:
        about.append(("Meeting mode", "therapists shown as A, B, C… (labels carry no identity)"))
    if pack.notes:
        about.append(("Not in this pack", " ".join(pack.notes)))
    for name, value in about:
        para_mixed(pdf, family, clean, name, value, width)
    return bytes(pdf.output())


def para_mixed(pdf, family: str, clean, term: str, desc: str, width: float) -> None:
    """'Term. description' with the term in bold, wrapped to the page width."""
    pdf.set_text_color(*DARK)
    pdf.set_font(family, "B", 9.5)
    pdf.write(4.6, clean(f"{term}. "))
    pdf.set_font(family, "", 9.5)
    pdf.write(4.6, clean(desc))
    pdf.ln(5.2)


# --------------------------------------------------------------------------- ZIP


def zip_bytes(pack: Pack, images: dict[tuple[str, str], bytes]) -> bytes:
    """Every chart as PNG and SVG, the data behind each as CSV, and a README."""
    filters = pack.meta.filters
    root = exports.slugify(pack.file_name("zip").removesuffix(".zip"))
    readme = [
        f"{pack.meta.clinic_name}: {pack.title}",
        "",
        *cover_lines(pack),
        "",
        "Each chart is here as PNG (slides, 2240 × 1260 px) and SVG (print), with the data",
        "behind it as CSV (UTF-8). The CSVs are the tables the dashboard shows: cells describing",
        f'fewer than {pack.meta.policy.k} clients read "{pack.meta.policy.label}".',
        "",
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        section_no: dict[str, int] = {}
        for chart in pack.charts:
            number = section_no.setdefault(chart.section, len(section_no) + 1)
            folder = f"{root}/{number:02d}-{chart.section}"
            readme.append(f"{folder}/  {exports.plain_text(chart.panel.title)}")
            readme.append(f"    {chart.headline}")
            for fmt in ("png", "svg"):
                name = exports.file_name(chart.key, filters, fmt)
                # PNG is already compressed: store it
                zf.writestr(
                    f"{folder}/{name}",
                    images[(chart.id, fmt)],
                    compress_type=zipfile.ZIP_STORED if fmt == "png" else zipfile.ZIP_DEFLATED,
                )
            if not chart.panel.data.empty:
                try:
                    csv = exports.panel_csv(chart.panel, pack.meta.policy)
                except PrivacyError as exc:
                    readme.append(
                        f"    (data not exported: its cell sizes could not be checked: {exc})"
                    )
                else:
                    zf.writestr(f"{folder}/{exports.file_name(chart.key, filters, 'csv')}", csv)
        readme += ["", "Definitions", ""]
        readme += [f"{term}: {desc}" for term, desc in definitions(pack.settings)]
        readme += ["", f"Settings in force: {settings_line(pack.settings)}."]
        readme += ["", pack.meta.privacy_note()]
        if pack.notes:
            readme += ["", "Not in this pack:", *pack.notes]
        zf.writestr(f"{root}/README.txt", "\n".join(readme) + "\n")
    return buf.getvalue()


WRITERS: dict[str, Callable[[Pack, dict[tuple[str, str], bytes]], bytes]] = {
    "pptx": pptx_bytes,
    "pdf": pdf_bytes,
    "zip": zip_bytes,
}
