-- The clinic-wide row of queries/profile_dimensions.sql alone (metrics.md "Alliance
-- dimensions"): each dimension's mean item score over episodes (each episode's mean item score
-- over its administrations in the period is one observation), for the previous-period tiles.
-- Same definitions and columns as profile_dimensions, grouping 'clinic' only, in one cheap pass.
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
--   $alliance: varchar, 'srs' (SRS items 0-10) or 'wai' (WAI-SR subscale mean items 1-5)
-- Columns:
--   grouping: varchar, 'clinic'
--   unit: varchar, 'clinic'
--   subgroup: varchar, 'all'
--   dimension: varchar, 'heard', 'goals', 'approach' or 'overall'
--   n_clients: integer, distinct clients with the item recorded
--   episodes: integer, episodes with the item recorded (observations)
--   administrations: integer, administrations with the item recorded
--   mean_score: double, mean over episodes of the episode's mean item score (item points)
--   sd_score: double, SD of the episode means (item points)
with
scored as (
    select
        episode_id,
        client_id,
        case when $alliance = 'wai' then wai_bond_mean else srs_relationship end as heard,
        case when $alliance = 'wai' then wai_goal_mean else srs_goals end as goals,
        case when $alliance = 'wai' then wai_task_mean else srs_approach end as approach,
        case when $alliance = 'wai' then null else srs_overall end as overall
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where coalesce(heard, goals, approach, overall) is not null
),
episodes as (
    -- per episode, the count and sum of each recorded item (missing items do not count)
    select
        episode_id,
        any_value(client_id) as client_id,
        count(heard) as n_heard,
        sum(heard) as s_heard,
        count(goals) as n_goals,
        sum(goals) as s_goals,
        count(approach) as n_approach,
        sum(approach) as s_approach,
        count(overall) as n_overall,
        sum(overall) as s_overall
    from scored
    group by episode_id
),
per_episode as (
    -- one row per episode and recorded dimension: its mean item score (sum / count)
    select
        d.dimension,
        e.client_id,
        case d.dimension
            when 'heard' then e.n_heard
            when 'goals' then e.n_goals
            when 'approach' then e.n_approach
            else e.n_overall
        end as administrations,
        case d.dimension
            when 'heard' then e.s_heard
            when 'goals' then e.s_goals
            when 'approach' then e.s_approach
            else e.s_overall
        end as total
    from episodes as e
    cross join (values ('heard'), ('goals'), ('approach'), ('overall')) as d(dimension)
),
final as (
    select
        'clinic' as grouping,
        'clinic' as unit,
        'all' as subgroup,
        dimension,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        sum(administrations)::bigint as administrations,
        avg(total / administrations) as mean_score,
        stddev_samp(total / administrations) as sd_score
    from per_episode
    where administrations > 0
    group by dimension
)
select * from final
order by dimension;
