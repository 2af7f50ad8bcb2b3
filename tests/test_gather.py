"""views.common.gather: parts run side by side give exactly what running them in turn gives."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

from alliance.views import common, outcomes, overview, ruptures


def test_results_come_back_in_the_order_given() -> None:
    def part(i: int, delay: float):
        def run() -> int:
            time.sleep(delay)
            return i

        return run

    assert common.gather(part(1, 0.05), part(2, 0.0), part(3, 0.02)) == [1, 2, 3]


def test_an_error_in_a_part_reaches_the_caller() -> None:
    def boom() -> None:
        raise ValueError("part failed")

    with pytest.raises(ValueError, match="part failed"):
        common.gather(lambda: 1, boom)


def _rounded(x):
    """Floats to 9 significant digits: DuckDB's parallel sums differ in the last bits from run
    to run whether or not the parts run side by side."""
    if isinstance(x, dict) and "bdata" in x and "dtype" in x:  # plotly's typed-array encoding
        x = np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"])
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, tuple):
        x = list(x)
    if isinstance(x, float | np.floating):
        return "nan" if np.isnan(x) else float(f"{x:.9g}")  # a withheld point: nan != nan
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def _view(module, ctx) -> object:
    v = module.build(ctx)
    figures = [p.figure.to_dict() if p.figure is not None else None for p in v.panels]
    tables = [json.loads(p.data.to_json()) for p in v.panels]
    tiles = [[t.key, t.value, t.n_text, t.delta, t.withheld] for t in v.tiles]
    return _rounded([v.title, figures, tables, tiles, v.notice])


@pytest.mark.parametrize("module", [overview, outcomes, ruptures])
def test_a_view_is_the_same_side_by_side_and_in_turn(demo_ctx, monkeypatch, module) -> None:
    side_by_side = _view(module, demo_ctx)
    assert len(side_by_side[1]) >= 2  # panels with figures were built
    monkeypatch.setenv("ALLIANCE_VIEW_THREADS", "1")
    assert _view(module, demo_ctx) == side_by_side
