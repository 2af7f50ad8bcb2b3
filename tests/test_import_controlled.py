"""Controlled values (data-contract.md): identifiers typed into text fields never get stored,
shown or exported (issue 19, finding 9).

Gender and race/ethnicity onto their lists, site and program names against the clinic's own
list, and any text cell that looks like a name, a date, a record number, a phone number, an
e-mail or an address refused without echoing it: in the problem report, the command's output,
the rejects file, the database file and the filter options. Every test imports real files into
real DuckDB files.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from alliance import db, queries
from alliance.ingest import UsageError, export_contract_csv, format_report, names
from alliance.ingest.command import run_command
from alliance.ingest.controlled import looks_identifying
from tests.test_import_helpers import (  # noqa: F401 (fixture)
    COLUMNS,
    SAMPLE,
    _no_env_key,
    base_rows,
    cli,
    file_hash,
    import_,
    problem_at,
    write_csv,
)

# what a person might type into a text field by mistake (one of each kind)
IDENTIFYING = {
    "mrn": "MRN778899",
    "dob": "1961-07-23",
    "dob_words": "23 July 1961",
    "address": "12 Baker Street",
    "phone": "(555) 019-9771",
    "email": "zeb.quux@example.org",
}
NAME = "Zebediah Quux"
TEXT_COLUMNS = ["site", "program", "gender", "race_ethnicity", "end_reason"]


def _stored_text(db_path: Path) -> str:
    """Every distinct text value in every table of the database."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        columns = con.execute(
            "select table_name, column_name from duckdb_columns() "
            "where data_type = 'VARCHAR' and database_name = current_database()"
        ).fetchall()
        return "\n".join(
            str(v[0])
            for table, column in columns
            for v in con.execute(f'select distinct "{column}" from "{table}"').fetchall()  # noqa: S608
        )
    finally:
        con.close()


def _filter_options(db_path: Path) -> dict[str, set[str]]:
    con = db.open_read_only(db_path)
    try:
        df = queries.run(con, "filter_options", allowed_sites=None)
    finally:
        con.close()
    return {d: set(p["value"]) for d, p in df.groupby("dimension") if d != "month"}


def _assert_nowhere(secrets: list[str], db_path: Path, *texts: str) -> None:
    """Not in any text given, not in the database file's bytes, any stored value or the
    filter options."""
    raw = db_path.read_bytes() if db_path.exists() else b""
    stored = _stored_text(db_path) if db_path.exists() else ""
    options = _filter_options(db_path) if db_path.exists() else {}
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"{secret!r} echoed"
        assert secret.encode() not in raw, f"{secret!r} in the database file"
        assert secret not in stored, f"{secret!r} stored"
        assert not any(secret in v for values in options.values() for v in values)


def _clinic(tmp_path: Path) -> Path:
    """A clinic database holding the base export: its lists are North, South and Adult
    outpatient, Couples."""
    dbp = tmp_path / "clinic" / "x.duckdb"
    dbp.parent.mkdir()
    assert import_(write_csv(tmp_path / "base.csv", base_rows()), dbp).ok
    return dbp


# --- the rules themselves -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Northside",
        "Hyde Park",
        "Harbor View",
        "Site 18",
        "Child & family",
        "Adult outpatient",
        "St Mary's",
        "Site 1 St Mary's",
        "School year 2023-2024",
        "Program 2024/25",
        "NHS Talking Therapies",
        "MS support group",
        "Teens @ home",
        "Unit 4B",
        "Clinic 101",
        "DBT 2.0",
        "Black or African American",
        "Native Hawaiian or Other Pacific Islander",
        "non-binary",
    ],
)
def test_real_names_of_places_and_services_do_not_look_identifying(text):
    assert looks_identifying(text) is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("1961-07-23", "date"),
        ("07/23/1961", "date"),
        ("23.07.61", "date"),
        ("Zebediah Quux 23 July 1961", "date"),
        ("July 23, 1961", "date"),
        ("MRN778899", "record"),
        ("123456", "record"),
        ("555-0199", "phone"),
        ("(555) 123-4567", "phone"),
        ("+44 20 7946 0958", "phone"),
        ("123-45-6789", "phone"),
        ("zeb@example.org", "email"),
        ("12 Baker Street", "address"),
        ("221B Baker St", "address"),
        ("1600 Pennsylvania Avenue NW", "address"),
        ("4 Privet Drive", "address"),
        ("SW1A 1AA", "address"),
        ("PO Box 12", "address"),
        ("MRN 4455", "label"),
        ("DOB 1961", "label"),
        ("Mrs Quux", "name"),
    ],
)
def test_identifying_patterns(text, kind):
    assert looks_identifying(text) == kind


