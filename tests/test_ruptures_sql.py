"""Rupture and repair detection (queries/rupture_*.sql) on hand-built episodes.

Every answer below is worked out by hand from the SRS sequences in `EPISODES`, following
metrics.md: rupture = SRS total >= threshold below the episode's previous SRS (sessions without an
SRS are skipped); repaired = an SRS at or above that previous SRS within the next `window` SRS
administrations; unrepaired = the window passed, or the episode ended, without one; open = an
ongoing episode whose window is not over (left out of the repair rate). Each episode has its own
therapist, so grouping by therapist gives per-episode counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from alliance import db, queries
from alliance.filters import Filters
from alliance.metrics import ruptures as rupture_metrics
from alliance.panel import Context
from alliance.settings import Settings
from alliance.views import ruptures

D = dt.date
ITEMS_39 = (9.8, 9.7, 9.7, 9.8)  # relationship, goals, approach, overall: sum 39.0
ITEMS_37 = (9.1, 9.3, 9.2, 9.4)  # sum 37.0 (as a floating-point sum of items)

# episode id -> (end reason, [SRS per session: a total, a 4-tuple of items, or None = no SRS])
EPISODES: dict[int, tuple[str | None, list]] = {
    # rupture 38 -> 35 (drop 3), repaired in the second window slot (38)
    1: ("planned", [38.0, 35.0, 36.0, 38.0]),
    # rupture at the last session of an ended episode: unrepaired
    2: ("dropout", [37.0, 37.0, 34.0]),
    # ongoing, rupture 36 -> 33, one SRS since (34 < 36): window still open
    3: (None, [36.0, 33.0, 34.0]),
    # SRS missing between sessions: prev_srs of 36 is 38 (drop exactly 2 = rupture);
    # the next SRS administrations are 37 then 38: repaired in the second slot
    4: ("planned", [38.0, None, 36.0, None, 37.0, 38.0]),
    # a drop of 1.9: no rupture
    5: ("planned", [38.0, 36.1]),
    # window of 2 passes (36, 37 < 38): unrepaired; with a window of 3 the 38 repairs it
    6: ("other", [38.0, 35.0, 36.0, 37.0, 38.0]),
    # ongoing, window of 2 passed (36, 37): unrepaired; with a window of 3 still open
    7: (None, [38.0, 35.0, 36.0, 37.0]),
    # SRS from items only: 39.0 -> 37.0 (drop exactly 2 as a float sum), repaired by 39.0
    8: ("planned", [ITEMS_39, ITEMS_37, ITEMS_39]),
}
START = D(2026, 1, 5)  # every episode: weekly sessions from this Monday
JAN, MAR = D(2026, 1, 1), D(2026, 3, 1)
ORS = {1: (20.0, 30.0), 4: (18.0, 24.0), 2: (22.0, 20.0), 6: (15.0, 16.0)}  # first, last


def build_tiny(path: Path) -> None:
    """The episodes above, one client and one therapist each, at two sites."""
    with db.writer(path, fresh=True) as con:
        con.execute("insert into sites values (1, 'North'), (2, 'South')")
        con.execute("insert into programs values (1, 'Adult outpatient')")
        for ep, (end, seq) in EPISODES.items():
            con.execute("insert into therapists values (?, ?, ?)", [ep, f"p{ep}", f"T-{ep:04d}"])
            con.execute("insert into clients values (?, ?)", [ep, f"c{ep}"])
            con.execute(
                "insert into episodes values (?, ?, ?, 1, '26-44', 'female', 'White', ?)",
                [ep, ep, f"e{ep}", end],
            )
            for i, srs in enumerate(seq):
                items = srs if isinstance(srs, tuple) else (None, None, None, None)
                total = srs if isinstance(srs, float) else None
                ors = None
                if ep in ORS and i in (0, len(seq) - 1):
                    ors = ORS[ep][0 if i == 0 else 1]
                con.execute(
                    """
                    insert into sessions (session_id, episode_id, therapist_id, site_id,
                        session_date, session_number, srs_total, srs_relationship, srs_goals,
                        srs_approach, srs_overall, ors_total)
                    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        ep * 100 + i,
                        ep,
                        ep,
                        1 if ep % 2 else 2,
                        START + dt.timedelta(days=7 * i),
                        i + 1,
                        total,
                        *items,
                        ors,
                    ],
                )
        db.set_meta(con, "dataset_kind", "clinic")
        db.rebuild_facts(con)


@pytest.fixture(scope="module")
def tiny_con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("ruptures") / "tiny.duckdb"
    build_tiny(path)
    con = db.open_read_only(path)
    yield con
    con.close()


def tiny_ctx(con, *, first=JAN, last=MAR, **settings) -> Context:
    return Context(
        con=con,
        filters=Filters(first_month=first, last_month=last),
        settings=Settings(**settings),
    )


