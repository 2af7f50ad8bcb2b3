-- The alliance in the clinic's terms (metrics.md "Alliance dimensions"): each dimension's mean
-- item score for the whole clinic and per site, program, therapist, month, age band, gender and
-- race/ethnicity, and per therapist x demographic group, all in one pass (grouping sets). Each
-- episode's mean item score over its administrations in the unit is one observation, so a long
-- episode counts once and the SD is the between-episode SD (the basis of the intervals). SRS
-- items 0-10: heard = relationship, goals = goals and topics, approach = approach or method,
-- overall. WAI-SR subscale mean items 1-5: heard = Bond, goals = Goal, approach = Task (no
-- overall). Only recorded items count. One scan of the sessions in view, aggregated wide (count
-- and sum per item) per episode, therapist, site and month; the per-unit episode means are
-- rolled up from those cells (no unpivot of every session), and distinct clients are counted
-- in two steps rather than count(distinct) under grouping sets.
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
scored as (
    select
        episode_id,
        client_id,
        site,
        coalesce(program, '(no program)') as program,
        therapist,
        month,
        age_band,
        gender,
        race_ethnicity,
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
cells as materialized (
    -- one pass over the sessions, wide (no unpivot): per episode, therapist, site and month the
    -- count and sum of each recorded item (missing items do not count). Every episode mean
    -- below is sum / count of the episode's administrations in the unit, as avg() would give.
    select
        episode_id,
        therapist,
        site,
        month,
        any_value(client_id) as client_id,
        any_value(program) as program,
        any_value(age_band) as age_band,
        any_value(gender) as gender,
        any_value(race_ethnicity) as race_ethnicity,
        count(heard) as n_heard,
        sum(heard) as s_heard,
        count(goals) as n_goals,
        sum(goals) as s_goals,
        count(approach) as n_approach,
        sum(approach) as s_approach,
        count(overall) as n_overall,
        sum(overall) as s_overall
    from scored
    group by episode_id, therapist, site, month
),
dims as (
    select * from (values ('heard'), ('goals'), ('approach'), ('overall')) as d(dimension)
),
per_episode as materialized (
    -- each episode's mean item score per dimension (program and demographics are fixed per
    -- episode): the observations of the clinic, program and demographic groupings; a dimension
    -- counts only where it was recorded
    select
        d.dimension,
        w.episode_id,
        w.client_id,
        w.program,
        w.age_band,
        w.gender,
        w.race_ethnicity,
        (case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end)::bigint as administrations,
        case d.dimension
            when 'heard' then w.s_heard
            when 'goals' then w.s_goals
            when 'approach' then w.s_approach
            else w.s_overall
        end / case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end as episode_mean
    from (
    select
        episode_id,
        any_value(client_id) as client_id,
        any_value(program) as program,
        any_value(age_band) as age_band,
        any_value(gender) as gender,
        any_value(race_ethnicity) as race_ethnicity,
        sum(n_heard) as n_heard,
        sum(s_heard) as s_heard,
        sum(n_goals) as n_goals,
        sum(s_goals) as s_goals,
        sum(n_approach) as n_approach,
        sum(s_approach) as s_approach,
        sum(n_overall) as n_overall,
        sum(s_overall) as s_overall
    from cells
    group by episode_id
    ) as w
    cross join dims as d
    where case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end > 0
),
per_episode_therapist as materialized (
    -- the episode's mean with each therapist it saw (usually one)
    select
        d.dimension,
        w.episode_id,
        w.therapist,
        w.client_id,
        w.age_band,
        w.gender,
        w.race_ethnicity,
        (case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end)::bigint as administrations,
        case d.dimension
            when 'heard' then w.s_heard
            when 'goals' then w.s_goals
            when 'approach' then w.s_approach
            else w.s_overall
        end / case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end as episode_mean
    from (
    select
        episode_id,
        therapist,
        any_value(client_id) as client_id,
        any_value(age_band) as age_band,
        any_value(gender) as gender,
        any_value(race_ethnicity) as race_ethnicity,
        sum(n_heard) as n_heard,
        sum(s_heard) as s_heard,
        sum(n_goals) as n_goals,
        sum(s_goals) as s_goals,
        sum(n_approach) as n_approach,
        sum(s_approach) as s_approach,
        sum(n_overall) as n_overall,
        sum(s_overall) as s_overall
    from cells
    group by episode_id, therapist
    ) as w
    cross join dims as d
    where case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end > 0
),
per_episode_site as materialized (
    -- the episode's mean at each site
    select
        d.dimension,
        w.episode_id,
        w.site,
        w.client_id,
        (case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end)::bigint as administrations,
        case d.dimension
            when 'heard' then w.s_heard
            when 'goals' then w.s_goals
            when 'approach' then w.s_approach
            else w.s_overall
        end / case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end as episode_mean
    from (
    select
        episode_id,
        site,
        any_value(client_id) as client_id,
        sum(n_heard) as n_heard,
        sum(s_heard) as s_heard,
        sum(n_goals) as n_goals,
        sum(s_goals) as s_goals,
        sum(n_approach) as n_approach,
        sum(s_approach) as s_approach,
        sum(n_overall) as n_overall,
        sum(s_overall) as s_overall
    from cells
    group by episode_id, site
    ) as w
    cross join dims as d
    where case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end > 0
),
per_episode_month as materialized (
    -- the episode's mean in each month
    select
        d.dimension,
        w.episode_id,
        w.month,
        w.client_id,
        (case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end)::bigint as administrations,
        case d.dimension
            when 'heard' then w.s_heard
            when 'goals' then w.s_goals
            when 'approach' then w.s_approach
            else w.s_overall
        end / case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end as episode_mean
    from (
    select
        episode_id,
        month,
        any_value(client_id) as client_id,
        sum(n_heard) as n_heard,
        sum(s_heard) as s_heard,
        sum(n_goals) as n_goals,
        sum(s_goals) as s_goals,
        sum(n_approach) as n_approach,
        sum(s_approach) as s_approach,
        sum(n_overall) as n_overall,
        sum(s_overall) as s_overall
    from cells
    group by episode_id, month
    ) as w
    cross join dims as d
    where case d.dimension
            when 'heard' then w.n_heard
            when 'goals' then w.n_goals
            when 'approach' then w.n_approach
            else w.n_overall
        end > 0
),
by_episode_attributes_stats as (
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
by_episode_attributes_clients as (
    -- distinct clients per unit in two steps (one row per unit and client, then count), much
    -- cheaper than count(distinct) under grouping sets
    select grouping, unit, subgroup, dimension, count(*) as n_clients
    from (
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
            client_id
        from per_episode
        group by grouping sets (
            (dimension, client_id),
            (dimension, program, client_id),
            (dimension, age_band, client_id),
            (dimension, gender, client_id),
            (dimension, race_ethnicity, client_id)
        )
    )
    group by grouping, unit, subgroup, dimension
),
by_episode_attributes as (
    select
        grouping,
        unit,
        subgroup,
        dimension,
        c.n_clients,
        s.episodes,
        s.administrations,
        s.mean_score,
        s.sd_score
    from by_episode_attributes_stats as s
    join by_episode_attributes_clients as c using (grouping, unit, subgroup, dimension)
),
by_therapist_stats as (
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
by_therapist_clients as (
    -- distinct clients per unit in two steps (one row per unit and client, then count), much
    -- cheaper than count(distinct) under grouping sets
    select grouping, unit, subgroup, dimension, count(*) as n_clients
    from (
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
            client_id
        from per_episode_therapist
        group by grouping sets (
            (dimension, therapist, client_id),
            (dimension, therapist, age_band, client_id),
            (dimension, therapist, gender, client_id),
            (dimension, therapist, race_ethnicity, client_id)
        )
    )
    group by grouping, unit, subgroup, dimension
),
by_therapist as (
    select
        grouping,
        unit,
        subgroup,
        dimension,
        c.n_clients,
        s.episodes,
        s.administrations,
        s.mean_score,
        s.sd_score
    from by_therapist_stats as s
    join by_therapist_clients as c using (grouping, unit, subgroup, dimension)
),
by_site_stats as (
    -- one row per site
    select
        'site' as grouping,
        site as unit,
        'all' as subgroup,
        dimension,
        count(*) as episodes,
        sum(administrations)::bigint as administrations,
        avg(episode_mean) as mean_score,
        stddev_samp(episode_mean) as sd_score
    from per_episode_site
    group by grouping sets (
        (site, dimension)
    )
),
by_site_clients as (
    -- distinct clients per unit in two steps (one row per unit and client, then count), much
    -- cheaper than count(distinct) under grouping sets
    select grouping, unit, subgroup, dimension, count(*) as n_clients
    from (
        select
            'site' as grouping,
            site as unit,
            'all' as subgroup,
            dimension,
            client_id
        from per_episode_site
        group by grouping sets (
            (site, dimension, client_id)
        )
    )
    group by grouping, unit, subgroup, dimension
),
by_site as (
    select
        grouping,
        unit,
        subgroup,
        dimension,
        c.n_clients,
        s.episodes,
        s.administrations,
        s.mean_score,
        s.sd_score
    from by_site_stats as s
    join by_site_clients as c using (grouping, unit, subgroup, dimension)
),
by_month_stats as (
    -- one row per month
    select
        'month' as grouping,
        strftime(month, '%Y-%m-%d') as unit,
        'all' as subgroup,
        dimension,
        count(*) as episodes,
        sum(administrations)::bigint as administrations,
        avg(episode_mean) as mean_score,
        stddev_samp(episode_mean) as sd_score
    from per_episode_month
    group by grouping sets (
        (month, dimension)
    )
),
by_month_clients as (
    -- distinct clients per unit in two steps (one row per unit and client, then count), much
    -- cheaper than count(distinct) under grouping sets
    select grouping, unit, subgroup, dimension, count(*) as n_clients
    from (
        select
            'month' as grouping,
            strftime(month, '%Y-%m-%d') as unit,
            'all' as subgroup,
            dimension,
            client_id
        from per_episode_month
        group by grouping sets (
            (month, dimension, client_id)
        )
    )
    group by grouping, unit, subgroup, dimension
),
by_month as (
    select
        grouping,
        unit,
        subgroup,
        dimension,
        c.n_clients,
        s.episodes,
        s.administrations,
        s.mean_score,
        s.sd_score
    from by_month_stats as s
    join by_month_clients as c using (grouping, unit, subgroup, dimension)
),
final as (
    -- units with a null value (e.g. an unrecorded demographic) are left out, as the joins above
    -- already do
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
