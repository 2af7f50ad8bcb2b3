"""Derived facts (alliance/schema/derive.sql) on a hand-built clinic with hand-computed answers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from alliance import db, queries
from alliance.filters import Filters
from alliance.settings import Settings

D = dt.date


def build_fixture(path: Path) -> None:
    """Four episodes of three clients (see the comments for the hand-computed answers)."""
    with db.writer(path, fresh=True) as con:
        con.execute("insert into sites values (1, 'North'), (2, 'South')")
        con.execute("insert into programs values (1, 'Adult outpatient')")
        con.execute("insert into therapists values (1, 'p1', 'T-AAAA'), (2, 'p2', 'T-BBBB')")
        con.execute("insert into clients values (1, 'c1'), (2, 'c2'), (3, 'c3')")
        con.execute(
            """
            insert into episodes values
              (10, 1, 'e10', 1, '26-44', 'female', 'White', 'planned'),
              (20, 2, 'e20', 1, '18-25', 'male', 'Asian', 'dropout'),
              (30, 3, 'e30', 1, '45-64', 'unknown', 'unknown', null),
              (40, 1, 'e40', 1, '26-44', 'female', 'White', 'other')
            """
        )
        rows = [
            # id, episode, therapist, site, date, number, srs_total, items(4), ors, phq9
            (1, 10, 1, 1, D(2025, 1, 6), None, 30.0, None, 15.0, 14),
            (2, 10, 1, 1, D(2025, 1, 13), None, None, None, 18.0, None),
            (3, 10, 1, 1, D(2025, 1, 20), None, 34.0, None, None, None),
            (4, 10, 2, 1, D(2025, 1, 27), None, 38.0, None, 26.0, 7),
            (5, 20, 2, 2, D(2025, 2, 3), None, 36.0, None, 20.0, None),
            (6, 20, 2, 2, D(2025, 2, 10), None, None, (9.0, 8.0, 8.0, 8.5), None, None),
            (7, 30, 1, 1, D(2025, 3, 1), None, 40.0, None, 30.0, None),
            (8, 40, 1, 1, D(2025, 4, 7), 2, 39.0, None, 22.0, None),
            (9, 40, 1, 1, D(2025, 4, 7), 1, 35.0, None, 20.0, None),
        ]
        for sid, ep, th, site, day, num, srs, items, ors, phq in rows:
            rel, goals, appr, overall = items or (None, None, None, None)
            con.execute(
                """
                insert into sessions (session_id, episode_id, therapist_id, site_id,
                    session_date, session_number, srs_total, srs_relationship, srs_goals,
                    srs_approach, srs_overall, ors_total, phq9_total)
                values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [sid, ep, th, site, day, num, srs, rel, goals, appr, overall, ors, phq],
            )
        # WAI-SR items on session 1: Task items 5, Bond items 4, Goal items 3 -> mean 4.0
        con.execute(
            """
            update sessions set wai_1 = 5, wai_2 = 5, wai_10 = 5, wai_12 = 5,
                wai_3 = 4, wai_5 = 4, wai_7 = 4, wai_9 = 4,
                wai_4 = 3, wai_6 = 3, wai_8 = 3, wai_11 = 3
            where session_id = 1
            """
        )
        db.set_meta(con, "dataset_kind", "clinic")
        db.rebuild_facts(con)


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("facts") / "fixture.duckdb"
    build_fixture(path)
    c = db.open_read_only(path)
    yield c
    c.close()


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return con.execute(sql).fetchone()


def test_session_order_prev_srs_and_srs_from_items(con):
    # episode 40: same date, session number 1 comes before 2
    assert con.execute(
        "select session_id, session_index, prev_srs from session_facts "
        "where episode_id = 40 order by session_index"
    ).fetchall() == [(9, 1, None), (8, 2, 35.0)]
    # episode 10: prev_srs skips the session without an SRS
    assert con.execute(
        "select session_index, srs, prev_srs from session_facts where episode_id = 10 "
        "order by session_index"
    ).fetchall() == [(1, 30.0, None), (2, None, None), (3, 34.0, 30.0), (4, 38.0, 34.0)]
    # SRS total from items: 9 + 8 + 8 + 8.5 = 33.5
    assert one(con, "select srs from session_facts where session_id = 6") == (33.5,)


