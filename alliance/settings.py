"""Settings: every cutoff and method that ../shared/metrics.md calls a setting, with its default.

Charts and exports print the values in force (see `Settings.describe`), so a reader always
knows which definition a number follows.
"""

from __future__ import annotations

import dataclasses
import json
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

    @classmethod
    def from_json(cls, text: str) -> Settings:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in json.loads(text).items() if k in known}
        return cls(**data)

    def save(self, path: Path) -> None:
        """Write the settings file atomically, readable by its owner only (0600)."""
        from alliance.db import write_private  # db imports pandas: only when saving

        write_private(Path(path), self.to_json().encode())

    @classmethod
    def load(cls, path: Path) -> Settings:
        return cls.from_json(path.read_text()) if path.is_file() else cls()
