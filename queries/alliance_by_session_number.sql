-- The chosen alliance score by session number (1, 2, ... and a last bin pooling
-- $last_number and later), for all episodes and for a fixed cohort: episodes whose sessions 1 to
-- $cohort_sessions all fall in the period. In the first group later session numbers hold fewer,
-- more committed clients (those with a weak alliance leave earlier), so a rise can be
-- survivorship; the fixed cohort has the same episodes at every point up to $cohort_sessions.
-- Session number counts every attended session of the episode, also before the period.
-- Distinct clients are counted without deduplicating every row: a session number holds one
-- session per episode, so a client with a single episode is one row (in the pooled last bin of
-- all episodes, one episode); only clients with several episodes (derive.sql,
-- multi_episode_client) are counted distinct.
--
-- Parameters:
--   $date_from: date, first day included
--   $date_to: date, first day excluded
--   $site: varchar or null, site filter
--   $program: varchar or null, program filter
--   $therapist: varchar or null, therapist code filter
--   $age_band: varchar or null, age band filter
--   $gender: varchar or null, gender filter
--   $race: varchar or null, race/ethnicity filter
--   $allowed_sites: varchar[] or null, sites the signed-in role may see
--   $alliance: varchar, 'srs' (total 0-40) or 'wai' (WAI-SR mean item 1-5)
--   $last_number: integer, session numbers from this one on are pooled
--   $cohort_sessions: integer, the fixed cohort's episodes have sessions 1..this in the period
-- Columns:
--   cohort: varchar, 'all' (every episode) or 'fixed' (episodes with sessions 1..cohort_sessions)
--   session_number: integer, 1 .. last_number (last_number = that session or later)
--   n_clients: integer, distinct clients with a rated session at that number
--   n: integer, rated sessions
--   mean_score: double, mean alliance score (SRS points or WAI-SR mean item)
--   sd_score: double, SD of the score
--   n_cellkey: integer, cell key of n (alliance/noise.py)
with
multi_clients as (
    -- clients with several episodes (derive.sql: multi_episode_client), a few percent
    select client_id
    from episode_facts
    where multi_episode_client
    group by client_id
),
s as (
    select
        episode_id,
        client_id,
        ckey,
        session_index,
        case when $alliance = 'wai' then wai else srs end as score
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
fixed_episodes as (
    -- dates rise with the session number, so sessions 1 and N in view means 1..N are all in view
    select episode_id
    from s
    where session_index in (1, $cohort_sessions)
    group by episode_id
    having bool_or(session_index = 1) and bool_or(session_index = $cohort_sessions)
),
rows_all as (
    select
        'all' as cohort,
        least(session_index, $last_number) as session_number,
        episode_id,
        client_id,
        client_id in (select client_id from multi_clients) as multi,
        ckey,
        score
    from s
    where score is not null
),
rows_fixed as (
    select
        'fixed' as cohort,
        session_index as session_number,
        episode_id,
        client_id,
        client_id in (select client_id from multi_clients) as multi,
        ckey,
        score
    from s
    semi join fixed_episodes using (episode_id)
    where score is not null
      and session_index <= $cohort_sessions
),
grouped as (
    select
        cohort,
        session_number::integer as session_number,
        count(*) filter (where not multi) as single_rows,
        count(*) as n,
        avg(score) as mean_score,
        stddev_samp(score) as sd_score,
        sum(ckey)::bigint as n_cellkey
    from (select * from rows_all union all select * from rows_fixed)
    group by cohort, session_number
),
single_pooled as (
    -- the pooled last bin of all episodes: its single-episode clients are its episodes
    select count(*) as clients
    from (
        select episode_id
        from rows_all
        where not multi and session_number = $last_number
        group by episode_id
    )
),
multi_counts as (
    -- clients with several episodes, distinct per cohort and session number (two steps)
    select cohort, session_number, count(*) as clients
    from (
        select cohort, session_number::integer as session_number, client_id
        from (
            select * from rows_all where multi
            union all
            select * from rows_fixed where multi
        )
        group by cohort, session_number, client_id
    )
    group by cohort, session_number
),
final as (
    select
        g.cohort,
        g.session_number,
        case
            when g.cohort = 'all' and g.session_number = $last_number
                then (select clients from single_pooled)
            else g.single_rows
        end + coalesce(m.clients, 0) as n_clients,
        g.n,
        g.mean_score,
        g.sd_score,
        g.n_cellkey
    from grouped as g
    left join multi_counts as m using (cohort, session_number)
)
select * from final
order by cohort, session_number;
