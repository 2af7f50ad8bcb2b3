"""Issue 19, finding 1, as an attacker with nothing but a browser: Overview addresses one month
apart, for small groups of a site and a race/ethnicity, subtracted tile by tile. Ground truth
from the exact facts of the same database. Never skipped (see test_browser.py)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import Page

from alliance.filters import add_months
from tests.test_browser import browser_page, server, wait_idle  # noqa: F401 (fixtures)
from tests.test_privacy_differencing import RACES, START, small_group_attacks

pytestmark = pytest.mark.browser
LAST = [dt.date(2026, m, 1) for m in (3, 5, 7, 9)]


def _sessions_tile(page: Page, url: str) -> int:
    page.goto(url)
    wait_idle(page)
    tile = page.locator('[data-testid="stMetric"]', has_text="Sessions").first
    value = tile.locator('[data-testid="stMetricValue"]').inner_text()
    return int(re.sub(r"[^0-9]", "", value))


def test_month_differencing_in_chromium_recovers_no_more_than_chance(
    server: str,  # noqa: F811
    browser_page: Page,  # noqa: F811
    demo_con,
) -> None:
    cases = [a for a in small_group_attacks(demo_con, RACES[1:], LAST) if a["site"] is not None][
        :12
    ]
    assert len(cases) >= 10
    hits = 0
    for case in cases:
        base = f"{server}/?site={case['site']}&race={case['race']}&from={START:%Y-%m}"
        a = _sessions_tile(browser_page, f"{base}&to={case['last']:%Y-%m}")
        b = _sessions_tile(browser_page, f"{base}&to={add_months(case['last'], 1):%Y-%m}")
        assert b - a == case["shown"]  # the page shows what the view computes
        hits += b - a == case["truth"]
    # independent noises cancel with probability 1/5: 12 cases give 2-3 hits by chance
    assert hits <= 5, (hits, len(cases))
