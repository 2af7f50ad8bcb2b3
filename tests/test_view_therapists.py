"""Therapists page: funnel plots, therapist ICC, meeting mode, roles and privacy.

SQL is checked on a small hand-built clinic whose answers are worked out in the comments; the
statistics' behaviour on the real demo clinic; the page through AppTest.
"""

from __future__ import annotations

import dataclasses
import json
import re

import duckdb
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from alliance import db, noise, protected, queries, stats
from alliance.filters import Filters
from alliance.metrics import therapists as therapist_metrics
from alliance.panel import Context
from alliance.privacy import PrivacyPolicy, assert_no_small_cells
from alliance.settings import Settings
from alliance.views import therapists
from tests.conftest import ROOT
from tests.small_clinic import YEAR, D, build_small_clinic
from tests.test_browser import browser_page, server, wait_idle  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def small_con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("therapists") / "small.duckdb"
    build_small_clinic(path)
    con = db.open_read_only(path)
    yield con
    con.close()


def small_ctx(con: duckdb.DuckDBPyConnection, k: int = 1, **changes: object) -> Context:
    return Context(con=con, filters=YEAR, settings=Settings(privacy_k=k), **changes)


# --------------------------------------------------------------------------- SQL by hand


def test_dropout_by_therapist_by_hand(small_con):
    df = queries.run(small_con, "therapists_dropout", **YEAR.sql_params())
    got = {
        (r.therapist if not r.is_clinic else "clinic"): (r.n_clients, r.ended, r.dropouts)
        for r in df.itertuples()
    }
    # T-AAAA: episodes 1 (planned), 2 and 3 (dropouts); T-BBBB: 4, 5, 9, no dropout;
    # T-CCCC: 6 (dropout), 7 (planned), 8 is open; clinic: 8 ended, 3 dropouts, 8 clients
    assert got == {
        "T-AAAA": (3, 3, 2),
        "T-BBBB": (3, 3, 0),
        "T-CCCC": (2, 2, 1),
        "clinic": (8, 8, 3),
    }
    rates = dict(zip(df["therapist"].fillna("clinic"), df["dropout_rate"], strict=True))
    assert rates["T-AAAA"] == pytest.approx(2 / 3) and rates["clinic"] == pytest.approx(3 / 8)


def test_early_alliance_by_therapist_by_hand(small_con):
    df = queries.run(small_con, "therapists_alliance", **YEAR.sql_params(), alliance="srs")
    by = df.set_index(df["therapist"].fillna("clinic"))
    # early SRS: ep1 (30+34+38)/3 = 34, ep2 34.5, ep3 32 -> T-AAAA mean 33.5, SD sqrt(3.5/2)
    assert by.loc["T-AAAA", "mean_early"] == pytest.approx(33.5)
    assert by.loc["T-AAAA", "sd_early"] == pytest.approx(np.sqrt(1.75))
    # T-BBBB: ep4 39, ep5 36, ep9 38 (its only SRS); T-CCCC: ep6 29, ep7 39.5 (ep8 open)
    assert by.loc["T-BBBB", "mean_early"] == pytest.approx(113 / 3)
    assert by.loc["T-CCCC", "mean_early"] == pytest.approx(34.25)
    assert by.loc["clinic", "mean_early"] == pytest.approx(282 / 8)
    assert by.loc["clinic", "episodes"] == 8 and by.loc["T-CCCC", "n_clients"] == 2


def test_outcome_rows_by_hand(small_con):
    df = queries.run(small_con, "therapists_outcome_episodes", **YEAR.sql_params(), measure="ors")
    # episode 3 has one ORS, episode 8 is open: 7 rows; improvement = last - first
    assert len(df) == 7 and (df["clinic_clients"] == 7).all()
    got = sorted(zip(df["therapist"], df["intake"], df["improvement"], strict=True))
    assert got == [
        ("T-AAAA", 15.0, 11.0),
        ("T-AAAA", 20.0, 2.0),
        ("T-BBBB", 21.0, 6.0),
        ("T-BBBB", 22.0, 8.0),
        ("T-BBBB", 24.0, -1.0),
        ("T-CCCC", 10.0, 2.0),
        ("T-CCCC", 20.0, 8.0),
    ]
    clients = df.groupby("therapist")["therapist_clients"].first().to_dict()
    assert clients == {"T-AAAA": 2, "T-BBBB": 3, "T-CCCC": 2}


