"""Issue 19 on the Alliance profile: all sites minus the other sites (each its own address, a
filter on race/ethnicity and gender) must not give a small site group's exact number of
episodes; the same cell shows the same value whichever grouping or filter reaches it; no key
column and no exact count leaves the page. Ground truth from the exact facts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import re

import pytest

from alliance import queries
from alliance.filters import Filters, add_months
from alliance.metrics import profile as profile_metrics
from alliance.panel import Context
from alliance.settings import Settings
from alliance.views import profile

START, END = dt.date(2025, 11, 1), dt.date(2026, 10, 1)
RACES = [
    None,
    "American Indian or Alaska Native",
    "Native Hawaiian or Pacific Islander",
    "Multiracial",
    "unknown",
    "Asian",
    "Black or African American",
]
GENDERS = [None, "female", "male"]
AGES = [None, "18-25", "26-44", "45-64", "65+"]


PERIODS = [
    (START, END),
    (dt.date(2023, 11, 1), END),
    (dt.date(2024, 11, 1), dt.date(2025, 10, 1)),
    (dt.date(2026, 2, 1), END),
]


def _ctx(con, first=START, last=END, **filters) -> Context:
    return Context(
        con=con, filters=Filters(first_month=first, last_month=last, **filters), settings=Settings()
    )


def _tile_episodes(con, **filters) -> dict[str, int | None]:
    """The clinic tiles' episodes per dimension as shown ('n = … episodes'), None if withheld."""
    ctx = _ctx(con, **filters)
    clinic = profile_metrics.dimension_scores(ctx, "clinic")
    if clinic.empty:
        return {}
    out = {}
    for t in profile._tiles(ctx, clinic, clinic.iloc[:0]):
        m = re.search(r"n = ([\d,]+) episodes", t.n_text)
        out[t.key] = None if t.withheld or not m else int(m.group(1).replace(",", ""))
    return out


def _truth(con, site, race, gender, age, first=START, last=END) -> tuple[int, int]:
    """Episodes with the 'heard' item and their distinct clients, from the sessions."""
    row = con.execute(
        """
        select count(distinct episode_id), count(distinct client_id) from session_facts
        where session_date >= $f and session_date < $t and srs_relationship is not null
          and ($site is null or site = $site) and ($race is null or race_ethnicity = $race)
          and ($gender is null or gender = $gender) and ($age is null or age_band = $age)
        """,
        {
            "f": first,
            "t": add_months(last, 1),
            "site": site,
            "race": race,
            "gender": gender,
            "age": age,
        },
    ).fetchone()
    return int(row[0]), int(row[1])


def site_attacks(con) -> list[dict]:
    sites = [r[0] for r in con.execute("select name from sites order by 1").fetchall()]
    found = []
    for (first, last), race, gender, age in itertools.product(PERIODS, RACES, GENDERS, AGES):
        f = {"first": first, "last": last, "race_ethnicity": race, "gender": gender}
        f["age_band"] = age
        p = (first, last)
        whole = _tile_episodes(con, **f).get("dim_heard")
        if whole is None:
            continue
        # a site without item scores here shows nothing to subtract: 0
        per_site = {s: _tile_episodes(con, site=s, **f).get("dim_heard", 0) for s in sites}
        for target in sites:
            episodes, clients = _truth(con, target, race, gender, age, *p)
            others = [per_site[s] for s in sites if s != target]
            if not 0 < clients < 11 or any(o is None for o in others):
                continue
            exact_others = sum(
                _truth(con, s, race, gender, age, *p)[0] for s in sites if s != target
            )
            found.append(
                {
                    "case": (target, race, gender, age, first),
                    "truth": episodes,
                    "exact": _truth(con, None, race, gender, age, *p)[0] - exact_others,
                    "shown": whole - sum(others),
                }
            )
    return found


@pytest.fixture(scope="module")
def attacks(demo_con):
    return site_attacks(demo_con)


def test_all_sites_minus_the_others_recovers_no_more_than_chance(attacks) -> None:
    assert len(attacks) >= 10, "too few small site groups to judge the attack"
    assert all(a["exact"] == a["truth"] for a in attacks)  # the attack works on exact figures
    hits = sum(a["shown"] == a["truth"] for a in attacks)
    assert hits / len(attacks) <= 0.35, (hits, len(attacks))


def test_the_same_cell_through_two_paths_shows_the_same_value(demo_con, demo_ctx) -> None:
    """A site's row in the 'by site' panel and the clinic tiles of the page filtered to that
    site are the same records: the same protected episodes and mean."""
    view = profile.build(demo_ctx, "where")
    by_site = next(p for p in view.panels if p.key == "by_site").data
    compared = 0
    for site in sorted(set(by_site["site"]) - {"Whole clinic"}):
        row = by_site[
            (by_site["site"] == site) & (by_site["dimension"] == "Felt heard and respected")
        ]
        if row["suppressed"].iloc[0]:
            continue
        ctx = dataclasses.replace(
            demo_ctx, filters=dataclasses.replace(demo_ctx.filters, site=site)
        )
        tiles = {t.key: t for t in profile.build(ctx, "where").tiles}
        assert tiles["dim_heard"].value == pytest.approx(row["mean_score"].iloc[0], abs=1e-12)
        assert f"n = {int(row['episodes'].iloc[0]):,} episodes" in tiles["dim_heard"].n_text
        compared += 1
    assert compared >= 3


def test_no_key_and_no_exact_count_leaves_the_page(demo_con, demo_ctx) -> None:
    view = profile.build(demo_ctx, None)
    exact = queries.run(
        demo_con,
        "profile_dimensions",
        **demo_ctx.params(),
        alliance="srs",
        groupings=["site", "program", "month"],
    )
    for panel in view.panels:
        if panel.data is None:
            continue
        assert not any(c.endswith("_cellkey") for c in panel.data.columns), panel.key
        if panel.figure is not None:
            assert "cellkey" not in json.dumps(panel.figure.to_plotly_json(), default=str)
    by_month = next(p for p in view.panels if p.key == "by_month").data
    shown = by_month[~by_month["suppressed"]]
    months = exact[exact["grouping"] == "month"].set_index(["unit", "dimension"])
    want = months.loc[list(zip(shown["month"], _dims(shown["dimension"]), strict=True))]
    # the counts carry their cell's noise: most differ from the exact ones
    assert (shown["episodes"].to_numpy() == want["episodes"].to_numpy()).mean() < 0.6
    assert (shown["mean_score"].to_numpy() != want["mean_score"].to_numpy()).all()


def _dims(labels):
    back = {v: k for k, v in profile_metrics.LABELS.items()}
    return [back[x] for x in labels]
