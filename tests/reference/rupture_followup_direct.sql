-- Reference for tests/test_shortcuts.py: queries/rupture_followup.sql as it was before it read
-- ended_sessions (every SRS administration before the period's end, from session_facts).
-- What follows a rupture: ended episodes finished in the period (with >= 2 SRS administrations,
-- so that a rupture was possible) grouped by their ruptures: none; every rupture repaired; at
-- least one unrepaired (metrics.md definitions; an ended episode has no open rupture). Per group,
-- dropout and, for the chosen outcome measure, improvement (positive = better) over episodes
-- with >= 2 administrations.
--
-- Parameters:
--   $date_from: date, first day included (episode end date)
--   $date_to: date, first day excluded
--   $site: varchar or null, site filter (the episode's first site)
--   $program: varchar or null, program filter
--   $therapist: varchar or null, therapist code filter (the episode's main therapist)
--   $age_band: varchar or null, age band filter
--   $gender: varchar or null, gender filter
--   $race: varchar or null, race/ethnicity filter
--   $allowed_sites: varchar[] or null, sites the signed-in role may see
--   $measure: varchar, outcome measure (ors, phq9, gad7)
--   $rupture_threshold: double, SRS drop (points) from the previous SRS that counts as a rupture
--   $repair_window: integer, SRS administrations after a rupture in which it can be repaired
--     (1-6, the range the Settings page allows; session_facts holds the next six SRS)
-- Columns:
--   rupture_group: varchar, 'none', 'repaired' (all ruptures repaired), 'unrepaired' (>= 1 not)
--   n_clients: integer, distinct clients of the group's episodes
--   episodes: integer, ended episodes in the group
--   dropouts: integer, of those, ended by dropout
--   dropout_rate: double, dropouts / episodes (0-1)
--   mean_sessions: double, mean attended sessions per episode
--   mean_ruptures: double, mean ruptures per episode
--   outcome_n: integer, episodes with >= 2 administrations of the measure
--   outcome_clients: integer, distinct clients of those
--   mean_improvement: double, mean improvement (points of the measure, positive = better)
--   sd_improvement: double, SD of improvement (points)
with
ended as (
    select
        episode_id,
        client_id,
        dropout,
        n_sessions
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
outcomes as (
    select
        episode_id,
        improvement
    from outcomes_in_view(
        $measure, $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_admin >= 2
),
classified as (
    -- every SRS administration of the ended episodes, classified row by row from the next
    -- SRS totals precomputed in session_facts (next_srs_1..6); an ended episode's sessions all
    -- lie before $date_to, and its end_reason is set, so no rupture of it is open
    select
        episode_id,
        case
            when not coalesce(round(prev_srs - srs, 4) >= $rupture_threshold, false) then null
            when round(
                greatest(
                    next_srs_1,
                    case when $repair_window >= 2 then next_srs_2 end,
                    case when $repair_window >= 3 then next_srs_3 end,
                    case when $repair_window >= 4 then next_srs_4 end,
                    case when $repair_window >= 5 then next_srs_5 end,
                    case when $repair_window >= 6 then next_srs_6 end
                ) - prev_srs,
                4
            ) >= 0 then 'repaired'
            when end_reason is not null then 'unrepaired'
            when case $repair_window
                when 1 then next_srs_1
                when 2 then next_srs_2
                when 3 then next_srs_3
                when 4 then next_srs_4
                when 5 then next_srs_5
                else next_srs_6
            end is not null then 'unrepaired'
            else 'open'
        end as fate
    from sessions_in_view(
        date '0001-01-01', $date_to, null, null, null, null, null, null, $allowed_sites
    )
    where srs is not null
      and episode_id in (select episode_id from ended)
),
per_episode as (
    select
        episode_id,
        count(*) as n_srs,
        count(fate) as ruptures,
        count(*) filter (where fate = 'unrepaired') as unrepaired
    from classified
    group by episode_id
),
grouped as (
    select
        case
            when p.unrepaired > 0 then 'unrepaired'
            when p.ruptures > 0 then 'repaired'
            else 'none'
        end as rupture_group,
        e.client_id,
        e.dropout,
        e.n_sessions,
        p.ruptures,
        o.improvement
    from ended as e
    join per_episode as p using (episode_id)
    left join outcomes as o using (episode_id)
    where p.n_srs >= 2
),
final as (
    select
        rupture_group,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        count(*) filter (where dropout) as dropouts,
        count(*) filter (where dropout) / count(*) as dropout_rate,
        avg(n_sessions) as mean_sessions,
        avg(ruptures) as mean_ruptures,
        count(improvement) as outcome_n,
        count(distinct client_id) filter (where improvement is not null) as outcome_clients,
        avg(improvement) as mean_improvement,
        stddev_samp(improvement) as sd_improvement
    from grouped
    group by rupture_group
)
select * from final
order by rupture_group;
