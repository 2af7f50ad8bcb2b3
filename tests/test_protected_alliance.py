"""Issue 19 on the Alliance (trust) page: two periods one month apart must not give a small
group's exact SRS ratings by subtraction; the same cell asked for through two periods shows the
same protected value (and the Overview's month shows it too); no panel or figure carries a cell
key or an exact count. Ground truth comes from the exact facts (trusted, like `summary`)."""

from __future__ import annotations

import datetime as dt
import itertools
import re

import numpy as np
import pandas as pd
import pytest

from alliance import queries
from alliance.filters import Filters, add_months
from alliance.metrics import alliance as alliance_metrics
from alliance.metrics import overview as overview_metrics
from alliance.panel import Context
from alliance.settings import Settings
from alliance.views import alliance_page, overview

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
N_RATINGS = re.compile(r"n = ([\d,]+) ratings")


def _ctx(con, **filters) -> Context:
    return Context(con=con, filters=Filters(**filters), settings=Settings())


def _page_ratings(con, **filters) -> dict:
    """The exact SRS ratings and those the page's Mean SRS tile shows ("n = … ratings")."""
    ctx = _ctx(con, **filters)
    s = alliance_metrics.summary(ctx)
    tiles = {
        t.key: t for t in alliance_page._tiles(ctx, s, alliance_metrics.protected_summary(ctx, s))
    }
    tile = tiles["mean_srs"]
    found = N_RATINGS.search(tile.n_text)
    shown = None if tile.withheld or not found else int(found.group(1).replace(",", ""))
    return {"exact": s["srs_n"], "shown": shown}


def _truth(con, month: dt.date, site: str | None, race: str | None) -> tuple[int, int]:
    """SRS ratings and distinct clients of one month for one group, from the exact facts."""
    row = con.execute(
        """
        select count(*), count(distinct client_id) from session_facts
        where month = $month and srs is not null and ($site is null or site = $site)
          and ($race is null or race_ethnicity = $race)
        """,
        {"month": month, "site": site, "race": race},
    ).fetchone()
    return int(row[0]), int(row[1])


@pytest.fixture(scope="module")
def attacks(demo_con) -> list[dict]:
    """Every (site, race, month) whose month group has 1 .. k-1 clients while both periods'
    tiles show their ratings: the difference as shown, as exact, and the truth."""
    sites = [
        None,
        *(r[0] for r in demo_con.execute("select name from sites order by 1").fetchall()),
    ]
    found = []
    for site, race, last in itertools.product(sites, RACES, LAST_MONTHS):
        ratings, clients = _truth(demo_con, add_months(last, 1), site, race)
        if not 0 < clients < 11:
            continue
        a = _page_ratings(
            demo_con, first_month=START, last_month=last, site=site, race_ethnicity=race
        )
        b = _page_ratings(
            demo_con,
            first_month=START,
            last_month=add_months(last, 1),
            site=site,
            race_ethnicity=race,
        )
        if a["shown"] is None or b["shown"] is None:
            continue
        found.append(
            {
                "exact": b["exact"] - a["exact"],
                "shown": b["shown"] - a["shown"],
                "truth": ratings,
            }
        )
    return found


def test_month_differencing_on_the_alliance_page_recovers_no_more_than_chance(attacks) -> None:
    assert len(attacks) >= 30, "too few small groups to judge the attack"
    # the attack works on exact figures: what the page showed before protection
    assert all(a["exact"] == a["truth"] for a in attacks)
    hits = sum(a["shown"] == a["truth"] for a in attacks)
    assert hits / len(attacks) <= 0.35, (hits, len(attacks))


def _spc(ctx: Context) -> pd.DataFrame:
    view = alliance_page.build(ctx)
    panel = {p.key: p for p in view.panels}["alliance_spc"]
    return panel.data.assign(month=pd.to_datetime(panel.data["month"])).set_index("month")


def test_the_same_month_shows_the_same_value_through_two_periods_and_pages(demo_con) -> None:
    """A month's control-chart point is the same cell in a 12-month and a 4-month view, in the
    Mean SRS tile of that one month and on the Overview's monthly chart."""
    month = dt.date(2026, 8, 1)
    stamp = pd.Timestamp(month)
    long = _spc(_ctx(demo_con, first_month=START, last_month=dt.date(2026, 10, 1)))
    short = _spc(_ctx(demo_con, first_month=dt.date(2026, 5, 1), last_month=month))
    assert long.loc[stamp, ["n", "value", "n_clients"]].tolist() == pytest.approx(
        short.loc[stamp, ["n", "value", "n_clients"]].tolist()
    )
    one = _ctx(demo_con, first_month=month, last_month=month)
    s = alliance_metrics.summary(one)
    p = alliance_metrics.protected_summary(one, s)
    tile = {t.key: t for t in alliance_page._tiles(one, s, p)}["mean_srs"]
    assert tile.value == pytest.approx(long.loc[stamp, "value"], abs=1e-12)
    assert p["srs_n"] == long.loc[stamp, "n"]
    assert p["srs_clients"] == long.loc[stamp, "n_clients"]
    trend = overview._alliance_trend(one, overview_metrics.headline(one)).data
    assert float(trend["mean_score"].iloc[0]) == pytest.approx(tile.value, abs=1e-12)
    # and the shown figures are not the exact ones
    assert (p["srs_n"], tile.value) != (s["srs_n"], s["mean_srs"])