# --- gender and race/ethnicity onto their lists --------------------------------------------------
def test_gender_and_race_synonyms_map_onto_the_lists(tmp_path):
    rows = base_rows()
    spellings = [  # per client (3 rows each): gender, race/ethnicity
        ("F", "native hawaiian or other pacific islander"),
        (" Man ", "  WHITE "),
        ("Non  Binary", "Two or more races"),
        ("declined", "Middle Eastern or North African"),
    ]
    for i, r in enumerate(rows):
        r["gender"], r["race_ethnicity"] = spellings[i // 3]
    rows[4]["gender"] = "m"  # another spelling within the episode agrees
    rows[10]["gender"] = "not recorded"
    dbp = tmp_path / "x.duckdb"
    result = import_(write_csv(tmp_path / "e.csv", rows), dbp)
    assert result.ok, format_report(result.problems)
    con = duckdb.connect(str(dbp), read_only=True)
    got = con.execute("select gender, race_ethnicity from episodes order by all").fetchall()
    con.close()
    assert got == [
        ("female", "Native Hawaiian or Pacific Islander"),
        ("male", "White"),
        ("non-binary", "Multiracial"),
        ("unknown", "Middle Eastern or North African"),
    ]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("gender", NAME),
        ("gender", "femail"),
        ("race_ethnicity", NAME),
        ("race_ethnicity", "Caucasian"),
        ("end_reason", NAME),
    ],
)
def test_values_off_a_list_are_located_and_never_echoed(tmp_path, column, value):
    rows = base_rows()
    rows[4][column] = value  # spreadsheet row 6
    path = write_csv(tmp_path / "e.csv", rows)
    dbp = tmp_path / "x.duckdb"
    result = import_(path, dbp)
    assert not result.ok and not dbp.exists()
    assert problem_at(result, 6, column) == [column]
    (problem,) = [p for p in result.problems if p.row == 6]
    assert problem.value == "(withheld)" and problem.file == "e.csv"
    assert value not in format_report(result.problems)
    out = cli(str(path), "--db", str(dbp))
    assert out.returncode == 1 and re.search(rf"e\.csv\s+6\s+{column}\s+\(withheld\)", out.stderr)
    assert value not in out.stdout + out.stderr
    rejects = tmp_path / "rejects.csv"
    out = cli(str(path), "--db", str(dbp), "--skip-invalid", "--rejects", str(rejects))
    assert out.returncode == 0, out.stderr
    assert list(pd.read_csv(rejects)["row"]) == [6]
    _assert_nowhere([value], dbp, out.stdout + out.stderr, rejects.read_text())


def test_the_race_list_can_be_replaced(tmp_path):
    rows = base_rows()
    for r in rows:
        r["race_ethnicity"] = "Mixed or Multiple ethnic groups"
    path = write_csv(tmp_path / "e.csv", rows)
    dbp = tmp_path / "x.duckdb"
    assert problem_at(import_(path, dbp, dry_run=True), 2, "race_ethnicity") == ["race_ethnicity"]
    result = import_(path, dbp, dry_run=True, race_categories="ONS 2021")
    assert result.ok, format_report(result.problems)
    # the clinic's settings file beside the database: its own categories and synonyms
    settings = dbp.with_name("x.settings.json")
    settings.write_text(
        json.dumps(
            {
                "clinic_name": "Kiwi Clinic",
                "race_ethnicity_categories": {"Māori": ["Maori"], "Pākehā": [], "Other": []},
            }
        )
    )
    rows[0]["race_ethnicity"] = "MAORI"
    for r in rows[1:]:
        r["race_ethnicity"] = "Māori"
    result = import_(write_csv(tmp_path / "nz.csv", rows), dbp)
    assert result.ok, format_report(result.problems)
    con = duckdb.connect(str(dbp), read_only=True)
    assert con.execute("select distinct race_ethnicity from episodes").fetchall() == [("Māori",)]
    con.close()
    rows[3]["race_ethnicity"] = "White"  # on the US list, not on this clinic's
    result = import_(write_csv(tmp_path / "nz2.csv", rows), dbp, dry_run=True)
    assert problem_at(result, 5, "race_ethnicity") == ["race_ethnicity"]
    assert "Māori, Pākehā, Other, unknown" in result.problems[0].message
    settings.write_text(json.dumps({"race_ethnicity_categories": 7}))
    with pytest.raises(UsageError, match="race/ethnicity list"):
        import_(path, dbp, dry_run=True)


