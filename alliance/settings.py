"""Settings: every cutoff and method that ../shared/metrics.md calls a setting, with its default.

Charts and exports print the values in force (see `Settings.describe`), so a reader always
knows which definition a number follows.

The settings file is checked when it is read and when it is saved (`Settings.problems`): a value
of the wrong kind or outside its range (`RANGES`, the Settings page's own limits) is refused with
a plain sentence (`SettingsError`). The app reads it leniently (`Settings.read`): what cannot be
used falls back to its default, and a banner says so until a director saves the settings again.
`Settings()` and `Settings.replace` are not checked (code and tests may use any value).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Overdispersion = Literal["none", "multiplicative", "additive"]


@dataclass(frozen=True)
class Measure:
    """An outcome measure: its direction, clinical range and reliable change."""

    key: str
    label: str
    higher_is_better: bool
    max_score: float

    @property
    def direction_text(self) -> str:
        return "higher = better" if self.higher_is_better else "higher = worse"


MEASURES: dict[str, Measure] = {
    "ors": Measure("ors", "ORS", True, 40),
    "phq9": Measure("phq9", "PHQ-9", False, 27),
    "gad7": Measure("gad7", "GAD-7", False, 21),
}
ALLIANCE_MEASURES = {"srs": "SRS", "wai": "WAI-SR"}


class SettingsError(ValueError):
    """A settings file or value that cannot be used; str() is a plain sentence."""


# the valid range of each number (the Settings page's own limits) and its name on that page
RANGES: dict[str, tuple[float, float, str]] = {
    "srs_cutoff": (0.0, 40.0, "SRS cutoff"),
    "ors_clinical": (0.0, 40.0, "ORS clinical cutoff"),
    "ors_reliable_change": (0.5, 40.0, "ORS reliable change"),
    "phq9_clinical": (0.0, 27.0, "PHQ-9 caseness"),
    "phq9_reliable_change": (1.0, 27.0, "PHQ-9 reliable change"),
    "gad7_clinical": (0.0, 21.0, "GAD-7 caseness"),
    "gad7_reliable_change": (1.0, 21.0, "GAD-7 reliable change"),
    "privacy_k": (5, 100, "smallest group shown"),
    "noise_max": (1, 5, "largest adjustment to a count"),
    "noise_variance": (0.1, 15.0, "variance of that adjustment"),
    "noise_sum_share": (0.0, 1.0, "largest adjustment to a sum"),
    "spc_baseline_months": (3, 36, "control-chart baseline in months"),
    "rupture_threshold": (0.5, 20.0, "rupture threshold in SRS points"),
    "repair_window": (1, 6, "repair window in SRS administrations"),
}
WHOLE_NUMBERS = frozenset({"privacy_k", "noise_max", "spc_baseline_months", "repair_window"})
OVERDISPERSION = ("none", "multiplicative", "additive")
CLINIC_NAME_MAX = 80
NOISE_FIELDS = ("noise_max", "noise_variance", "noise_sum_share")


def _number(name: str, value: object) -> tuple[object, str | None]:
    """`value` as the field's type, or the reason it cannot be used."""
    low, high, label = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value, f"{label} ({name}) must be a number, not {json.dumps(value)}"
    if not math.isfinite(value):
        return value, f"{label} ({name}) must be a number, not {value}"
    if name in WHOLE_NUMBERS:
        if value != int(value):
            return value, f"{label} ({name}) must be a whole number, not {value:g}"
        value = int(value)
    else:
        value = float(value)
    if not low <= value <= high:
        return value, f"{label} ({name}) is {value:g}, but must be between {low:g} and {high:g}"
    return value, None