def test_wai_means(con):
    assert one(
        con,
        "select wai, wai_task_mean, wai_bond_mean, wai_goal_mean from session_facts "
        "where session_id = 1",
    ) == (4.0, 5.0, 4.0, 3.0)


def test_episode_facts_by_hand(con):
    rows = {
        r[0]: r[1:]
        for r in con.execute(
            "select episode_id, early_srs, ended, dropout, end_date, n_sessions, therapist, "
            "ors_first, ors_last, ors_n from episode_facts"
        ).fetchall()
    }
    # early SRS of episode 10: first three SRS = 30, 34, 38 -> 34.0; main therapist T-AAAA (3 of 4)
    assert rows[10] == (34.0, True, False, D(2025, 1, 27), 4, "T-AAAA", 15.0, 26.0, 3)
    # episode 20: (36 + 33.5) / 2 = 34.75, dropout, one ORS only
    assert rows[20] == (34.75, True, True, D(2025, 2, 10), 2, "T-BBBB", 20.0, 20.0, 1)
    # episode 30 is open (no end reason)
    assert rows[30][1:3] == (False, None)
    # episode 40 ended 'other': ended, not dropout; ORS 20 -> 22
    assert rows[40][1:3] == (True, False) and rows[40][6:] == (20.0, 22.0, 2)


def test_main_therapist_on_a_tie_is_the_one_seen_first(tmp_path):
    """Two sessions each with two therapists: the episode goes to the one who held the earliest
    session, whichever comes first in the alphabet. (DuckDB's mode() happens to agree on this
    small table; on the 22 tied episodes of the clinic with transfers it did not:
    tests/test_bench.py::test_derived_episodes_equal_episode_facts.)"""
    path = tmp_path / "ties.duckdb"
    with db.writer(path, fresh=True) as w:
        w.execute("insert into sites values (1, 'North')")
        w.execute("insert into therapists values (1, 'p1', 'T-AAAA'), (2, 'p2', 'T-BBBB')")
        w.execute("insert into clients values (1, 'c1'), (2, 'c2')")
        w.execute(
            "insert into episodes (episode_id, client_id, pseudonym, end_reason) values "
            "(1, 1, 'e1', 'planned'), (2, 2, 'e2', 'planned')"
        )
        sessions = [  # id, episode, therapist, date
            (1, 1, 2, D(2025, 1, 6)),
            (2, 1, 1, D(2025, 1, 13)),
            (3, 1, 2, D(2025, 1, 20)),
            (4, 1, 1, D(2025, 1, 27)),
            (5, 2, 1, D(2025, 1, 6)),
            (6, 2, 2, D(2025, 1, 13)),
            (7, 2, 2, D(2025, 1, 20)),
            (8, 2, 1, D(2025, 1, 27)),
        ]
        for sid, ep, th, day in sessions:
            w.execute(
                "insert into sessions (session_id, episode_id, therapist_id, site_id, "
                "session_date, srs_total) values (?, ?, ?, 1, ?, 36.0)",
                [sid, ep, th, day],
            )
        db.rebuild_facts(w)
    with db.open_read_only(path) as c:
        got = c.execute("select episode_id, therapist from episode_facts order by 1").fetchall()
    assert got == [(1, "T-BBBB"), (2, "T-AAAA")]


def test_outcome_improvement_is_positive_when_better(con):
    got = con.execute(
        "select measure, first_score, last_score, improvement from episode_outcomes "
        "where episode_id = 10 order by measure"
    ).fetchall()
    # ORS 15 -> 26: +11 (higher = better); PHQ-9 14 -> 7: +7 (higher = worse)
    assert got == [("ors", 15.0, 26.0, 11.0), ("phq9", 14.0, 7.0, 7.0)]


