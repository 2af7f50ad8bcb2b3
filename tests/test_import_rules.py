"""Every rule of the data contract, with a good and a bad file (small files in tmp_path)."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alliance import db
from alliance.ingest import DemoDataError, SecretKeyError, UsageError, format_report
from alliance.ingest.contract import classify, normalize_name
from alliance.ingest.merge import new_therapist_codes
from alliance.pseudonym import load_key, pseudonym
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
    write_xlsx,
)


def read(db_path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def check(tmp_path: Path, rows, columns=None, **options):
    """Dry-run a file built from rows; returns the result."""
    path = write_csv(tmp_path / "export.csv", rows, columns)
    return import_(path, tmp_path / "x.duckdb", dry_run=True, **options)


# --- the sample and the formats -----------------------------------------------------------------
def test_sample_imports_cleanly(tmp_path):
    result = import_(SAMPLE, tmp_path / "x.duckdb")
    assert result.ok and result.written and result.problem_count == 0
    assert result.counts["sessions_added"] == 9 and result.counts["episodes_added"] == 3
    eps = read(
        tmp_path / "x.duckdb",
        "select age_band, gender, race_ethnicity, end_reason from episodes order by age_band",
    )
    assert eps == [
        ("18-25", "male", "Black or African American", "dropout"),
        ("26-44", "female", "White", "planned"),
        ("45-64", "non-binary", "Hispanic or Latino", None),
    ]
    meta = dict(read(tmp_path / "x.duckdb", "select key, value from meta"))
    assert meta["dataset_kind"] == "clinic" and meta["through_date"] == "2025-02-24"
    assert read(tmp_path / "x.duckdb", "select count(*) from session_facts") == [(9,)]


def test_sample_through_the_command(tmp_path):
    out = cli(str(SAMPLE), "--db", str(tmp_path / "x.duckdb"))
    assert out.returncode == 0, out.stderr
    for words in ("rows read            9", "sessions added       9", "sessions unchanged   0"):
        assert words in out.stdout
    assert "episodes             3 added, 0 updated" in out.stdout
    assert "identifiers dropped  none" in out.stdout and "columns ignored      none" in out.stdout


@pytest.mark.parametrize(
    ("delimiter", "bom", "newline"),
    [(",", False, "\n"), (";", True, "\r\n"), ("\t", False, "\n"), (";", False, "\n")],
)
def test_csv_dialects(tmp_path, delimiter, bom, newline):
    rows = base_rows()
    if delimiter == ";":  # semicolon exports often use decimal commas
        for r in rows:
            r["srs_total"] = r["srs_total"].replace(".", ",")
    path = write_csv(tmp_path / "e.csv", rows, delimiter=delimiter, bom=bom, newline=newline)
    result = import_(path, tmp_path / "x.duckdb")
    assert result.ok, format_report(result.problems)
    srs = read(
        tmp_path / "x.duckdb", "select min(srs_total)::double, max(srs_total)::double from sessions"
    )
    assert srs == [(35.5, 37.5)]


def test_xlsx_with_real_dates_and_a_named_sheet(tmp_path):
    rows = []
    for r in base_rows():
        r = dict(r)
        r["session_date"] = dt.datetime.fromisoformat(r["session_date"])  # a real Excel date
        r["srs_total"] = float(r["srs_total"])
        r["phq9_total"] = int(r["phq9_total"])
        rows.append(r)
    path = write_xlsx(tmp_path / "e.xlsx", rows, COLUMNS, sheet="Sessions")
    result = import_(path, tmp_path / "x.duckdb", sheet="Sessions")
    assert result.ok, format_report(result.problems)
    assert result.counts["sessions_added"] == 12
    # a US date format applies to text dates and to Excel's real dates alike
    path2 = write_xlsx(tmp_path / "e2.xlsx", rows, COLUMNS)
    assert import_(path2, tmp_path / "y.duckdb", date_format="%m/%d/%Y", dry_run=True).ok
    with pytest.raises(UsageError, match="no sheet named"):
        import_(path, tmp_path / "x.duckdb", sheet="Nope", dry_run=True)


def test_xlsx_problems_name_excel_rows(tmp_path):
    rows = [dict(r) for r in base_rows()]
    rows[4]["srs_total"] = "44"
    path = write_xlsx(tmp_path / "e.xlsx", rows, COLUMNS)
    result = import_(path, tmp_path / "x.duckdb", dry_run=True)
    assert problem_at(result, 6, "srs_total") == ["range"]


def test_parquet_with_typed_columns(tmp_path):
    df = pd.DataFrame(base_rows())
    df["session_date"] = pd.to_datetime(df["session_date"]).dt.date
    df["srs_total"] = df["srs_total"].astype(float)
    df["phq9_total"] = df["phq9_total"].astype(float)  # 15.0 is a whole number
    df["age"] = df["age"].astype(int)
    path = tmp_path / "e.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    result = import_(path, tmp_path / "x.duckdb")
    assert result.ok, format_report(result.problems)
    df.loc[3, "phq9_total"] = 30.0
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    bad = import_(path, tmp_path / "y.duckdb", dry_run=True)
    assert problem_at(bad, 5, "phq9_total") == ["range"]


def test_unknown_file_type_and_missing_file_are_usage_errors(tmp_path):
    (tmp_path / "e.json").write_text("{}")
    with pytest.raises(UsageError):
        import_(tmp_path / "e.json", tmp_path / "x.duckdb")
    with pytest.raises(UsageError):
        import_(tmp_path / "missing.csv", tmp_path / "x.duckdb")
    out = cli(str(tmp_path / "missing.csv"), "--db", str(tmp_path / "x.duckdb"))
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr
    out = cli(str(SAMPLE), "--db", str(tmp_path / "x.duckdb"), "--rejects", "r.csv")
    assert out.returncode == 2
    out = cli(str(SAMPLE), "--db", str(tmp_path / "x.duckdb"), "--date-format", "%Q")
    assert out.returncode == 2
    assert cli("--db", str(tmp_path / "x.duckdb")).returncode == 2  # no FILE


# --- columns ------------------------------------------------------------------------------------
def test_column_names_are_normalized(tmp_path):
    assert normalize_name("  Client ID ") == "client_id"
    assert normalize_name("\ufeffSession-Date") == "session_date"
    assert normalize_name("SRS  Total") == "srs_total"
    assert classify("dob") == ("contract", "date_of_birth")
    names = {c: c.replace("_", " ").title() for c in COLUMNS}
    names["session_date"] = "SESSION-DATE"
    rows = [{names[k]: v for k, v in r.items()} for r in base_rows()]
    result = import_(write_csv(tmp_path / "e.csv", rows), tmp_path / "x.duckdb", dry_run=True)
    assert result.ok
    assert result.files[0].recognized["SESSION-DATE"] == "session_date"


def test_required_columns_and_measures(tmp_path):
    rows = [{k: v for k, v in r.items() if k not in ("site", "srs_total")} for r in base_rows()]
    result = check(tmp_path, rows)
    assert not result.ok
    rules = {(p.column, p.rule) for p in result.problems}
    assert ("site", "missing_column") in rules and ("", "no_alliance") in rules
    assert all(p.row is None for p in result.problems)
    rows = [
        {k: v for k, v in r.items() if k not in ("ors_total", "phq9_total", "gad7_total")}
        for r in base_rows()
    ]
    assert ("", "no_outcome") in {(p.column, p.rule) for p in check(tmp_path, rows).problems}


def test_item_columns_come_as_a_set(tmp_path):
    rows = []
    for r in base_rows():
        r = {k: v for k, v in r.items() if k != "srs_total"}
        r.update(srs_relationship="9", srs_goals="9")
        rows.append(r)
    result = check(tmp_path, rows)
    assert [p.rule for p in result.problems] == ["no_alliance", "item_columns"]
    assert "srs_approach" in result.problems[1].message


def test_duplicate_columns(tmp_path):
    rows = [{**r, "Client ID": r["client_id"]} for r in base_rows()]
    result = check(tmp_path, rows)
    assert [p.rule for p in result.problems] == ["duplicate_column"]


def test_identifiers_are_dropped_and_named_and_others_ignored(tmp_path):
    rows = [
        {
            **r,
            "Client Name": "Ann Example",
            "DOB": "1990-05-01",
            "notes": "said x",
            "referral": "GP",
        }
        for r in base_rows()
    ]
    for r in rows:
        del r["age"]
    result = import_(write_csv(tmp_path / "e.csv", rows), tmp_path / "x.duckdb")
    assert result.ok
    assert result.identifiers == ["Client Name", "DOB", "notes"]
    assert result.ignored == ["referral"]
    # the age band still came from the date of birth (C-1, first session 2025-01-10: 34)
    bands = read(tmp_path / "x.duckdb", "select distinct age_band from episodes")
    assert bands == [("26-44",)]


# --- values -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("srs_total", "41", "range"),
        ("srs_total", "35.55", "decimals"),
        ("srs_total", "abc", "number"),
        ("srs_total", "nan", "number"),
        ("ors_total", "-1", "range"),
        ("phq9_total", "28", "range"),
        ("phq9_total", "12.5", "integer"),
        ("gad7_total", "22", "range"),
        ("age", "130", "range"),
        ("age", "thirty", "number"),
        ("end_reason", "finished", "end_reason"),
        ("site", "", "required"),
        ("therapist_id", " ", "required"),
        ("client_id", "", "required"),
        ("session_date", "", "required"),
        ("session_date", "07/01/2025", "date"),
        ("session_date", "2025-02-30", "date"),
        ("session_date", "1989-12-31", "date_old"),
        ("session_date", (dt.date.today() + dt.timedelta(days=2)).isoformat(), "date_future"),
        ("site", "x" * 101, "text_long"),
        ("episode_id", "", "episode_blank"),
    ],
)
def test_bad_values_are_located(tmp_path, column, value, rule):
    rows = base_rows()
    rows[4][column] = value  # spreadsheet row 6
    result = check(tmp_path, rows)
    assert not result.ok
    assert rule in problem_at(result, 6, column), format_report(result.problems)


def test_good_edge_values(tmp_path):
    rows = base_rows()
    rows[0].update(srs_total="40", ors_total="0", phq9_total="27", gad7_total="0")
    for r in rows[9:]:
        r["age"] = "0"
    rows[1].update(srs_total=" 36.0 ", phq9_total="12.0", end_reason=" Planned ")
    rows[2].update(session_date="2025-01-24 00:00:00", end_reason="ongoing")
    rows[3].update(session_date=dt.date.today().isoformat(), age="22")
    result = check(tmp_path, rows)
    assert result.ok, format_report(result.problems)


def test_date_format_option(tmp_path):
    rows = base_rows()
    for r in rows:
        y, m, d = r["session_date"].split("-")
        r["session_date"] = f"{m}/{d}/{y}"
    assert not check(tmp_path, rows).ok
    result = check(tmp_path, rows, date_format="%m/%d/%Y")
    assert result.ok
    rows[0]["session_date"] = "13/45/2025"
    result = check(tmp_path, rows, date_format="%m/%d/%Y")
    assert problem_at(result, 2, "session_date") == ["date"]
    assert "%m/%d/%Y" in result.problems[0].message


def test_items_and_totals_must_agree(tmp_path):
    cols = [*COLUMNS, "srs_relationship", "srs_goals", "srs_approach", "srs_overall"]
    rows = base_rows()
    for r in rows:
        r.update(
            srs_total="36.0",
            srs_relationship="9.0",
            srs_goals="9.0",
            srs_approach="9.1",
            srs_overall="8.9",
        )
    assert check(tmp_path, rows, cols).ok  # 36.0 exactly
    rows[1]["srs_approach"] = "9.3"  # sum 36.2 vs 36.0
    rows[2].update(srs_total="", srs_overall="")  # items incomplete, no total
    rows[3].update(srs_total="", srs_relationship="", srs_goals="", srs_approach="", srs_overall="")
    result = check(tmp_path, rows, cols)
    assert problem_at(result, 3, "srs_total") == ["items_total"]
    assert problem_at(result, 4, "srs_total") == ["items_partial"]
    assert not problem_at(result, 5, "srs_total")  # no SRS at all: not administered
    assert result.problem_count == 2


def test_ors_items_without_total(tmp_path):
    cols = [c for c in COLUMNS if c != "ors_total"] + [
        "ors_individual",
        "ors_interpersonal",
        "ors_social",
        "ors_overall",
    ]
    rows = base_rows()
    for r in rows:
        r.update(ors_individual="5", ors_interpersonal="5.5", ors_social="6", ors_overall="4")
    result = import_(write_csv(tmp_path / "e.csv", rows, cols), tmp_path / "x.duckdb")
    assert result.ok
    assert read(tmp_path / "x.duckdb", "select distinct ors from session_facts") == [(20.5,)]


def test_wai_items_and_subscales(tmp_path):
    items = [f"wai_{i}" for i in range(1, 13)]
    cols = [c for c in COLUMNS if c != "srs_total"] + items + ["wai_task", "wai_bond", "wai_goal"]
    rows = base_rows()
    for r in rows:
        r.update({i: "4" for i in items}, wai_task="16", wai_bond="16", wai_goal="16")
    assert check(tmp_path, rows, cols).ok
    rows[0]["wai_3"] = "6"
    rows[1]["wai_bond"] = "15"
    rows[2]["wai_5"] = ""
    rows[3]["wai_goal"] = ""
    result = check(tmp_path, rows, cols)
    assert problem_at(result, 2, "wai_3") == ["range"]
    assert problem_at(result, 3, "wai_bond") == ["wai_sub_total"]
    assert problem_at(result, 4, "wai_5") == ["wai_partial"]
    assert problem_at(result, 5, "wai_goal") == ["wai_sub_partial"]


# --- episodes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("gender", "male"),
        ("program", "Couples"),
        ("race_ethnicity", "Asian"),
        ("end_reason", "dropout"),
    ],
)
def test_episode_fields_must_agree(tmp_path, column, value):
    rows = base_rows()
    rows[0]["end_reason"] = "planned" if column == "end_reason" else ""
    rows[1][column] = value  # row 3 disagrees with row 2 of the same episode
    result = check(tmp_path, rows)
    problems = [p for p in result.problems if p.rule == "episode_differs"]
    assert [(p.row, p.column) for p in problems] == [(3, column)]
    assert "row 2" in problems[0].message


def test_blank_episode_fields_and_case_do_not_disagree(tmp_path):
    rows = base_rows()
    rows[1].update(gender="", race_ethnicity="white", program="ADULT OUTPATIENT")
    assert check(tmp_path, rows).ok


def test_age_must_fit_the_dates(tmp_path):
    rows = base_rows()
    rows[1]["age"] = "35"  # a birthday between sessions: fine
    assert check(tmp_path, rows).ok
    rows[2]["age"] = "40"
    result = check(tmp_path, rows)
    assert problem_at(result, 4, "age") == ["age_differs"]


def test_age_bands_at_the_first_session(tmp_path):
    cases = {
        "17": "<18",
        "18": "18-25",
        "25": "18-25",
        "26": "26-44",
        "44": "26-44",
        "45": "45-64",
        "64": "45-64",
        "65": "65+",
    }
    rows = []
    for i, (age, _) in enumerate(cases.items()):
        rows.append({**base_rows()[0], "client_id": f"C-{i}", "age": age})
    import_(write_csv(tmp_path / "e.csv", rows), tmp_path / "x.duckdb")
    got = sorted(r[0] for r in read(tmp_path / "x.duckdb", "select age_band from episodes"))
    assert got == sorted(cases.values())


def test_birth_year_and_date_of_birth_give_bands_and_are_not_stored(tmp_path):
    cols = [c for c in COLUMNS if c != "age"] + ["birth_year", "date_of_birth"]
    rows = base_rows()
    for r in rows:
        r.update(birth_year="", date_of_birth="")
    for r in rows[:3]:
        r["birth_year"] = "2008"  # 2025 - 2008 = 17
    for r in rows[3:6]:
        r["date_of_birth"] = "1980-02-15"  # 44 on 2025-02-10, first session
    result = import_(write_csv(tmp_path / "e.csv", rows, cols), tmp_path / "x.duckdb")
    assert result.ok and set(result.identifiers) == {"birth_year", "date_of_birth"}
    bands = dict(read(tmp_path / "x.duckdb", "select e.episode_id, age_band from episodes e"))
    assert sorted(bands.values()) == ["26-44", "<18", "unknown", "unknown"]
    raw = (tmp_path / "x.duckdb").read_bytes()
    assert b"1980-02-15" not in raw and b"birth_year" not in raw


def test_dates_of_birth_after_the_session_and_disagreeing(tmp_path):
    cols = [*COLUMNS, "dob"]
    rows = base_rows()
    for r in rows:
        r["dob"] = "1980-02-15"
    rows[0]["dob"] = "2030-01-01"
    rows[4]["dob"] = "1981-02-15"
    rows[7]["dob"] = "not a date"
    result = check(tmp_path, rows, cols)
    assert problem_at(result, 2, "dob") == ["dob_after"]
    assert "episode_differs" in problem_at(result, 6, "dob")
    assert problem_at(result, 9, "dob") == ["date"]
    assert all(p.value == "(hidden)" for p in result.problems)


def test_gender_is_case_folded_and_blanks_are_unknown(tmp_path):
    rows = base_rows()
    for r in rows[:3]:
        r.update(gender=" Female ", race_ethnicity="  White  ")
    for r in rows[3:6]:
        r.update(gender="", race_ethnicity="")
    import_(write_csv(tmp_path / "e.csv", rows), tmp_path / "x.duckdb")
    got = read(tmp_path / "x.duckdb", "select gender, race_ethnicity from episodes order by 1, 2")
    assert ("female", "White") in got and ("unknown", "unknown") in got


def test_without_episode_id_one_episode_per_client(tmp_path):
    cols = [c for c in COLUMNS if c != "episode_id"]
    result = import_(write_csv(tmp_path / "e.csv", base_rows(), cols), tmp_path / "x.duckdb")
    assert result.ok and result.counts["episodes_added"] == 4


def test_duplicates_identical_collapse_conflicting_fail(tmp_path):
    rows = base_rows()
    rows.append(dict(rows[0]))  # the same session twice: one session
    result = import_(write_csv(tmp_path / "e.csv", rows), tmp_path / "x.duckdb")
    assert result.ok and result.counts["sessions_added"] == 12
    rows[-1]["srs_total"] = "30.0"
    result = check(tmp_path, rows)
    assert problem_at(result, 14, "session_date") == ["duplicate"]
    assert "row 2" in result.problems[0].message
    # same-day sessions told apart by session_number
    cols = [*COLUMNS, "session_number"]
    for i, r in enumerate(rows):
        r["session_number"] = str(i + 1)
    assert check(tmp_path, rows, cols).ok


# --- re-import, overlap, demo, keys -------------------------------------------------------------
def test_reimport_adds_nothing_and_overlap_updates(tmp_path):
    path = tmp_path / "jan.csv"
    rows = base_rows()
    for r in rows:
        r["end_reason"] = ""
    write_csv(path, rows[:2] + rows[3:])  # C-1 session 3 not yet exported
    dbp = tmp_path / "x.duckdb"
    first = import_(path, dbp)
    assert first.counts["sessions_added"] == 11
    again = import_(path, dbp)
    assert again.counts == {
        **again.counts,
        "sessions_added": 0,
        "sessions_updated": 0,
        "episodes_added": 0,
        "episodes_updated": 0,
    }
    assert again.counts["sessions_unchanged"] == 11
    # a later export: C-1's last session with its end reason, a corrected score, a new client
    later = [dict(r) for r in rows]
    later[2]["end_reason"] = "dropout"
    later[5]["srs_total"] = "30.5"
    later.append({**rows[0], "client_id": "C-9", "session_date": "2025-05-01"})
    result = import_(write_csv(tmp_path / "feb.csv", later), dbp)
    assert result.counts["sessions_added"] == 2
    assert result.counts["sessions_updated"] == 1
    assert result.counts["sessions_unchanged"] == 10
    assert result.counts["episodes_added"] == 1 and result.counts["episodes_updated"] == 1
    assert read(dbp, "select count(*) from episodes where end_reason = 'dropout'") == [(1,)]
    assert read(dbp, "select count(*) from sessions where srs_total = 30.5") == [(1,)]
    log = read(
        dbp,
        "select rows_read, sessions_added, sessions_updated, sessions_unchanged from import_log order by import_id",
    )
    assert log == [(11, 11, 0, 0), (11, 0, 0, 11), (13, 2, 1, 10)]
    # an end reason is never cleared by an export that leaves it blank
    import_(path, dbp)
    assert read(dbp, "select count(*) from episodes where end_reason = 'dropout'") == [(1,)]


def test_demo_is_refused_then_replaced(tmp_path):
    dbp = tmp_path / "x.duckdb"
    db.write_demo(dbp, sessions=2_000, seed=3)
    before = file_hash(dbp)
    with pytest.raises(DemoDataError):
        import_(SAMPLE, dbp)
    out = cli(str(SAMPLE), "--db", str(dbp))
    assert out.returncode == 2 and "--replace-demo" in out.stderr
    assert file_hash(dbp) == before
    preview = import_(SAMPLE, dbp, dry_run=True)
    assert preview.ok and preview.needs_replace_demo and preview.counts["sessions_added"] == 9
    result = import_(SAMPLE, dbp, replace_demo=True)
    assert result.replaced_demo
    assert read(dbp, "select count(*) from sessions") == [(9,)]
    assert read(dbp, "select count(*) from therapists") == [(2,)]
    meta = dict(read(dbp, "select key, value from meta"))
    assert meta["dataset_kind"] == "clinic" and "demo_seed" not in meta


def test_new_database_holds_only_the_import(tmp_path):
    dbp = tmp_path / "new" / "x.duckdb"
    result = import_(SAMPLE, dbp)
    assert result.written and read(dbp, "select count(*) from sessions") == [(9,)]


def test_therapist_codes_never_change(tmp_path):
    dbp = tmp_path / "x.duckdb"
    import_(SAMPLE, dbp)
    before = dict(read(dbp, "select pseudonym, code from therapists"))
    rows = [{**r, "therapist_id": f"NEW-{i}"} for i, r in enumerate(base_rows())]
    import_(write_csv(tmp_path / "e.csv", rows), dbp)
    after = dict(read(dbp, "select pseudonym, code from therapists"))
    assert all(after[p] == c for p, c in before.items()) and len(after) == 14
    assert len(set(after.values())) == 14
    assert new_therapist_codes(["T-ABCD"], ["abcd12", "abcd34"]) == ["T-ABCD1", "T-ABCD3"]


def test_pseudonyms_are_keyed_stable_and_the_key_lives_outside(tmp_path, monkeypatch):
    dbp = tmp_path / "x.duckdb"
    import_(SAMPLE, dbp)
    key_file = tmp_path / ".alliance_secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = load_key(dbp)
    stored = {r[0] for r in read(dbp, "select pseudonym from clients")}
    assert pseudonym(key.key, "client", "C-1001") in stored
    assert key_file.read_text().strip() not in dbp.read_bytes().decode("latin-1")
    # the same id maps to the same pseudonym in another database under the same key
    monkeypatch.setenv("ALLIANCE_SECRET_KEY", "x" * 40)
    other = tmp_path / "o" / "x.duckdb"
    import_(SAMPLE, other)
    import_(SAMPLE, tmp_path / "p" / "x.duckdb")
    assert read(other, "select pseudonym from clients order by 1") == read(
        tmp_path / "p" / "x.duckdb", "select pseudonym from clients order by 1"
    )
    # a different key is refused instead of creating new pseudonyms for the same people
    with pytest.raises(SecretKeyError):
        import_(SAMPLE, dbp)
    monkeypatch.setenv("ALLIANCE_SECRET_KEY", "short")
    with pytest.raises(SecretKeyError):
        import_(SAMPLE, other)


def test_a_readable_key_file_is_refused(tmp_path):
    dbp = tmp_path / "x.duckdb"
    import_(SAMPLE, dbp)
    (tmp_path / ".alliance_secret_key").chmod(0o644)
    out = cli(str(SAMPLE), "--db", str(dbp))
    assert out.returncode == 2 and "chmod 600" in out.stderr


def test_dry_run_writes_nothing(tmp_path):
    dbp = tmp_path / "x.duckdb"
    out = cli(str(SAMPLE), "--db", str(dbp), "--dry-run")
    assert out.returncode == 0 and "Dry run" in out.stdout
    assert not dbp.exists() and not (tmp_path / ".alliance_secret_key").exists()


def test_skip_invalid_writes_rejects_without_identifiers(tmp_path):
    rows = base_rows()
    rows[1]["srs_total"] = "44"  # row 3: rejected alone
    rows[7]["gender"] = "male"  # row 9: C-3's episode disagrees -> the whole episode (rows 8-10)
    path = write_csv(tmp_path / "e.csv", rows)
    dbp = tmp_path / "x.duckdb"
    out = cli(str(path), "--db", str(dbp))
    assert out.returncode == 1 and "Nothing was imported" in out.stderr and not dbp.exists()
    rejects = tmp_path / "rejects.csv"
    out = cli(str(path), "--db", str(dbp), "--skip-invalid", "--rejects", str(rejects))
    assert out.returncode == 0, out.stderr
    assert read(dbp, "select count(*) from sessions") == [(8,)]
    got = pd.read_csv(rejects)
    assert list(got["row"]) == [3, 8, 9, 10]
    assert "srs_total" in got.loc[0, "problems"] and "44" in got.loc[0, "problems"]
    assert "another row of this episode is invalid (row 9)" in got.loc[0 + 1, "problems"]
    text = rejects.read_text()
    assert "C-1" not in text and "T-A" not in text and "client_id" not in text
    assert read(dbp, "select rows_rejected from import_log") == [(4,)]


def test_report_shows_fifty_problems_and_counts_the_rest(tmp_path):
    rows = [{**base_rows()[0], "client_id": f"C-{i}", "srs_total": "99"} for i in range(70)]
    out = cli(str(write_csv(tmp_path / "e.csv", rows)), "--db", str(tmp_path / "x.duckdb"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if "outside the range" in line]
    assert len(lines) == 50
    assert "… and 20 more problem(s) not shown." in out.stderr
    assert lines[0].split()[1] == "2"  # first data row is row 2


def test_identifier_values_are_hidden_in_reports(tmp_path):
    rows = base_rows()
    rows[2]["episode_id"] = ""
    out = cli(str(write_csv(tmp_path / "e.csv", rows)), "--db", str(tmp_path / "x.duckdb"))
    assert out.returncode == 1
    assert "C-1" not in out.stderr and "T-A" not in out.stderr


# --- CSV structure ------------------------------------------------------------------------------
def test_rows_are_numbered_as_in_a_spreadsheet(tmp_path):
    rows = [{**r, "notes": ""} for r in base_rows()]
    rows[0]["notes"] = "first line\nsecond line"  # a cell over two lines is still one row
    rows[9]["srs_total"] = "50"  # spreadsheet row 11 before the insertions below
    lines = write_csv(tmp_path / "e.csv", rows).read_text().split("\n")
    # lines: 0 header, 1-2 row 2 (two lines), 3 row 3, ...
    lines.insert(4, "")  # a blank line: spreadsheet row 4
    lines.insert(7, "x,y,z,1,2,3,4,5,6,7,8,9,10,11,12,13")  # row 7: more fields than the header
    path = tmp_path / "f.csv"
    path.write_text("\n".join(lines))
    result = import_(path, tmp_path / "x.duckdb", dry_run=True)
    assert (7, "extra_fields") in [(p.row, p.rule) for p in result.problems]
    assert problem_at(result, 13, "srs_total") == ["range"]
    assert result.identifiers == ["notes"]


def test_quoted_multiline_cells_and_quotes(tmp_path):
    rows = base_rows()
    rows[0]["race_ethnicity"] = 'White "British"'
    rows[1]["race_ethnicity"] = 'White "British"'
    rows[2]["race_ethnicity"] = 'White "British"'
    rows[5]["srs_total"] = "50"
    rows[3]["site"] = "North\nAnnex"  # two lines, one row; too-long/multi-line site is an error
    result = check(tmp_path, rows)
    assert problem_at(result, 5, "site") == ["text_long"]
    assert problem_at(result, 7, "srs_total") == ["range"]


def test_unbalanced_quote_encoding_and_empty_files(tmp_path):
    path = write_csv(tmp_path / "e.csv", base_rows())
    text = path.read_text().replace("North", '"North', 1)
    path.write_text(text)
    result = import_(path, tmp_path / "x.duckdb", dry_run=True)
    assert [p.rule for p in result.problems] == ["unbalanced_quotes"] and not result.ok
    latin = tmp_path / "l.csv"
    latin.write_bytes(
        write_csv(tmp_path / "u.csv", base_rows()).read_bytes().replace(b"Asian", b"Asi\xe1n")
    )
    result = import_(latin, tmp_path / "x.duckdb", dry_run=True)
    assert {p.rule for p in result.problems} == {"bad_encoding_row"}
    assert {p.row for p in result.problems} == {11, 12, 13}
    utf16 = tmp_path / "w.csv"
    utf16.write_bytes(SAMPLE.read_text().encode("utf-16"))
    assert [p.rule for p in import_(utf16, tmp_path / "x.duckdb", dry_run=True).problems] == [
        "encoding"
    ]
    empty = write_csv(tmp_path / "empty.csv", [], COLUMNS)
    result = import_(empty, tmp_path / "x.duckdb", dry_run=True)
    assert [p.rule for p in result.problems] == ["no_rows"]
    blank_rows = tmp_path / "blank.csv"
    blank_rows.write_text(SAMPLE.read_text() + ",,,,,,,,,,,,,\n")
    result = import_(blank_rows, tmp_path / "x.duckdb", dry_run=True)
    assert result.ok and result.rows_read == 9 and result.files[0].blank_rows == 1


def test_no_traceback_for_bad_files(tmp_path):
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"not a zip at all")
    out = cli(str(bad), "--db", str(tmp_path / "x.duckdb"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "not a readable .xlsx workbook" in out.stderr
    pbad = tmp_path / "bad.parquet"
    pbad.write_bytes(b"PAR1 nonsense")
    out = cli(str(pbad), "--db", str(tmp_path / "x.duckdb"))
    assert out.returncode == 1 and "Traceback" not in out.stderr


def test_several_files_import_together(tmp_path):
    rows = base_rows()
    a = write_csv(tmp_path / "north.csv", rows[:6])
    b = write_csv(tmp_path / "south.csv", rows[6:] + rows[:1])  # one row in both files
    result = import_([a, b], tmp_path / "x.duckdb")
    assert result.ok and result.counts["sessions_added"] == 12
    rows[6]["srs_total"] = "99"
    b = write_csv(tmp_path / "south.csv", rows[6:])
    result = import_([a, b], tmp_path / "y.duckdb", dry_run=True)
    assert [(p.file, p.row, p.column) for p in result.problems] == [("south.csv", 2, "srs_total")]