# --- cells that look like identifiers ----------------------------------------------------------
@pytest.mark.parametrize("column", TEXT_COLUMNS)
def test_identifying_cells_are_refused_without_echo(tmp_path, column):
    """Each kind of identifier typed into the column (rows 2-7), imported into a clinic that
    has lists: located, never echoed, never stored, never in the rejects file."""
    dbp = _clinic(tmp_path)
    before = file_hash(dbp)
    rows = base_rows()
    secrets = list(IDENTIFYING.values())
    for i, secret in enumerate(secrets):
        rows[i][column] = secret
    path = write_csv(tmp_path / "e.csv", rows)
    result = import_(path, dbp)
    assert not result.ok and file_hash(dbp) == before
    for row in range(2, 2 + len(secrets)):
        assert problem_at(result, row, column) == ["identifying"], format_report(result.problems)
    assert {p.value for p in result.problems if p.rule == "identifying"} == {"(withheld)"}
    assert not result.new_names  # refused as identifiers, not offered as new names
    out = cli(str(path), "--db", str(dbp))
    assert out.returncode == 1 and file_hash(dbp) == before
    assert "looks like a record number" in out.stderr and "looks like a date" in out.stderr
    report = format_report(result.problems) + out.stdout + out.stderr
    _assert_nowhere(secrets, dbp, report)
    rejects = tmp_path / "rejects.csv"
    out = cli(str(path), "--db", str(dbp), "--skip-invalid", "--rejects", str(rejects))
    assert out.returncode == 0, out.stderr
    assert set(pd.read_csv(rejects)["row"]) == set(range(2, 8))
    _assert_nowhere(secrets, dbp, out.stdout + out.stderr, rejects.read_text())


def test_identifiers_in_number_and_date_columns_are_not_echoed(tmp_path):
    rows = base_rows()
    rows[0]["srs_total"] = IDENTIFYING["phone"]
    rows[1]["age"] = IDENTIFYING["mrn"]
    rows[2]["session_date"] = IDENTIFYING["email"]
    rows[3]["session_date"] = "2025-02-30"  # a date, just not a real one: shown as before
    rows[4]["phq9_total"] = "abc"
    result = import_(write_csv(tmp_path / "e.csv", rows), tmp_path / "x.duckdb", dry_run=True)
    assert problem_at(result, 2, "srs_total") == ["identifying"]
    assert problem_at(result, 3, "age") == ["identifying"]
    assert problem_at(result, 4, "session_date") == ["identifying"]
    assert problem_at(result, 5, "session_date") == ["date"]
    assert problem_at(result, 6, "phq9_total") == ["number"]
    shown = {p.row: p.value for p in result.problems}
    assert shown == {2: "(withheld)", 3: "(withheld)", 4: "(withheld)", 5: "2025-02-30", 6: "abc"}


def test_names_in_site_or_program_never_reach_a_clinic_with_lists(tmp_path):
    """A person's name cannot be told from a place by its look: the clinic's list stops it."""
    dbp = _clinic(tmp_path)
    before = file_hash(dbp)
    rows = base_rows()
    rows[2]["site"] = NAME
    rows[6]["program"] = NAME + " Jr"
    for r in rows[7:9]:
        r["program"] = NAME + " Jr"
    path = write_csv(tmp_path / "e.csv", rows)
    for extra in ([], ["--skip-invalid", "--rejects", str(tmp_path / "rejects.csv")]):
        out = cli(str(path), "--db", str(dbp), *extra)
        assert out.returncode == 1 and file_hash(dbp) == before
        assert "not on the clinic's list of sites" in out.stderr
        assert "--accept-new-names" in out.stderr and "no data rows" not in out.stderr
        assert not (tmp_path / "rejects.csv").exists()  # nothing written at all
    result = import_(path, dbp)
    assert [(p.row, p.column, p.rule) for p in result.new_names] == [
        (4, "site", "new_name"),
        (8, "program", "new_name"),
    ]
    assert "(3 row(s))" in result.new_names[1].message
    _assert_nowhere([NAME], dbp)


# --- site and program names: the clinic's own list ---------------------------------------------
def test_the_first_import_makes_the_list_and_prints_it(tmp_path):
    dbp = tmp_path / "x.duckdb"
    out = cli(str(write_csv(tmp_path / "e.csv", base_rows())), "--db", str(dbp))
    assert out.returncode == 0, out.stderr
    assert "sites (new list)     North, South" in out.stdout
    assert "programs (new list)  Adult outpatient, Couples" in out.stdout
    con = duckdb.connect(str(dbp), read_only=True)
    assert con.execute("select name from sites order by 1").fetchall() == [("North",), ("South",)]
    con.close()
    out = cli(str(write_csv(tmp_path / "e.csv", base_rows())), "--db", str(dbp))
    assert out.returncode == 0 and "new list" not in out.stdout and "(added)" not in out.stdout


