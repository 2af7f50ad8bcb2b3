"""Issue 19 on the Therapists page: a selection's figures minus its therapists' shown figures
must not give the withheld therapists' exact counts; the funnels are drawn from protected rates
and n; the same therapist's cell shows the same value whichever filter path reaches it; no key
column and no exact count leaves the page. Ground truth from the exact facts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import re

import numpy as np
import pytest

from alliance import noise, protected, queries
from alliance.filters import Filters
from alliance.panel import Context
from alliance.privacy import PrivacyPolicy
from alliance.settings import Settings
from alliance.views import therapists
from tests.conftest import _plain

PERIODS = [
    (dt.date(2025, 11, 1), dt.date(2026, 10, 1)),
    (dt.date(2026, 4, 1), dt.date(2026, 9, 1)),
    (dt.date(2025, 1, 1), dt.date(2025, 6, 1)),
    (dt.date(2023, 11, 1), dt.date(2026, 10, 1)),
    (dt.date(2024, 11, 1), dt.date(2025, 10, 1)),
    (dt.date(2024, 5, 1), dt.date(2026, 4, 1)),
]
GENDERS = [None, "female", "male"]


def _ctx(con, **filters) -> Context:
    return Context(con=con, filters=Filters(**filters), settings=Settings())


def _dropout_panel(ctx: Context):
    view = therapists.build(ctx)
    return next((p for p in view.panels if p.key == "funnel_dropout"), None)


def _clinic_ended(panel) -> int:
    text = panel.figure.layout.title.subtitle.text
    return int(re.search(r"n = ([\d,]+) ended episodes", text).group(1).replace(",", ""))


def therapist_attacks(con) -> list[dict]:
    """For each selection (site x period x gender): the selection's ended episodes and dropouts
    as shown minus those of every therapist shown = the withheld therapists' figures; kept
    where at least one therapist is withheld: the small group (a therapist with 1 .. k-1
    clients, or 1 .. k-1 dropouts or other endings) is among the withheld ones."""
    sites = [None, *(r[0] for r in con.execute("select name from sites order by 1").fetchall())]
    found = []
    for site, (first, last), gender in itertools.product(sites, PERIODS, GENDERS):
        ctx = _ctx(con, first_month=first, last_month=last, site=site, gender=gender)
        panel = _dropout_panel(ctx)
        if panel is None or panel.figure is None:
            continue
        data = panel.data
        shown = data[~data["suppressed"]]
        withheld = set(data.loc[data["suppressed"], "therapist"])
        if not withheld or shown.empty:
            continue
        exact = queries.run(con, "therapists_dropout", **ctx.params())
        exact_ther = exact[~exact["is_clinic"]].set_index("therapist")
        exact_clinic = exact[exact["is_clinic"]].iloc[0]
        truth_ended = int(exact_ther.loc[sorted(withheld), "ended"].sum())
        truth_drop = int(exact_ther.loc[sorted(withheld), "dropouts"].sum())
        shown_ended = _clinic_ended(panel)
        shown_drop = round(panel.stats["target"] * shown_ended)
        found.append(
            {
                "filters": (site, first, gender),
                "truth": (truth_ended, truth_drop),
                "exact": (
                    int(exact_clinic["ended"])
                    - int(exact_ther.loc[shown["therapist"], "ended"].sum()),
                    int(exact_clinic["dropouts"])
                    - int(exact_ther.loc[shown["therapist"], "dropouts"].sum()),
                ),
                "shown": (
                    shown_ended - int(shown["ended episodes"].sum()),
                    shown_drop - int(round(shown["dropouts"].sum())),
                ),
            }
        )
    return found


@pytest.fixture(scope="module")
def attacks(demo_con):
    return therapist_attacks(demo_con)


def test_selection_minus_its_therapists_recovers_no_more_than_chance(attacks) -> None:
    assert len(attacks) >= 20, "too few selections with withheld therapists to judge"
    # on exact figures the subtraction gives the withheld group's exact counts every time
    assert all(a["exact"] == a["truth"] for a in attacks)
    hits_ended = sum(a["shown"][0] == a["truth"][0] for a in attacks)
    hits_drop = sum(a["shown"][1] == a["truth"][1] for a in attacks)
    assert hits_ended / len(attacks) <= 0.35, (hits_ended, len(attacks))
    assert hits_drop / len(attacks) <= 0.35, (hits_drop, len(attacks))


def test_funnel_points_are_protected_rates_and_n(demo_con, demo_ctx) -> None:
    """Each dot: protected dropouts / protected ended episodes at x = protected ended (their
    keys from the query); rates with 1 .. k-1 dropouts or other endings are not drawn."""
    panel = _dropout_panel(demo_ctx)
    df = queries.run(demo_con, "therapists_dropout", **demo_ctx.params())
    ther = df[~df["is_clinic"]].set_index("therapist")
    k = demo_ctx.policy.k
    ended = noise.perturb_counts(
        ther["ended"].to_numpy(float), ther["ended_cellkey"].to_numpy(float), demo_ctx.noise, k
    )
    drops = noise.perturb_counts(
        ther["dropouts"].to_numpy(float),
        ther["dropouts_cellkey"].to_numpy(float),
        demo_ctx.noise,
        k,
    )
    data = panel.data.set_index("therapist")
    shown = data[~data["suppressed"]]
    idx = [ther.index.get_loc(t) for t in shown.index]
    assert shown["ended episodes"].tolist() == list(ended[idx])
    assert shown["dropout rate (%)"].to_numpy() == pytest.approx(100 * drops[idx] / ended[idx])
    rest = ther["ended"] - ther["dropouts"]
    small = ther.index[
        ((ther["dropouts"] > 0) & (ther["dropouts"] < k)) | ((rest > 0) & (rest < k))
    ]
    assert set(small) <= set(data.index[data["suppressed"]])
    # the points drawn are exactly the shown rows, at their protected n and rate
    spec = panel.figure.to_plotly_json()
    drawn = {
        c[0]: (x, y)
        for t in spec["data"]
        if t.get("customdata") is not None
        and t.get("mode") == "markers"
        and not str(t.get("name", "")).startswith("selected")
        for c, x, y in zip(_plain(t["customdata"]), _plain(t["x"]), _plain(t["y"]), strict=True)
    }
    assert set(drawn) == set(shown.index)
    for code, (x, y) in drawn.items():
        assert x == shown.loc[code, "ended episodes"]
        assert y == pytest.approx(shown.loc[code, "dropout rate (%)"] / 100)
    # the target is the clinic's protected rate, not the exact one
    clinic = df[df["is_clinic"]].iloc[0]
    c_ended, c_drop = noise.perturb_counts(
        clinic[["ended", "dropouts"]].to_numpy(float),
        clinic[["ended_cellkey", "dropouts_cellkey"]].to_numpy(float),
        demo_ctx.noise,
        k,
    )
    assert panel.stats["target"] == pytest.approx(c_drop / c_ended)


def test_a_therapist_shows_the_same_value_through_two_filter_paths(demo_con, demo_ctx) -> None:
    """A therapist seen at one site only: their row on the page filtered to that site, on the
    unfiltered page and on the page filtered to the therapist is one cell: one value."""
    one_site = demo_con.execute(
        """
        select therapist, any_value(site) from episode_facts
        where ended and end_date >= $f and end_date < $t
        group by therapist having count(distinct site) = 1
        """,
        {"f": demo_ctx.filters.first_month, "t": dt.date(2026, 11, 1)},
    ).fetchall()
    all_rows = _dropout_panel(demo_ctx).data.set_index("therapist")
    compared = 0
    for code, site in one_site:
        if all_rows.loc[code, "suppressed"]:
            continue
        at_site = _dropout_panel(
            dataclasses.replace(demo_ctx, filters=dataclasses.replace(demo_ctx.filters, site=site))
        ).data.set_index("therapist")
        if at_site.loc[code, "suppressed"]:
            continue
        cols = ["ended episodes", "dropouts", "dropout rate (%)", "n_clients"]
        assert at_site.loc[code, cols].tolist() == all_rows.loc[code, cols].tolist()
        compared += 1
        if compared == 1:
            ctx = dataclasses.replace(
                demo_ctx, filters=dataclasses.replace(demo_ctx.filters, therapist=code)
            )
            tile = {t.key: t for t in therapists.build(ctx).tiles}["selected_dropout"]
            assert tile.value == pytest.approx(all_rows.loc[code, "dropout rate (%)"] / 100)
    assert compared >= 3


def test_no_key_and_no_exact_count_leaves_the_page(demo_con, demo_ctx) -> None:
    view = therapists.build(demo_ctx)
    df = queries.run(demo_con, "therapists_dropout", **demo_ctx.params())
    ther = df[~df["is_clinic"]].set_index("therapist")
    for panel in view.panels:
        assert not any(c.endswith("_cellkey") for c in panel.data.columns), panel.key
        spec = json.dumps(panel.figure.to_plotly_json(), default=str) if panel.figure else ""
        assert "cellkey" not in spec
    dropout = next(p for p in view.panels if p.key == "funnel_dropout")
    shown = dropout.data[~dropout.data["suppressed"]].set_index("therapist")
    exact = ther.loc[shown.index]
    # counts carry noise: the shown table is not the exact one (1/5 of cells keep theirs)
    same = (shown["ended episodes"].to_numpy() == exact["ended"].to_numpy()).mean()
    assert same < 0.6
    # the clinic total in the subtitle is the protected one
    clinic = df[df["is_clinic"]].iloc[0]
    want = noise.perturb_counts(
        np.array([clinic["ended"]], float),
        np.array([clinic["ended_cellkey"]], float),
        demo_ctx.noise,
        demo_ctx.policy.k,
    )[0]
    assert _clinic_ended(dropout) == want
    # the ICC's n is protected too (its episodes' key: the sum of its therapists' keys)
    icc = next(p for p in view.panels if p.key == "therapist_icc")
    assert not any(c.endswith("_cellkey") for c in icc.data.columns)


def test_at_least_k_and_shown_counts_are_the_protected_steps() -> None:
    ctx_policy = PrivacyPolicy(k=11)
    got = protected.at_least_k(ctx_policy, np.array([0, 10, 11, 40]))
    assert got.tolist() == [False, False, True, True]
    assert protected.at_least_k(ctx_policy, [np.nan]).tolist() == [False]
    params = noise.NoiseParams()
    counts, keys = np.array([0.0, 12.0, 500.0]), np.array([7.0, 99.0, 12345.0])
    shown = protected.shown_count_values(ctx_policy, params, counts, keys)
    assert shown.tolist() == noise.perturb_counts(counts, keys, params, 11).tolist()
    assert shown[0] == 0 and shown[1] >= 11  # 0 stays 0; a shown count is never below k
