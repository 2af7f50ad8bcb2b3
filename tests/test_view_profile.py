"""Alliance profile: dimension scores on a hand-built clinic, the view on the demo clinic, and
the page in AppTest."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from streamlit.testing.v1 import AppTest

from alliance import db, queries
from alliance.filters import Filters
from alliance.metrics import profile as profile_metrics
from alliance.metrics import profile_therapists
from alliance.panel import Context
from alliance.settings import Settings
from alliance.views import profile, profile_text
from tests.conftest import ROOT, groupings_asked, sections_make_the_whole

D = dt.date

# episode -> (site, therapist, gender, [items (relationship, goals, approach, overall) or a total])
EPISODES = {
    1: (1, 1, "female", [(9.0, 8.0, 7.0, 8.0), (10.0, 9.0, 8.0, 9.0)]),
    2: (1, 1, "male", [(8.0, 8.0, 6.0, 7.0), 30.0]),
    3: (2, 2, "male", [(9.0, 9.0, 9.0, 9.0), (7.0, 7.0, 7.0, 7.0), (8.0, 8.0, 8.0, 8.0)]),
}


def build_items(path: Path) -> None:
    with db.writer(path, fresh=True) as con:
        con.execute("insert into sites values (1, 'North'), (2, 'South')")
        con.execute("insert into programs values (1, 'Adult outpatient')")
        con.execute("insert into therapists values (1, 'p1', 'T-AAAA'), (2, 'p2', 'T-BBBB')")
        for ep, (site, ther, gender, seq) in EPISODES.items():
            con.execute("insert into clients values (?, ?)", [ep, f"c{ep}"])
            con.execute(
                "insert into episodes values (?, ?, ?, 1, '26-44', ?, 'White', 'planned')",
                [ep, ep, f"e{ep}", gender],
            )
            for i, srs in enumerate(seq):
                items = srs if isinstance(srs, tuple) else (None,) * 4
                total = srs if isinstance(srs, float) else None
                con.execute(
                    """
                    insert into sessions (session_id, episode_id, therapist_id, site_id,
                        session_date, session_number, srs_total, srs_relationship, srs_goals,
                        srs_approach, srs_overall)
                    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [ep * 10 + i, ep, ther, site, D(2026, 2, 2 + 7 * i), i + 1, total, *items],
                )
        # WAI-SR on episode 3's first session: Task items 4, Bond items 5, Goal items 3
        con.execute(
            """
            update sessions set wai_1 = 4, wai_2 = 4, wai_10 = 4, wai_12 = 4,
                wai_3 = 5, wai_5 = 5, wai_7 = 5, wai_9 = 5,
                wai_4 = 3, wai_6 = 3, wai_8 = 3, wai_11 = 3
            where session_id = 30
            """
        )
        db.set_meta(con, "dataset_kind", "clinic")
        db.rebuild_facts(con)


@pytest.fixture(scope="module")
def items_con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("profile") / "items.duckdb"
    build_items(path)
    con = db.open_read_only(path)
    yield con
    con.close()


def items_ctx(con, **filters) -> Context:
    f = Filters(first_month=D(2026, 1, 1), last_month=D(2026, 3, 1), **filters)
    return Context(con=con, filters=f, settings=Settings())


# --------------------------------------------------------------------------- hand-built


def test_dimension_scores_are_means_of_episode_means(items_con):
    df = profile_metrics.dimension_scores(items_ctx(items_con)).set_index("dimension")
    # episode means: heard 9.5, 8, 8; goals 8.5, 8, 8; approach 7.5, 6, 8; overall 8.5, 7, 8
    assert df.loc["heard", "mean_score"] == pytest.approx(8.5)
    assert df.loc["goals", "mean_score"] == pytest.approx(8.5 / 3 + 16 / 3)
    assert df.loc["approach", "mean_score"] == pytest.approx(21.5 / 3)
    assert df.loc["overall", "mean_score"] == pytest.approx(23.5 / 3)
    # the session with only a total does not count as an item administration
    assert df.loc["heard", "administrations"] == 6 and df.loc["heard", "episodes"] == 3
    assert df.loc["heard", "n_clients"] == 3
    # SD of 9.5, 8, 8 = sqrt(0.75); t interval with 2 df
    sd = 0.75**0.5
    assert df.loc["heard", "sd_score"] == pytest.approx(sd)
    half = sps.t.ppf(0.975, 2) * sd / 3**0.5
    assert df.loc["heard", "low"] == pytest.approx(8.5 - half)
    assert df.loc["heard", "high"] == pytest.approx(8.5 + half)
    assert df.loc["heard", "label"] == "Felt heard and respected"