# --------------------------------------------------------------------------- the view, small clinic


def _shown_dropout(ctx: Context) -> pd.DataFrame:
    """The dropout query's counts as the protected step shows them (cell-key noise; the rate
    from the protected counts), by therapist ('clinic' for the clinic row)."""
    df = queries.run(ctx.con, "therapists_dropout", **ctx.params())
    shown = protected.perturb(
        df,
        params=ctx.noise,
        counts=["ended", "dropouts"],
        rates=[protected.Rate("dropout_rate", "dropouts", "ended")],
        floor=ctx.policy.k,
    )
    return shown.set_index(shown["therapist"].fillna("clinic"))


def test_funnel_points_and_target_on_the_small_clinic(small_con):
    ctx = small_ctx(small_con)
    view = therapists.build(ctx)
    dropout = next(p for p in view.panels if p.key == "funnel_dropout")
    data = dropout.data.set_index("therapist")
    assert list(dropout.data["therapist"]) == ["T-AAAA", "T-BBBB", "T-CCCC"]  # by code
    # the protected figures: counts with their cell's noise, rates from protected counts
    shown = _shown_dropout(ctx)
    assert data["dropout rate (%)"].to_dict() == pytest.approx(
        (100 * shown["dropout_rate"]).drop("clinic").to_dict()
    )
    assert dropout.stats["target"] == pytest.approx(shown.loc["clinic", "dropout_rate"])
    assert data.loc["T-AAAA", "ended episodes"] == shown.loc["T-AAAA", "ended"]
    assert data.loc["T-AAAA", "dropouts"] == shown.loc["T-AAAA", "dropouts"]
    # its points choose a therapist; the ICC's estimate does not
    selectable = {p.key for p in view.panels if p.selectable}
    assert selectable == {"funnel_dropout", "funnel_alliance", "funnel_outcome"}
    spec = dropout.figure.to_plotly_json()
    target_line = [s for s in spec["layout"]["shapes"] if s.get("y0") == s.get("y1")]
    assert target_line and target_line[0]["y0"] == pytest.approx(
        shown.loc["clinic", "dropout_rate"]
    )


def test_casemix_funnel_uses_the_stats_function(small_con):
    view = therapists.build(small_ctx(small_con))
    outcome = next(p for p in view.panels if p.key == "funnel_outcome")
    rows = queries.run(small_con, "therapists_outcome_episodes", **YEAR.sql_params(), measure="ors")
    expected = stats.casemix_adjusted(
        rows,
        outcome="improvement",
        covariates=["intake"],
        categorical=["age_band", "program"],
        group="therapist",
    ).set_index("group")
    # each therapist's mean as protected: the exact adjusted mean plus its cell's sum noise
    # (a change score's range, 2 x 40 ORS points) over the protected number of episodes
    ctx = small_ctx(small_con)
    keys = rows.groupby("therapist")["therapist_episodes_cellkey"].first().reindex(expected.index)
    shown_n = noise.perturb_counts(expected["n"].to_numpy(float), keys.to_numpy(float), ctx.noise)
    want = noise.perturb_means(
        expected["adjusted_mean"].to_numpy(float), shown_n, keys.to_numpy(float), 80.0, ctx.noise
    )
    got = outcome.data.set_index("therapist")
    assert got["adjusted improvement (points)"].tolist() == pytest.approx(list(want))
    assert got["episodes"].tolist() == list(shown_n)
    assert got["adjusted improvement (points)"].tolist() != pytest.approx(
        expected["adjusted_mean"].tolist()
    )
    assert np.isfinite(outcome.stats["target"])


