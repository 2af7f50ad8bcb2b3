"""What the frame (dashboard.py, alliance/ui.py) does on every run, kept cheap: the derived-facts
check and the meta table are read once per version of the database file, and the objects that
live as long as the process are frozen out of the garbage collector's full collections."""

from __future__ import annotations

import gc
import shutil
import sys
import types

import pytest

from alliance import db, ui
from alliance.charts import screen_margins


@pytest.fixture
def clinic_copy(demo_db, tmp_path, monkeypatch):
    path = tmp_path / "alliance.duckdb"
    shutil.copyfile(demo_db, path)
    monkeypatch.setenv("ALLIANCE_DB", str(path))
    monkeypatch.setattr(ui, "_FACTS_CURRENT", set())
    return path


def test_the_facts_check_opens_each_version_of_the_file_once(clinic_copy, monkeypatch):
    opened = []

    def facts_are_current(path):
        opened.append(path)
        return real(path)

    real = db.facts_are_current
    monkeypatch.setattr(db, "facts_are_current", facts_are_current)
    ui.ensure_database()
    ui.ensure_database()
    assert len(opened) == 1

    # a writer swaps in a file an earlier version built: checked again, and refreshed
    with db.writer(clinic_copy) as con:
        con.execute("drop table ended_sessions")
        db.set_meta(con, "facts_version", "earlier")
    ui.ensure_database()
    assert len(opened) == 2
    assert real(clinic_copy)
    ui.ensure_database()  # the refreshed file is a new one: checked once more
    ui.ensure_database()  # and then known current
    assert len(opened) == 3


def test_meta_is_read_again_when_a_writer_swaps_the_file(clinic_copy):
    first = ui.meta()
    assert first["dataset_kind"] == "demo"
    first["dataset_kind"] = "changed by a caller"  # a copy: the cached table is untouched
    assert ui.meta()["dataset_kind"] == "demo"
    with db.writer(clinic_copy) as con:
        db.set_meta(con, "data_version", "after-import")
    assert ui.data_version() == "after-import"


@pytest.fixture
def unfrozen(monkeypatch):
    monkeypatch.setattr(ui, "_FROZEN_AT_MODULES", 0)
    gc.unfreeze()
    yield
    gc.unfreeze()


def _collections(fn) -> int:
    runs = []

    def seen(phase, info):
        if phase == "stop":
            runs.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        fn()
    finally:
        gc.callbacks.remove(seen)
    return len(runs)


def test_long_lived_objects_are_frozen_once_per_new_module(unfrozen, monkeypatch):
    assert gc.get_freeze_count() == 0
    assert _collections(ui.freeze_long_lived_objects) == 1  # collect, then freeze
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # the imported modules' objects
    # a full collection no longer walks them
    assert len(gc.get_objects(generation=2)) < frozen / 10

    assert _collections(ui.freeze_long_lived_objects) == 0  # nothing new imported: no work
    assert gc.get_freeze_count() == frozen

    marker = [object()]  # alive at the next freeze: frozen, outside every generation
    monkeypatch.setitem(sys.modules, "alliance_page_first_visited", types.ModuleType("x"))
    assert _collections(ui.freeze_long_lived_objects) == 1
    assert len(sys.modules) == ui._FROZEN_AT_MODULES
    assert all(o is not marker for o in gc.get_objects())


def test_a_new_freeze_lets_what_died_since_be_collected(unfrozen, monkeypatch):
    class Cycle:
        pass

    import weakref

    a = Cycle()
    a.self = a
    alive = weakref.ref(a)
    ui.freeze_long_lived_objects()
    del a
    gc.collect()
    assert alive() is not None  # frozen: a full collection does not reach it
    monkeypatch.setitem(sys.modules, "alliance_page_first_visited", types.ModuleType("x"))
    ui.freeze_long_lived_objects()
    assert alive() is None


def test_a_chart_is_drawn_with_screen_margins_and_keeps_its_own(demo_ctx, demo_db, monkeypatch):
    """render_panel draws with screen_margins.screen_margins; the figure, which the exports draw later,
    keeps the margins it was built with."""
    import plotly.graph_objects as go

    from alliance.panel import Panel

    monkeypatch.setenv("ALLIANCE_DB", str(demo_db))
    fig = go.Figure(go.Bar(x=[3, 5], y=["Native Hawaiian or Pacific Islander", "White"],
                           orientation="h"))  # fmt: skip
    drawn = []
    real = ui.st.plotly_chart

    def plotly_chart(figure, **kwargs):
        drawn.append(figure.layout.margin.l)
        return real(figure, **kwargs)

    monkeypatch.setattr(ui.st, "plotly_chart", plotly_chart)
    ui.render_panel(Panel("bars", "Bars", "", "", fig), demo_ctx)
    assert drawn == [screen_margins.screen_margins(fig)["l"]]
    assert fig.layout.margin.l is None

    heat = go.Figure(go.Heatmap(z=[[1, 2]], x=["a", "b"], y=["row"]))
    heat.update_layout(margin_l=90)  # its own: kept
    ui.render_panel(Panel("heat", "Heat", "", "", heat), demo_ctx)
    assert drawn[-1] == 90
    assert (heat.layout.margin.l, heat.layout.margin.r) == (90, None)

    def failing(figure, **kwargs):
        raise RuntimeError("the browser went away")

    monkeypatch.setattr(ui.st, "plotly_chart", failing)
    with pytest.raises(RuntimeError):
        ui.render_panel(Panel("bars", "Bars", "", "", fig), demo_ctx)
    assert fig.layout.margin.l is None
