"""Ruptures & repair on the protected-statistics step (issue 19; alliance/protected.py).

* Differencing: the month attack on the page's tiles (the period minus the period one month
  shorter, same site and race/ethnicity) gives a small group's exact SRS-with-previous and
  rupture counts on exact figures every time, and on the shown figures no more often than
  chance; ground truth from SQL on session_facts.
* Same cell, same value: a month's row under two periods, a therapist's funnel row on the
  whole clinic and on the therapist's site.
* No key column and no exact count in any panel's data, subtitle or hover text.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from alliance import noise, queries
from alliance.filters import Filters, add_months
from alliance.metrics import ruptures as rupture_metrics
from alliance.panel import Context
from alliance.settings import Settings
from alliance.views import ruptures

D = dt.date
K = 11
FIRST = D(2025, 11, 1)
ENDS = [add_months(D(2026, 2, 1), i) for i in range(9)]  # 2026-02 .. 2026-10


LAST = D(2026, 10, 1)


def _ctx(con, first=FIRST, last=LAST, **filters) -> Context:
    return Context(
        con=con, filters=Filters(first_month=first, last_month=last, **filters), settings=Settings()
    )


def _sites(con) -> list[str]:
    return [r[0] for r in con.execute("select name from sites order by 1").fetchall()]


def _tile_counts(view) -> tuple[int, int] | None:
    """(SRS with a previous SRS, ruptures) as the tiles show them, or None when withheld."""
    tiles = {t.key: t for t in view.tiles}
    if not tiles:
        return None
    a = re.search(r"n = ([\d,]+) SRS with a previous SRS", tiles["rupture_rate"].n_text)
    b = re.search(r"of ([\d,]+) ruptures", tiles["unrepaired"].n_text)
    if a is None or b is None:
        return None
    return int(a.group(1).replace(",", "")), int(b.group(1).replace(",", ""))


def _truth(con, month: dt.date, site: str, race: str, threshold: float) -> tuple[int, int, int]:
    """The month's exact (clients with a previous SRS, SRS with a previous SRS, ruptures)."""
    return con.execute(
        """
        select
            count(distinct client_id) filter (where prev_srs is not null),
            count(*) filter (where prev_srs is not null),
            count(*) filter (where round(prev_srs - srs, 4) >= ?)
        from session_facts
        where srs is not null and month = ? and site = ? and race_ethnicity = ?
        """,
        [threshold, month, site, race],
    ).fetchone()


def test_month_differencing_of_the_tiles_recovers_no_more_than_chance(demo_con):
    """Periods from 2024-11 ending 2026-02 .. 2026-10 against one month shorter, for every site
    and race/ethnicity whose last month describes 1 .. k-1 clients with a previous SRS."""
    threshold = Settings().rupture_threshold
    first = D(2024, 11, 1)
    small = demo_con.execute(
        """
        select site, race_ethnicity, month
        from session_facts
        where srs is not null and month >= ? and month <= ?
        group by all
        having count(distinct client_id) filter (where prev_srs is not null) between 1 and ?
        order by all
        """,
        [ENDS[0], ENDS[-1], K - 1],
    ).fetchall()
    shown: dict = {}
    exact: dict = {}

    def figures(site: str, race: str, end: dt.date):
        key = (site, race, end)
        if key not in shown:
            ctx = _ctx(demo_con, first=first, last=end, site=site, race_ethnicity=race)
            shown[key] = _tile_counts(ruptures.build(ctx, "units"))
            e = rupture_metrics.rupture_summary(ctx)
            exact[key] = (e["with_previous"], e["ruptures"]) if e["n_clients"] >= K else None
        return shown[key], exact[key]

    hits_shown = hits_exact = cases = 0
    for site, race, month in small:
        end = month if isinstance(month, dt.date) else month.date()
        before, ex_b = figures(site, race, add_months(end, -1))
        now, ex_n = figures(site, race, end)
        if before is None or now is None or ex_b is None or ex_n is None:
            continue
        _, with_prev, rups = _truth(demo_con, end, site, race, threshold)
        cases += 1
        hits_shown += (now[0] - before[0], now[1] - before[1]) == (with_prev, rups)
        hits_exact += (ex_n[0] - ex_b[0], ex_n[1] - ex_b[1]) == (with_prev, rups)
    assert cases >= 40
    assert hits_exact == cases  # the attack is real: on exact figures it always works
    assert hits_shown / cases <= 0.35, (hits_shown, cases)


def test_a_month_shows_the_same_values_under_two_periods(demo_con):
    compared = 0
    for site in [None, *_sites(demo_con)[:3]]:
        long = ruptures.build(_ctx(demo_con, site=site), "time")
        short = ruptures.build(_ctx(demo_con, last=D(2026, 7, 1), site=site), "time")
        for key in ("rupture_monthly", "repair_monthly"):
            a = next(p for p in long.panels if p.key == key).data.set_index("month")
            b = next(p for p in short.panels if p.key == key).data.set_index("month")
            both = a.index.intersection(b.index)
            a_shown = a.loc[both, "suppressed"].astype(bool)
            b_shown = b.loc[both, "suppressed"].astype(bool)
            months = both[~a_shown.to_numpy() & ~b_shown.to_numpy()]
            cols = ["n_clients", *a.columns[1:3]]  # clients, events, out of
            pd.testing.assert_frame_equal(
                a.loc[months, cols].astype(float), b.loc[months, cols].astype(float)
            )
            compared += len(months)
    assert compared > 20