def test_small_therapists_are_withheld_counted_and_marked(small_con):
    # k = 3: T-CCCC (2 clients) is withheld, and T-AAAA by the numerator rule (below)
    ctx = small_ctx(small_con, k=3)
    dropout = next(p for p in therapists.build(ctx).panels if p.key == "funnel_dropout")
    data = dropout.data
    assert list(data["therapist"]) == ["T-AAAA", "T-BBBB", "T-CCCC"]  # never dropped
    assert data["suppressed"].sum() == 2
    row = data.set_index("therapist").loc["T-CCCC"]
    assert row["suppression"] == "primary" and row["position"] == "n < 3"
    assert pd.isna(row["dropout rate (%)"]) and pd.isna(row["n_clients"])
    # T-AAAA (3 clients) has 2 dropouts and 1 other ending: withheld by the numerator rule
    assert data.set_index("therapist").loc["T-AAAA", "suppression"] == "primary"
    assert "2 therapists with fewer than 3 clients (or, for a rate" in dropout.reading
    plotted = [c[0] for t in dropout.figure.data if t.customdata is not None for c in t.customdata]
    assert "T-CCCC" not in plotted and len(plotted) == 1
    assert_no_small_cells(data, policy=ctx.policy)


def test_whole_selection_too_small_gives_a_notice(small_con):
    view = therapists.build(small_ctx(small_con, k=11))
    assert view.notice and "fewer than 11 clients" in view.notice and not view.panels


def test_therapist_filter_keeps_the_comparison_and_adds_tiles(small_con):
    ctx = small_ctx(small_con)
    ctx = dataclasses.replace(ctx, filters=dataclasses.replace(YEAR, therapist="T-AAAA"))
    view = therapists.build(ctx)
    dropout = next(p for p in view.panels if p.key == "funnel_dropout")
    assert len(dropout.data) == 3  # every therapist is still compared
    tiles = {t.key: t for t in view.tiles}
    assert tiles["selected_dropout"].value == pytest.approx(
        _shown_dropout(ctx).loc["T-AAAA", "dropout_rate"]
    )
    assert tiles["selected_dropout"].label.startswith("T-AAAA")
    assert any("selected: T-AAAA" in (t.name or "") for t in dropout.figure.data)


def test_viewer_role_gets_a_notice_and_runs_no_query(tmp_path):
    closed = duckdb.connect(str(tmp_path / "closed.duckdb"))
    closed.close()  # any query on it would raise
    ctx = Context(con=closed, filters=YEAR, settings=Settings(), therapist_level=False)
    view = therapists.build(ctx)
    assert view.notice == therapists.ROLE_NOTICE and not view.panels and not view.tiles


def test_selected_therapist_reads_one_code_from_a_selection_event():
    def event(*codes):
        return {"selection": {"points": [{"customdata": [c], "x": 1, "y": 2} for c in codes]}}

    assert therapists.selected_therapist(event("T-AAAA")) == "T-AAAA"
    assert therapists.selected_therapist(event("T-AAAA", "T-AAAA")) == "T-AAAA"  # ring + dot
    assert therapists.selected_therapist(event("T-AAAA", "T-BBBB")) is None  # a box of several
    assert therapists.selected_therapist(event()) is None
    assert therapists.selected_therapist(None) is None


def test_meeting_labels_are_letters_in_a_salted_order():
    codes = [f"T-{i:04X}" for i in range(40)]
    labels = therapist_metrics.meeting_labels(codes, salt="view|filters")
    assert sorted(labels.values(), key=lambda s: (len(s), s))[:3] == ["A", "B", "C"]
    assert len(set(labels.values())) == 40 and "AN" in labels.values()
    assert all(re.fullmatch(r"[A-Z]+", v) for v in labels.values())
    by_label = sorted(codes, key=lambda c: (len(labels[c]), labels[c]))
    assert by_label != sorted(codes)  # not code order
    other = therapist_metrics.meeting_labels(codes, salt="view|other filters")
    assert other != labels  # a new shuffle for other filters
    assert therapist_metrics.meeting_labels(codes, salt="view|filters") == labels  # stable


# --------------------------------------------------------------------------- demo clinic


@pytest.fixture(scope="module")
def demo_view(demo_con) -> object:
    ctx = Context(
        con=demo_con,
        filters=Filters(first_month=D(2025, 11, 1), last_month=D(2026, 10, 1)),
        settings=Settings(),
    )
    return therapists.build(ctx)


