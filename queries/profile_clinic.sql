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
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
with
episodes as (
    -- per episode, the count and sum of each recorded item of the chosen measure (missing items
    -- do not count): an episode seen by one therapist at one site whose item months all lie in
    -- the period reads its whole-life sums (derive.sql, episode_items); the others sum their
    -- cells of the per-episode-month rollup (episode_month_items) in the period
    select
        episode_id,
        client_id,
        ekey,
        multi_episode_client as multi,
        item_count($alliance, n_srs_heard, n_wai_heard) as n_heard,
        item_sum($alliance, s10_srs_heard, s_wai_heard) as s_heard,
        item_count($alliance, n_srs_goals, n_wai_goals) as n_goals,
        item_sum($alliance, s10_srs_goals, s_wai_goals) as s_goals,
        item_count($alliance, n_srs_approach, n_wai_approach) as n_approach,
        item_sum($alliance, s10_srs_approach, s_wai_approach) as s_approach,
        item_count($alliance, n_srs_overall, 0) as n_overall,
        item_sum($alliance, s10_srs_overall, null) as s_overall
    from whole_episode_items_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    union all
    select
        episode_id,
        any_value(client_id) as client_id,
        any_value(ekey) as ekey,
        any_value(multi_episode_client) as multi,
        sum(item_count($alliance, n_srs_heard, n_wai_heard)) as n_heard,
        sum(item_sum($alliance, s10_srs_heard, s_wai_heard)) as s_heard,
        sum(item_count($alliance, n_srs_goals, n_wai_goals)) as n_goals,
        sum(item_sum($alliance, s10_srs_goals, s_wai_goals)) as s_goals,
        sum(item_count($alliance, n_srs_approach, n_wai_approach)) as n_approach,
        sum(item_sum($alliance, s10_srs_approach, s_wai_approach)) as s_approach,
        sum(item_count($alliance, n_srs_overall, 0)) as n_overall,
        sum(item_sum($alliance, s10_srs_overall, null)) as s_overall
    from episode_months_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where not wholly_in_period(
        single_therapist, single_site, first_month, last_month, $date_from, $date_to
    )
    group by episode_id
),
per_episode as (
    -- one row per episode and recorded dimension: its mean item score (sum / count)
    select
        d.dimension,
        e.client_id,
        e.ekey,
        e.multi,
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
per_dimension as (
    select
        dimension,
        count(*) filter (where not multi) as single_clients,
        count(*) as episodes,
        sum(administrations)::bigint as administrations,
        avg(total / administrations) as mean_score,
        stddev_samp(total / administrations) as sd_score,
        coalesce(sum(ekey), 0)::bigint as episodes_cellkey
    from per_episode
    where administrations > 0
    group by dimension
),
multi_clients as (
    select dimension, count(distinct client_id) as multi_clients
    from per_episode
    where administrations > 0 and multi
    group by dimension
),
final as (
    select
        'clinic' as grouping,
        'clinic' as unit,
        'all' as subgroup,
        dimension,
        single_clients + coalesce(multi_clients, 0) as n_clients,
        episodes,
        administrations,
        mean_score,
        sd_score,
        episodes_cellkey
    from per_dimension
    left join multi_clients using (dimension)
)
select * from final
order by dimension;