def test_a_new_name_stops_the_import_until_confirmed(tmp_path):
    dbp = _clinic(tmp_path)
    before = file_hash(dbp)
    rows = base_rows()
    rows[2]["site"] = "Westside"
    rows[3]["site"] = " north "  # case and spaces do not make a new name
    rows[9]["site"] = "SOUTH"
    path = write_csv(tmp_path / "e.csv", rows)
    result = import_(path, dbp)
    assert not result.ok and result.needs_confirmation and file_hash(dbp) == before
    assert result.problem_count == 0 and not result.rejects_written
    assert [(p.file, p.row, p.column, p.value) for p in result.new_names] == [
        ("e.csv", 4, "site", "Westside")
    ]
    preview = import_(path, dbp, dry_run=True)  # the Data page's preview: importable if confirmed
    assert (
        preview.ok_once_confirmed and not preview.ok and preview.unlisted == {"site": ["Westside"]}
    )
    args = argparse.Namespace(
        files=[path],
        db=dbp,
        date_format=None,
        sheet=None,
        skip_invalid=False,
        rejects=None,
        dry_run=False,
        replace_demo=False,
        quiet=True,
        accept_new_names=True,
    )
    assert run_command(args) == 0
    con = duckdb.connect(str(dbp), read_only=True)
    sites = con.execute("select name from sites order by 1").fetchall()
    per_site = con.execute(
        "select st.name, count(*) from sessions join sites as st using (site_id) group by 1 "
        "order by 1"
    ).fetchall()
    con.close()
    assert sites == [("North",), ("South",), ("Westside",)]
    # the sessions already there, now at the sites the file gives; " north " is North
    assert dict(per_site) == {"North": 5, "South": 6, "Westside": 1}


def _cli_has_the_flag() -> bool:
    from alliance.cli import build_parser

    _args, unknown = build_parser().parse_known_args(["import", "x.csv", "--accept-new-names"])
    return not unknown


@pytest.mark.skipif(
    not _cli_has_the_flag(),
    reason="the flag is declared in alliance/cli.py (requested in /tmp/helperB_requests.md)",
)
def test_accept_new_names_on_the_command_line(tmp_path):
    dbp = _clinic(tmp_path)
    rows = base_rows()
    rows[6]["program"] = "DBT group"
    for r in rows[7:9]:
        r["program"] = "DBT group"
    path = write_csv(tmp_path / "e.csv", rows)
    assert cli(str(path), "--db", str(dbp)).returncode == 1
    out = cli(str(path), "--db", str(dbp), "--accept-new-names")
    assert out.returncode == 0, out.stderr
    assert "programs (added)     DBT group" in out.stdout


def test_replacing_the_demo_clinic_starts_a_new_list(tmp_path):
    dbp = tmp_path / "x.duckdb"
    db.write_demo(dbp, sessions=2_000, seed=3)
    result = import_(SAMPLE, dbp, replace_demo=True)
    assert result.ok and result.replaced_demo
    assert result.first_list == {
        "site": ["North", "South"],
        "program": ["Adult outpatient", "Couples"],
    }
    assert _filter_options(dbp)["site"] == {"North", "South"}


def test_a_list_changed_during_the_import_stops_it(tmp_path, monkeypatch):
    """Checked against one list, written under the lock against another: nothing written."""
    dbp = _clinic(tmp_path)
    before = file_hash(dbp)
    checked = {"site": ["North", "South", "Westside"], "program": ["Adult outpatient", "Couples"]}
    monkeypatch.setattr(names, "read_lists", lambda _path, _kind: checked)
    rows = base_rows()
    rows[0]["site"] = "Westside"
    with pytest.raises(UsageError, match="list of sites changed"):
        import_(write_csv(tmp_path / "e.csv", rows), dbp)
    assert file_hash(dbp) == before


