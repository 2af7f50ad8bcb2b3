-- The alliance in the clinic's terms (metrics.md "Alliance dimensions"): each dimension's mean
-- item score for the whole clinic and per site, program, therapist, month, age band, gender and
-- race/ethnicity, and per therapist x demographic group, all in one pass (grouping sets). Each
-- episode's mean item score over its administrations in the unit is one observation, so a long
-- episode counts once and the SD is the between-episode SD (the basis of the intervals). SRS
-- items 0-10: heard = relationship, goals = goals and topics, approach = approach or method,
-- overall. WAI-SR subscale mean items 1-5: heard = Bond, goals = Goal, approach = Task (no
-- overall). Only recorded items count.
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
--   $detail: boolean, false = only the clinic, program and demographic groupings (cheaper)
-- Columns:
--   grouping: varchar, 'clinic', 'site', 'program', 'therapist', 'month', 'age_band', 'gender', 'race_ethnicity', or 'therapist/age_band', 'therapist/gender', 'therapist/race_ethnicity'
--   unit: varchar, the unit's value ('clinic'; a month as YYYY-MM-DD; the therapist code in the therapist/... groupings)
--   subgroup: varchar, the demographic group in the therapist/... groupings, else 'all'
--   dimension: varchar, 'heard', 'goals', 'approach' or 'overall'
--   n_clients: integer, distinct clients with the item recorded
--   episodes: integer, episodes with the item recorded (observations)
--   administrations: integer, administrations with the item recorded
--   mean_score: double, mean over episodes of the episode's mean item score (item points)
--   sd_score: double, SD of the episode means (item points)
with
s as (
    select *
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
scored as (
    select
        episode_id,
        client_id,
        site,
        coalesce(program, '(no program)') as program,
        therapist,
        strftime(month, '%Y-%m-%d') as month,
        age_band,
        gender,
        race_ethnicity,
        case when $alliance = 'wai' then wai_bond_mean else srs_relationship end as heard,
        case when $alliance = 'wai' then wai_goal_mean else srs_goals end as goals,
        case when $alliance = 'wai' then wai_task_mean else srs_approach end as approach,
        case when $alliance = 'wai' then null else srs_overall end as overall
    from s
),
long as materialized (
    -- unpivot leaves out missing values: a dimension counts only where it was recorded
    unpivot scored
    on heard, goals, approach, overall
    into name dimension value score
),
per_episode as materialized (
    -- each episode's mean item score per dimension (program and demographics are fixed per
    -- episode): the observations of the clinic, program and demographic groupings
    select
        dimension,
        episode_id,
        any_value(client_id) as client_id,
        any_value(program) as program,
        any_value(age_band) as age_band,
        any_value(gender) as gender,
        any_value(race_ethnicity) as race_ethnicity,
        count(*) as administrations,
        avg(score) as episode_mean
    from long
    group by dimension, episode_id
),
per_episode_therapist as (
    -- the episode's mean with each therapist it saw (usually one)
    select
        dimension,
        episode_id,
        therapist,
        any_value(client_id) as client_id,
        any_value(age_band) as age_band,
        any_value(gender) as gender,
        any_value(race_ethnicity) as race_ethnicity,
        count(*) as administrations,
        avg(score) as episode_mean
    from long
    where $detail
    group by dimension, episode_id, therapist
),
per_episode_site as (
    select
        dimension,
        episode_id,
        site,
        any_value(client_id) as client_id,
        count(*) as administrations,
        avg(score) as episode_mean
    from long
    where $detail
    group by dimension, episode_id, site
),
per_episode_month as (
    select
        dimension,
        episode_id,
        month,
        any_value(client_id) as client_id,
        count(*) as administrations,
        avg(score) as episode_mean
    from long
    where $detail
    group by dimension, episode_id, month
),
by_episode_attributes as (
    -- grouping(): bit set = column not in the grouping set (program 8, age 4, gender 2, race 1)
    select
        case grouping(program, age_band, gender, race_ethnicity)
            when 15 then 'clinic'
            when 7 then 'program'
            when 11 then 'age_band'
            when 13 then 'gender'
            when 14 then 'race_ethnicity'
        end as grouping,
        case grouping(program, age_band, gender, race_ethnicity)
            when 15 then 'clinic'
            when 7 then program
            when 11 then age_band
            when 13 then gender
            when 14 then race_ethnicity
        end as unit,
        'all' as subgroup,
        dimension,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        sum(administrations)::bigint as administrations,
        avg(episode_mean) as mean_score,
        stddev_samp(episode_mean) as sd_score
    from per_episode
    group by grouping sets (
        (dimension),
        (dimension, program),
        (dimension, age_band),
        (dimension, gender),
        (dimension, race_ethnicity)
    )
),
by_therapist as (
    -- grouping(): age 4, gender 2, race 1
    select
        case grouping(age_band, gender, race_ethnicity)
            when 7 then 'therapist'
            when 3 then 'therapist/age_band'
            when 5 then 'therapist/gender'
            when 6 then 'therapist/race_ethnicity'
        end as grouping,
        therapist as unit,
        case grouping(age_band, gender, race_ethnicity)
            when 7 then 'all'
            when 3 then age_band
            when 5 then gender
            when 6 then race_ethnicity
        end as subgroup,
        dimension,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        sum(administrations)::bigint as administrations,
        avg(episode_mean) as mean_score,
        stddev_samp(episode_mean) as sd_score
    from per_episode_therapist
    group by grouping sets (
        (dimension, therapist),
        (dimension, therapist, age_band),
        (dimension, therapist, gender),
        (dimension, therapist, race_ethnicity)
    )
),
by_site as (
    select
        'site' as grouping,
        site as unit,
        'all' as subgroup,
        dimension,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        sum(administrations)::bigint as administrations,
        avg(episode_mean) as mean_score,
        stddev_samp(episode_mean) as sd_score
    from per_episode_site
    group by site, dimension
),
by_month as (
    select
        'month' as grouping,
        month as unit,
        'all' as subgroup,
        dimension,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        sum(administrations)::bigint as administrations,
        avg(episode_mean) as mean_score,
        stddev_samp(episode_mean) as sd_score
    from per_episode_month
    group by month, dimension
),
final as (
    select * from by_episode_attributes
    union all
    select * from by_therapist
    union all
    select * from by_site
    union all
    select * from by_month
)
select * from final
where unit is not null and subgroup is not null
order by grouping, unit, subgroup, dimension;