def test_declared_columns_match_the_results(items_con):
    ctx = items_ctx(items_con)
    declared = list(queries.load("profile_dimensions").columns)
    for groupings in ([], ["site"], list(profile_metrics.ALL_GROUPINGS)):
        df = queries.run(
            items_con, "profile_dimensions", **ctx.params(), alliance="srs", groupings=groupings
        )
        assert list(df.columns) == declared
    groupings = set(profile_metrics.profile_table(ctx)["grouping"])
    assert groupings == {
        *profile_metrics.GROUP_BYS,
        "therapist/age_band",
        "therapist/gender",
        "therapist/race_ethnicity",
    }
    assert set(
        profile_metrics.profile_table(ctx, groupings=["program", *profile_metrics.DEMOGRAPHICS])[
            "grouping"
        ]
    ) == {"clinic", "program", *profile_metrics.DEMOGRAPHICS}
    assert set(profile_metrics.profile_table(ctx, groupings=[])["grouping"]) == {"clinic"}
    with pytest.raises(ValueError, match="unknown groupings"):
        profile_metrics.profile_table(ctx, groupings=["site", "postcode"])


def test_dimension_scores_by_unit(items_con):
    ctx = items_ctx(items_con)
    site = profile_metrics.dimension_scores(ctx, "site").set_index(["unit", "dimension"])
    assert site.loc[("North", "heard"), "mean_score"] == pytest.approx(8.75)
    assert site.loc[("South", "approach"), "mean_score"] == pytest.approx(8.0)
    assert np.isnan(site.loc[("South", "heard"), "low"])  # one episode: no interval
    male = profile_metrics.dimension_scores(ctx, "gender").set_index(["unit", "dimension"])
    assert male.loc[("male", "heard"), "mean_score"] == pytest.approx(8.0)
    assert male.loc[("male", "heard"), "low"] == pytest.approx(8.0)  # SD 0
    cells = profile_metrics.dimension_scores(ctx, "therapist", "gender")
    row = cells[(cells["unit"] == "T-AAAA") & (cells["subgroup"] == "male")]
    assert row.set_index("dimension").loc["approach", "mean_score"] == pytest.approx(6.0)
    month = profile_metrics.dimension_scores(ctx, "month").set_index(["unit", "dimension"])
    # February: episode 1 (both sessions), 2, 3 (first 3 Mondays... all in Feb/Mar)
    assert set(month.index.get_level_values(0)) <= {"2026-02-01", "2026-03-01"}


def test_a_grouping_is_the_same_whether_its_rows_are_together_or_not(items_con):
    """dimension_scores slices a grouping whose rows are together (the query orders them so)
    and picks them one by one otherwise: the same frame either way."""
    ctx = items_ctx(items_con)
    table = profile_metrics.profile_table(ctx)
    shuffled = table.sample(frac=1.0, random_state=3).reset_index(drop=True)
    for grouping in ("clinic", "site", "therapist/gender", "month"):
        together = profile_metrics.dimension_scores(ctx, *grouping.split("/"), table=table)
        apart = profile_metrics.dimension_scores(ctx, *grouping.split("/"), table=shuffled)
        assert len(together) > 0
        keys = ["unit", "subgroup", "dimension"]
        pd.testing.assert_frame_equal(
            together.sort_values(keys).reset_index(drop=True),
            apart.sort_values(keys).reset_index(drop=True),
        )
    empty = table[table["grouping"] != "site"]
    assert profile_metrics.dimension_scores(ctx, "site", table=empty).empty