def test_real_names_import_and_become_filter_options(tmp_path):
    sites = ["Northside", "Hyde Park", "Site 18", "St Mary's"]
    programs = ["Child & family", "School year 2023-2024", "NHS Talking Therapies", "Teens @ home"]
    rows = base_rows()
    for i, r in enumerate(rows):
        r["site"] = sites[i % 4]
        r["program"] = programs[i // 3]
    dbp = tmp_path / "x.duckdb"
    result = import_(write_csv(tmp_path / "e.csv", rows), dbp)
    assert result.ok, format_report(result.problems)
    options = _filter_options(dbp)
    assert options["site"] == set(sites) and options["program"] == set(programs)


def test_the_demo_clinic_exports_and_imports_with_its_own_labels(tmp_path, demo_con):
    """The demo's genders, race/ethnicity labels, sites and programs are all accepted."""
    export = tmp_path / "demo.csv"
    export_contract_csv(demo_con, export, limit=4_000)
    dbp = tmp_path / "x.duckdb"
    result = import_(export, dbp)
    assert result.ok, format_report(result.problems)
    con = duckdb.connect(str(dbp), read_only=True)
    stored = con.execute(
        "select distinct gender, race_ethnicity, st.name, p.name from episodes "
        "join sessions using (episode_id) join sites as st using (site_id) "
        "left join programs as p using (program_id)"
    ).fetchall()
    con.close()
    demo = demo_con.execute(
        "select distinct gender, race_ethnicity, st.name, p.name from episodes "
        "join sessions using (episode_id) join sites as st using (site_id) "
        "left join programs as p using (program_id) "
        "where session_id in (select session_id from sessions order by session_id limit 4000)"
    ).fetchall()
    assert sorted(stored, key=str) == sorted(demo, key=str)


# --- the rejects file -------------------------------------------------------------------------
def test_rejects_files_never_repeat_text_cells(tmp_path):
    rows = base_rows()
    rows[1]["srs_total"] = "44"  # row 3: a number, quoted in its reason
    rows[4]["gender"] = NAME  # row 6
    rows[10]["site"] = IDENTIFYING["address"]  # row 12
    rows[11]["end_reason"] = "finished"  # row 13
    path = write_csv(tmp_path / "e.csv", rows)
    dbp = tmp_path / "x.duckdb"
    rejects = tmp_path / "rejects.csv"
    out = cli(str(path), "--db", str(dbp), "--skip-invalid", "--rejects", str(rejects))
    assert out.returncode == 0, out.stderr
    got = pd.read_csv(rejects, dtype=str, keep_default_na=False)
    assert list(got["row"]) == ["3", "6", "12", "13"]
    for col in TEXT_COLUMNS:
        assert set(got[col]) <= {"(text withheld)", ""}, col
    assert (got["site"] == "(text withheld)").all()
    assert "srs_total" in got.loc[0, "problems"] and "(44)" in got.loc[0, "problems"]
    assert list(got["session_date"]) == ["2025-01-17", "2025-02-17", "2025-04-17", "2025-04-24"]
    text = rejects.read_text()
    for typed in ("North", "South", "Adult outpatient", "Couples"):  # (the reasons name the
        assert typed not in text  # gender list, so "female" may appear there)
    for col in ("gender", "race_ethnicity"):
        assert (got[col] == "(text withheld)").all()
    _assert_nowhere([NAME, IDENTIFYING["address"], "finished"], dbp, text, out.stdout + out.stderr)


# --- the Data page ------------------------------------------------------------------------------
@pytest.mark.browser
def test_new_names_are_confirmed_on_the_data_page_in_chromium(tmp_path):
    """A new site stops the import on the Data page until its checkbox is ticked."""
    import os

    from playwright.sync_api import sync_playwright

    from alliance import serve
    from alliance.serve import CHROMIUM, CHROMIUM_ARGS
    from tests.test_browser import wait_idle

    served = _clinic(tmp_path)
    rows = base_rows()
    rows[2]["site"] = "Westside"
    export = write_csv(tmp_path / "with-new-site.csv", rows)
    env = {k: v for k, v in os.environ.items() if k != "ALLIANCE_SECRET_KEY"}
    env["ALLIANCE_DB"] = str(served)
    before = file_hash(served)
    with serve.streamlit_server(env) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2200})
        page.goto(f"{url}/data")
        wait_idle(page)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(export))
        page.get_by_text("not on the clinic's list").first.wait_for(timeout=120_000)
        wait_idle(page)
        button = page.get_by_role("button", name="Import", exact=True)
        assert button.is_disabled() and file_hash(served) == before
        page.get_by_text("Add the new names to the clinic's list").click()
        wait_idle(page)
        assert button.is_enabled()
        button.click()
        page.get_by_text("Every page now shows the new data").wait_for(timeout=120_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()
    assert _filter_options(served)["site"] == {"North", "South", "Westside"}
