"""Ruptures & repair on the demo clinic: the view renders, its numbers are plausible and follow
metrics.md, the settings are printed on every chart, and the page works in AppTest."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from streamlit.testing.v1 import AppTest

from alliance.filters import Filters
from alliance.metrics import ruptures as rupture_metrics
from alliance.panel import Context
from alliance.settings import Settings
from alliance.views import ruptures
from tests.conftest import ROOT, groupings_asked, sections_make_the_whole

D = dt.date


@pytest.fixture(scope="module")
def demo_view(demo_con):
    ctx = Context(
        con=demo_con,
        filters=Filters(first_month=D(2025, 11, 1), last_month=D(2026, 10, 1)),
        settings=Settings(),
    )
    return ctx, ruptures.build(ctx)


def _all_text(v) -> str:
    parts = []
    for p in v.panels:
        parts += [p.title, p.reading, p.data.to_csv()]
        if p.figure is not None:
            parts.append(p.figure.to_json())
    return "\n".join(parts)


def test_view_renders_on_the_demo_clinic(demo_view):
    _, v = demo_view
    assert v.notice is None
    assert [t.label for t in v.tiles] == [
        "Ruptures per 100 SRS",
        "Repair rate",
        "Unrepaired ruptures",
        "Still open",
    ]
    keys = {p.key for p in v.panels}
    assert {
        "rupture_monthly",
        "repair_monthly",
        "funnel_site",
        "funnel_therapist",
        "followup_dropout",
        "followup_outcome",
        "rupture_items",
    } <= keys
    for p in v.panels:
        assert p.figure is not None, (p.key, p.message)
        assert p.reading


def test_rates_are_plausible(demo_view):
    ctx, _ = demo_view
    s = rupture_metrics.rupture_summary(ctx)
    # clients report ruptures in 19-42% of sessions; an SRS drop of >= 2 points catches fewer
    assert 8 < s["rupture_rate_per_100"] < 25
    assert 0.3 < s["repair_rate"] < 0.7
    low, high = s["repair_rate_ci"]
    assert low < s["repair_rate"] < high and high - low < 0.1
    assert s["ruptures"] == s["repaired"] + s["unrepaired"] + s["open"]
    assert 0 < s["open"] < 0.2 * s["ruptures"]  # only the last weeks' ruptures are open
    json.dumps(s)  # the CLI prints it as JSON


def test_summary_adds_up_over_months_and_therapists(demo_view):
    ctx, _ = demo_view
    s = rupture_metrics.rupture_summary(ctx)
    for unit in ("month", "site", "therapist"):
        df = rupture_metrics.rupture_counts(ctx, unit)
        assert int(df["ruptures"].sum()) == s["ruptures"], unit
        assert int(df["repaired"].sum()) == s["repaired"], unit
        assert int(df["with_previous"].sum()) == s["with_previous"], unit


def test_settings_are_printed_on_every_chart(demo_view):
    ctx, v = demo_view
    for p in v.panels:
        sub = p.figure.layout.title.subtitle.text
        assert "≥ 2 points below the episode's previous SRS" in sub, p.key
        assert "within the next 2 SRS administrations" in sub, p.key
    other = ruptures.build(
        dataclasses.replace(ctx, settings=Settings(rupture_threshold=3.0, repair_window=1))
    )
    for p in other.panels:
        if p.figure is not None:
            sub = p.figure.layout.title.subtitle.text
            assert "≥ 3 points" in sub and "next 1 SRS administration" in sub, p.key


def test_repaired_episodes_improve_more_than_unrepaired(demo_view):
    ctx, v = demo_view
    out = next(p for p in v.panels if p.key == "followup_outcome").data.set_index("group")
    repaired = out.loc[rupture_metrics.GROUP_LABELS["repaired"], "mean_improvement"]
    unrepaired = out.loc[rupture_metrics.GROUP_LABELS["unrepaired"], "mean_improvement"]
    assert repaired > unrepaired
    drop = next(p for p in v.panels if p.key == "followup_dropout")
    assert "association, not a cause" in drop.reading
    # the year's repaired group has 8 dropouts: its rate is withheld (numerator rule), and with
    # it the risk difference; over three years both groups have enough dropouts
    assert drop.stats == {} and drop.data["suppressed"].any()
    ctx3 = dataclasses.replace(
        ctx, filters=dataclasses.replace(ctx.filters, first_month=D(2023, 11, 1))
    )
    drop3 = next(p for p in ruptures.build(ctx3, "after").panels if p.key == "followup_dropout")
    assert drop3.stats["risk_difference"] > 0  # more dropout after unrepaired ruptures


def test_approach_drops_most_at_ruptures(demo_view):
    _, v = demo_view
    items = next(p for p in v.panels if p.key == "rupture_items").data.set_index("dimension")
    assert items["mean_drop"].idxmax() == "Approach fit me"
    assert items["largest_share"].idxmax() == "Approach fit me"


def test_meeting_mode_and_therapist_level(demo_view):
    ctx, _ = demo_view
    meeting = ruptures.build(dataclasses.replace(ctx, meeting_mode=True))
    text = _all_text(meeting)
    assert "Therapist A" in text and "T-" not in text
    hidden = ruptures.build(dataclasses.replace(ctx, therapist_level=False))
    assert "T-" not in _all_text(hidden)
    assert not any("therapist" in p.key and p.figure is not None for p in hidden.panels)


def test_withheld_months_and_therapists_show_no_values(demo_view):
    ctx, v = demo_view
    for p in v.panels:
        d = p.data
        if "suppressed" not in d:
            continue
        hidden = d[d["suppressed"].astype(bool)]
        assert hidden["n_clients"].isna().all(), p.key
        shown = d[~d["suppressed"].astype(bool)]
        assert (shown["n_clients"].dropna() >= ctx.policy.k).all(), p.key


# --------------------------------------------------------------------------- the page


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)


def test_each_section_builds_exactly_its_part_of_the_whole_page(demo_view):
    """The page builds one section at a time: its tiles and panels are those of the whole
    view (the report's), panel for panel, and together the sections are the whole view."""
    ctx, whole = demo_view
    sections_make_the_whole(ruptures, ctx, whole)
    with pytest.raises(ValueError, match="unknown section"):
        ruptures.build(ctx, "everything")


def test_each_section_asks_only_for_its_units(demo_view, monkeypatch):
    """A section's rupture query forms exactly the units it shows (the tiles' previous period:
    the clinic alone); a viewer's never the therapist unit, whichever section is built."""
    ctx, _ = demo_view
    asked = groupings_asked(monkeypatch, "rupture_rates")
    for section, units in rupture_metrics.SECTION_UNITS.items():
        ruptures.build(ctx, section)
        assert sorted(asked[-2:]) == sorted([list(units), []]), section
        asked.clear()
    viewer = dataclasses.replace(ctx, therapist_level=False)
    for section in [*ruptures.SECTIONS, None]:
        v = ruptures.build(viewer, section)
        assert not [u for units in asked for u in units if u == "therapist"], section
        assert "T-" not in _all_text(v)
        asked.clear()


def _titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_ruptures_page_renders(app_env):
    """One section at a time, chosen under the tiles; the tiles stay."""
    at = _app().run()
    at.switch_page("pages/ruptures.py").run()
    assert not at.exception
    assert [m.label for m in at.metric][:2] == ["Ruptures per 100 SRS", "Repair rate"]
    picker = at.segmented_control(key="show_ruptures")
    assert picker.options == list(ruptures.SECTIONS.values())
    assert picker.value == ruptures.SECTIONS["time"]
    charts = at.get("plotly_chart")
    assert _titles(at) == ["Rupture rate by month", "Repair rate by month"]
    spec = json.loads(charts[0].proto.spec)
    assert "≥ 2 points" in spec["layout"]["title"]["subtitle"]["text"]
    picker.set_value(ruptures.SECTIONS["units"]).run()
    assert not at.exception
    assert _titles(at) == [
        "Rupture and repair rates by site",
        "Rupture and repair rates by therapist",
    ]
    at.segmented_control(key="show_ruptures").set_value(ruptures.SECTIONS["after"]).run()
    assert not at.exception
    assert len(_titles(at)) == 3 and "Which part of the alliance drops at a rupture" in _titles(at)
    assert [m.label for m in at.metric][:2] == ["Ruptures per 100 SRS", "Repair rate"]


def test_ruptures_page_follows_the_site_filter(app_env):
    at = _app().run()
    at.switch_page("pages/ruptures.py").run()
    before = [m.value for m in at.metric]
    at.selectbox(key="f_site").set_value("Riverside").run()
    assert not at.exception
    assert [m.value for m in at.metric] != before