def per_episode(ctx: Context) -> dict[int, dict]:
    df = rupture_metrics.rupture_counts(ctx, "therapist")
    return {
        int(u.removeprefix("T-")): row
        for u, row in zip(df["unit"], df.to_dict("records"), strict=True)
    }


def fates(ctx: Context) -> dict[int, str | None]:
    """Each episode's single rupture fate ('repaired', 'unrepaired', 'open') or None."""
    out = {}
    for ep, row in per_episode(ctx).items():
        assert row["ruptures"] <= 1
        out[ep] = next((f for f in ("repaired", "unrepaired", "open") if row[f]), None)
    return out


def test_fates_with_the_default_settings(tiny_con):
    assert fates(tiny_ctx(tiny_con)) == {
        1: "repaired",  # repaired in the second window slot
        2: "unrepaired",  # rupture at the last session of an ended episode
        3: "open",  # ongoing, window not over
        4: "repaired",  # sessions without SRS are skipped
        5: None,  # drop of 1.9 < 2
        6: "unrepaired",  # window passed
        7: "unrepaired",  # ongoing but window passed
        8: "repaired",  # item sums, drop of exactly 2
    }


def test_denominators_count_administrations_with_a_previous_srs(tiny_con):
    rows = per_episode(tiny_ctx(tiny_con))
    # SRS administrations minus the first of each episode
    assert {ep: r["with_previous"] for ep, r in rows.items()} == {
        1: 3, 2: 2, 3: 2, 4: 3, 5: 1, 6: 4, 7: 3, 8: 2,
    }  # fmt: skip
    assert {ep: r["administrations"] for ep, r in rows.items()} == {
        1: 4, 2: 3, 3: 3, 4: 4, 5: 2, 6: 5, 7: 4, 8: 3,
    }  # fmt: skip


def test_summary_matches_the_definitions(tiny_con):
    s = rupture_metrics.rupture_summary(tiny_ctx(tiny_con))
    # 7 ruptures / 20 administrations with a previous SRS; repaired 3 of 6 with a known fate
    assert s["ruptures"] == 7 and s["with_previous"] == 20
    assert s["rupture_rate_per_100"] == pytest.approx(35.0)
    assert (s["repaired"], s["unrepaired"], s["open"]) == (3, 3, 1)
    assert s["repair_rate"] == pytest.approx(0.5)
    # Wilson 95% for 3/6: centre (3 + 1.92)/(6 + 3.84), half 1.96/9.84 * sqrt(6*.25 + .96)
    z = 1.959963984540054
    centre = (3 + z * z / 2) / (6 + z * z)
    half = z / (6 + z * z) * (6 * 0.25 + z * z / 4) ** 0.5
    assert s["repair_rate_ci"] == pytest.approx([centre - half, centre + half])
    assert s["n_clients"] == 8 and s["fate_clients"] == 6
    assert (s["rupture_threshold"], s["repair_window"]) == (2.0, 2)


def test_window_of_one(tiny_con):
    # only the next SRS counts: 1 (36 < 38), 3 (34 < 36), 4 (37 < 38) become unrepaired
    assert fates(tiny_ctx(tiny_con, repair_window=1)) == {
        1: "unrepaired",
        2: "unrepaired",
        3: "unrepaired",
        4: "unrepaired",
        5: None,
        6: "unrepaired",
        7: "unrepaired",
        8: "repaired",
    }


def test_window_of_three(tiny_con):
    assert fates(tiny_ctx(tiny_con, repair_window=3)) == {
        1: "repaired",
        2: "unrepaired",
        3: "open",
        4: "repaired",
        5: None,
        6: "repaired",  # 38 in the third slot
        7: "open",  # ongoing, only two SRS since
        8: "repaired",
    }


def test_threshold_three_drops_the_two_point_ruptures(tiny_con):
    f = fates(tiny_ctx(tiny_con, rupture_threshold=3.0))
    assert f[4] is None and f[8] is None  # drops of exactly 2
    assert sum(v is not None for v in f.values()) == 5


def test_the_window_runs_past_the_end_of_the_period(tiny_con):
    # January only: episode 6's rupture (Jan 12) is repaired on Feb 2 with a window of 3
    ctx = tiny_ctx(tiny_con, first=D(2026, 1, 1), last=D(2026, 1, 1), repair_window=3)
    rows = per_episode(ctx)
    assert rows[6]["repaired"] == 1 and rows[6]["with_previous"] == 3  # Jan 12, 19, 26
    # episode 4's rupture is on Jan 19 (third session), repaired on Feb 9
    assert rows[4]["repaired"] == 1