def test_demo_funnels_most_therapists_inside_the_998_limits(demo_view):
    funnels = [p for p in demo_view.panels if p.key.startswith("funnel_")]
    assert [p.key for p in funnels] == ["funnel_dropout", "funnel_alliance", "funnel_outcome"]
    for panel in funnels:
        shown = panel.data[~panel.data["suppressed"]]
        value = next(
            c for c in shown.columns if c.startswith(("dropout rate", "mean early", "adjusted"))
        )
        low, high = (
            next(c for c in shown.columns if c.startswith(p))
            for p in ("99.8% limit, low", "99.8% limit, high")
        )
        inside = shown[value].between(shown[low], shown[high])
        assert inside.mean() >= 0.85, panel.key
        # the flag agrees with the limits at the therapist's own volume
        assert (inside == ~shown["position"].str.contains("99.8")).all(), panel.key
        low95 = next(c for c in shown.columns if c.startswith("95% limit, low"))
        assert (shown[low95] >= shown[low] - 1e-12).all()
        assert shown["therapist"].is_monotonic_increasing  # by code, not by performance
        assert_no_small_cells(panel.data, policy=PrivacyPolicy(k=11))
    # small-caseload therapists are withheld and counted in the caption
    dropout = funnels[0]
    assert dropout.stats["withheld"] >= 1
    assert "with fewer than 11 clients (or, for a rate" in dropout.reading
    withheld = dropout.data[dropout.data["suppressed"]]
    assert (withheld["position"] == "n < 11").all() and withheld["n_clients"].isna().all()


def test_demo_alliance_funnel_sigma_is_the_pooled_within_therapist_sd(demo_con, demo_ctx):
    df = queries.run(demo_con, "therapists_alliance", **demo_ctx.params(), alliance="srs")
    panel = next(p for p in therapists.build(demo_ctx).panels if p.key == "funnel_alliance")
    # σ pools the therapists shown, each weighted by their protected number of episodes
    shown = panel.data[~panel.data["suppressed"]].set_index("therapist")
    ther = df[~df["is_clinic"]].set_index("therapist").loc[shown.index]
    sd, n = ther["sd_early"].to_numpy(), shown["episodes"].to_numpy(dtype=float)
    ok = n >= 2
    expected = np.sqrt(np.sum((n[ok] - 1) * sd[ok] ** 2) / np.sum(n[ok] - 1))
    assert f"pooled within-therapist SD {expected:.2f}" in panel.figure.layout.title.subtitle.text


def test_demo_therapist_icc_is_a_small_therapist_effect(demo_con):
    """Published: about 5% (Wampold & Brown 2005; Johns et al. 2019). The demo clinic's
    therapists differ a little less in this sample (about 2% over its three years)."""
    ctx = Context(
        con=demo_con,
        filters=Filters(first_month=D(2023, 11, 1), last_month=D(2026, 10, 1)),
        settings=Settings(),
    )
    icc = therapist_metrics.therapist_icc_outcome(ctx, "ors")
    assert isinstance(icc, stats.ICC)
    assert 0.005 < icc.icc < 0.10
    assert icc.low <= icc.icc <= icc.high and icc.high < 0.15
    assert icc.method == "reml" and icc.n_groups >= 20 and icc.n > 2000
    # a therapist filter leaves one therapist: no ICC, and no exception
    one = dataclasses.replace(ctx, filters=dataclasses.replace(ctx.filters, therapist="T-1E8A"))
    assert np.isnan(therapist_metrics.therapist_icc_outcome(one, "ors").icc)