def test_a_therapist_shows_the_same_funnel_row_on_the_clinic_and_on_the_site(demo_con):
    # a therapist of one site (the demo keeps one site per therapist)
    rows = demo_con.execute(
        "select therapist, any_value(site) from session_facts group by therapist "
        "having count(distinct site) = 1 order by therapist"
    ).fetchall()
    clinic = ruptures.build(_ctx(demo_con), "units")
    whole = next(p for p in clinic.panels if p.key == "funnel_therapist").data
    compared = 0
    for site in sorted({s for _, s in rows}):
        view = ruptures.build(_ctx(demo_con, site=site), "units")
        part = next(p for p in view.panels if p.key == "funnel_therapist").data
        if "therapist" not in part:
            continue
        cols = ["n_clients", "events (ruptures / repaired)", "out of"]
        merged = whole.merge(part, on=["measure", "therapist"], suffixes=("_c", "_s"))
        for col in cols:
            a = merged[f"{col}_c"].astype(float)
            b = merged[f"{col}_s"].astype(float)
            ok = a.notna() & b.notna()
            assert (a[ok] == b[ok]).all(), (site, col)
            compared += int(ok.sum())
    assert compared > 20


def test_cell_keys_are_the_sums_of_the_records_keys(demo_ctx):
    """rupture_rates' keys against the exact facts: every administration carries its client's
    key (the rollup's sum(ckey * n_srs) equals the sessions' sum)."""
    ctx = demo_ctx
    got = rupture_metrics.rupture_table(ctx, groupings=()).iloc[0]
    p = ctx.params()
    want = ctx.con.execute(
        """
        select
            sum(ckey) as administrations_cellkey,
            sum(ckey) filter (where prev_srs is not null) as with_previous_cellkey,
            sum(ckey) filter (where round(prev_srs - srs, 4) >= ?) as ruptures_cellkey
        from session_facts
        where srs is not null and month >= ? and month < ?
        """,
        [ctx.settings.rupture_threshold, p["date_from"], p["date_to"]],
    ).df()
    for col in want.columns:
        assert int(got[col]) == int(want[col].iloc[0]), col
    assert got["fate_known_cellkey"] == got["repaired_cellkey"] + got["unrepaired_cellkey"]


def test_no_key_column_and_no_exact_count_is_shown(demo_ctx):
    ctx = demo_ctx
    view = ruptures.build(ctx)
    assert view.panels
    for p in view.panels:
        assert not [c for c in p.data.columns if c.endswith("_cellkey")], p.key
        if p.figure is not None:
            assert "_cellkey" not in p.figure.to_json(), p.key
    # the shown counts are the protected ones: the monthly charts' counts against their cells'
    # perturbation, and not the exact counts
    table = rupture_metrics.rupture_table(ctx, groupings=["month"])
    months = rupture_metrics.rupture_counts(ctx, "month", table=table)
    panel = next(p for p in view.panels if p.key == "rupture_monthly")
    d = panel.data[~panel.data["suppressed"].astype(bool)].set_index("month")
    m = months.assign(month=months["unit"].str[:7]).set_index("month").loc[d.index]
    for col in ("ruptures", "with_previous"):
        want = noise.perturb_counts(
            m[col].to_numpy(dtype=float), m[f"{col}_cellkey"].to_numpy(dtype=float), ctx.noise, K
        )
        assert np.array_equal(d[col].to_numpy(dtype=float), want), col
        assert (d[col].to_numpy(dtype=float) != m[col].to_numpy(dtype=float)).mean() > 0.5
    # no exact headline count in a tile, a subtitle or a hover
    exact = rupture_metrics.rupture_summary(ctx)
    now = rupture_metrics.protected_summary(ctx, table)
    text = "\n".join(
        [t.n_text for t in view.tiles]
        + [p.figure.to_json() for p in view.panels if p.figure is not None]
    )
    for col, unit in (("with_previous", "SRS with a previous SRS"), ("fate_known", "ruptures")):
        total = exact[col] if col != "fate_known" else exact["repaired"] + exact["unrepaired"]
        if now[col] != total:
            assert f"n = {total:,} {unit}" not in text, col
        assert f"n = {now[col]:,} {unit}" in text, col


def test_the_followup_and_items_panels_show_protected_counts(demo_ctx):
    ctx = demo_ctx
    view = ruptures.build(ctx, "after")
    df = queries.run(
        ctx.con,
        "rupture_followup",
        **ctx.params(),
        measure=ctx.filters.outcome_measure,
        **rupture_metrics.rupture_params(ctx),
    ).set_index("rupture_group")
    drop = next(p for p in view.panels if p.key == "followup_dropout").data
    shown = drop[~drop["suppressed"].astype(bool)]
    labels = {v: k for k, v in rupture_metrics.GROUP_LABELS.items()}
    for row in shown.itertuples():
        cell = df.loc[labels[row.group]]
        want = noise.perturb_counts(
            np.array([cell["episodes"]], dtype=float),
            np.array([cell["episodes_cellkey"]], dtype=float),
            ctx.noise,
            K,
        )[0]
        assert row.episodes == want
        assert row.dropout_rate == pytest.approx(row.dropouts / row.episodes)
    # a withheld group (numerator rule) shows nothing
    hidden = drop[drop["suppressed"].astype(bool)]
    assert hidden[["episodes", "dropouts", "dropout_rate", "low", "high"]].isna().all().all()
