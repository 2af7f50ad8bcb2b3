"""The global filters shared by every page, and their round trip through the URL query string.

Values from the URL are only ever *chosen from* the options that exist in the database; anything
else is ignored with a notice. They reach SQL only as bound parameters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from alliance.settings import ALLIANCE_MEASURES, MEASURES

_PLAIN_MONTH = re.compile(r"[0-9-]{1,20}")  # what a notice may repeat from a link

# URL key -> Filters field, for the text filters
TEXT_FILTERS = {
    "site": "site",
    "program": "program",
    "therapist": "therapist",
    "age": "age_band",
    "gender": "gender",
    "race": "race_ethnicity",
}
FILTER_LABELS = {
    "site": "Site",
    "program": "Program",
    "therapist": "Therapist",
    "age_band": "Age band",
    "gender": "Gender",
    "race_ethnicity": "Race/ethnicity",
}


def month_start(d: dt.date) -> dt.date:
    return d.replace(day=1)


def add_months(d: dt.date, months: int) -> dt.date:
    y, m = divmod(d.year * 12 + d.month - 1 + months, 12)
    return dt.date(y, m + 1, 1)


def parse_month(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text.strip(), "%Y-%m").date()
    except (ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class FilterOptions:
    """What exists in the database to filter on."""

    first_month: dt.date
    last_month: dt.date
    values: dict[str, list[str]] = field(default_factory=dict)  # Filters field -> options


@dataclass(frozen=True)
class Filters:
    """A dashboard view: whole calendar months from `first_month` to `last_month` inclusive."""

    first_month: dt.date
    last_month: dt.date
    site: str | None = None
    program: str | None = None
    therapist: str | None = None
    age_band: str | None = None
    gender: str | None = None
    race_ethnicity: str | None = None
    alliance_measure: str = "srs"
    outcome_measure: str = "ors"

    @property
    def date_from(self) -> dt.date:
        return self.first_month

    @property
    def date_to(self) -> dt.date:
        """First day after the period (exclusive bound)."""
        return add_months(self.last_month, 1)

    @property
    def months(self) -> int:
        return (
            (self.last_month.year - self.first_month.year) * 12
            + (self.last_month.month - self.first_month.month)
            + 1
        )

    def previous_period(self) -> Filters:
        """The period of equal length just before this one (for 'change vs previous')."""
        return dataclasses.replace(
            self,
            first_month=add_months(self.first_month, -self.months),
            last_month=add_months(self.first_month, -1),
        )

    def sql_params(self, allowed_sites: list[str] | None = None) -> dict[str, object]:
        """The bound parameters of the filter macros (queries/ and alliance/schema/macros.sql)."""
        return {
            "date_from": self.date_from,
            "date_to": self.date_to,
            "site": self.site,
            "program": self.program,
            "therapist": self.therapist,
            "age_band": self.age_band,
            "gender": self.gender,
            "race": self.race_ethnicity,
            "allowed_sites": allowed_sites,
        }

    def period_text(self) -> str:
        a, b = self.first_month.strftime("%b %Y"), self.last_month.strftime("%b %Y")
        return a if a == b else f"{a} – {b}"

    def describe(self) -> str:
        """Plain description for captions and exports, e.g. 'Jan 2025 – Dec 2025 · Site: North'."""
        parts = [self.period_text()]
        for name, label in FILTER_LABELS.items():
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{label}: {value}")
        if len(parts) == 1:
            parts.append("all sites, programs and clients")
        return " · ".join(parts)

    def to_query_params(self) -> dict[str, str]:
        out = {"from": self.first_month.strftime("%Y-%m"), "to": self.last_month.strftime("%Y-%m")}
        for key, name in TEXT_FILTERS.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = value
        out["alliance"] = self.alliance_measure
        out["outcome"] = self.outcome_measure
        return out


def default_filters(options: FilterOptions) -> Filters:
    """The last 12 complete months of data."""
    first = max(options.first_month, add_months(options.last_month, -11))
    return Filters(first_month=first, last_month=options.last_month)


def _month_notice(key: str, raw: str, month: dt.date | None) -> str:
    """The notice for an ignored month. Notices are markdown: the link's text is repeated only
    when it is digits and dashes, so a crafted link cannot put a link or markup on the page."""
    shown = raw.strip()[:20]
    if not _PLAIN_MONTH.fullmatch(shown):
        return f"Ignored the link's '{key}' month: it is not a month (YYYY-MM)."
    if month is None:
        return f"Ignored the link's '{key}' month '{shown}': it is not a month (YYYY-MM)."
    return f"Ignored the link's '{key}' month '{shown}' (no data for it)."


def from_query_params(
    params: Mapping[str, str | list[str]], options: FilterOptions
) -> tuple[Filters, list[str]]:
    """Filters from a URL query string; invalid values are ignored with a notice."""
    base = default_filters(options)
    notices: list[str] = []
    changes: dict[str, object] = {}

    def one(key: str) -> str | None:
        value = params.get(key)
        if isinstance(value, list):
            value = value[-1] if value else None
        return value

    for key, attr in (("from", "first_month"), ("to", "last_month")):
        raw = one(key)
        if raw is None:
            continue
        month = parse_month(raw)
        if month is None or not options.first_month <= month <= options.last_month:
            notices.append(_month_notice(key, raw, month))
        else:
            changes[attr] = month
    for key, attr in TEXT_FILTERS.items():
        raw = one(key)
        if raw is None:
            continue
        if raw in options.values.get(attr, []):
            changes[attr] = raw
        else:
            notices.append(f"Ignored an unknown {FILTER_LABELS[attr].lower()} in the link.")
    for key, attr, allowed in (
        ("alliance", "alliance_measure", ALLIANCE_MEASURES),
        ("outcome", "outcome_measure", MEASURES),
    ):
        raw = one(key)
        if raw is None:
            continue
        if raw in allowed:
            changes[attr] = raw
        else:
            notices.append(f"Ignored an unknown {key} measure in the link.")
    filters = dataclasses.replace(base, **changes)
    if filters.first_month > filters.last_month:
        notices.append(
            "The link's start month was after its end month; showing the default period."
        )
        filters = dataclasses.replace(
            filters, first_month=base.first_month, last_month=base.last_month
        )
    return filters, notices