def test_demo_meeting_mode_labels_carry_no_code_and_no_ranking(demo_con, demo_ctx, demo_view):
    ctx = dataclasses.replace(demo_ctx, meeting_mode=True)
    view = therapists.build(ctx)
    codes = set(demo_view.panels[0].data["therapist"])
    blob = json.dumps([p.figure.to_plotly_json() for p in view.panels if p.figure], default=str)
    blob += "".join(p.data.to_csv() for p in view.panels) + repr(view.tiles)
    assert not any(code in blob for code in codes)
    assert not re.search(r"T-[0-9A-F]{4}", blob)
    assert all(not p.key.startswith("funnel") for p in view.panels)  # no selection
    assert not any(p.selectable for p in view.panels)
    dropout = next(p for p in view.panels if p.key == "meeting_dropout")
    labels = dropout.data["therapist"]
    assert labels.str.fullmatch(r"[A-Z]+").all()
    # the same therapists, relabelled: same rates, in label order, not in rate order
    shown = dropout.data[~dropout.data["suppressed"]]
    assert sorted(shown["dropout rate (%)"]) == sorted(
        demo_view.panels[0].data.dropna(subset=["dropout rate (%)"])["dropout rate (%)"]
    )
    rank = shown["dropout rate (%)"].rank().to_numpy()
    assert abs(np.corrcoef(np.arange(len(rank)), rank)[0, 1]) < 0.9
    # labels are per view: one therapist keeps its label across the funnels
    alliance = next(p for p in view.panels if p.key == "meeting_alliance")
    names = therapist_metrics.display_names(ctx, codes)
    assert set(alliance.data["therapist"]) <= set(names.values())
    # and the letter order is not the code order
    assert [names[c] for c in sorted(codes)] != sorted(names.values(), key=lambda s: (len(s), s))


# --------------------------------------------------------------------------- the page (AppTest)


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)


def test_page_renders_funnels_and_the_therapist_filter_changes_numbers(app_env):
    at = _app().run()
    at.switch_page("pages/therapists.py").run()
    assert not at.exception
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert titles[:3] == [
        "Dropout rate by therapist",
        "Early alliance (SRS) by therapist",
        "Case-mix adjusted ORS improvement by therapist",
    ]
    assert any("Therapist share" in t for t in titles)
    before = {m.label: m.value for m in at.metric}
    code = at.selectbox(key="f_therapist").options[1]
    at.selectbox(key="f_therapist").set_value(code).run()
    assert not at.exception
    after = {m.label: m.value for m in at.metric}
    assert after != before and f"{code}: dropout rate" in after
    # the selected therapist is ringed in the funnels that show their dot (a dropout rate with
    # 1 .. k-1 dropouts is withheld by the numerator rule); clearing the filter removes the tiles
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")[:3]]
    assert any(t.get("name") == f"selected: {code}" for spec in specs for t in spec["data"])
    at.button[0].click().run()
    assert at.selectbox(key="f_therapist").value == "All"
    assert {m.label: m.value for m in at.metric} == before


def test_page_in_meeting_mode_shows_letters_and_disables_selection(app_env):
    at = _app()
    at.session_state["meeting_mode"] = True
    at.run()
    at.switch_page("pages/therapists.py").run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert charts
    for chart in charts:
        assert not re.search(r"T-[0-9A-F]{4}", chart.proto.spec)
        assert list(chart.proto.selection_mode) == []  # no selection in meeting mode


# --------------------------------------------------------------------------- in Chromium


@pytest.mark.browser
def test_clicking_a_dot_in_chromium_filters_the_whole_dashboard(request):
    """The real interaction: a click on a funnel dot selects the therapist everywhere."""
    url = request.getfixturevalue("server")
    page = request.getfixturevalue("browser_page")
    page.goto(f"{url}/therapists")
    wait_idle(page)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.locator(".js-plotly-plot").wait_for(timeout=60_000)
    dot = chart.locator(".scatterlayer .trace .points path").nth(3).bounding_box()
    x, y = dot["x"] + dot["width"] / 2, dot["y"] + dot["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    page.wait_for_function("() => window.location.search.includes('therapist=')", timeout=60_000)
    wait_idle(page)
    code = re.search(r"therapist=([^&]+)", page.url).group(1)
    labels = page.locator('[data-testid="stMetricLabel"]')
    labels.filter(has_text=f"{code}: dropout rate").first.wait_for(timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.get_by_role("button", name=re.compile("Show all therapists again")).click()
    page.wait_for_function("() => !window.location.search.includes('therapist=')")
    wait_idle(page)
    assert labels.filter(has_text=f"{code}:").count() == 0  # the stale selection stays undone
