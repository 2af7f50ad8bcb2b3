"""Writing a database's sessions back out in the import contract's format.

Used to benchmark the importer on a realistic large file and to round-trip test it. The ids in
the file are the database's internal integer ids (``C-17``, ``TH-3``, episode ``17``), never
pseudonyms or source identifiers; ages are a fixed age inside the episode's band.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from alliance.ingest.merge import MEASURES

_AGE = """
case e.age_band
    when '<18' then 12 + e.client_id % 6
    when '18-25' then 18 + e.client_id % 8
    when '26-44' then 26 + e.client_id % 19
    when '45-64' then 45 + e.client_id % 20
    when '65+' then 65 + e.client_id % 15
end
"""


def export_contract_csv(
    con: duckdb.DuckDBPyConnection, path: Path, *, limit: int | None = None
) -> int:
    """Write every session (or the first `limit`) as a contract CSV; returns the row count."""
    measures = ", ".join(f"s.{m}" for m in MEASURES)
    query = f"""
        select
            'C-' || e.client_id as client_id,
            'TH-' || s.therapist_id as therapist_id,
            s.session_date,
            st.name as site,
            e.episode_id,
            p.name as program,
            {_AGE} as age,
            e.gender,
            e.race_ethnicity,
            case when row_number() over (
                partition by s.episode_id
                order by s.session_date desc, s.session_number desc nulls last, s.session_id desc
            ) = 1 then e.end_reason end as end_reason,
            s.session_number,
            {measures}
        from sessions as s
        join episodes as e using (episode_id)
        join sites as st using (site_id)
        left join programs as p using (program_id)
        order by s.session_id
        {"" if limit is None else f"limit {int(limit)}"}
    """  # noqa: S608 (constant column names)
    cur = con.cursor()
    try:
        rel = cur.sql(query)
        rel.write_csv(str(path), header=True)
        return int(cur.execute(f"select count(*) from ({query})").fetchall()[0][0])  # noqa: S608
    finally:
        cur.close()