COUNT_COLS = ("n", "episodes", "dropouts", "administrations")


def _exact_tables(ctx: Context) -> dict[str, pd.DataFrame]:
    scale = alliance_metrics.SCALES[ctx.filters.alliance_measure]
    p = ctx.params()
    return {
        "distribution": queries.run(
            ctx.con,
            "alliance_distribution",
            **p,
            alliance=scale.key,
            bin_floor=scale.bin_floor,
            bin_width=scale.bin_width,
            scale_max=scale.scale_max,
        ),
        "by_session": queries.run(
            ctx.con,
            "alliance_by_session_number",
            **p,
            alliance=scale.key,
            last_number=alliance_metrics.LAST_SESSION_NUMBER,
            cohort_sessions=alliance_metrics.FIXED_COHORT_SESSIONS,
        ),
        "alliance_spc": queries.run(
            ctx.con, "monthly_alliance", **p, alliance=scale.key, srs_cutoff=36.0
        ),
        "drops": queries.run(
            ctx.con, "alliance_drops_dropout", **p, rupture_threshold=2.0
        ).sort_values("had_drop", ascending=False, ignore_index=True),
        "wai_subscales": queries.run(ctx.con, "alliance_wai_subscales", **p),
    }


@pytest.mark.parametrize("measure", ["srs", "wai"])
def test_no_cell_key_and_no_exact_count_in_any_panel(demo_con, measure) -> None:
    ctx = _ctx(
        demo_con,
        first_month=START,
        last_month=dt.date(2026, 10, 1),
        alliance_measure=measure,
    )
    view = alliance_page.build(ctx)
    exact = _exact_tables(ctx)
    s = alliance_metrics.summary(ctx)
    same = total = 0
    for panel in view.panels:
        assert panel.figure is not None, panel.key
        assert not [c for c in panel.data.columns if c.endswith("_cellkey")], panel.key
        assert "cellkey" not in panel.figure.to_json(), panel.key
        raw = exact[panel.key]
        for col in COUNT_COLS:
            if col not in panel.data or col not in raw:
                continue
            shown = pd.to_numeric(panel.data[col]).to_numpy(dtype="float64", na_value=np.nan)
            values = raw[col].to_numpy(dtype="float64")
            assert len(shown) == len(values), (panel.key, col)
            ok = np.isfinite(shown)
            # rows in the same order: only the noise separates a shown count from the exact one
            assert np.all(np.abs(shown[ok] - values[ok]) <= ctx.noise.max_noise), (panel.key, col)
            same += int((shown[ok] == values[ok]).sum())
            total += int(ok.sum())
    assert total > 20
    assert same / total < 0.5, (same, total)  # noise 0 has probability 1/5
    # the total of ratings in the subtitles is the protected one, never the exact one
    n_exact = s["srs_n"] if measure == "srs" else s["wai_n"]
    p = alliance_metrics.protected_summary(ctx, s)
    n_shown = p["srs_n"] if measure == "srs" else p["wai_n"]
    if n_shown != n_exact:
        for panel in view.panels:
            text = panel.figure.layout.title.subtitle.text
            assert f"n = {n_exact:,} ratings" not in text, panel.key
    for tile in view.tiles:
        assert (
            f"n = {s['sessions']:,} sessions" not in tile.n_text or p["sessions"] == s["sessions"]
        )


# --------------------------------------------------------------------------- the privacy layer's
# rules for single figures (alliance/protected.py), which the headlines call instead of k


def test_single_figure_rules_of_the_privacy_layer() -> None:
    from alliance import noise, protected
    from alliance.privacy import PrivacyPolicy

    policy, params = PrivacyPolicy(k=11), noise.NoiseParams()
    counts = np.array([0.0, 1.0, 11.0, 500.0])
    keys = np.array([5.0, 6.0, 7.0, 8.0])
    shown = protected.shown_counts(counts, keys, policy=policy, params=params)
    assert shown[0] == 0 and (shown[1:] >= 11).all()
    assert (shown == noise.perturb_counts(counts, keys, params, 11)).all()
    # the numerator rule: 1 .. k-1 events or non-events
    assert protected.rate_withheld(3, 100, policy) and protected.rate_withheld(95, 100, policy)
    assert not protected.rate_withheld(0, 100, policy)
    assert not protected.rate_withheld(50, 100, policy)
    assert not protected.rate_withheld(100, 100, policy)
    # the clients behind a figure: exact only when the bound does not settle it
    asked = []

    def exact() -> int:
        asked.append(1)
        return 9

    assert protected.clients_behind(0, 0, policy, exact) == 0
    assert protected.clients_behind(7, 3, policy, exact) == 7
    assert protected.clients_behind(40, 12, policy, exact) == 12
    assert not asked
    assert protected.clients_behind(40, 5, policy, exact) == 9 and asked
    # figures outside a table: perturbed with the floor k, rates under the numerator rule
    rate = protected.Rate("r", "x", "n")
    frame = pd.DataFrame({"x": [3], "n": [200], "x_cellkey": [1.0], "n_cellkey": [2.0]})
    out, ruled = protected.perturb_figures(
        frame, policy=policy, params=params, counts=["x", "n"], rates=[rate]
    )
    assert ruled == {"r"} and out["x"].iloc[0] >= 11
    same = protected.perturb(frame, params=params, counts=["x", "n"], rates=[rate], floor=11)
    pd.testing.assert_frame_equal(out, same)
    assert protected.min_clients(policy) == 11
