-- Reference for tests/test_shortcuts.py: queries/alliance_by_session_number.sql as it was
-- before it split its distinct-client count (count(distinct client_id) over every row).
-- The chosen alliance score by session number (1, 2, ... and a last bin pooling
-- $last_number and later), for all episodes and for a fixed cohort: episodes whose sessions 1 to
-- $cohort_sessions all fall in the period. In the first group later session numbers hold fewer,
-- more committed clients (those with a weak alliance leave earlier), so a rise can be
-- survivorship; the fixed cohort has the same episodes at every point up to $cohort_sessions.
-- Session number counts every attended session of the episode, also before the period.
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
with
s as (
    select
        episode_id,
        client_id,
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
        client_id,
        score
    from s
    where score is not null
),
rows_fixed as (
    select
        'fixed' as cohort,
        session_index as session_number,
        client_id,
        score
    from s
    semi join fixed_episodes using (episode_id)
    where score is not null
      and session_index <= $cohort_sessions
),
final as (
    select
        cohort,
        session_number::integer as session_number,
        count(distinct client_id) as n_clients,
        count(*) as n,
        avg(score) as mean_score,
        stddev_samp(score) as sd_score
    from (select * from rows_all union all select * from rows_fixed)
    group by cohort, session_number
)
select * from final
order by cohort, session_number;
