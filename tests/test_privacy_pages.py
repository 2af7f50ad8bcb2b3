"""Every page, many random filter combinations: no chart's data shows a group of 1..k-1 clients.

Walks each page's view (the exact objects the page renders and exports) for random filter sets,
including narrow ones (one month, one site, one group), with the default k and a stricter k.
"""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from alliance import bench, privacy
from alliance.panel import Context
from alliance.settings import Settings


@pytest.fixture(scope="module")
def filter_sets(demo_con):
    return bench.random_filters(demo_con, 6, seed=5)


@pytest.mark.parametrize("page", list(bench.PAGES))
@pytest.mark.parametrize("k", [11, 25])
def test_no_small_cell_is_visible_on_any_page(page, k, demo_con, filter_sets):
    module = importlib.import_module(bench.PAGES[page])
    settings = dataclasses.replace(Settings(), privacy_k=k)
    policy = privacy.PrivacyPolicy(k=k)
    checked = 0
    for filters in filter_sets:
        view = module.build(Context(con=demo_con, filters=filters, settings=settings))
        if view.notice:
            continue
        for panel in view.panels:
            if panel.data.empty:
                continue
            if "n_clients" in panel.data.columns:
                privacy.assert_no_small_cells(panel.data, policy=policy)
                checked += 1
            else:
                # a table without a client count must not carry counts either
                assert not {"n", "episodes", "sessions"} & set(panel.data.columns), panel.key
    assert checked > 0, f"{page}: no panel data was checked"
