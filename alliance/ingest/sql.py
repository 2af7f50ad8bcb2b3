"""SQL text of the staging database: macros, the typed `rows` table, the loading scan, and the
preparation of sessions and episodes. Built only from the contract's constant column names;
every value from an imported file travels as data (parameters, scans), never as SQL text."""

from __future__ import annotations

from alliance.ingest import contract as C
from alliance.ingest import rules
from alliance.ingest.controlled import list_position_sql, macros_sql

RAW_FIELDS = tuple(c.name for c in C.COLUMNS)  # every contract column, read as text
ID_COLUMNS = ("client_id", "episode_id", "therapist_id", "date_of_birth")
TYPES = {
    c.name: "decimal(3, 1)"
    if c.kind == "score"
    else ("tinyint" if (c.hi or 0) <= 127 else "smallint")
    for c in C.NUMERIC
}

MACROS = r"""
create or replace macro blank(x) as coalesce(trim(x), '') = '';
create or replace macro num(x) as
    coalesce(try_cast(x as double), try_cast(replace(x, ',', '.') as double));
create or replace macro parse_day(x, fmt) as
    coalesce(
        try_strptime(trim(x), fmt),
        case when fmt = '%Y-%m-%d' then try_strptime(regexp_extract(
            trim(x), '^(\d{4}-\d{1,2}-\d{1,2})[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$', 1),
            fmt) end
    )::date;
create table client_keys (client_no integer primary key, client_key varchar not null);
create table episode_keys (
    episode_no integer primary key, client_no integer not null, episode_key varchar not null
);
create table therapist_keys (therapist_no integer primary key, therapist_key varchar not null);
""" + macros_sql()


def rows_table() -> str:
    measures = ",\n".join(f"    {m} {TYPES[m]}" for m in rules.SESSION_VALUES)
    return f"""
        create table rows (
            file_no integer not null,
            row_no bigint not null,        -- as seen in a spreadsheet (header = row 1)
            all_blank boolean not null,    -- no contract value at all: skipped
            client_no integer,             -- numbers of the keyed pseudonyms (*_keys tables);
            episode_no integer,            -- null = blank
            therapist_no integer,
            dob_no integer,                -- number of the date of birth (agreement only)
            sdate date,                    -- below: valid values only (invalid -> null + issue)
            site varchar,                  -- text: valid values only, gender and race as
            program varchar,               -- their list's label (null = blank or unknown)
            gender varchar,
            race_ethnicity varchar,
            end_reason varchar,            -- planned | dropout | other | null (open)
            given_text utinyint,           -- bit i set: TEXT_COLUMNS[i] was not blank
            age smallint,                  -- the age column
            birth_year smallint,
            age_years smallint,            -- age at this session from age, dob or birth year
            session_number smallint,
        {measures},
            issues struct(col varchar, rule varchar, value varchar, detail varchar)[]
        )
    """  # noqa: S608 (constant column names)


