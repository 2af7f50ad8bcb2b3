"""Merging prepared rows into the clinic database: a read-only plan, then the writes.

The same plan runs for a dry run (the staging connection, the database attached read-only) and
for the real import (inside ``db.writer``: a private copy of the database, swapped in only when
everything succeeded). It matches

* episodes by pseudonym; an episode field changes only when the import states a value:
  a non-blank program, gender or race/ethnicity, an end reason (never cleared by a later export
  that leaves it blank), and the age band when the import holds the episode's first session;
* sessions by (episode, therapist, session_date, session_number) — the contract's identity, the
  episode pseudonym already encoding the client; a matched session whose site or scores differ
  is updated, otherwise unchanged.

New rows get the next free integer ids; therapist display codes are derived from the pseudonym
(``T-4F2A``), and an existing therapist's code never changes when new therapists arrive.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from alliance import db
from alliance.ingest import contract as C

MEASURES = tuple(c.name for c in C.NUMERIC if c.group in ("srs", "wai", "ors", "phq9", "gad7"))
_BASE_TABLES = ("sites", "programs", "therapists", "clients", "episodes", "sessions")


def sql_path(path: Path) -> str:
    """A file path as a SQL string literal (ATTACH takes no parameters); our own temp paths."""
    return "'" + str(path).replace("'", "''") + "'"


def attach_stage(con: duckdb.DuckDBPyConnection, prepared: dict[str, object]) -> None:
    """In the writer: the prepared rows, handed over as Arrow from the staging database (the
    sessions as a stream that `plan` reads once)."""
    for name, data in prepared.items():
        con.register(name, data)


def detach_stage(con: duckdb.DuckDBPyConnection) -> None:
    """After `plan`: the staged sessions and episodes are no longer read (the small therapist
    table stays until `drop_plan`)."""
    for name in ("inc_sessions", "inc_episodes"):
        con.unregister(name)


def drop_plan(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("plan_sessions", "plan_episodes", "episode_ids", "therapist_ids"):
        con.execute(f"drop table if exists temp.{table}")
    con.unregister("therapist_keys")


def attach_target(con: duckdb.DuckDBPyConnection, target: Path | None) -> None:
    """In the staging connection (dry run): the database read-only, or empty tables if none."""
    if target is not None and Path(target).exists():
        con.execute(f"attach {sql_path(Path(target))} as target (read_only)")
        for table in _BASE_TABLES:
            con.execute(f"create or replace temp view {table} as select * from target.{table}")  # noqa: S608
        return
    con.execute("attach ':memory:' as target")
    current = con.execute("select current_database()").fetchall()[0][0]
    con.execute("use target")
    db.apply_schema(con)
    con.execute(f"use {current}")
    for table in _BASE_TABLES:
        con.execute(f"create or replace temp view {table} as select * from target.{table}")  # noqa: S608


def detach_target(con: duckdb.DuckDBPyConnection) -> None:
    for table in _BASE_TABLES:
        con.execute(f"drop view if exists temp.{table}")
    con.execute("detach target")


def plan(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """What the import would do: fills temp tables plan_episodes/plan_sessions, returns counts."""
    con.execute(_PLAN_EPISODES)
    changed = " or ".join(
        ["r.site_id is distinct from s.site_id"]
        + [f"r.{m} is distinct from s.{m}" for m in MEASURES]
    )
    con.execute(_PLAN_SESSIONS.format(changed=changed))
    e = con.execute(
        "select count(*) filter (where status = 'new'), count(*) filter (where status = 'changed'),"
        " count(*) filter (where status = 'same') from plan_episodes"
    ).fetchall()[0]
    s = con.execute(
        "select count(*) filter (where status = 'new'), count(*) filter (where status = 'changed'),"
        " count(*) filter (where status = 'same') from plan_sessions"
    ).fetchall()[0]
    extra = con.execute(
        """
        select
            (select count(distinct client_key) from plan_episodes
             where client_key not in (select pseudonym from clients)),
            (select count(distinct therapist_no) from plan_sessions where therapist_id is null),
            (select count(distinct site) from plan_sessions
             where site not in (select name from sites))
        """
    ).fetchall()[0]
    return {
        "episodes_added": int(e[0]),
        "episodes_updated": int(e[1]),
        "episodes_unchanged": int(e[2]),
        "sessions_added": int(s[0]),
        "sessions_updated": int(s[1]),
        "sessions_unchanged": int(s[2]),
        "clients_added": int(extra[0]),
        "therapists_added": int(extra[1]),
        "sites_added": int(extra[2]),
    }


def _next_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    value = con.execute(f"select coalesce(max({column}), -1) + 1 from {table}").fetchall()[0][0]  # noqa: S608
    return int(value)


def new_therapist_codes(existing: list[str], pseudonyms: list[str]) -> list[str]:
    """Codes for new therapists: like ``demo.therapist_codes`` (``T-`` + the first 4 hex digits
    of the pseudonym, lengthened only on a collision), avoiding every code already in use."""
    taken = set(existing)
    codes = []
    for p in pseudonyms:
        width = 4
        while f"T-{p[:width].upper()}" in taken:
            width += 1
        code = f"T-{p[:width].upper()}"
        taken.add(code)
        codes.append(code)
    return codes


def apply(con: duckdb.DuckDBPyConnection) -> None:
    """Write what `plan` planned. Runs inside ``db.writer`` (all of it or none of it reaches
    the file)."""
    con.execute(
        """
        insert into sites (site_id, name)
        select $base + row_number() over (order by site) - 1, site
        from (select distinct site from plan_sessions) as n
        anti join sites as s on s.name = n.site
        """,
        {"base": _next_id(con, "sites", "site_id")},
    )
    con.execute(
        """
        insert into programs (program_id, name)
        select $base + row_number() over (order by program) - 1, program
        from (select distinct program from plan_episodes where program is not null) as n
        anti join programs as p on p.name = n.program
        """,
        {"base": _next_id(con, "programs", "program_id")},
    )
    new_ther = [
        r[0]
        for r in con.execute(
            """
            select distinct k.therapist_key
            from plan_sessions as p
            join therapist_keys as k using (therapist_no)
            where p.therapist_id is null
            order by 1
            """
        ).fetchall()
    ]
    if new_ther:
        existing = [r[0] for r in con.execute("select code from therapists").fetchall()]
        base = _next_id(con, "therapists", "therapist_id")
        new_therapists = pd.DataFrame(
            {
                "therapist_id": range(base, base + len(new_ther)),
                "pseudonym": new_ther,
                "code": new_therapist_codes(existing, new_ther),
            }
        )
        con.register("new_therapists", new_therapists)
        con.execute(
            "insert into therapists (therapist_id, pseudonym, code) "
            "select therapist_id, pseudonym, code from new_therapists"
        )
        con.unregister("new_therapists")
    con.execute(
        """
        insert into clients (client_id, pseudonym)
        select $base + row_number() over (order by client_key) - 1, client_key
        from (select distinct client_key from plan_episodes where status = 'new') as n
        anti join clients as c on c.pseudonym = n.client_key
        """,
        {"base": _next_id(con, "clients", "client_id")},
    )
    con.execute(
        """
        insert into episodes (
            episode_id, client_id, pseudonym, program_id, age_band, gender, race_ethnicity,
            end_reason
        )
        select
            $base + row_number() over (order by p.first_date, p.episode_key) - 1,
            c.client_id, p.episode_key, pr.program_id, p.age_band, p.gender, p.race_ethnicity,
            p.end_reason
        from plan_episodes as p
        join clients as c on c.pseudonym = p.client_key
        left join programs as pr on pr.name = p.program
        where p.status = 'new'
        """,
        {"base": _next_id(con, "episodes", "episode_id")},
    )
    con.execute(
        """
        update episodes
        set program_id = u.program_id, age_band = u.age_band, gender = u.gender,
            race_ethnicity = u.race_ethnicity, end_reason = u.end_reason
        from (
            select p.*, pr.program_id
            from plan_episodes as p
            left join programs as pr on pr.name = p.program
            where p.status = 'changed'
        ) as u
        where episodes.episode_id = u.episode_id
        """
    )
    sets = ", ".join(f"{m} = u.{m}" for m in MEASURES)
    con.execute(
        f"""
        update sessions
        set site_id = u.site_id, {sets}
        from (
            select p.* exclude (site_id), st.site_id
            from plan_sessions as p
            join sites as st on st.name = p.site
            where p.status = 'changed'
        ) as u
        where sessions.session_id = u.session_id
        """  # noqa: S608 (constant column names)
    )
    con.execute(
        """
        create or replace temp table episode_ids as
        select p.episode_no, e.episode_id
        from plan_episodes as p
        join episodes as e on e.pseudonym = p.episode_key
        """
    )
    con.execute(
        """
        create or replace temp table therapist_ids as
        select k.therapist_no, t.therapist_id
        from therapist_keys as k
        join therapists as t on t.pseudonym = k.therapist_key
        """
    )
    cols = ", ".join(MEASURES)
    pcols = ", ".join(f"p.{m}" for m in MEASURES)
    con.execute(
        f"""
        insert into sessions (
            session_id, episode_id, therapist_id, site_id, session_date, session_number, {cols}
        )
        select
            $base + row_number() over () - 1,
            e.episode_id, t.therapist_id, st.site_id, p.session_date, p.session_number, {pcols}
        from plan_sessions as p
        join episode_ids as e on e.episode_no = p.episode_no
        join therapist_ids as t on t.therapist_no = p.therapist_no
        join sites as st on st.name = p.site
        where p.status = 'new'
        """,  # noqa: S608 (constant column names)
        {"base": _next_id(con, "sessions", "session_id")},
    )


def remove_demo(con: duckdb.DuckDBPyConnection) -> None:
    """Empty the base tables (the demo clinic); runs in the same writer as the import."""
    for table in reversed(_BASE_TABLES):
        con.execute(f"delete from {table}")  # noqa: S608 (constant table names)
    con.execute("delete from meta where key in ('demo_seed', 'dataset_kind')")


_PLAN_EPISODES = """
create or replace temp table plan_episodes as
with
inc as (
    select * from inc_episodes
),
known as (
    select
        e.episode_id,
        e.pseudonym as episode_key,
        p.name as program,
        e.age_band,
        e.gender,
        e.race_ethnicity,
        e.end_reason
    from episodes as e
    left join programs as p using (program_id)
    where e.pseudonym in (select episode_key from inc)
),
first_dates as (
    select s.episode_id, min(s.session_date) as first_date
    from sessions as s
    where s.episode_id in (select episode_id from known)
    group by s.episode_id
),
merged as (
    select
        i.episode_no,
        i.episode_key,
        i.client_key,
        i.first_date,
        k.episode_id,
        coalesce(i.program, k.program) as program,
        case when k.episode_id is null or i.gender <> 'unknown'
             then i.gender else k.gender end as gender,
        case when k.episode_id is null or i.race_ethnicity <> 'unknown'
             then i.race_ethnicity else k.race_ethnicity end as race_ethnicity,
        coalesce(i.end_reason, k.end_reason) as end_reason,
        case when k.episode_id is null then i.age_band
             when i.age_band <> 'unknown'
                  and (k.age_band = 'unknown' or i.first_date <= f.first_date)
             then i.age_band
             else k.age_band end as age_band,
        k.program as old_program,
        k.gender as old_gender,
        k.race_ethnicity as old_race_ethnicity,
        k.end_reason as old_end_reason,
        k.age_band as old_age_band
    from inc as i
    left join known as k using (episode_key)
    left join first_dates as f on f.episode_id = k.episode_id
),
final as (
    select
        *,
        case
            when episode_id is null then 'new'
            when program is distinct from old_program
                 or gender <> old_gender
                 or race_ethnicity <> old_race_ethnicity
                 or end_reason is distinct from old_end_reason
                 or age_band <> old_age_band then 'changed'
            else 'same'
        end as status
    from merged
)
select * from final
"""

_PLAN_SESSIONS = """
create or replace temp table plan_sessions as
with
inc as (
    select * from inc_sessions
),
therapist_ids as (
    select k.therapist_no, t.therapist_id
    from therapist_keys as k
    join therapists as t on t.pseudonym = k.therapist_key
),
resolved as (
    select i.*, pe.episode_id, t.therapist_id, st.site_id
    from inc as i
    left join plan_episodes as pe using (episode_no)
    left join therapist_ids as t using (therapist_no)
    left join sites as st on st.name = i.site
),
final as (
    select
        r.*,
        s.session_id,
        case
            when s.session_id is null then 'new'
            when {changed} then 'changed'
            else 'same'
        end as status
    from resolved as r
    left join sessions as s
      on s.episode_id = r.episode_id
     and s.therapist_id = r.therapist_id
     and s.session_date = r.session_date
     and s.session_number is not distinct from r.session_number
)
select * from final
"""