def test_declared_columns_match_the_results(tiny_con):
    ctx = tiny_ctx(tiny_con)
    df = rupture_metrics.rupture_table(ctx)
    assert list(df.columns) == list(queries.load("rupture_rates").columns)
    assert set(df["grouping"]) == {"clinic", "month", "site", "therapist"}


def test_grouping_by_month_and_site_adds_up(tiny_con):
    ctx = tiny_ctx(tiny_con)
    clinic = rupture_metrics.rupture_counts(ctx, "clinic").iloc[0]
    for unit in ("month", "site"):
        df = rupture_metrics.rupture_counts(ctx, unit)
        for col in ("with_previous", "ruptures", "repaired", "unrepaired", "open"):
            assert df[col].sum() == clinic[col], (unit, col)
    months = rupture_metrics.rupture_counts(ctx, "month").set_index("unit")
    # ruptures on Jan 12 (1, 3, 6, 7, 8) and Jan 19 (2, 4)
    assert months.loc["2026-01-01", "ruptures"] == 7


def test_filters_and_role_restriction_apply(tiny_con):
    ctx = tiny_ctx(tiny_con)
    south = dataclasses.replace(ctx, filters=dataclasses.replace(ctx.filters, site="South"))
    # site 2 = even episodes 2, 4, 6, 8: ruptures 4, repaired 2 (4, 8), unrepaired 2 (2, 6)
    s = rupture_metrics.rupture_summary(south)
    assert (s["ruptures"], s["repaired"], s["unrepaired"], s["open"]) == (4, 2, 2, 0)
    north_only = dataclasses.replace(ctx, allowed_sites=["North"])
    s = rupture_metrics.rupture_summary(north_only)
    assert (s["ruptures"], s["repaired"], s["unrepaired"], s["open"]) == (3, 1, 1, 1)


def test_followup_groups_ended_episodes_by_their_ruptures(tiny_con):
    ctx = tiny_ctx(tiny_con)
    df = queries.run(
        tiny_con,
        "rupture_followup",
        **ctx.params(),
        measure="ors",
        rupture_threshold=2.0,
        repair_window=2,
    ).set_index("rupture_group")
    # ended: 1, 4, 8 repaired; 2 (dropout), 6 unrepaired; 5 none. 3 and 7 are ongoing.
    assert df.loc["repaired", "episodes"] == 3 and df.loc["repaired", "dropouts"] == 0
    assert df.loc["unrepaired", "episodes"] == 2 and df.loc["unrepaired", "dropouts"] == 1
    assert df.loc["none", "episodes"] == 1
    assert df.loc["unrepaired", "dropout_rate"] == pytest.approx(0.5)
    # ORS: repaired 1 (+10), 4 (+6) -> 8.0; unrepaired 2 (-2), 6 (+1) -> -0.5
    assert df.loc["repaired", "mean_improvement"] == pytest.approx(8.0)
    assert df.loc["repaired", "outcome_n"] == 2
    assert df.loc["unrepaired", "mean_improvement"] == pytest.approx(-0.5)
    # sessions: repaired (4 + 6 + 3) / 3, unrepaired (3 + 5) / 2
    assert df.loc["repaired", "mean_sessions"] == pytest.approx(13 / 3)
    assert df.loc["unrepaired", "mean_sessions"] == pytest.approx(4.0)


def test_items_show_which_part_dropped(tiny_con):
    ctx = tiny_ctx(tiny_con)
    df = queries.run(tiny_con, "rupture_items", **ctx.params(), rupture_threshold=2.0).set_index(
        "dimension"
    )
    # only episode 8 has items: 9.8-9.1, 9.7-9.3, 9.7-9.2, 9.8-9.4
    assert df["ruptures"].tolist() == [1, 1, 1, 1]
    assert df.loc["heard", "mean_drop"] == pytest.approx(0.7)
    assert df.loc["goals", "mean_drop"] == pytest.approx(0.4)
    assert df.loc["approach", "mean_drop"] == pytest.approx(0.5)
    assert df.loc["overall", "mean_drop"] == pytest.approx(0.4)
    assert df["largest"].to_dict() == {"approach": 0, "goals": 0, "heard": 1, "overall": 0}


def test_rupture_view_on_the_tiny_clinic_is_withheld(tiny_con):
    # 8 clients < k = 11: a notice, no numbers
    v = ruptures.build(tiny_ctx(tiny_con))
    assert v.notice and not v.panels and not v.tiles
    # with k = 5 it renders, and every chart names the settings in force
    v = ruptures.build(tiny_ctx(tiny_con, privacy_k=5, rupture_threshold=3.0, repair_window=1))
    assert v.notice is None
    for p in v.panels:
        if p.figure is not None:
            text = p.figure.layout.title.subtitle.text
            assert "≥ 3 points" in text and "next 1 SRS administration" in text, p.key