def test_overview_queries_by_hand(con):
    f = Filters(first_month=D(2025, 1, 1), last_month=D(2025, 12, 1))
    s = queries.run(con, "overview_sessions", **f.sql_params(), srs_cutoff=36.0).iloc[0]
    # SRS values: 30, 34, 38, 36, 33.5, 40, 39, 35 -> 8 ratings, below 36: 30, 34, 33.5, 35
    assert s["sessions"] == 9 and s["srs_n"] == 8 and s["srs_below"] == 4
    assert s["mean_srs"] == pytest.approx((30 + 34 + 38 + 36 + 33.5 + 40 + 39 + 35) / 8)
    assert s["n_clients"] == 3 and s["active_episodes"] == 4
    params = Settings().outcome_params("ors")
    e = queries.run(con, "overview_episodes", **f.sql_params(), **params).iloc[0]
    # ended: 10, 20, 40 (30 is open); one dropout
    assert (e["ended"], e["dropouts"]) == (3, 1)
    assert e["dropout_rate"] == pytest.approx(1 / 3)
    # ORS with >= 2 administrations: episodes 10 (+11) and 40 (+2); reliable (>= 5): 10 only
    assert (e["outcome_n"], e["reliable_improvement"], e["reliable_deterioration"]) == (2, 1, 0)
    # clinical (< 25) at start: both (15, 20); recovered (>= 25 at end): 10 only
    assert (e["clinical_n"], e["recovered"], e["reliably_recovered"]) == (2, 1, 1)


def test_filters_and_site_restriction_apply(con):
    f = Filters(first_month=D(2025, 1, 1), last_month=D(2025, 12, 1), site="South")
    s = queries.run(con, "overview_sessions", **f.sql_params(), srs_cutoff=36.0).iloc[0]
    assert s["sessions"] == 2
    allowed = Filters(first_month=D(2025, 1, 1), last_month=D(2025, 12, 1))
    s = queries.run(
        con, "overview_sessions", **allowed.sql_params(["North"]), srs_cutoff=36.0
    ).iloc[0]
    assert s["sessions"] == 7
    # a period that only covers February: ended-episode metrics use the end date
    feb = Filters(first_month=D(2025, 2, 1), last_month=D(2025, 2, 1))
    e = queries.run(
        con, "overview_episodes", **feb.sql_params(), **Settings().outcome_params("ors")
    ).iloc[0]
    assert (e["ended"], e["dropouts"]) == (1, 1)


def test_unknown_or_missing_parameters_are_errors(con):
    f = Filters(first_month=D(2025, 1, 1), last_month=D(2025, 12, 1))
    with pytest.raises(queries.QueryError, match="missing"):
        queries.run(con, "overview_sessions", **f.sql_params())
    with pytest.raises(queries.QueryError, match="unknown"):
        queries.run(con, "overview_sessions", **f.sql_params(), srs_cutoff=36.0, extra=1)


def test_reliable_change_threshold_is_exact_despite_floating_point(tmp_path):
    """ORS 3.2 -> 8.2 is an improvement of exactly 5.0: reliable (>= 5), not 4.9999."""
    path = tmp_path / "fp.duckdb"
    with db.writer(path, fresh=True) as w:
        w.execute("insert into sites values (1, 'North')")
        w.execute("insert into therapists values (1, 'p1', 'T-AAAA')")
        w.execute("insert into clients values (1, 'c1')")
        w.execute(
            "insert into episodes values (1, 1, 'e1', null, 'unknown', 'unknown', 'unknown', 'planned')"
        )
        w.execute(
            "insert into sessions (session_id, episode_id, therapist_id, site_id, session_date, "
            "ors_total) values (1, 1, 1, 1, '2025-01-06', 3.2), (2, 1, 1, 1, '2025-01-13', 8.2)"
        )
        db.rebuild_facts(w)
    con = db.open_read_only(path)
    f = Filters(first_month=D(2025, 1, 1), last_month=D(2025, 1, 1))
    e = queries.run(con, "overview_episodes", **f.sql_params(), **Settings().outcome_params("ors"))
    assert e.iloc[0]["reliable_improvement"] == 1
    con.close()


def test_a_reader_sees_a_file_swapped_in_by_a_writer(tmp_path):
    """The dashboard process reopens after an import from another process (db.writer swap)."""
    path = tmp_path / "swap.duckdb"
    build_fixture(path)
    first = db.open_read_only(path)
    before = first.execute("select count(*) from sessions").fetchone()[0]
    with db.writer(path) as w:
        w.execute("delete from sessions where session_id = 1")
        db.rebuild_facts(w)
    second = db.open_read_only(path)
    assert second.execute("select count(*) from sessions").fetchone()[0] == before - 1
    assert first.execute("select count(*) from sessions").fetchone()[0] == before
    first.close()
    second.close()
