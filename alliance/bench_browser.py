"""Browser timing for `python -m alliance bench --browser`: filter change -> every chart redrawn.

Starts the real Streamlit server on the bench clinic, opens each analytics page (and each
section of the pages that show one at a time, by its ?show= address) in headless Chromium
(Playwright) and lets its first run finish, then changes the sidebar's Site filter several times
and measures, per change, the wall time from choosing the new value until Streamlit has finished
the run, no element is stale any more and every plotly chart on the page has been drawn again
(serve.RUN_FINISHED). This is what a director in a meeting waits for; it includes the server
work, the websocket transfer and the browser's drawing. Needs the test tools
(requirements-dev.txt: playwright) and Debian's chromium.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from pathlib import Path
from urllib.parse import urlencode

from alliance import serve

TIMEOUT_MS = 300_000
PAGES = ["overview", "alliance", "dropout", "outcomes", "therapists", "demographics", "profile",
         "ruptures"]  # fmt: skip


def _choose(page, label: str, value: str) -> float:
    """Open the sidebar select box `label` and pick `value`; returns the moment of the pick."""
    page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name=label).click()
    page.keyboard.type(value)  # the list is virtualized: narrow it to the value first
    option = page.get_by_role("option", name=value, exact=True)
    option.wait_for()
    started = time.perf_counter()
    option.click()
    return started


def targets() -> list[tuple[str, str]]:
    """(name, address) of each page, and of each section of the pages that show one at a time
    (the address names the section: ?show=<label>)."""
    from alliance.views import profile, ruptures

    sectioned = {"profile": profile.SECTIONS, "ruptures": ruptures.SECTIONS}
    out = []
    for name in PAGES:
        if name in sectioned:
            out += [
                (f"{name}:{key}", f"{name}?{urlencode({'show': label})}")
                for key, label in sectioned[name].items()
            ]
        else:
            out.append((name, name))
    return out


def run(path: Path, sites: list[str], changes: int = 3) -> dict[str, dict[str, float]]:
    """Seconds from a Site filter change to every chart redrawn, per page (p50, max)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    out: dict[str, dict[str, float]] = {}
    env = {**os.environ, "ALLIANCE_DB": str(path)}
    with serve.streamlit_server(env) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=serve.CHROMIUM, headless=True, args=serve.CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        for name, address in targets():
            page.goto(f"{url}/{address}")
            page.wait_for_selector('[data-testid="stMain"] h1', timeout=TIMEOUT_MS)
            page.wait_for_function(serve.RUN_FINISHED, timeout=TIMEOUT_MS, polling=50)
            times = []
            for i in range(changes):
                started = _choose(page, "Site", sites[i % len(sites)])
                # a very quick run may be over before it is seen starting
                with contextlib.suppress(PlaywrightTimeout):
                    page.wait_for_function(serve.RUN_STARTED, timeout=5_000, polling=10)
                page.wait_for_function(serve.RUN_FINISHED, timeout=TIMEOUT_MS, polling=50)
                times.append(time.perf_counter() - started)
            out[name] = {
                "p50_s": round(statistics.median(times), 3),
                "max_s": round(max(times), 3),
            }
        browser.close()
    return out
