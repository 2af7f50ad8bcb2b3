"""Every named query documents exactly the parameters it uses, and its columns."""

from __future__ import annotations

import pytest

from alliance import queries

ALL = queries.all_queries()


def test_there_are_queries():
    assert len(ALL) >= 4


@pytest.mark.parametrize("query", ALL, ids=[q.name for q in ALL])
def test_header_declares_exactly_the_parameters_used(query: queries.NamedQuery):
    assert query.doc, f"{query.name}: the leading comment must say what the query answers"
    assert set(query.parameters) == query.used_parameters(), query.name
    assert query.columns, f"{query.name}: the header must list the columns"


@pytest.mark.parametrize("query", ALL, ids=[q.name for q in ALL])
def test_declared_columns_match_the_result(query: queries.NamedQuery, demo_con, demo_ctx):
    params = {}
    for name in query.parameters:
        params[name] = _value(name, demo_ctx)
    df = queries.run(demo_con, query.name, **params)
    assert list(df.columns) == list(query.columns), query.name


def _value(name: str, ctx):
    base = ctx.params()
    if name in base:
        return base[name]
    settings = ctx.settings
    defaults = {
        "srs_cutoff": settings.srs_cutoff,
        "alliance": "srs",
        **settings.outcome_params("ors"),
        "rupture_threshold": settings.rupture_threshold,
        "repair_window": settings.repair_window,
    }
    if name in defaults:
        return defaults[name]
    pytest.skip(f"no generic value for parameter {name!r}; covered by its own tests")
