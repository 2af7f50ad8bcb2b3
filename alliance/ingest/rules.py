"""The validation rules as SQL.

Row rules are evaluated *while a file is scanned* (stage.load): each rule is a CASE expression
over the row's raw text (``r_<column>``), its parsed numbers (``n_<column>``) and dates, giving a
rule id or NULL; the row keeps the list of its problems. Episode rules (agreement of episode
fields, age consistency, conflicting duplicate sessions) run afterwards over the typed staging
table; their problems carry the episode's key, so that ``--skip-invalid`` rejects the whole
episode. All SQL here is built from the contract's constant column list: no value from an
imported file is ever part of SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

from alliance.ingest import contract as C
from alliance.ingest.controlled import list_position_sql


@dataclass(frozen=True)
class RowRule:
    column: str  # contract column the problem is reported on (or a CASE giving one)
    rule: str  # SQL: CASE ... giving the rule id, NULL when the row passes
    value: str = "null"  # SQL: the value shown (raw text; NULL for identifying columns)
    column_sql: str | None = None  # SQL giving the column name, when it depends on the row
    detail: str = "null::varchar"  # SQL: extra text for the message
    numeric: bool = False  # the range/precision rule of a numeric column
    text: bool = False  # the rule of a text column (identifiers, length, controlled list)


def blank(col: str) -> str:
    return f"coalesce(trim(r_{col}), '') = ''"


def unless_identifying(col: str, allowed_kind: str | None = None) -> str:
    """SQL: the raw cell, or NULL when it looks like an identifier (then it is never shown)."""
    kind = f"identifying_kind(r_{col})"
    if allowed_kind is None:
        return f"case when {kind} is null then r_{col} end"
    return f"case when coalesce({kind}, '{allowed_kind}') = '{allowed_kind}' then r_{col} end"


# text columns with a controlled list: SQL testing that a (non-blank) cell is off the list
_OFF_LIST = {
    "gender": list_position_sql("r_gender", "$gender_keys") + " is null",
    "race_ethnicity": list_position_sql("r_race_ethnicity", "$race_keys") + " is null",
    "end_reason": "lower(trim(r_end_reason)) not in ("
    + ", ".join(f"'{v}'" for v in (*C.END_REASONS, *C.OPEN_END_REASONS))
    + ")",
}


def text_rule(col: str) -> RowRule:
    """One rule per text column: a cell that looks like an identifier, a long or multi-line
    cell (a note or a shifted column), a value off its controlled list. The value is never
    shown (NULL): it may be anything a person typed."""
    checks = [
        f"when identifying_kind(r_{col}) is not null then 'identifying'",
        f"when length(r_{col}) > {C.MAX_TEXT} or contains(r_{col}, chr(10)) "
        f"or contains(r_{col}, chr(13)) then 'text_long'",
    ]
    if col in _OFF_LIST:
        checks.append(f"when {_OFF_LIST[col]} then '{col}'")
    rule = f"case when {blank(col)} then null " + " ".join(checks) + " end"
    return RowRule(col, rule, "null", detail=f"identifying_kind(r_{col})", text=True)


def _numeric_rule(c: C.Column) -> RowRule:
    n = f"n_{c.name}"
    if c.kind == "score":
        precision, precision_rule = f"abs({n} * 10 - round({n} * 10)) > 1e-6", "decimals"
    else:
        precision, precision_rule = f"{n} <> round({n})", "integer"
    r = f"r_{c.name}"
    rule = (
        f"case when {r} is null then null "
        f"when {n} is null then case when trim({r}) = '' then null "
        f"when identifying_kind({r}) is not null then 'identifying' else 'number' end "
        f"when not isfinite({n}) or contains({r}, '_') or contains({r}, 'e') "
        f"or contains({r}, 'E') then 'number' "
        f"when {n} < {c.lo} or {n} > {c.hi} then 'range' "
        f"when {precision} then '{precision_rule}' end"
    )
    value = "null" if c.hidden else unless_identifying(c.name)
    return RowRule(c.name, rule, value, detail=f"identifying_kind({r})", numeric=True)


def row_rules() -> list[RowRule]:
    rules = [
        RowRule("client_id", "case when client_no is null then 'required' end"),
        RowRule("therapist_id", "case when therapist_no is null then 'required' end"),
        RowRule("episode_id", "case when episode_given = false then 'episode_blank' end"),
        RowRule("site", f"case when {blank('site')} then 'required' end"),
        RowRule(
            "session_date",
            f"case when {blank('session_date')} then 'required' when sdate is null then "
            "case when coalesce(identifying_kind(r_session_date), 'date') <> 'date' "
            "then 'identifying' else 'date' end "
            "when sdate > $today then 'date_future' "
            f"when sdate < date '{C.FIRST_YEAR}-01-01' then 'date_old' end",
            unless_identifying("session_date", "date"),
            detail="identifying_kind(r_session_date)",
        ),
        RowRule(
            "date_of_birth",
            f"case when not {blank('date_of_birth')} and dob_date is null then 'date' "
            "when dob_age < 0 then 'dob_after' when dob_age > 120 then 'dob_age' end",
        ),
        RowRule(
            "birth_year",
            "case when n_birth_year between 1900 and 2100 and n_birth_year = round(n_birth_year) "
            "and n_birth_year > year(sdate) then 'birth_year_after' end",
        ),
    ]
    rules.extend(text_rule(col) for col in C.TEXT_COLUMNS)
    rules.extend(_numeric_rule(c) for c in C.NUMERIC)
    for label, total, items in (
        ("SRS", "srs_total", C.SRS_ITEMS),
        ("ORS", "ors_total", C.ORS_ITEMS),
    ):
        given = " + ".join(f"(not {blank(i)})::int" for i in items)
        rules.append(
            RowRule(
                total,
                f"case when {blank(total)} and ({given}) between 1 and 3 then 'items_partial' end",
                detail=f"'{label}'",
            )
        )
        item_sum = " + ".join(f"n_{i}" for i in items)
        rules.append(
            RowRule(
                total,
                f"case when abs(({item_sum}) - n_{total}) > 0.1 + 1e-9 then 'items_total' end",
                f"r_{total}",
            )
        )
    given = " + ".join(f"(not {blank(i)})::int" for i in C.WAI_ITEMS)
    first_blank = "case " + " ".join(f"when {blank(i)} then '{i}'" for i in C.WAI_ITEMS) + " end"
    rules.append(
        RowRule(
            "wai_1",
            f"case when ({given}) between 1 and 11 then 'wai_partial' end",
            column_sql=first_blank,
        )
    )
    subs = list(C.WAI_SUBSCALES)
    given = " + ".join(f"(not {blank(s)})::int" for s in subs)
    first_blank = "case " + " ".join(f"when {blank(s)} then '{s}'" for s in subs) + " end"
    rules.append(
        RowRule(
            "wai_task",
            f"case when ({given}) between 1 and 2 then 'wai_sub_partial' end",
            column_sql=first_blank,
        )
    )
    for sub, items in C.WAI_SUBSCALES.items():
        item_sum = " + ".join(f"n_wai_{i}" for i in items)
        rules.append(
            RowRule(sub, f"case when ({item_sum}) <> n_{sub} then 'wai_sub_total' end", f"r_{sub}")
        )
    return rules


def issues_sql(rules: list[RowRule]) -> str:
    """SQL list of the row's problems: struct(col, rule, value, detail), NULLs filtered out."""
    items = []
    for i, r in enumerate(rules):
        col = r.column_sql or f"'{r.column}'"
        items.append(
            f"case when k{i} is not null then struct_pack(col := {col}, rule := k{i}, "
            f"value := {r.value}::varchar, detail := {r.detail}::varchar) end"
        )
    return "list_filter([" + ",\n".join(items) + "], lambda x: x is not null)"