def load_sql(
    *, file_no: int, row_no: str, scan: str, raw: dict[str, str], join: str, has_episode: bool
) -> str:
    """The loading scan: raw text (l0) -> parsed numbers and dates (l1, l2) -> rule ids (l3) ->
    the typed row with the list of its problems (NULL when it has none)."""
    row_rules = rules.row_rules()
    raw_cols = ",\n".join(
        f"{expr} as r_{name}" for name, expr in raw.items() if name not in ID_COLUMNS
    )
    nums = ",\n".join(f"num(r_{c.name}) as n_{c.name}" for c in C.NUMERIC)
    checks = ",\n".join(f"{r.rule} as k{i}" for i, r in enumerate(row_rules))
    numeric_rule = {r.column: i for i, r in enumerate(row_rules) if r.numeric}
    text_rule = {r.column: i for i, r in enumerate(row_rules) if r.text}
    given_text = " + ".join(
        f"(not blank(r_{col}))::int * {1 << i}" for i, col in enumerate(C.TEXT_COLUMNS)
    )
    typed = ",\n".join(
        f"case when k{numeric_rule[c.name]} is null then n_{c.name}::{TYPES[c.name]} end as {c.name}"
        for c in C.NUMERIC
        if c.name not in ("age", "birth_year")
    )
    contract_blank = " and ".join(
        [
            "therapist_no is null",
            "coalesce(episode_given, false) = false",
            "blank(r_date_of_birth)",
            *(f"blank(r_{n})" for n in raw if n not in ID_COLUMNS),
        ]
    )
    any_problem = f"coalesce({', '.join(f'k{i}' for i in range(len(row_rules)))})"
    episode_given = f"not blank({raw['episode_id']})" if has_episode else "null::boolean"
    return f"""
        insert into rows
        with
        l0 as (
            select
                {row_no} as row_no,
                m.client_no, m.episode_no, m.therapist_no, m.dob_no,
                {episode_given} as episode_given,
                {raw["date_of_birth"]} as r_date_of_birth,
                {raw_cols}
            from {scan}
            left join idmap_{file_no} as m on {join}
        ),
        l1 as (
            select
                *,
                parse_day(r_session_date, $fmt) as sdate,
                parse_day(r_date_of_birth, $fmt) as dob_date,
                {nums}
            from l0
        ),
        l2 as (
            select
                *,
                date_sub('year', dob_date, sdate) as dob_age,
                case when client_no is null and blank(r_site) and blank(r_session_date)
                     then {contract_blank} else false end as all_blank
            from l1
        ),
        l3 as (
            select *, {checks} from l2
        ),
        l4 as (
            select
                *,
                case when k{numeric_rule["age"]} is null then n_age::smallint end as age_ok,
                case when k{numeric_rule["birth_year"]} is null
                     then n_birth_year::smallint end as birth_year_ok
            from l3
        )
        select
            {file_no},
            row_no,
            all_blank,
            client_no, episode_no, therapist_no,
            case when dob_date is not null then dob_no end,
            sdate,
            case when k{text_rule["site"]} is null then nullif(trim(r_site), '') end as site,
            case when k{text_rule["program"]} is null
                 then nullif(trim(r_program), '') end as program,
            case when k{text_rule["gender"]} is null then nullif(list_extract($gender_values,
                 {list_position_sql("r_gender", "$gender_keys")}), '') end as gender,
            case when k{text_rule["race_ethnicity"]} is null then nullif(list_extract(
                 $race_values, {list_position_sql("r_race_ethnicity", "$race_keys")}), '')
                 end as race_ethnicity,
            case when lower(trim(r_end_reason)) in ('planned', 'dropout', 'other')
                 then lower(trim(r_end_reason)) end as end_reason,
            ({given_text})::utinyint as given_text,
            age_ok as age,
            birth_year_ok as birth_year,
            coalesce(
                age_ok,
                case when dob_age between 0 and 120 then dob_age end,
                case when year(sdate) - birth_year_ok between 0 and 120
                     then year(sdate) - birth_year_ok end
            )::smallint as age_years,
            {typed},
            case when all_blank or {any_problem} is null then null
                 else {rules.issues_sql(row_rules)} end as issues
        from l4
    """  # noqa: S608 (constant column names; values are parameters)


def prepare_sessions(deduplicate: bool) -> str:
    measures = ", ".join(rules.SESSION_VALUES)
    # a view unless duplicates must be collapsed: the writer reads it straight from the stage
    return f"""
        create or replace {"table" if deduplicate else "view"} inc_sessions as
        select {"distinct" if deduplicate else ""}
            episode_no, therapist_no, sdate as session_date, session_number, site, {measures}
        from valid
    """  # noqa: S608 (constant column names)


PREPARE_EPISODES = """
create or replace table inc_episodes as
with
per_episode as (
    select
        episode_no,
        min(sdate) as first_date,
        arg_min(age_years, (sdate, file_no, row_no))
            filter (where age_years is not null) as age_then,
        arg_min(sdate, (sdate, file_no, row_no))
            filter (where age_years is not null) as age_date,
        arg_min(program, (sdate, file_no, row_no)) filter (where program is not null) as program,
        arg_min(gender, (sdate, file_no, row_no)) filter (where gender is not null) as gender,
        arg_min(race_ethnicity, (sdate, file_no, row_no))
            filter (where race_ethnicity is not null) as race_ethnicity,
        max(end_reason) as end_reason
    from valid
    group by episode_no
),
final as (
    select
        p.episode_no,
        k.episode_key,
        c.client_key,
        p.first_date,
        p.program,
        coalesce(p.gender, 'unknown') as gender,
        coalesce(p.race_ethnicity, 'unknown') as race_ethnicity,
        p.end_reason,
        p.age_then - floor(date_diff('day', p.first_date, p.age_date) / 365.25) as age_at_first
    from per_episode as p
    join episode_keys as k using (episode_no)
    join client_keys as c using (client_no)
)
select * exclude (age_at_first), {age_band} as age_band
from final
"""
