"""The real thing: the Streamlit server in headless Chromium, every page, screenshots.

Never skipped: if Chromium or Playwright is missing this fails (the Makefile installs them).
Screenshots go to artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from alliance import serve
from alliance.metrics import profile as profile_metrics
from alliance.serve import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import ROOT

pytestmark = pytest.mark.browser
SHOTS = ROOT / "artifacts" / "screenshots"
PAGES = sorted(p.stem for p in (ROOT / "pages").glob("*.py"))
ANALYTICS = {
    "overview",
    "alliance",
    "dropout",
    "outcomes",
    "therapists",
    "demographics",
    "profile",
    "ruptures",
}


@pytest.fixture(scope="module")
def server(demo_db: Path) -> Iterator[str]:
    with serve.streamlit_server({**os.environ, "ALLIANCE_DB": str(demo_db)}) as url:
        yield url


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Page]:
    assert Path(CHROMIUM).exists(), "chromium is required for browser tests (make test installs it)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2600})
        yield page
        browser.close()


def wait_idle(page: Page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current run and the page shows all of it."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_timeout(300)  # a run an interaction asked for has begun
    page.wait_for_function(serve.RUN_FINISHED, timeout=timeout, polling=50)


MARGIN_WIDENED = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .map(gd => gd._fullLayout)
    .filter(fl => Math.round(fl._size.l) > fl.margin.l || Math.round(fl._size.r) > fl.margin.r)
    .map(fl => [fl.title.text, fl.margin.l, fl._size.l, fl.margin.r, fl._size.r])"""


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_in_chromium(server: str, browser_page: Page, name: str) -> None:
    page = browser_page
    page.goto(f"{server}/{'' if name == 'overview' else name}")
    wait_idle(page)
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=60_000)
    charts = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot')
    if name in ANALYTICS:
        # every analytics page draws at least two charts; wait for the second (the run may
        # still be streaming elements when the status widget first disappears)
        charts.nth(1).wait_for(timeout=60_000)
        assert charts.count() >= 2
        # drawn once: plotly never had to widen a side margin it was given (which draws the
        # whole chart again; screen_margins.screen_margins)
        widened = page.evaluate(MARGIN_WIDENED)
        assert widened == [], f"margin widened by plotly, chart drawn twice: {widened}"
    assert page.locator('[data-testid="stException"]').count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_filter_change_redraws_without_error(server: str, browser_page: Page) -> None:
    page = browser_page
    page.goto(f"{server}/?site=Riverside")
    wait_idle(page)
    page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first.wait_for(timeout=60_000)
    assert "site=Riverside" in page.url
    assert page.locator('[data-testid="stException"]').count() == 0


def test_linked_period_survives_and_the_months_slider_moves(
    server: str, browser_page: Page
) -> None:
    """In Chromium: a ?from=&to= period stays when another filter changes, and moving a thumb
    of the Months range slider changes the period (the slider once read the range it sent back
    as a single month and reset itself)."""
    page = browser_page
    page.goto(f"{server}/dropout?from=2026-02&to=2026-05")
    wait_idle(page)
    page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first.wait_for(timeout=60_000)
    thumbs = page.locator('[data-testid="stSidebar"] input[type="range"]')

    def months() -> list[str | None]:
        return [thumbs.nth(i).get_attribute("aria-valuetext") for i in range(thumbs.count())]

    assert months() == ["Feb 2026", "May 2026"]
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="Riverside").click()
    wait_idle(page)
    page.wait_for_function("() => location.search.includes('site=Riverside')", timeout=30_000)
    assert "from=2026-02" in page.url and "to=2026-05" in page.url
    assert months() == ["Feb 2026", "May 2026"]
    thumbs.first.focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => location.search.includes('from=2026-01')", timeout=30_000)
    wait_idle(page)
    assert months() == ["Jan 2026", "May 2026"]
    assert "to=2026-05" in page.url and "site=Riverside" in page.url
    assert page.locator('[data-testid="stException"]').count() == 0


def wait_for_titles(page: Page, titles: list[str]) -> None:
    """Wait until the page's charts, none of them stale, have exactly these titles."""
    page.wait_for_function(
        """want => {
            if (document.querySelector('[data-stale="true"]')) return false;
            const plots = [...document.querySelectorAll(
                '[data-testid="stPlotlyChart"] .js-plotly-plot')];
            const got = plots.map(p => p.layout && p.layout.title.text.replace(/<[^>]+>/g, ''));
            return JSON.stringify(got) === JSON.stringify(want);
        }""",
        arg=titles,
        timeout=60_000,
    )


def test_profile_shows_one_section_kept_in_the_link(server: str, browser_page: Page) -> None:
    """The profile page shows one section at a time: a link opens the section it names, a
    click switches and puts it in the address, and a filter change keeps it."""
    page = browser_page
    page.goto(f"{server}/profile?show=Therapists")
    wait_idle(page)
    wait_for_titles(
        page,
        ["The alliance dimensions by therapist", "Does a group's gap differ between therapists?"],
    )
    picker = page.get_by_role("radiogroup", name="Show")
    assert picker.get_by_role("radio", name="Therapists").get_attribute("aria-checked") == "true"
    picker.get_by_role("radio", name="Client background").click()
    page.wait_for_function("() => location.search.includes('show=Client+background')")
    background = [
        f"The alliance dimensions by {label.lower()}"
        for label in profile_metrics.DEMOGRAPHICS.values()
    ]
    wait_for_titles(page, background)
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="Riverside").click()
    page.wait_for_function("() => location.search.includes('site=Riverside')", timeout=30_000)
    wait_idle(page)
    assert "show=Client+background" in page.url
    wait_for_titles(page, background)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_a_deep_link_as_the_servers_first_request_runs_inside_the_frame(
    demo_db: Path, browser_page: Page
) -> None:
    """A fresh server whose very first request is a page's URL (a bookmark, a link in a
    report): the page must run inside dashboard.py's frame, with sign-in and filters, not alone
    in Streamlit's legacy multipage mode (Outcomes once lacked its frame guard and failed)."""
    page = browser_page
    with serve.streamlit_server({**os.environ, "ALLIANCE_DB": str(demo_db)}) as url:
        page.goto(f"{url}/outcomes?site=Riverside")
        wait_idle(page)
        page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first.wait_for(timeout=60_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "Outcomes" in page.locator('[data-testid="stMain"] h1').first.inner_text()
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert "Filters" in sidebar.inner_text()
        assert "site=Riverside" in page.url
