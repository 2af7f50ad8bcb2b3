"""The real dashboard server and headless Chromium, for the browser tests and `bench --browser`.

One place for starting `streamlit run dashboard.py` on a free port (waiting for its health
check) and for the Chromium launch flags, so tests and the benchmark drive the same thing.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping

from alliance import db

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


# Streamlit has finished the page's run and the browser shows all of it: the app reports no
# script running (stApp's data-test-script-state, which Streamlit's own browser tests read; a
# compilation error also ends the run), no element is stale or still a lazy-load placeholder
# (stSkeleton), and every plotly chart element holds a drawn chart. The status widget alone is
# not enough: on a page's first run it never appears, and the page shows placeholders for the
# elements still to come.
RUN_FINISHED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    const state = app && app.getAttribute('data-test-script-state');
    if (state !== 'notRunning' && state !== 'compilationError') return false;
    if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
    if (document.querySelector('[data-stale="true"]')) return false;
    if (document.querySelector('[data-testid="stSkeleton"]')) return false;
    return [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(chart => {
        const plot = chart.querySelector('.js-plotly-plot');
        return !!(plot && plot._fullLayout);
    });
}"""
# a run has begun since the page was last finished (a widget change asks for one at once)
RUN_STARTED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!(app && app.getAttribute('data-test-script-state') !== 'notRunning')
        || !!document.querySelector('[data-stale="true"]')
        || !!document.querySelector('[data-testid="stStatusWidget"]');
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(
    env: Mapping[str, str],
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    extra_args: tuple[str, ...] = (),
    timeout_s: float = 120,
) -> Iterator[str]:
    """Run the dashboard with `env` until the block ends; yields its base URL."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", *extra_args],
        cwd=db.ROOT,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the streamlit server did not start")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
