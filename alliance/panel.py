"""What a page shows, as data: tiles and panels built by pure view functions.

A view (alliance/views/*.py) turns (database, filters, settings, privacy policy) into a `View`.
The Streamlit page only lays it out; the report pack, the chart exports and the benchmark use the
very same objects, so what is exported is exactly what is on screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pandas as pd
import plotly.graph_objects as go

from alliance.filters import Filters
from alliance.noise import NoiseParams
from alliance.privacy import PrivacyPolicy
from alliance.settings import Settings


@dataclass(frozen=True)
class Context:
    """Everything a view needs. `allowed_sites` is the signed-in role's site restriction."""

    con: duckdb.DuckDBPyConnection
    filters: Filters
    settings: Settings
    allowed_sites: list[str] | None = None
    therapist_level: bool = True  # False for roles that may not see therapist-level data
    meeting_mode: bool = False  # replace therapist codes with A, B, C... per view

    @property
    def policy(self) -> PrivacyPolicy:
        return PrivacyPolicy(k=self.settings.privacy_k)

    @property
    def noise(self) -> NoiseParams:
        """The perturbation's settings; impossible values in a hand-edited settings file fall
        back to the defaults, so the protection never lapses."""
        s = self.settings
        try:
            return NoiseParams(
                max_noise=s.noise_max, variance=s.noise_variance, sum_share=s.noise_sum_share
            )
        except (TypeError, ValueError):
            return NoiseParams()

    def params(self, filters: Filters | None = None) -> dict[str, object]:
        return (filters or self.filters).sql_params(self.allowed_sites)


@dataclass(frozen=True)
class Tile:
    """A headline number with its change against the previous period and its n."""

    key: str
    label: str
    value: float | None  # None = withheld or not computable
    fmt: str  # python format spec, e.g. '.1%' or ',.0f'
    n_text: str
    help: str
    delta: float | None = None
    delta_fmt: str = "+.1%"
    higher_is_better: bool | None = True
    withheld: bool = False

    def value_text(self, suppressed_label: str) -> str:
        if self.withheld:
            return suppressed_label
        return "–" if self.value is None else format(self.value, self.fmt)

    def delta_text(self) -> str | None:
        """A change in a rate is shown in percentage points, not percent."""
        if self.delta is None:
            return None
        if self.delta_fmt.endswith("%"):
            return f"{self.delta * 100:+.1f} pts"
        return format(self.delta, self.delta_fmt)


@dataclass(frozen=True)
class Panel:
    """One chart with its explanation and the (suppressed) data behind it."""

    key: str
    title: str
    subtitle: str  # measure · definition · period · n (and the settings it depends on)
    reading: str  # how to read it and what it does not show
    figure: go.Figure | None
    data: pd.DataFrame = field(default_factory=pd.DataFrame)
    message: str | None = None  # shown instead of a chart when there is nothing to show
    withheld: bool = False  # any cell withheld by the privacy rule
    section: str = ""
    stats: dict[str, float] = field(default_factory=dict)  # headline numbers shown beside it


@dataclass(frozen=True)
class View:
    title: str
    question: str
    tiles: list[Tile] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    notice: str | None = None  # e.g. the minimum-cohort explanation instead of numbers
    n_clients: int = 0


def empty_panel(key: str, title: str, message: str, section: str = "") -> Panel:
    return Panel(
        key=key, title=title, subtitle="", reading="", figure=None, message=message, section=section
    )
