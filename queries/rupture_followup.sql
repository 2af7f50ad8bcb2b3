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
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
--   dropouts_cellkey: integer, cell key of dropouts (alliance/noise.py)
--   outcome_n_cellkey: integer, cell key of outcome_n (alliance/noise.py)
with
ended as (
    select
        episode_id,
        client_id,
        ekey,
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
    -- SRS totals precomputed in session_facts (next_srs_1..6), read from the sessions of ended
    -- episodes ordered by end date (derive.sql, ended_sessions); an ended episode's sessions
    -- all lie before $date_to, and it has ended, so no rupture of it is open: one not repaired
    -- is unrepaired
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
            else 'unrepaired'
        end as fate
    from ended_sessions
    where end_date >= $date_from
      and end_date < $date_to
      and srs is not null
      and ($allowed_sites is null or list_contains($allowed_sites, site))
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
        e.ekey,
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
        stddev_samp(improvement) as sd_improvement,
        -- the cell keys of the counts (alliance/noise.py): each episode carries its own key
        sum(ekey)::bigint as episodes_cellkey,
        coalesce(sum(ekey) filter (where dropout), 0)::bigint as dropouts_cellkey,
        coalesce(sum(ekey) filter (where improvement is not null), 0)::bigint
            as outcome_n_cellkey
    from grouped
    group by rupture_group
)
select * from final
order by rupture_group;
