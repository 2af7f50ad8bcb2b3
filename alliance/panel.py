"""What a page shows, as data: tiles and panels built by pure view functions.

A view (alliance/views/*.py) turns (database, filters, settings, privacy policy) into a `View`.
The Streamlit page only lays it out; the report pack, the chart exports and the benchmark use the
very same objects, so what is exported is exactly what is on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import noise as noise_mod
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
    # whether the change is beyond chance (its 95% interval for the difference between the two
    # periods excludes zero); None = not judged. Only a change beyond chance is coloured.
    delta_significant: bool | None = None

    def value_text(self, suppressed_label: str) -> str:
        if self.withheld:
            return suppressed_label
        return "–" if self.value is None else format(self.value, self.fmt)

    def delta_text(self) -> str | None:
        """A change in a rate is shown in percentage points, not percent."""
        if self.delta is None:
            return None
        if self.delta_fmt.endswith("%"):
            text = f"{self.delta * 100:+.1f} pts"
        else:
            text = format(self.delta, self.delta_fmt)
        if self.delta_significant is False:
            text += " (no clear change)"
        return text

    def delta_colour(self) -> str:
        """Streamlit's delta_color: red or green only for a change beyond chance in a figure
        with a better direction; otherwise neutral ("off")."""
        if self.delta_significant is not True or self.higher_is_better is None:
            return "off"
        return "normal" if self.higher_is_better else "inverse"


Z95 = 1.959963984540054
DELTA_RULE = (
    "The change against the previous period is coloured (red or green) only when it is beyond "
    "chance: when the 95% interval for the difference between the two periods excludes zero "
    "(rates: difference of two proportions with both periods' protected counts and the "
    "protection's noise; means: from both standard errors; r: Fisher-z difference); otherwise "
    "it is shown neutral, as 'no clear change'."
)


def with_delta_rule(help_text: str) -> str:
    """A tile's help with the colour rule of its change."""
    return f"{help_text} {DELTA_RULE}".strip()


def delta_interval(
    kind: str,
    now: tuple,
    before: tuple,
    noise: NoiseParams,
    *,
    record_range: float | None = None,
    z: float = Z95,
) -> tuple[float, float]:
    """The 95% interval of the difference now - before between two periods' figures.

    kind "rate": now/before = (rate, protected n): SE² = p(1 - p)/n + the noise's variance of
    a rate from two protected counts (noise.rate_noise_variance), for each period.
    kind "mean": (mean, protected n, SD): SE² = SD²/n + the noise's variance of the mean
    (noise.mean_noise_variance over `record_range`).
    kind "se": (value, SE) as given (e.g. from a shown interval).
    kind "r": (r, n): on Fisher's z scale, atanh(r1) - atanh(r2) ± z √(1/(n1-3) + 1/(n2-3)).
    NaN bounds when a figure or its spread is missing.
    """

    def var(part: tuple) -> tuple[float, float]:
        if kind == "rate":
            p, n = float(part[0]), float(part[1])
            if not n > 0:
                return p, math.nan
            extra = float(noise_mod.rate_noise_variance(np.array([p]), np.array([n]), noise)[0])
            return p, p * (1 - p) / n + extra
        if kind == "mean":
            m, n, sd = float(part[0]), float(part[1]), float(part[2])
            if not n > 0:
                return m, math.nan
            extra = 0.0
            if record_range is not None:
                extra = float(noise_mod.mean_noise_variance(np.array([n]), record_range, noise)[0])
            return m, sd**2 / n + extra
        if kind == "se":
            return float(part[0]), float(part[1]) ** 2
        if kind == "r":
            r, n = float(part[0]), float(part[1])
            if not n > 3 or not abs(r) < 1:
                return math.nan, math.nan
            return math.atanh(r), 1 / (n - 3)
        raise ValueError(f"unknown kind {kind!r}")

    a, va = var(now)
    b, vb = var(before)
    half = z * math.sqrt(va + vb) if math.isfinite(va + vb) else math.nan
    return a - b - half, a - b + half


def beyond_chance(interval: tuple[float, float]) -> bool | None:
    """True when the interval excludes zero, False when it holds it, None when unknown."""
    lo, hi = interval
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return bool(lo > 0 or hi < 0)


def se_from_ci(ci: object, z: float = Z95) -> float:
    """The SE behind a shown symmetric-enough 95% interval [low, high]: (high - low) / 2z."""
    if not ci:
        return math.nan
    lo, hi = ci  # type: ignore[misc]
    return (float(hi) - float(lo)) / (2 * z)


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
    selectable: bool = False  # its points can be clicked to choose a therapist (funnel plots)


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