@dataclass(frozen=True)
class Settings:
    srs_cutoff: float = 36.0  # SRS total below this = below cutoff (OpenFIT < 36)
    ors_clinical: float = 25.0  # ORS total below this = clinical range (adults)
    ors_reliable_change: float = 5.0
    phq9_clinical: float = 10.0  # PHQ-9 at or above = caseness
    phq9_reliable_change: float = 6.0
    gad7_clinical: float = 8.0
    gad7_reliable_change: float = 4.0
    overdispersion: Overdispersion = "additive"
    privacy_k: int = 11
    noise_max: int = 2  # cell-key perturbation: the largest change to a count (alliance/noise.py)
    noise_variance: float = 2.0  # ... the variance of that change (2 with max 2: -2..+2 each 1/5)
    noise_sum_share: float = 0.5  # ... the largest change to a sum, in one record's range
    spc_baseline_months: int = 12  # first N months of the shown range set centre line & limits
    rupture_threshold: float = 2.0  # SRS drop (points) from the previous SRS
    repair_window: int = 2  # SRS administrations in which a rupture can be repaired
    clinic_name: str = "Demo Clinic"
    # the clinic's own race/ethnicity list for imports (alliance/ingest/controlled.py): None =
    # US OMB 2024; a list name ("ONS 2021"), a list of categories, or categories -> synonyms
    race_ethnicity_categories: object = dataclasses.field(default=None, compare=False, hash=False)

    def clinical_cutoff(self, measure: str) -> float:
        return float(getattr(self, f"{measure}_clinical"))

    def reliable_change(self, measure: str) -> float:
        return float(getattr(self, f"{measure}_reliable_change"))

    def outcome_params(self, measure: str) -> dict[str, object]:
        """The parameters every outcome query takes for `measure`."""
        return {
            "measure": measure,
            "reliable_change": self.reliable_change(measure),
            "clinical_cutoff": self.clinical_cutoff(measure),
            "higher_is_better": MEASURES[measure].higher_is_better,
        }

    def outcome_definition(self, measure: str) -> str:
        m = MEASURES[measure]
        cut = self.clinical_cutoff(measure)
        clinical = f"< {cut:g}" if m.higher_is_better else f"≥ {cut:g}"
        return (
            f"{m.label} ({m.direction_text}); reliable change ≥ {self.reliable_change(measure):g} "
            f"points; clinical range {clinical} at the first administration"
        )

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def problems(self) -> dict[str, str]:
        """Each field whose value cannot be used, with the reason as a plain sentence part."""
        found: dict[str, str] = {}
        for name in RANGES:
            _, reason = _number(name, getattr(self, name))
            if reason:
                found[name] = reason
        if self.overdispersion not in OVERDISPERSION:
            found["overdispersion"] = (
                f"funnel-plot overdispersion must be one of {', '.join(OVERDISPERSION)}, not "
                f"{json.dumps(self.overdispersion)}"
            )
        if not isinstance(self.clinic_name, str) or len(self.clinic_name) > CLINIC_NAME_MAX:
            found["clinic_name"] = (
                f"the clinic name must be a text of at most {CLINIC_NAME_MAX} characters"
            )
        if not any(n in found for n in NOISE_FIELDS):
            from alliance.noise import NoiseParams

            try:
                NoiseParams(
                    max_noise=self.noise_max,
                    variance=self.noise_variance,
                    sum_share=self.noise_sum_share,
                )
            except ValueError as exc:
                found["noise_variance"] = str(exc)
        if self.race_ethnicity_categories is not None:
            from alliance.ingest.controlled import race_vocabulary
            from alliance.ingest.read import UsageError

            try:
                race_vocabulary(self.race_ethnicity_categories)
            except (UsageError, ValueError, TypeError, AttributeError) as exc:
                found["race_ethnicity_categories"] = str(exc)
        return found

    def validate(self) -> Settings:
        """`self` if every value can be used, else a SettingsError naming each one that cannot."""
        found = self.problems()
        if found:
            raise SettingsError("; ".join(found.values()))
        return self

    @classmethod
    def parse(cls, text: str) -> tuple[Settings, dict[str, str]]:
        """Settings from a file's text, leniently: a value that cannot be used is replaced by
        its default. Returns the settings and {field: reason} for what was replaced (a text
        that is not a JSON object: every field, under the key "file")."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            return cls(), {"file": f"it is not a valid settings file (line {_line(exc)})"}
        if not isinstance(data, dict):
            return cls(), {"file": "it is not a valid settings file (no list of settings)"}
        defaults = cls()
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in RANGES:
                value, _ = _number(f.name, value)  # 36 -> 36.0 for a cutoff, 2.0 -> 2 for a count
            values[f.name] = value
        try:
            candidate = cls(**values)
        except TypeError:  # pragma: no cover (every key is a field)
            return cls(), {"file": "it is not a valid settings file"}
        found = candidate.problems()
        if any(n in found for n in NOISE_FIELDS):  # they hold together: all three or none
            found.update({n: found.get(n, "") for n in NOISE_FIELDS if n in values})
        fixed = {n: getattr(defaults, n) for n in found}
        reasons = {n: r for n, r in found.items() if r}
        return dataclasses.replace(candidate, **fixed), reasons

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Settings from a file's text; a SettingsError if any value cannot be used."""
        settings, found = cls.parse(text)
        if found:
            raise SettingsError("; ".join(found.values()))
        return settings

    def save(self, path: Path) -> None:
        """Write the settings file atomically, readable by its owner only (0600); a value that
        cannot be used is refused (SettingsError) and nothing is written."""
        from alliance.db import write_private  # db imports pandas: only when saving

        self.validate()
        write_private(Path(path), self.to_json().encode())

    @classmethod
    def load(cls, path: Path) -> Settings:
        """The settings file at `path` (defaults if there is none); a SettingsError (its text
        names the file) if it cannot be read or any value cannot be used."""
        settings, found = cls.read(path)
        if found:
            raise SettingsError(f"the settings file {path}: " + "; ".join(found.values()))
        return settings

    @classmethod
    def read(cls, path: Path) -> tuple[Settings, dict[str, str]]:
        """The settings file at `path`, leniently (see `parse`); defaults if there is none."""
        path = Path(path)
        if not path.exists():
            return cls(), {}
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "its bytes are not text"
            return cls(), {"file": f"it cannot be read ({why.lower()})"}
        return cls.parse(text)


def _line(exc: ValueError) -> str:
    return str(getattr(exc, "lineno", "?"))