# The rupture queries read the next six SRS totals and the previous SRS items precomputed in
# session_facts (derive.sql) instead of window functions; on the demo clinic they must equal the
# window-function computation over each episode's SRS administrations, and a window of up to 6
# (the Settings page's maximum) must classify exactly as the frame max/count did.
PRECOMPUTED_CHECK = """
with
srs as (
    select
        session_id,
        episode_id,
        session_index,
        srs,
        srs_relationship,
        srs_goals,
        srs_approach,
        srs_overall,
        next_srs_1, next_srs_2, next_srs_3, next_srs_4, next_srs_5, next_srs_6,
        prev_srs_relationship, prev_srs_goals, prev_srs_approach, prev_srs_overall
    from session_facts
    where srs is not null
),
recomputed as (
    select
        *,
        lead(srs, 1) over w as r1, lead(srs, 2) over w as r2, lead(srs, 3) over w as r3,
        lead(srs, 4) over w as r4, lead(srs, 5) over w as r5, lead(srs, 6) over w as r6,
        lag(srs_relationship) over w as pr, lag(srs_goals) over w as pg,
        lag(srs_approach) over w as pa, lag(srs_overall) over w as po
    from srs
    window w as (partition by episode_id order by session_index)
)
select
    count(*) as n,
    count(*) filter (
        where next_srs_1 is not distinct from r1 and next_srs_2 is not distinct from r2
          and next_srs_3 is not distinct from r3 and next_srs_4 is not distinct from r4
          and next_srs_5 is not distinct from r5 and next_srs_6 is not distinct from r6
          and prev_srs_relationship is not distinct from pr
          and prev_srs_goals is not distinct from pg
          and prev_srs_approach is not distinct from pa
          and prev_srs_overall is not distinct from po
    ) as same
from recomputed
"""

WINDOWED_FATES = """
with
srs as (
    select episode_id, session_index, srs, prev_srs, end_reason,
        next_srs_1, next_srs_2, next_srs_3, next_srs_4, next_srs_5, next_srs_6
    from session_facts
    where srs is not null
),
framed as (
    select
        *,
        max(srs) over w as best_next,
        count(*) over w as n_next
    from srs
    window w as (
        partition by episode_id order by session_index
        rows between 1 following and $repair_window following
    )
)
select
    count(*) as n,
    count(*) filter (
        where best_next is not distinct from greatest(
                next_srs_1,
                case when $repair_window >= 2 then next_srs_2 end,
                case when $repair_window >= 3 then next_srs_3 end,
                case when $repair_window >= 4 then next_srs_4 end,
                case when $repair_window >= 5 then next_srs_5 end,
                case when $repair_window >= 6 then next_srs_6 end)
          and (n_next >= $repair_window) = (
                case $repair_window
                    when 1 then next_srs_1 when 2 then next_srs_2 when 3 then next_srs_3
                    when 4 then next_srs_4 when 5 then next_srs_5 else next_srs_6
                end is not null)
    ) as same
from framed
"""


def test_precomputed_next_and_previous_srs_match_window_functions(demo_con, tiny_con):
    for con in (demo_con, tiny_con):
        n, same = con.execute(PRECOMPUTED_CHECK).fetchone()
        assert n > 0
        assert same == n
        for window in range(1, 7):
            n, same = con.execute(WINDOWED_FATES, {"repair_window": window}).fetchone()
            assert same == n, window


@pytest.mark.parametrize("window", [1, 2, 3])
def test_clinic_only_table_is_the_clinic_row_of_the_full_table(tiny_con, demo_con, window):
    """No units (the previous period's headline) gives exactly the full table's clinic row, and
    a section's units exactly the full table's rows of those units."""
    for con, first, last in (
        (tiny_con, D(2026, 1, 1), D(2026, 2, 1)),
        (demo_con, D(2025, 11, 1), D(2026, 10, 1)),
        (demo_con, D(2026, 3, 1), D(2026, 5, 1)),
    ):
        ctx = tiny_ctx(con, first=first, last=last, repair_window=window)
        full = rupture_metrics.rupture_table(ctx)
        clinic = rupture_metrics.rupture_table(ctx, groupings=())
        assert list(clinic["grouping"]) == ["clinic"]
        want = full[full["grouping"] == "clinic"].reset_index(drop=True)
        assert int(want["with_previous"].iloc[0]) > 0
        assert clinic.reset_index(drop=True).equals(want)
        for units in rupture_metrics.SECTION_UNITS.values():
            part = rupture_metrics.rupture_table(ctx, groupings=units).reset_index(drop=True)
            want = full[full["grouping"].isin(["clinic", *units])].reset_index(drop=True)
            assert set(part["grouping"]) == {"clinic", *units}
            pd.testing.assert_frame_equal(part, want, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown groupings"):
        rupture_metrics.rupture_table(ctx, groupings=("program",))