def test_wai_dimensions_are_the_subscales(items_con):
    ctx = items_ctx(items_con, alliance_measure="wai")
    df = profile_metrics.dimension_scores(ctx).set_index("dimension")
    assert list(profile_metrics.dimensions(ctx)) == ["heard", "goals", "approach"]
    assert "overall" not in df.index
    assert df.loc["heard", "mean_score"] == pytest.approx(5.0)  # Bond
    assert df.loc["goals", "mean_score"] == pytest.approx(3.0)  # Goal
    assert df.loc["approach", "mean_score"] == pytest.approx(4.0)  # Task
    assert "Bond" in profile_text.items_caption(ctx)


def test_gap_vs_overall_by_hand():
    # group 1, 2, 3 (mean 2, var 1); rest 4, 6 (mean 5, var 2); all: mean 3.2, var 3.7
    gap, low, high = profile_metrics.gap_vs_overall(
        np.array([2.0]), np.array([1.0]), np.array([3.0]), 3.2, 3.7**0.5, 5.0
    )
    assert gap[0] == pytest.approx(-1.2)  # 2 - 3.2 = (2/5)(2 - 5)
    se = 0.4 * (1 / 3 + 2 / 2) ** 0.5
    assert low[0] == pytest.approx(-1.2 - 1.959963984540054 * se)
    assert high[0] == pytest.approx(-1.2 + 1.959963984540054 * se)
    # a group that is the whole clinic has no gap
    gap, low, high = profile_metrics.gap_vs_overall(
        np.array([3.2]), np.array([3.7**0.5]), np.array([5.0]), 3.2, 3.7**0.5, 5.0
    )
    assert (gap[0], low[0], high[0]) == (0.0, 0.0, 0.0)


def test_meeting_mode_labels_are_letters_by_volume(items_con):
    ctx = dataclasses.replace(items_ctx(items_con), meeting_mode=True)
    names = profile_metrics.therapist_labels(
        ["T-B", "T-A", "T-C"], ctx, pd.Series({"T-C": 9, "T-A": 5})
    )
    assert names == {"T-C": "Therapist A", "T-A": "Therapist B", "T-B": "Therapist C"}
    plain = profile_metrics.therapist_labels(["T-B"], items_ctx(items_con))
    assert plain == {"T-B": "T-B"}


def test_tiny_clinic_is_withheld(items_con):
    v = profile.build(items_ctx(items_con))
    assert v.notice and not v.panels


# --------------------------------------------------------------------------- demo clinic


@pytest.fixture(scope="module")
def demo_view(demo_con):
    ctx = Context(
        con=demo_con,
        filters=Filters(first_month=D(2025, 11, 1), last_month=D(2026, 10, 1)),
        settings=Settings(),
    )
    return ctx, profile.build(ctx)


def _all_text(v) -> str:
    parts = []
    for p in v.panels:
        parts += [p.title, p.reading, p.data.to_csv()]
        if p.figure is not None:
            parts.append(p.figure.to_json())
    return "\n".join(parts)


def test_profile_renders_on_the_demo_clinic(demo_view):
    ctx, v = demo_view
    assert v.notice is None
    assert [t.label for t in v.tiles] == list(profile_metrics.LABELS.values())
    keys = {p.key for p in v.panels}
    assert {"by_site", "weakest", "by_program", "by_month", "funnel_dimensions"} <= keys
    assert {"gap_race_ethnicity", "gap_age_band", "gap_gender", "therapist_gaps"} <= keys
    for p in v.panels:
        assert p.figure is not None, (p.key, p.message)
        layout = p.figure.layout
        assert layout.title.text and layout.title.subtitle.text, p.key
        assert "n = " in layout.title.subtitle.text or "shown" in layout.title.subtitle.text
        assert p.reading, p.key


def test_demo_item_structure_relationship_highest_approach_lowest(demo_view):
    _, v = demo_view
    values = {t.key: t.value for t in v.tiles}
    assert values["dim_heard"] > values["dim_goals"] > values["dim_approach"]
    assert values["dim_heard"] > values["dim_overall"] > values["dim_approach"]
    assert 8.5 < values["dim_approach"] < values["dim_heard"] < 9.8  # SRS means ~36-37 / 4


