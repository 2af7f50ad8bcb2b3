"""Every named query documents exactly the parameters it uses, and its columns."""

from __future__ import annotations

import pandas as pd
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
        # the parameters particular to one query, with the values its view uses
        "cohort_sessions": 6,
        "last_number": 12,
        "bin_floor": 20.0,
        "bin_width": 1.0,
        "scale_max": 40.0,
        "dimension": "race_ethnicity",
        "fractions": [i / 10 for i in range(1, 10)],
        "lowest_bin": -15.0,
        "highest_bin": 15.0,
        "max_session": 12,
        "groupings": ["site", "therapist/gender"],
    }
    if name in defaults:
        return defaults[name]
    raise AssertionError(f"add a value for parameter {name!r} in tests/test_queries.py")


def test_run_rows_gives_the_frame_run_gives(demo_con, demo_ctx):
    """The Arrow fetch of a row-level query: same columns, dtypes, values and nulls as `run`."""
    query = queries.load("therapists_outcome_episodes")
    params = {name: _value(name, demo_ctx) for name in query.parameters}
    a = queries.run(demo_con, query.name, **params)
    b = queries.run_rows(demo_con, query.name, **params)
    assert len(a) > 1000
    assert a["age_band"].isna().any() or a["age_band"].nunique() > 2
    key = list(a.columns)
    pd.testing.assert_frame_equal(
        a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    )
    with pytest.raises(queries.QueryError):
        queries.run_rows(demo_con, query.name, **params, unknown=1)


@pytest.mark.parametrize("query", ALL, ids=[q.name for q in ALL])
def test_a_query_of_several_rows_states_their_order(query: queries.NamedQuery, demo_con, demo_ctx):
    """Readers run with preserve_insertion_order off (alliance/db.py, reader_config): a result
    without a final ORDER BY may come in any order, so only single-row queries may leave it out."""
    body = "\n".join(line for line in query.sql.splitlines() if not line.lstrip().startswith("--"))
    tail = body[body.rfind("\nselect") :].lower()  # the final statement, at column 0
    if "order by" in tail:
        return
    params = {name: _value(name, demo_ctx) for name in query.parameters}
    assert len(queries.run(demo_con, query.name, **params)) <= 1, query.name
