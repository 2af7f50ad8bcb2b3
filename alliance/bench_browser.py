"""Browser timing for `python -m alliance bench --browser`: filter change -> every chart redrawn.

Starts the real Streamlit server on the bench clinic, opens each analytics page in headless
Chromium (Playwright), then changes the sidebar's Site filter several times and measures, per
change, the wall time from choosing the new value until Streamlit has finished the run, no
element is stale any more and every plotly chart on the page has been drawn again. This is what
a director in a meeting waits for; it includes the server work, the websocket transfer and the
browser's drawing. Needs the test tools (requirements-dev.txt: playwright) and Debian's chromium.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from alliance import db

TIMEOUT_MS = 300_000
PAGES = ["overview", "alliance", "dropout", "outcomes", "therapists", "demographics", "profile",
         "ruptures"]  # fmt: skip

# Streamlit has started the run the change caused (the old elements are marked stale)
_STARTED = """() => !!(document.querySelector('[data-stale="true"]')
    || document.querySelector('[data-testid="stStatusWidget"]'))"""
# the run has finished: nothing stale, Streamlit idle, every plotly chart drawn
_REDRAWN = """() => {
    if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
    if (document.querySelector('[data-stale="true"]')) return false;
    const plots = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')];
    return plots.every(p => p._fullLayout);
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=db.ROOT,
        env={**os.environ, "ALLIANCE_DB": str(path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the streamlit server did not start")
        time.sleep(0.5)


def _choose(page, label: str, value: str) -> float:
    """Open the sidebar select box `label` and pick `value`; returns the moment of the pick."""
    page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name=label).click()
    option = page.get_by_role("option", name=value, exact=True)
    option.wait_for()
    started = time.perf_counter()
    option.click()
    return started


def run(path: Path, sites: list[str], changes: int = 3) -> dict[str, dict[str, float]]:
    """Seconds from a Site filter change to every chart redrawn, per page (p50, max)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    proc, url = _start_server(path)
    out: dict[str, dict[str, float]] = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium,
                headless=True,
                args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            )
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            for name in PAGES:
                page.goto(f"{url}/{name}")
                page.wait_for_selector('[data-testid="stMain"] h1', timeout=TIMEOUT_MS)
                page.wait_for_function(_REDRAWN, timeout=TIMEOUT_MS, polling=50)
                times = []
                for i in range(changes):
                    started = _choose(page, "Site", sites[i % len(sites)])
                    # a very quick run may be over before it is seen starting
                    with contextlib.suppress(PlaywrightTimeout):
                        page.wait_for_function(_STARTED, timeout=5_000, polling=10)
                    page.wait_for_function(_REDRAWN, timeout=TIMEOUT_MS, polling=50)
                    times.append(time.perf_counter() - started)
                out[name] = {
                    "p50_s": round(statistics.median(times), 3),
                    "max_s": round(max(times), 3),
                }
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out
