"""The import data contract (../shared/data-contract.md) as data.

One list of columns drives the column matching, the validation rules, the blank template and the
data dictionary, so the four cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

import pandas as pd

MAX_TEXT = 100  # text columns: longer values are shifted columns or notes
FIRST_YEAR = 1990  # sessions before this date are refused
END_REASONS = ("planned", "dropout", "other")
OPEN_END_REASONS = ("ongoing",)  # and blank
AGE_BANDS = ("<18", "18-25", "26-44", "45-64", "65+")


@dataclass(frozen=True)
class Column:
    """One contract column.

    kind: 'id' (pseudonymized), 'date', 'text', 'enum', 'int' (whole number), 'score' (number
    with at most `decimals` decimal places). `hidden`: identifying, so its values are never
    echoed in a problem report, a rejects file or a log.
    """

    name: str
    kind: str
    group: str
    description: str
    required: bool = False
    lo: float | None = None
    hi: float | None = None
    decimals: int = 0
    hidden: bool = False
    stored: bool = True  # False: used at import (age band, consistency), never stored

    @property
    def type_text(self) -> str:
        if self.kind in ("int", "score"):
            unit = "whole number" if self.kind == "int" else f"number, ≤ {self.decimals} decimal"
            return f"{unit} {self.lo:g}–{self.hi:g}"
        return {"id": "text", "date": "date", "text": "text", "enum": "text"}[self.kind]


def _score(name: str, group: str, lo: float, hi: float, desc: str, decimals: int = 1) -> Column:
    return Column(name, "score", group, desc, lo=lo, hi=hi, decimals=decimals)


def _int(name: str, group: str, lo: float, hi: float, desc: str, **kw: object) -> Column:
    return Column(name, "int", group, desc, lo=lo, hi=hi, **kw)  # type: ignore[arg-type]


WAI_SUBSCALES = {
    "wai_task": (1, 2, 10, 12),
    "wai_bond": (3, 5, 7, 9),
    "wai_goal": (4, 6, 8, 11),
}
SRS_ITEMS = ("srs_relationship", "srs_goals", "srs_approach", "srs_overall")
ORS_ITEMS = ("ors_individual", "ors_interpersonal", "ors_social", "ors_overall")
WAI_ITEMS = tuple(f"wai_{i}" for i in range(1, 13))

COLUMNS: tuple[Column, ...] = (
    # identity and place
    Column(
        "client_id",
        "id",
        "identity",
        "The source system's client identifier. Pseudonymized at import (keyed HMAC-SHA-256); "
        "the raw value is never stored.",
        required=True,
        hidden=True,
    ),
    Column(
        "therapist_id",
        "id",
        "identity",
        "The source system's clinician identifier. Pseudonymized; shown as a short code "
        "such as T-4F2A.",
        required=True,
        hidden=True,
    ),
    Column(
        "session_date",
        "date",
        "identity",
        "Date of the attended session, YYYY-MM-DD (or the --date-format pattern). "
        f"Not in the future, not before {FIRST_YEAR}.",
        required=True,
    ),
    Column(
        "site",
        "text",
        "identity",
        "Clinic location, from the clinic's list (names new to the list are confirmed at import).",
        required=True,
    ),
    # episode
    Column(
        "episode_id",
        "id",
        "episode",
        "Distinguishes a client's separate episodes of care (if the column is absent: one "
        "episode per client). Pseudonymized.",
        hidden=True,
    ),
    Column(
        "program",
        "text",
        "episode",
        "Service line, e.g. Adult outpatient, IOP, Couples; from the clinic's list (names new "
        "to the list are confirmed at import).",
    ),
    _int(
        "age",
        "episode",
        0,
        120,
        "Age in years; turned into an age band at the episode's first session.",
    ),
    _int(
        "birth_year",
        "episode",
        1900,
        2100,
        "Alternative to age: turned into an age band (age = session year − birth year); "
        "never stored.",
        hidden=True,
        stored=False,
    ),
    Column(
        "date_of_birth",
        "date",
        "episode",
        "Alternative to age (also read from a column named dob): turned into an age band, "
        "then dropped; never stored.",
        hidden=True,
        stored=False,
    ),
    Column(
        "gender",
        "text",
        "episode",
        "female, male, non-binary, another gender or unknown (also f/woman, m/man, nonbinary/"
        "non binary/enby, other; blank/declined/not recorded = unknown). Case and spaces do "
        "not matter.",
    ),
    Column(
        "race_ethnicity",
        "text",
        "episode",
        "One of the clinic's race/ethnicity categories (by default the US OMB 2024 ones, with "
        "the 1997 labels accepted); blank/declined/not recorded = unknown.",
    ),
    Column(
        "end_reason",
        "enum",
        "episode",
        "planned (mutual ending), dropout (client-unilateral), other (moved, referred out, "
        "administrative); blank or ongoing = still open. On any row of the episode.",
    ),
    _int(
        "session_number",
        "session",
        0,
        32767,
        "Optional: the source system's session number; tells same-day sessions apart.",
    ),
    # measures
    _score("srs_total", "srs", 0, 40, "Session Rating Scale total (0–40)."),
    _score("srs_relationship", "srs", 0, 10, "SRS item: relationship (0–10)."),
    _score("srs_goals", "srs", 0, 10, "SRS item: goals and topics (0–10)."),
    _score("srs_approach", "srs", 0, 10, "SRS item: approach or method (0–10)."),
    _score("srs_overall", "srs", 0, 10, "SRS item: overall (0–10)."),
    *(
        _int(
            f"wai_{i}",
            "wai",
            1,
            5,
            f"WAI-SR item {i} (1–5); "
            + next(k[4:].title() for k, v in WAI_SUBSCALES.items() if i in v)
            + " subscale.",
        )
        for i in range(1, 13)
    ),
    _int("wai_task", "wai", 4, 20, "WAI-SR Task subscale sum (items 1, 2, 10, 12; 4–20)."),
    _int("wai_bond", "wai", 4, 20, "WAI-SR Bond subscale sum (items 3, 5, 7, 9; 4–20)."),
    _int("wai_goal", "wai", 4, 20, "WAI-SR Goal subscale sum (items 4, 6, 8, 11; 4–20)."),
    _score("ors_total", "ors", 0, 40, "Outcome Rating Scale total (0–40), higher = better."),
    _score("ors_individual", "ors", 0, 10, "ORS item: individually (0–10)."),
    _score("ors_interpersonal", "ors", 0, 10, "ORS item: interpersonally (0–10)."),
    _score("ors_social", "ors", 0, 10, "ORS item: socially (0–10)."),
    _score("ors_overall", "ors", 0, 10, "ORS item: overall (0–10)."),
    _int("phq9_total", "phq9", 0, 27, "PHQ-9 total (0–27), higher = worse."),
    _int("gad7_total", "gad7", 0, 21, "GAD-7 total (0–21), higher = worse."),
)
BY_NAME = {c.name: c for c in COLUMNS}
NUMERIC = tuple(c for c in COLUMNS if c.kind in ("int", "score"))
ALIASES = {"dob": "date_of_birth"}
REQUIRED = tuple(c.name for c in COLUMNS if c.required)
TEXT_COLUMNS = ("site", "program", "gender", "race_ethnicity", "end_reason")  # see controlled.py
EPISODE_AGREE = ("program", "gender", "race_ethnicity", "end_reason", "birth_year", "date_of_birth")

# Column names that hold direct identifiers or free text: dropped before anything is read.
IDENTIFIER_NAMES = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "client_name",
        "therapist_name",
        "dob",
        "date_of_birth",
        "address",
        "street",
        "city",
        "zip",
        "zip_code",
        "zipcode",
        "postal_code",
        "postcode",
        "phone",
        "email",
        "ssn",
        "mrn",
        "medical_record_number",
        "insurance_id",
        "member_id",
        "notes",
        "note",
        "comment",
        "comments",
    }
)
_IDENTIFIER_PATTERN = re.compile(
    r"(^|_)(names?|surname|initials|address|street|city|zip|postal|postcode|phone|mobile|"
    r"fax|e?mail|ssn|social_security|mrn|medical_record|insurance|member|policy|nhs|"
    r"passport|licen[cs]e|birth|dob|notes?|comments?|remarks?|narrative|description|"
    r"free_?text|text|summary|memo|signature|patient|guardian|contact|emergency|"
    r"account|ip_address)(_|$)"
    r"|(_id|_number|_no|_num)$"
)


def normalize_name(raw: object) -> str:
    """Column-name matching: trimmed, case-insensitive, spaces/dashes -> underscores."""
    text = "" if raw is None else str(raw)
    return re.sub(r"[\s\-]+", "_", text.strip().lstrip("\ufeff").strip()).lower()


def classify(normalized: str) -> tuple[str, str | None]:
    """('contract', canonical name) | ('identifier', None) | ('ignored', None).

    A contract column wins over the identifier patterns (``birth_year`` and ``date_of_birth``
    are read to compute an age band, then dropped; they are listed as dropped identifiers too).
    """
    name = ALIASES.get(normalized, normalized)
    if name in BY_NAME:
        return "contract", name
    if normalized in IDENTIFIER_NAMES or _IDENTIFIER_PATTERN.search(normalized):
        return "identifier", None
    return "ignored", None


def age_band_sql(age: str) -> str:
    """SQL expression: age in years -> band (contract bands)."""
    return (
        f"case when {age} is null then 'unknown' when {age} < 18 then '<18' "
        f"when {age} <= 25 then '18-25' when {age} <= 44 then '26-44' "
        f"when {age} <= 64 then '45-64' else '65+' end"
    )


# --- template and data dictionary ---------------------------------------------------------------
TEMPLATE_COLUMNS = tuple(c.name for c in COLUMNS if c.name not in ("birth_year", "date_of_birth"))


def template_csv() -> bytes:
    """A blank template: the header row of every contract column (UTF-8, comma-separated)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(TEMPLATE_COLUMNS)
    return buf.getvalue().encode()


def data_dictionary() -> pd.DataFrame:
    """One row per contract column: group, required, type and range, meaning."""
    groups = {
        "identity": "Identity and place",
        "episode": "Episode",
        "session": "Session",
        "srs": "Alliance: SRS",
        "wai": "Alliance: WAI-SR",
        "ors": "Outcome: ORS",
        "phq9": "Outcome: PHQ-9",
        "gad7": "Outcome: GAD-7",
    }
    rows = [
        {
            "column": c.name,
            "group": groups[c.group],
            "required": "yes" if c.required else "no",
            "type": c.type_text,
            "stored": "pseudonym"
            if c.kind == "id"
            else ("age band only" if not c.stored else "yes"),
            "meaning": c.description,
        }
        for c in COLUMNS
    ]
    rows.append(
        {
            "column": "(names, addresses, phone, e-mail, SSN, MRN, insurance/member id, notes, "
            "other free text)",
            "group": "Identifiers",
            "required": "no",
            "type": "any",
            "stored": "never",
            "meaning": "Dropped before anything is read; the import summary names them. "
            "Any other column is ignored.",
        }
    )
    return pd.DataFrame(rows)


def data_dictionary_csv() -> bytes:
    return data_dictionary().to_csv(index=False).encode()
