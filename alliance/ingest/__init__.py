"""Importing a clinic's own exports: validated, pseudonymized, all or nothing.

The format and every rule are in ../shared/data-contract.md; ``contract.py`` holds them as data
(the column list drives the matching, the rules, the template and the data dictionary).

Pipeline (``run.run_import``; ``python -m alliance import`` and the Data page both call it)::

    read.open_source    format, encoding, delimiter (from the header line), header -> contract
                        columns; identifier columns (names, dob, addresses, notes, ...) and
                        unknown columns are named and never read
    stage.Stage.load    DuckDB scans each file as text into a private staging database in an
                        owner-only temp folder. A first scan collects the *distinct* client,
                        therapist and episode ids and dates of birth; Python turns each into a
                        keyed pseudonym (alliance.pseudonym) and a small number, and the second
                        scan joins those numbers in place of the raw values while it types every
                        cell and evaluates every row rule (rules.py). Raw identifiers exist only in
                        memory, never in any file, not even the temporary one. Text cells go onto
                        their controlled lists, and cells that look like identifiers are refused
                        (controlled.py)
    names               site and program names against the clinic's own list (names.py)
    stage.validate      episode rules as set-based SQL; every problem keeps its spreadsheet row
    stage.prepare       typed sessions and episodes (age band at the first session; exact
                        duplicate rows collapsed)
    merge.plan / apply  match with the database and write inside ``db.writer``: a private copy of
                        the file, swapped in with os.replace only when everything succeeded

Decisions worth knowing:

* **All or nothing.** Any problem and nothing is written (exit 1). ``--skip-invalid`` loads the
  valid rows; a row that breaks a rule is left out alone, but a disagreement *between* rows of
  an episode (gender, program, end reason, age, date of birth) or two different versions of one
  session leave out the whole episode, since there is no telling which row is right.
* **The rejects file carries no identifiers and no text** (rejects.py). It lists file,
  spreadsheet row, the reasons, and the row's numbers and dates; every text cell reads
  "(text withheld)". The clinic fixes its export at those rows and imports the whole export
  again: rows already imported are recognised and change nothing. (Writing the raw rows back
  out would put client ids, or whatever was typed into a text field, in a second file the
  clinic must then protect.) Problem reports show identifying values as "(hidden)" and cells
  that may hold anything a person typed as "(withheld)"; nothing logs a raw value.
* **Controlled values** (controlled.py, names.py): gender and race/ethnicity onto their lists;
  site and program names against the clinic's list, a new name confirmed with
  ``accept_new_names`` (``--accept-new-names``, the Data page's checkbox) or the import stops,
  nothing written, even with ``--skip-invalid``.
* **Episodes change only by what an export states**: a non-blank program, gender or
  race/ethnicity, an end reason (never cleared by a later export that leaves it blank), and the
  age band when the export holds the episode's first session.
* **A session is** (client, episode, therapist, date, session number): keep session numbers
  consistent between exports (a session once imported without one and then with one counts as
  a different session). Two same-day sessions with one therapist need session numbers.
* **The secret** is ``ALLIANCE_SECRET_KEY`` or a 0600 key file beside the database, created on
  the first import; the database stores only a key check, so an import under a different key
  is refused rather than giving the same people new pseudonyms.

Concurrency: the dashboard holds the database read-only; an import (from the page or from
``python -m alliance import`` in another process) never opens that file for writing: it writes
a copy and replaces the file atomically. A lock file serializes imports (the second waits).
"""

from alliance.ingest.contract import data_dictionary, data_dictionary_csv, template_csv
from alliance.ingest.export import export_contract_csv
from alliance.ingest.problems import Problem, format_report, problems_frame
from alliance.ingest.read import UsageError
from alliance.ingest.run import DemoDataError, ImportOptions, ImportResult, run_import
from alliance.pseudonym import SecretKeyError

__all__ = [
    "DemoDataError",
    "ImportOptions",
    "ImportResult",
    "Problem",
    "SecretKeyError",
    "UsageError",
    "data_dictionary",
    "data_dictionary_csv",
    "export_contract_csv",
    "format_report",
    "problems_frame",
    "run_import",
    "template_csv",
]
