"""The perturbation's settings on the Settings page: saved when possible, refused with a plain
sentence (and nothing written) when not; an impossible file falls back to the defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alliance.noise import NoiseParams
from alliance.settings import Settings
from tests.conftest import ROOT

LARGEST = "Largest adjustment to a count"
VARIANCE = "Variance of that adjustment"


@pytest.fixture
def own_db(app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "alliance.duckdb"
    shutil.copyfile(app_env, path)
    monkeypatch.setenv("ALLIANCE_DB", str(path))
    return path


def _save(at: AppTest, largest: int, variance: float) -> AppTest:
    at.switch_page("pages/settings.py").run()
    next(n for n in at.number_input if n.label == LARGEST).set_value(largest)
    next(n for n in at.number_input if n.label == VARIANCE).set_value(variance)
    next(b for b in at.button if b.label == "Save settings").click().run()
    assert not at.exception
    return at


def test_noise_settings_are_saved_from_the_settings_page(own_db: Path) -> None:
    at = _save(AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run(), 3, 4.0)
    saved = json.loads(own_db.with_name(own_db.stem + ".settings.json").read_text())
    assert (saved["noise_max"], saved["noise_variance"]) == (3, 4.0)
    assert not at.error


def test_an_impossible_variance_is_refused_and_nothing_is_written(own_db: Path) -> None:
    at = _save(AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run(), 2, 9.0)
    assert any("Not saved" in e.value and "at most 2.5" in e.value for e in at.error)
    assert not own_db.with_name(own_db.stem + ".settings.json").exists()


def test_an_impossible_settings_file_keeps_the_default_protection() -> None:
    from alliance.panel import Context

    ctx = Context(con=None, filters=None, settings=Settings(noise_max=0, noise_variance=-1))  # type: ignore[arg-type]
    assert ctx.noise == NoiseParams()