def test_captions_name_the_instrument_items(demo_view):
    _, v = demo_view
    text = _all_text(v)
    for name in profile_metrics.SRS_ITEMS.values():
        assert name in text


def test_weakest_marks_only_clear_gaps(demo_view):
    _, v = demo_view
    data = next(p for p in v.panels if p.key == "weakest").data
    marked = data[data["weakest"]]
    assert len(marked) >= 1  # Westbrook (opened 2026) is below the clinic in the demo
    assert (marked["gap_high"] < 0).all()
    assert marked.groupby(["kind", "unit"]).size().max() == 1


def test_withheld_cells_show_no_values(demo_view):
    ctx, v = demo_view
    for p in v.panels:
        d = p.data
        if "suppressed" not in d or d.empty:
            continue
        hidden = d[d["suppressed"].astype(bool)]
        assert hidden["n_clients"].isna().all(), p.key
        shown = d[~d["suppressed"].astype(bool)]
        assert (shown["n_clients"].dropna() >= ctx.policy.k).all(), p.key
        for col in ("mean_score", "gap", "shrunk"):
            if col in hidden:
                assert hidden[col].isna().all(), (p.key, col)


def test_shrunken_gaps_lie_between_raw_gap_and_centre(demo_view):
    ctx, _ = demo_view
    df = profile_therapists.therapist_gaps(ctx).dropna(subset=["shrunk", "raw_gap", "centre"])
    assert len(df) > 50
    assert (
        (df["shrunk"] - df["centre"]).abs() <= (df["raw_gap"] - df["centre"]).abs() + 1e-9
    ).all()


def test_meeting_mode_and_therapist_level(demo_view):
    ctx, _ = demo_view
    meeting = profile.build(dataclasses.replace(ctx, meeting_mode=True))
    text = _all_text(meeting)
    assert "Therapist A" in text and "T-" not in text
    hidden = profile.build(dataclasses.replace(ctx, therapist_level=False))
    assert "T-" not in _all_text(hidden)
    assert not any(p.key.startswith("funnel") and p.figure is not None for p in hidden.panels)
    assert any("not available for your role" in (p.message or "") for p in hidden.panels)


def test_each_section_builds_exactly_its_part_of_the_whole_page(demo_view):
    """The page builds one section at a time: its tiles and panels are those of the whole
    view (the report's), panel for panel, and together the sections are the whole view."""
    ctx, whole = demo_view
    sections_make_the_whole(profile, ctx, whole)
    assert [p.key for p in profile.build(ctx, "where").panels] == [
        "by_site",
        "weakest",
        "by_program",
        "by_month",
    ]
    with pytest.raises(ValueError, match="unknown section"):
        profile.build(ctx, "everything")


def test_viewers_get_no_therapist_section(demo_view, monkeypatch):
    ctx, _ = demo_view
    viewer = dataclasses.replace(ctx, therapist_level=False)
    assert list(profile.sections(viewer)) == ["where", "background"]
    assert list(profile.sections(ctx)) == ["where", "therapists", "background"]
    # asked for anyway (a hand-made link), it says why
    v = profile.build(viewer, "therapists")
    assert "T-" not in _all_text(v)
    assert all(p.figure is None and "not available" in p.message for p in v.panels)


def test_each_section_asks_only_for_its_groupings(demo_view, monkeypatch):
    """A section's query forms exactly the groupings it shows; a viewer's never a therapist
    grouping, whichever section (or the whole page) is built."""
    ctx, _ = demo_view
    asked = groupings_asked(monkeypatch, "profile_dimensions")
    for section, groupings in profile_metrics.SECTION_GROUPINGS.items():
        profile.build(ctx, section)
        assert asked.pop() == list(groupings), section
    profile.build(ctx)
    assert asked.pop() == [g for gs in profile_metrics.SECTION_GROUPINGS.values() for g in gs]
    viewer = dataclasses.replace(ctx, therapist_level=False)
    for section in [*profile.SECTIONS, None]:
        profile.build(viewer, section)
        assert not [g for g in asked.pop() if g.startswith("therapist")], section
    assert not asked


