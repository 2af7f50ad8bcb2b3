"""The demo clinic reproduces the published figures of ../shared/demo-parameters.md, through the
same functions the pages use, and is deterministic for a seed."""

from __future__ import annotations

import datetime as dt

import pytest

from alliance import db, summary
from alliance.filters import Filters
from alliance.panel import Context
from alliance.settings import Settings


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 300k-session clinic (enough for tight intervals), full period."""
    path = tmp_path_factory.mktemp("demo300k") / "demo.duckdb"
    db.write_demo(path, sessions=300_000, seed=11)
    con = db.open_read_only(path)
    yield con
    con.close()


@pytest.fixture(scope="module")
def headline(big) -> dict:
    f = Filters(first_month=dt.date(2023, 11, 1), last_month=dt.date(2026, 10, 1))
    return summary.compute(Context(con=big, filters=f, settings=Settings()))


def test_alliance_outcome_and_dropout_links(headline):
    # Flückiger et al. 2018: r = .28 (.26-.30); Sharf et al. 2010: d = .55, OR ~1.7 per SD
    assert 0.25 <= headline["alliance_outcome_r"] <= 0.32
    assert 0.45 <= headline["alliance_dropout_d"] <= 0.68
    # (at a 20% base rate, d = .55 and OR = 1.7 per SD cannot both hold exactly: the demo sits
    # between them, d ~ .58 and OR ~ 1.65)
    assert 1.5 <= headline["dropout_or_per_sd_lower"] <= 1.9
    # Swift & Greenberg 2012: ~20% of ended episodes
    assert 0.17 <= headline["dropout_rate"] <= 0.23
    # Wampold & Brown 2005; Johns et al. 2019: therapists ~5% of outcome variance
    assert 0.025 <= headline["therapist_icc_outcome"] <= 0.09


def test_distributions_look_like_an_outpatient_clinic(big):
    e = big.execute(
        "select median(n_sessions), avg(n_sessions) from episode_facts where ended"
    ).fetchone()
    assert 5 <= e[0] <= 8 and 7.5 <= e[1] <= 12  # right-skewed session counts
    srs = big.execute(
        "select avg(srs), stddev_samp(srs), avg((srs = 40)::int) from session_facts"
    ).fetchone()
    assert 36 <= srs[0] <= 37.5 and 2.8 <= srs[1] <= 4 and srs[2] > 0.1  # ceiling at 40
    r = big.execute("select corr(srs, wai) from session_facts").fetchone()[0]
    assert 0.55 <= r <= 0.72  # SRS-WAI r ~ .57-.65
    wai = big.execute(
        "select avg(wai), avg(wai_bond_mean), avg(wai_task_mean), avg(wai_goal_mean) "
        "from session_facts"
    ).fetchone()
    assert 3.75 <= wai[0] <= 4.05 and wai[1] == max(wai[1:])  # Bond highest
    intake = dict(
        big.execute(
            "select measure, avg(first_score) from episode_outcomes group by measure"
        ).fetchall()
    )
    assert 16 <= intake["ors"] <= 20 and 13 <= intake["phq9"] <= 17 and 11 <= intake["gad7"] <= 15


def test_structure_small_group_new_site_small_caseloads(big):
    share = big.execute(
        "select avg((race_ethnicity = 'Native Hawaiian or Pacific Islander')::int) from episodes"
    ).fetchone()[0]
    assert 0 < share < 0.01
    opened = big.execute(
        "select min(session_date) from session_facts where site like 'Westbrook%'"
    ).fetchone()[0]
    assert opened >= dt.date(2026, 3, 1)
    small = big.execute(
        "select count(*) from (select therapist, count(*) n from episode_facts group by 1) "
        "where n < 30"
    ).fetchone()[0]
    assert small >= 3
    younger, older = big.execute(
        "select avg(dropout::int) filter (where age_band = '18-25'), "
        "avg(dropout::int) filter (where age_band = '45-64') from episode_facts where ended"
    ).fetchone()
    assert younger > older  # higher dropout for younger clients


def test_riverside_alliance_rises_after_training(big):
    before, after = big.execute(
        "select avg(srs) filter (where session_date < '2025-06-01'), "
        "avg(srs) filter (where session_date >= '2025-10-01') "
        "from session_facts where site = 'Riverside'"
    ).fetchone()
    assert after - before > 0.5


def test_deterministic_for_a_seed(tmp_path):
    def digest(path):
        con = db.open_read_only(path)
        try:
            return con.execute(
                "select count(*), sum(hash(episode_id, session_date, srs_total, ors_total)) "
                "from sessions"
            ).fetchone()
        finally:
            con.close()

    a, b, c = tmp_path / "a.duckdb", tmp_path / "b.duckdb", tmp_path / "c.duckdb"
    db.write_demo(a, sessions=5_000, seed=3)
    db.write_demo(b, sessions=5_000, seed=3)
    db.write_demo(c, sessions=5_000, seed=4)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_bulk_pseudonyms_equal_one_by_one() -> None:
    """The demo's bulk keyed hash (state copied) gives exactly the per-identifier hash."""
    from alliance.demo import pseudonym, pseudonyms

    raws = ["demo-0", "demo-17", "demo-123456"]
    assert pseudonyms("episode", raws) == [pseudonym("episode", r) for r in raws]
    assert pseudonyms("client", raws) != pseudonyms("episode", raws)
