"""Issue 19, finding 1: two Overview addresses one month apart must not give a small group's
exact figures by subtraction; the same cell asked for through different filters shows the same
protected value. Ground truth comes from the exact facts (trusted, like `summary`)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from alliance.filters import Filters, add_months
from alliance.metrics import overview as overview_metrics
from alliance.panel import Context
from alliance.settings import Settings
from alliance.views import overview

START = dt.date(2025, 11, 1)
LAST_MONTHS = [dt.date(2026, m, 1) for m in range(1, 10)]
RACES = [
    None,
    "American Indian or Alaska Native",
    "Native Hawaiian or Pacific Islander",
    "Multiracial",
    "unknown",
    "Asian",
]


def _ctx(con, **filters) -> Context:
    return Context(con=con, filters=Filters(**filters), settings=Settings())


def _tiles(con, **filters) -> dict:
    ctx = _ctx(con, **filters)
    now = overview_metrics.headline(ctx)
    before = overview_metrics.headline(ctx, ctx.filters.previous_period())
    tiles = {t.key: t for t in overview._tiles(ctx, now, before)}
    shown, _ = overview_metrics.protected_headline(ctx, now)
    return {"now": now, "tiles": tiles, "shown": shown}


def _truth(con, month: dt.date, site: str | None, race: str | None) -> tuple[int, int]:
    """Sessions and distinct clients of one month for one group, from the exact facts."""
    row = con.execute(
        """
        select count(*), count(distinct client_id) from session_facts
        where month = $month and ($site is null or site = $site)
          and ($race is null or race_ethnicity = $race)
        """,
        {"month": month, "site": site, "race": race},
    ).fetchone()
    return int(row[0]), int(row[1])


def small_group_attacks(con, races=RACES, last_months=LAST_MONTHS) -> list[dict]:
    """Every (site, race, month) whose month group has 1 .. k-1 clients while both periods'
    Sessions tiles are shown: the two tiles' difference as shown, the same with exact figures,
    and the truth."""
    sites = [None, *(r[0] for r in con.execute("select name from sites order by 1").fetchall())]
    found = []
    for site, race, last in itertools.product(sites, races, last_months):
        sessions, clients = _truth(con, add_months(last, 1), site, race)
        if not 0 < clients < 11:
            continue
        a = _tiles(con, first_month=START, last_month=last, site=site, race_ethnicity=race)
        b = _tiles(
            con, first_month=START, last_month=add_months(last, 1), site=site, race_ethnicity=race
        )
        if a["tiles"]["sessions"].withheld or b["tiles"]["sessions"].withheld:
            continue
        found.append(
            {
                "site": site,
                "race": race,
                "last": last,
                "exact": b["now"]["sessions"] - a["now"]["sessions"],
                "shown": b["tiles"]["sessions"].value - a["tiles"]["sessions"].value,
                "truth": sessions,
            }
        )
    return found


@pytest.fixture(scope="module")
def attacks(demo_con):
    return small_group_attacks(demo_con)


def test_month_differencing_on_the_overview_recovers_no_more_than_chance(attacks) -> None:
    assert len(attacks) >= 30, "too few small groups to judge the attack"
    # the attack works on exact figures: this is what the page showed before protection
    assert all(a["exact"] == a["truth"] for a in attacks)
    hits = sum(a["shown"] == a["truth"] for a in attacks)
    # two independent noises uniform on -2..2 cancel with probability 1/5
    assert hits / len(attacks) <= 0.35, (hits, len(attacks))


def test_the_same_cell_through_different_periods_shows_the_same_value(demo_con) -> None:
    """A month's dropout row is the same cell in a 12-month and a 6-month view, and the
    dropout tile of that one month is the same cell again."""
    month = dt.date(2026, 8, 1)

    def trend(ctx: Context):
        return overview._dropout_trend(ctx, overview_metrics.headline(ctx)).data.set_index("month")

    long = trend(_ctx(demo_con, first_month=START, last_month=dt.date(2026, 10, 1)))
    short = trend(_ctx(demo_con, first_month=dt.date(2026, 5, 1), last_month=month))
    stamp = long.index[long.index.date == month][0] if hasattr(long.index, "date") else month
    row = long.loc[stamp]
    assert short.loc[stamp, ["ended", "dropouts", "dropout_rate"]].tolist() == (
        row[["ended", "dropouts", "dropout_rate"]].tolist()
    )
    one = _tiles(demo_con, first_month=month, last_month=month)
    assert one["tiles"]["dropout_rate"].value == pytest.approx(row["dropout_rate"], abs=1e-12)
    assert one["shown"]["ended"] == row["ended"]
    # and the shown figures are not the exact ones
    exact = one["now"]
    assert (one["shown"]["ended"], one["shown"]["dropouts"]) != (exact["ended"], exact["dropouts"])


def test_protection_cost_is_measured_and_within_the_noise_bound(demo_ctx) -> None:
    """`protection-cost`: every shown figure moved, if at all, by no more than the noise allows
    (a rate x/n whose counts each move by at most 2: |change| <= (2 + 2 x/n) / (n - 2))."""
    from alliance import protection_cost

    result = protection_cost.measure(demo_ctx)
    assert set(result) == {"clinic", "site", "therapist"}
    clinic = result["clinic"]["dropout_rate"]
    assert clinic["shown"] == 1 and 0 < clinic["max_abs"] < 0.2  # points, on ~2,260 endings
    therapists = result["therapist"]["dropout_rate"]
    assert therapists["shown"] >= 5 and therapists["shown"] + therapists["withheld"] <= 40
    # the numerator rule withholds the dropout rate of therapists with 1-10 dropouts
    assert therapists["withheld"] > 0
    # a therapist's rate rests on >= 22 endings (11 dropouts and 11 others): at most 20 points
    assert therapists["max_abs"] <= 100 * 4 / 20