def test_wai_profile_on_the_demo_clinic(demo_view):
    ctx, _ = demo_view
    v = profile.build(
        dataclasses.replace(ctx, filters=dataclasses.replace(ctx.filters, alliance_measure="wai"))
    )
    assert [t.label for t in v.tiles] == [
        profile_metrics.LABELS[d] for d in ("heard", "goals", "approach")
    ]
    values = {t.key: t.value for t in v.tiles}
    assert values["dim_heard"] > values["dim_approach"]  # Bond highest, Task lowest
    assert 3.5 < values["dim_approach"] < 4.3
    assert "WAI-SR Task subscale" in _all_text(v)


# --------------------------------------------------------------------------- the page


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)


def _titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_profile_page_renders(app_env):
    """One section at a time, chosen under the tiles; the tiles stay."""
    at = _app().run()
    at.switch_page("pages/profile.py").run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert labels[:4] == list(profile_metrics.LABELS.values())
    picker = at.segmented_control(key="show_profile")
    assert picker.value == profile.SECTIONS["where"]
    assert picker.options == list(profile.SECTIONS.values())
    assert _titles(at) == [
        "The alliance dimensions by site",
        "Which dimension is weakest, for whom",
        "The alliance dimensions by program",
        "The alliance dimensions by month",
    ]
    picker.set_value(profile.SECTIONS["therapists"]).run()
    assert not at.exception
    assert [m.label for m in at.metric][:4] == list(profile_metrics.LABELS.values())
    assert _titles(at) == [
        "The alliance dimensions by therapist",
        "Does a group's gap differ between therapists?",
    ]
    at.segmented_control(key="show_profile").set_value(profile.SECTIONS["background"]).run()
    assert not at.exception
    assert _titles(at) == [
        f"The alliance dimensions by {label.lower()}"
        for label in profile_metrics.DEMOGRAPHICS.values()
    ]


def test_profile_page_switches_to_wai(app_env):
    at = _app().run()
    at.switch_page("pages/profile.py").run()
    at.radio(key="f_alliance").set_value("wai").run()
    assert not at.exception
    assert [m.label for m in at.metric][:3] == [
        profile_metrics.LABELS[d] for d in ("heard", "goals", "approach")
    ]
    assert "Overall" not in [m.label for m in at.metric]


def test_a_link_opens_its_section_and_ignores_another_pages(app_env):
    """?show=<label> opens that section; a label of another page's section (or a section this
    page does not have) leaves the first section open."""
    at = _app()
    at.query_params["show"] = profile.SECTIONS["background"]
    at.switch_page("pages/profile.py").run()  # the link's page is the first one run
    assert not at.exception
    assert at.segmented_control(key="show_profile").value == profile.SECTIONS["background"]
    assert len(_titles(at)) == 3
    other = _app()
    other.query_params["show"] = "Over time"  # a Ruptures & repair section
    other.switch_page("pages/profile.py").run()
    assert not other.exception
    assert other.segmented_control(key="show_profile").value == profile.SECTIONS["where"]
    # a section named in a link to a page without sections is not carried to a later page
    later = _app()
    later.query_params["show"] = profile.SECTIONS["therapists"]
    later.run()  # the overview
    later.switch_page("pages/profile.py").run()
    assert later.segmented_control(key="show_profile").value == profile.SECTIONS["where"]


def test_a_selection_too_small_shows_its_notice_without_the_picker(app_env):
    at = _app().run()
    at.switch_page("pages/profile.py").run()
    at.selectbox(key="f_therapist").set_value(at.selectbox(key="f_therapist").options[1])
    at.select_slider(key="f_period").set_value(("2026-10", "2026-10")).run()
    assert not at.exception
    assert at.warning, "a notice says why nothing is shown"
    assert not [w for w in at.segmented_control if w.key == "show_profile"]
    assert not at.get("plotly_chart")
