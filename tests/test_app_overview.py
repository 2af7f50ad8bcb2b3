"""AppTest: the Overview page renders and follows the global filters and the URL."""

from __future__ import annotations

import ast
import json

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT


def test_every_page_script_starts_with_the_frame_guard():
    """Each page must call ui.frame_guard() before it reads filters or the database: without
    it, a server whose first request is that page's URL runs the page outside dashboard.py
    (the browser test checks one such deep link on a fresh server)."""
    for script in sorted((ROOT / "pages").glob("*.py")):
        runs = [  # top-level statements that call something (definitions do not run yet)
            node
            for node in ast.parse(script.read_text()).body
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef))
            and any(isinstance(n, ast.Call) for n in ast.walk(node))
        ]
        assert runs and ast.unparse(runs[0]) == "ui.frame_guard()", (
            f"{script.name}: the first statement that runs must be ui.frame_guard()"
        )


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)


def test_overview_renders_tiles_and_charts(app_env):
    at = _app().run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "Dropout rate" in labels and "Alliance–outcome r" in labels
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    spec = json.loads(charts[0].proto.spec)
    assert "Alliance by month" in spec["layout"]["title"]["text"]
    assert "n = " in spec["layout"]["title"]["subtitle"]["text"]
    assert any("Demo data" in i.value for i in at.info)


def test_changing_a_filter_changes_the_numbers(app_env):
    at = _app().run()
    before = [m.value for m in at.metric]
    at.selectbox(key="f_site").set_value("Riverside").run()
    assert not at.exception
    after = [m.value for m in at.metric]
    assert after != before
    assert at.query_params["site"] == ["Riverside"] or at.query_params["site"] == "Riverside"


def test_url_filters_apply_and_bad_values_are_ignored_with_a_notice(app_env):
    at = _app()
    at.query_params["site"] = "Northside"
    at.query_params["from"] = "2099-01"
    at.query_params["race"] = "x' or 1=1 --"
    at.run()
    assert not at.exception
    assert at.selectbox(key="f_site").value == "Northside"
    notices = " ".join(w.value for w in at.sidebar.warning)
    assert "2099-01" in notices and "race/ethnicity" in notices