PROBLEMS_TABLE = """
create or replace table problems (
    file_no integer,
    row_no bigint,
    col varchar,           -- contract column name
    rule varchar,
    value varchar,         -- the cell as written (null for identifying columns)
    ref_file integer,      -- another row the problem refers to
    ref_row bigint,
    detail varchar,
    episode_no integer    -- set when the whole episode is rejected (--skip-invalid)
)
"""

ROW_PROBLEMS = """
insert into problems
select file_no, row_no, i.col, i.rule, i.value, null, null, i.detail, null
from (select file_no, row_no, unnest(issues) as i from live where issues is not null)
"""

# (column, normalized value, condition that a value is given) over the typed staging table
_AGREE = (
    ("program", "lower(program)", "program is not null"),
    ("gender", "gender", "gender is not null"),
    ("race_ethnicity", "lower(race_ethnicity)", "race_ethnicity is not null"),
    ("end_reason", "end_reason", "end_reason is not null"),
    ("birth_year", "birth_year::varchar", "birth_year is not null"),
    ("date_of_birth", "dob_no::varchar", "dob_no is not null"),
)
_ORDER = "(sdate, file_no, row_no)"


def episode_checks() -> list[str]:
    """INSERT statements: per-episode agreement, age consistency, conflicting duplicates."""
    having = " or ".join(
        f"min({expr}) filter (where {given}) <> max({expr}) filter (where {given})"
        for _, expr, given in _AGREE
    )
    refs = ",\n".join(
        f"arg_min(file_no, {_ORDER}) filter (where {given}) as {col}_file, "
        f"arg_min(row_no, {_ORDER}) filter (where {given}) as {col}_row, "
        f"arg_min({expr}, {_ORDER}) filter (where {given}) as {col}_val"
        for col, expr, given in _AGREE
    )
    checks = [
        f"""
        create or replace temp table episode_refs as
        with conflicted as (
            select episode_no from live where episode_no is not null
            group by episode_no having {having}
        )
        select episode_no, {refs}
        from live semi join conflicted using (episode_no)
        group by episode_no
        """  # noqa: S608 (constant SQL)
    ]
    for col, expr, given in _AGREE:
        value = "null" if C.BY_NAME[col].hidden else f"l.{col}"
        checks.append(
            f"""
            insert into problems
            select l.file_no, l.row_no, '{col}', 'episode_differs', {value},
                   r.{col}_file, r.{col}_row, '{col}', l.episode_no
            from live as l join episode_refs as r using (episode_no)
            where {given} and {expr} <> r.{col}_val
            """  # noqa: S608 (constant SQL)
        )
    checks.append(
        f"""
        insert into problems
        with aged as (
            select episode_no, file_no, row_no, sdate, age
            from live where episode_no is not null and age is not null and sdate is not null
        ),
        candidates as (
            select episode_no,
                   arg_min(age, {_ORDER}) as ref_age,
                   arg_min(sdate, {_ORDER}) as ref_date,
                   arg_min(file_no, {_ORDER}) as ref_file,
                   arg_min(row_no, {_ORDER}) as ref_row
            from aged group by episode_no having min(age) <> max(age)
        )
        select a.file_no, a.row_no, 'age', 'age_differs', a.age::varchar,
               c.ref_file, c.ref_row, null, a.episode_no
        from aged as a join candidates as c using (episode_no)
        where a.age - c.ref_age < 0
           or a.age - c.ref_age > floor(date_diff('day', c.ref_date, a.sdate) / 365.25) + 1
        """  # noqa: S608 (constant SQL)
    )
    values = ", ".join(["site", *SESSION_VALUES])
    checks.append(
        f"""
        create or replace temp table duplicate_groups as
        with
        keys as (
            select episode_no, therapist_no, sdate, session_number as sn, count(*) as n
            from live
            where episode_no is not null and therapist_no is not null and sdate is not null
            group by episode_no, therapist_no, sdate, session_number
            having count(*) > 1
        ),
        keyed as (
            select l.episode_no, l.therapist_no, l.sdate, l.session_number as sn,
                   hash({", ".join("l." + v for v in values.split(", "))}) as vh,
                   l.file_no::bigint * 1000000000000 + l.row_no as pos
            from live as l
            join keys as k
              on k.episode_no = l.episode_no and k.therapist_no = l.therapist_no
             and k.sdate = l.sdate and k.sn is not distinct from l.session_number
        )
        select episode_no, therapist_no, sdate, sn, count(*) as n, count(distinct vh) as nv,
               min(pos) as first_pos
        from keyed
        group by episode_no, therapist_no, sdate, sn
        """  # noqa: S608 (constant SQL)
    )
    checks.append(
        """
        insert into problems
        select l.file_no, l.row_no, 'session_date', 'duplicate', strftime(l.sdate, '%Y-%m-%d'),
               (g.first_pos // 1000000000000)::integer, g.first_pos % 1000000000000, null,
               l.episode_no
        from live as l
        join duplicate_groups as g
          on g.episode_no = l.episode_no and g.therapist_no = l.therapist_no
         and g.sdate = l.sdate and g.sn is not distinct from l.session_number
        where g.nv > 1 and l.file_no::bigint * 1000000000000 + l.row_no <> g.first_pos
        """
    )
    return checks


SESSION_VALUES = tuple(
    c.name for c in C.NUMERIC if c.group in ("srs", "wai", "ors", "phq9", "gad7")
)
