"""Controlled values: no free text reaches the database (data-contract.md, "Controlled values").

Three things live here, each as constant data or SQL built only from constants:

* **Gender and race/ethnicity lists.** A cell is matched case- and space-insensitively (trimmed,
  lower-cased, runs of whitespace read as one space) against the list's labels and synonyms and
  stored as the list's label; blank and the "unknown" synonyms (declined, not recorded, ...) are
  stored as ``unknown``. Anything else is a located error whose value is never shown: a name or
  a date typed into these columns is refused by the list itself. The race/ethnicity list is the
  US OMB 2024 one unless the clinic's settings file (``race_ethnicity_categories``) or the
  ``race_categories`` import option replaces it, e.g. with the ONS 2021 groups.
* **Cells that look like identifiers.** Every text cell the contract reads (site, program,
  gender, race/ethnicity, end reason, and a cell of a number or date column that is not a number
  or date) is refused, its value never echoed, when it looks like one of these (``IDENTIFYING``):

  - an e-mail address: ``@`` with a character on both sides (``a@b``; "Teens @ home" passes);
  - a date: three numeric parts (``1961-07-23``, ``07/23/1961``, ``23.07.61``) or a day, a month
    name and a year (``23 July 1961``, ``July 23, 1961``);
  - a record number: six or more digits in a row (``MRN778899``, ``123456``);
  - a phone or social security number: one group of digits, spaces, dots, dashes and brackets
    holding seven or more digits (``555-0199``, ``(555) 123-4567``, ``123-45-6789``), except a
    span of years such as ``2023-2024``;
  - a street address: a house number, one to four words, then a street word (Street, St,
    Avenue, Ave, Road, Rd, Lane, Ln, Drive, Dr, Boulevard, Court, Place, Terrace, Crescent,
    Close, Way, Highway, Parkway, Square), a UK postcode (``SW1A 1AA``) or a PO box;
  - an identifier label (``MRN``, ``SSN``, ``DOB`` as a word) or a title before a name
    (``Mr``, ``Mrs``, ``Ms``, ``Mx``, ``Miss`` followed by a capital).

  The rules look for digit patterns and markers, never for "two capitalised words", so that
  real names of places and services pass: Northside, Hyde Park, Site 18, Child & family,
  St Mary's, School year 2023-2024, NHS Talking Therapies. A person's name typed into site or
  program cannot be told from a place by its look: the clinic's list of sites and programs
  (names.py) stops it instead.
* **The normalised key** of a label (``label_key``) and its SQL twin (macro ``label_key``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from alliance.ingest.read import UsageError

UNKNOWN = "unknown"
UNKNOWN_SYNONYMS = ("declined", "not recorded", "prefer not to say", "not stated", "not known")
WITHHELD_TEXT = "(text withheld)"  # a text cell in a rejects file

# label -> synonyms (the label itself always matches)
GENDER: dict[str, tuple[str, ...]] = {
    "female": ("f", "woman"),
    "male": ("m", "man"),
    "non-binary": ("nonbinary", "non binary", "enby"),
    "another gender": ("other", "other gender"),
    UNKNOWN: UNKNOWN_SYNONYMS,
}
US_OMB_2024: dict[str, tuple[str, ...]] = {
    "American Indian or Alaska Native": (),
    "Asian": (),
    "Black or African American": (),
    "Hispanic or Latino": (),
    "Middle Eastern or North African": (),
    "Native Hawaiian or Pacific Islander": ("Native Hawaiian or Other Pacific Islander",),
    "White": (),
    "Multiracial": ("More than one race", "Two or more races"),
    UNKNOWN: UNKNOWN_SYNONYMS,
}
ONS_2021: dict[str, tuple[str, ...]] = {
    "Asian, Asian British or Asian Welsh": (),
    "Black, Black British, Black Welsh, Caribbean or African": (),
    "Mixed or Multiple ethnic groups": (),
    "White": (),
    "Other ethnic group": (),
    UNKNOWN: UNKNOWN_SYNONYMS,
}
NAMED_LISTS = {"US OMB 2024": US_OMB_2024, "ONS 2021": ONS_2021}
SETTINGS_KEY = "race_ethnicity_categories"
MAX_LABEL = 100


def label_key(text: str) -> str:
    """How a cell is compared with a list: trimmed, lower-case, whitespace runs as one space."""
    return " ".join(text.split()).lower()


@dataclass(frozen=True)
class Vocabulary:
    """A controlled list: its labels in order, and every accepted spelling's key -> label
    ('' for the unknown synonyms, stored as 'unknown')."""

    column: str
    labels: tuple[str, ...]
    keys: tuple[str, ...]
    values: tuple[str, ...]

    def describe(self) -> str:
        return ", ".join(self.labels)


def vocabulary(column: str, spec: Mapping[str, Sequence[str]]) -> Vocabulary:
    """A Vocabulary from label -> synonyms; `unknown` (with its synonyms) is always added."""
    spec = dict(spec)
    if not any(label_key(label) == UNKNOWN for label in spec):
        spec[UNKNOWN] = UNKNOWN_SYNONYMS
    keys: dict[str, str] = {}
    labels = []
    for label, synonyms in spec.items():
        label = " ".join(str(label).split())
        is_unknown = label_key(label) == UNKNOWN
        labels.append(UNKNOWN if is_unknown else label)
        for spelling in (label, *synonyms):
            key = label_key(str(spelling))
            if not key or len(key) > MAX_LABEL:
                raise UsageError(f"{column} list: {spelling!r} is not a usable label")
            if keys.get(key, label) != label:
                raise UsageError(f"{column} list: {spelling!r} is given for two categories")
            keys[key] = "" if is_unknown else label
    return Vocabulary(column, tuple(labels), tuple(keys), tuple(keys.values()))


GENDER_VOCABULARY = vocabulary("gender", GENDER)


def race_vocabulary(spec: object = None) -> Vocabulary:
    """The race/ethnicity list: None = US OMB 2024; a list's name ("ONS 2021"); a list of
    labels; or a mapping label -> synonyms (from a settings file or the import option)."""
    if spec is None:
        spec = US_OMB_2024
    if isinstance(spec, str):
        if spec not in NAMED_LISTS:
            raise UsageError(
                f"race/ethnicity list {spec!r} is not known (known: {', '.join(NAMED_LISTS)}); "
                "or give the categories themselves"
            )
        spec = NAMED_LISTS[spec]
    if isinstance(spec, Mapping):
        ok = all(
            isinstance(k, str)
            and isinstance(v, list | tuple)
            and all(isinstance(s, str) for s in v)
            for k, v in spec.items()
        )
        pairs = dict(spec) if ok else None
    elif isinstance(spec, list | tuple) and all(isinstance(s, str) for s in spec):
        pairs = {s: () for s in spec}
    else:
        pairs = None
    if not pairs:
        raise UsageError(
            "race/ethnicity list: give a list name, a list of categories, or categories with "
            "their synonyms ({category: [synonym, ...]})"
        )
    return vocabulary("race_ethnicity", pairs)


def race_setting(settings_file: Path) -> object:
    """The clinic's own race/ethnicity list from its settings file (key
    ``race_ethnicity_categories``), or None if the file or the key is absent."""
    if not settings_file.is_file():
        return None
    try:
        data = json.loads(settings_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{settings_file} is not a readable settings file") from exc
    return data.get(SETTINGS_KEY) if isinstance(data, dict) else None


def settings_file_of(db_path: Path) -> Path:
    """The settings file beside a database (as the app and the command line place it)."""
    return db_path.with_name(db_path.stem + ".settings.json")


# --- cells that look like identifiers (SQL) -----------------------------------------------------
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_STREET = (
    r"(?:street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|place|pl|terrace|"
    r"crescent|close|way|highway|hwy|parkway|pkwy|square|sq)"
)
IDENTIFYING: dict[str, tuple[str, ...]] = {  # kind -> RE2 patterns (any one matches)
    "email": (r"\S@\S",),
    "date": (
        r"\b(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2}))\b",
        r"(?i)\b\d{1,2}(?:st|nd|rd|th)?\s+" + _MONTH + r",?\s+\d{2,4}\b",
        r"(?i)\b" + _MONTH + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{2,4}\b",
    ),
    "record": (r"\d{6}",),
    "phone": (),  # digit groups: see _PHONE below
    "address": (
        r"(?i)\b\d+[a-z]?,?\s+(?:[a-z'.-]+\s+){1,4}" + _STREET + r"\b",
        r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b",
        r"(?i)\bp\.?\s?o\.?\s+box\b",
    ),
    "label": (r"(?i)\b(?:mrn|ssn|dob|d\.o\.b)\b",),
    "name": (r"\b(?:Mr|Mrs|Ms|Mx|Miss)\.?\s+[A-Z]",),
}
KIND_TEXT = {
    "email": "an e-mail address",
    "date": "a date",
    "record": "a record number (six or more digits in a row)",
    "phone": "a phone or social security number (seven or more digits in one group)",
    "address": "a street address, postcode or PO box",
    "label": "an identifier (MRN, SSN or DOB)",
    "name": "a person's name (a title such as Mr or Mrs)",
}
# cheap test first: every pattern needs a digit, '@', a title, or one of the label words
_MAYBE = r"[0-9@]|M[rsx]|(?i:mrn|ssn|dob|d\.o\.b|box)"
_PHONE_RUN = r"\+?\(?\d[\d ().-]*\d"
_YEAR_SPAN = r"(?:19|20)\d\d ?[-/] ?(?:(?:19|20)\d\d|\d\d)"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _matches(kind: str) -> str:
    return " or ".join(f"regexp_matches(x, {_lit(p)})" for p in IDENTIFYING[kind])


def macros_sql() -> str:
    """SQL macros: ``label_key(x)`` and ``identifying_kind(x)`` (a KIND_TEXT key or NULL)."""
    phone = (
        f"len(list_filter(regexp_extract_all(x, {_lit(_PHONE_RUN)}), lambda r: "
        "length(regexp_replace(r, '[^0-9]', '', 'g')) >= 7 "
        f"and not regexp_full_match(r, {_lit(_YEAR_SPAN)}))) > 0"
    )
    tests = [(kind, phone if kind == "phone" else _matches(kind)) for kind in IDENTIFYING]
    whens = "\n".join(f"    when {test} then '{kind}'" for kind, test in tests)
    return f"""
create or replace macro label_key(x) as lower(trim(regexp_replace(x, '\\s+', ' ', 'g')));
create or replace macro identifying_kind(x) as
case
    when x is null or not regexp_matches(x, {_lit(_MAYBE)}) then null
{whens}
end;
"""


def list_position_sql(cell: str, keys_param: str) -> str:
    """SQL: the 1-based position of a cell's key in a list parameter (NULL if not on it)."""
    return (
        f"coalesce(list_position({keys_param}, lower(trim({cell}))), "
        f"list_position({keys_param}, label_key({cell})))"
    )


def looks_identifying(text: str) -> str | None:
    """The kind of identifier `text` looks like (the SQL macro, run on one value)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(macros_sql())
        return con.execute("select identifying_kind($x)", {"x": text}).fetchall()[0][0]
    finally:
        con.close()
