"""The Data page: renders (AppTest), its preview, history, data-quality and template pieces, and
an import through the page in a real browser."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
import shutil
import stat

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from alliance import db, ingest
from alliance.filters import Filters
from alliance.ingest import contract, present
from alliance.panel import Context
from alliance.settings import Settings
from tests.conftest import ROOT
from tests.test_import_helpers import SAMPLE, _no_env_key, base_rows, import_, write_csv  # noqa: F401

QUALITY_LABELS = [c.label for c in present.QUALITY_CHECKS.values()]


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)


def test_data_page_renders_on_the_demo(app_env):
    at = _app().run()
    at.switch_page("pages/data.py").run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Data"]
    assert [s.value for s in at.subheader] == [
        "Import an export",
        "Imports so far",
        "Data quality",
        "Template and data dictionary",
    ]
    assert any("demo clinic" in c.value for c in at.caption)
    assert sorted(m.label for m in at.metric) == sorted(QUALITY_LABELS)
    assert len(at.get("download_button")) == 2


def test_data_page_on_clinic_data_shows_history_without_file_names(app_env, tmp_path, monkeypatch):
    path = tmp_path / "clinic.duckdb"
    assert import_(SAMPLE, path).ok
    monkeypatch.setenv("ALLIANCE_DB", str(path))
    at = _app().run()
    at.switch_page("pages/data.py").run()
    assert not at.exception
    history = at.dataframe[0].value
    assert len(history) == 1 and history.loc[0, "sessions_added"] == 9
    assert "sessions-example" not in history.to_csv()
    assert len(history.loc[0, "fingerprint"]) == 16
    # three clients: fewer than k, so no data-quality figures
    assert any("fewer than 11 clients" in i.value for i in at.info)
    assert not at.metric


def test_preview_tables(tmp_path):
    rows = [{**r, "Client Name": "A B", "referral": "GP"} for r in base_rows()]
    result = import_(write_csv(tmp_path / "e.csv", rows), tmp_path / "x.duckdb", dry_run=True)
    table = present.columns_table(result)
    what = dict(zip(table["column in file"], table["what happens"], strict=True))
    assert what["client_id"].startswith("pseudonymized")
    assert what["Client Name"].startswith("dropped")
    assert what["referral"] == "ignored" and what["srs_total"] == "imported"
    counts = dict(zip(*present.counts_table(result).T.values, strict=True))
    assert counts["Rows read"] == 12 and counts["Sessions to add"] == 12


def test_uploads_are_private_and_removed(tmp_path):
    with present.saved_uploads([("../../etc/passwd.csv", b"a,b\n"), ("x.xlsx", b"zip")]) as saved:
        paths = [p for p, _ in saved]
        assert [n for _, n in saved] == ["../../etc/passwd.csv", "x.xlsx"]
        assert [p.name for p in paths] == ["upload-0.csv", "upload-1.xlsx"]
        assert stat.S_IMODE(paths[0].stat().st_mode) == 0o600
        assert stat.S_IMODE(paths[0].parent.stat().st_mode) == 0o700
    assert not paths[0].parent.exists()


def test_template_and_dictionary_follow_the_contract(tmp_path):
    header = next(csv.reader(io.StringIO(ingest.template_csv().decode())))
    assert header == list(contract.TEMPLATE_COLUMNS)
    dictionary = ingest.data_dictionary()
    assert set(contract.BY_NAME) <= set(dictionary["column"])
    assert dictionary.loc[dictionary["column"] == "client_id", "stored"].item() == "pseudonym"
    # the template filled with the sample's rows imports
    sample = list(csv.DictReader(SAMPLE.open()))
    path = write_csv(tmp_path / "t.csv", sample, header)
    assert import_(path, tmp_path / "x.duckdb", dry_run=True).ok
    empty = tmp_path / "blank.csv"
    empty.write_bytes(ingest.template_csv())
    assert [p.rule for p in import_(empty, tmp_path / "x.duckdb", dry_run=True).problems] == [
        "no_rows"
    ]


def _quality_rows() -> list[dict[str, str]]:
    """12 clients x 2 sessions, with known gaps (see the expected values in the test)."""
    rows = []
    for c in range(12):
        for s in range(2):
            rows.append(
                {
                    "client_id": f"Q{c}",
                    "therapist_id": "T1",
                    "session_date": f"2026-0{s + 3}-{c + 1:02d}",
                    "site": "North",
                    "gender": "" if c in (6, 7) else "female",
                    "race_ethnicity": "White",
                    "age": "40",
                    "session_number": str(2 - s if c == 8 else s + 1),
                    "srs_total": ""
                    if (s == 1 and c in (1, 2, 3))
                    else ("40" if c in (9, 10) else "35"),
                    "ors_total": "" if (c, s) in ((4, 0), (5, 1)) else "20",
                }
            )
    return rows


def test_data_quality_by_hand(tmp_path):
    path = tmp_path / "q.duckdb"
    assert import_(write_csv(tmp_path / "q.csv", _quality_rows()), path).ok
    con = db.open_read_only(path)
    filters = Filters(first_month=dt.date(2026, 1, 1), last_month=dt.date(2026, 12, 1))
    ctx = Context(con=con, filters=filters, settings=dataclasses.replace(Settings(), privacy_k=1))
    df, notice = present.data_quality(ctx)
    assert notice is None
    got = {r.check_key: (r.numerator, r.denominator) for r in df.itertuples()}
    assert got == {
        "alliance": (21, 24),
        "outcome": (22, 24),
        "srs_ceiling": (4, 21),
        "no_demographics": (2, 12),
        "numbered_out_of_order": (1, 24),
        "late_first_outcome": (1, 12),
    }
    # with k = 11 a check whose part describes 1..10 clients is withheld, never shown as 0
    ctx = Context(con=con, filters=filters, settings=Settings())
    df, notice = present.data_quality(ctx)
    assert notice is None and df["suppressed"].all()
    assert df["share"].isna().all()
    con.close()


# --- the real thing: an import through the page in Chromium ------------------------------------
@pytest.mark.browser
def test_import_through_the_page_in_chromium(tmp_path, demo_con):
    from playwright.sync_api import sync_playwright

    from alliance import serve
    from alliance.serve import CHROMIUM, CHROMIUM_ARGS
    from tests.test_browser import SHOTS, wait_idle

    served = tmp_path / "served.duckdb"
    db.write_demo(served, sessions=2_000, seed=11)
    export = tmp_path / "clinic-export.csv"
    ingest.export_contract_csv(demo_con, export, limit=3_000)
    env = {k: v for k, v in os.environ.items() if k != "ALLIANCE_SECRET_KEY"}
    env["ALLIANCE_DB"] = str(served)
    with serve.streamlit_server(env) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2200})
        page.goto(f"{url}/data")
        wait_idle(page)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(export))
        page.get_by_text("pass every rule").wait_for(timeout=120_000)
        wait_idle(page)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "data-preview.png"), full_page=True)
        page.get_by_text("Replace the demo clinic").click()
        wait_idle(page)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("Every page now shows the new data").wait_for(timeout=120_000)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(SHOTS / "data-imported.png"), full_page=True)
        page.goto(url)
        wait_idle(page)
        page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first.wait_for(timeout=60_000)
        assert page.get_by_text("Demo data.").count() == 0
        browser.close()
    con = duckdb.connect(str(served), read_only=True)
    try:
        assert con.execute("select value from meta where key = 'dataset_kind'").fetchall() == [
            ("clinic",)
        ]
        assert con.execute("select count(*) from sessions").fetchall() == [(3_000,)]
    finally:
        con.close()
    shutil.rmtree(tmp_path, ignore_errors=True)
