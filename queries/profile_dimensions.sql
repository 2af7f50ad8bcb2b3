-- The alliance in the clinic's terms (metrics.md "Alliance dimensions"): each dimension's mean
-- item score for the whole clinic and per site, program, therapist, month, age band, gender and
-- race/ethnicity, and per therapist x demographic group (those of $groupings), in one pass. Each
-- episode's mean item score over its administrations in the unit is one observation, so a long
-- episode counts once and the SD is the between-episode SD (the basis of the intervals). SRS
-- items 0-10: heard = relationship, goals = goals and topics, approach = approach or method,
-- overall. WAI-SR subscale mean items 1-5: heard = Bond, goals = Goal, approach = Task (no
-- overall). Only recorded items count. Reads the per-episode-month item rollup (count and sum
-- per item per episode, therapist, site and month, built with the facts); the per-unit episode
-- means are rolled up from those cells wide (one column per dimension, unpivoted only at the
-- end). An episode seen by one therapist at one site whose months all lie in the period has its
-- whole-life sums as its period sums (derive.sql, episode_items: one row, nothing to group);
-- only the other episodes' cells are grouped by episode. An episode seen by one therapist (at
-- one site) has the same means per therapist (site) as overall, and with both one cell per
-- month, so only the other episodes are grouped again; distinct clients are the unit's rows of
-- clients with a single episode plus, counted in two steps, the clients with several
-- (derive.sql: single_therapist, single_site, multi_episode_client).
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
--   $groupings: varchar[], the groupings to compute besides 'clinic' (always computed): any of
--     'site', 'program', 'therapist', 'month', 'age_band', 'gender', 'race_ethnicity',
--     'therapist/age_band', 'therapist/gender', 'therapist/race_ethnicity' (a page section
--     asks only for what it shows; the others' rows are never formed)
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
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
with
cells as (
    -- per episode, therapist, site and month the count and sum of each recorded item of the
    -- chosen measure (missing items do not count), from the precomputed rollup
    -- (derive.sql, episode_month_items: the same cells aggregated from the sessions). Every
    -- episode mean below is sum / count of the episode's administrations in the unit, as avg()
    -- over its sessions would give. `whole`: the episode's sums come from episode_items.
    select
        episode_id,
        therapist,
        site,
        month,
        client_id,
        ekey,
        multi_episode_client as multi,
        single_therapist,
        single_site,
        wholly_in_period(
            single_therapist, single_site, first_month, last_month, $date_from, $date_to
        ) as whole,
        item_count($alliance, n_srs_heard, n_wai_heard) as n_heard,
        item_sum($alliance, s10_srs_heard, s_wai_heard) as s_heard,
        item_count($alliance, n_srs_goals, n_wai_goals) as n_goals,
        item_sum($alliance, s10_srs_goals, s_wai_goals) as s_goals,
        item_count($alliance, n_srs_approach, n_wai_approach) as n_approach,
        item_sum($alliance, s10_srs_approach, s_wai_approach) as s_approach,
        item_count($alliance, n_srs_overall, 0) as n_overall,
        item_sum($alliance, s10_srs_overall, null) as s_overall
    from episode_months_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
attributes as not materialized (
    -- what is fixed per episode: its client, therapist and site flags (its one therapist and
    -- site where single_therapist / single_site), program and demographics; read at each of its
    -- two joins rather than copied whole first (each join reads only the episodes it needs)
    select
        episode_id,
        client_id,
        ekey,
        multi_episode_client as multi,
        single_therapist,
        therapist,
        single_site,
        site,
        coalesce(program, '(no program)') as program,
        age_band,
        gender,
        race_ethnicity
    from episode_facts
),
per_episode as (
    -- each episode's mean item score per dimension over its administrations in the period,
    -- with its program and demographics; m_x is null where x was not recorded. Episodes wholly
    -- in the period (one therapist, one site): their whole-life sums, one row each
    select
        episode_id,
        client_id,
        ekey,
        multi_episode_client as multi,
        true as single_therapist,
        therapist,
        true as single_site,
        site,
        coalesce(program, '(no program)') as program,
        age_band,
        gender,
        race_ethnicity,
        item_count($alliance, n_srs_heard, n_wai_heard) as n_heard,
        item_sum($alliance, s10_srs_heard, s_wai_heard)
            / item_count($alliance, n_srs_heard, n_wai_heard) as m_heard,
        item_count($alliance, n_srs_goals, n_wai_goals) as n_goals,
        item_sum($alliance, s10_srs_goals, s_wai_goals)
            / item_count($alliance, n_srs_goals, n_wai_goals) as m_goals,
        item_count($alliance, n_srs_approach, n_wai_approach) as n_approach,
        item_sum($alliance, s10_srs_approach, s_wai_approach)
            / item_count($alliance, n_srs_approach, n_wai_approach) as m_approach,
        item_count($alliance, n_srs_overall, 0) as n_overall,
        item_sum($alliance, s10_srs_overall, null)
            / nullif(item_count($alliance, n_srs_overall, 0), 0) as m_overall
    from whole_episode_items_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    union all
    -- the others: their cells in the period grouped by episode (numbers only; what is fixed per
    -- episode is joined on after grouping, cheaper than carrying it, strings above all, through
    -- the grouping as any_value)
    select
        p.episode_id, a.client_id, a.ekey, a.multi, a.single_therapist, a.therapist,
        a.single_site,
        a.site, a.program, a.age_band, a.gender, a.race_ethnicity,
        p.n_heard, p.m_heard, p.n_goals, p.m_goals, p.n_approach, p.m_approach, p.n_overall,
        p.m_overall
    from (
        select
            episode_id,
            sum(n_heard) as n_heard,
            sum(s_heard) / sum(n_heard) as m_heard,
            sum(n_goals) as n_goals,
            sum(s_goals) / sum(n_goals) as m_goals,
            sum(n_approach) as n_approach,
            sum(s_approach) / sum(n_approach) as m_approach,
            sum(n_overall) as n_overall,
            sum(s_overall) / nullif(sum(n_overall), 0) as m_overall
        from cells
        where not whole
        group by episode_id
    ) as p
    join attributes as a using (episode_id)
),
per_episode_therapist as (
    -- the episode's means with each therapist it saw (usually one: then its overall means)
    select
        episode_id, therapist, client_id, ekey, multi, age_band, gender, race_ethnicity,
        n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode
    where single_therapist and list_has_any(
        $groupings,
        ['therapist', 'therapist/age_band', 'therapist/gender', 'therapist/race_ethnicity']
    )
    union all
    select
        p.episode_id, p.therapist, a.client_id, a.ekey, a.multi, a.age_band, a.gender,
        a.race_ethnicity,
        p.n_heard, p.m_heard, p.n_goals, p.m_goals, p.n_approach, p.m_approach, p.n_overall,
        p.m_overall
    from (
        select
            episode_id,
            therapist,
            sum(n_heard) as n_heard,
            sum(s_heard) / sum(n_heard) as m_heard,
            sum(n_goals) as n_goals,
            sum(s_goals) / sum(n_goals) as m_goals,
            sum(n_approach) as n_approach,
            sum(s_approach) / sum(n_approach) as m_approach,
            sum(n_overall) as n_overall,
            sum(s_overall) / nullif(sum(n_overall), 0) as m_overall
        from cells
        where not single_therapist and list_has_any(
            $groupings,
            ['therapist', 'therapist/age_band', 'therapist/gender', 'therapist/race_ethnicity']
        )
        group by episode_id, therapist
    ) as p
    join attributes as a using (episode_id)
),
per_episode_site as (
    -- the episode's means at each site (usually one: then its overall means)
    select
        episode_id, site, client_id, ekey, multi,
        n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode
    where list_contains($groupings, 'site') and single_site
    union all
    select
        episode_id,
        site,
        any_value(client_id) as client_id,
        any_value(ekey) as ekey,
        any_value(multi) as multi,
        sum(n_heard) as n_heard,
        sum(s_heard) / sum(n_heard) as m_heard,
        sum(n_goals) as n_goals,
        sum(s_goals) / sum(n_goals) as m_goals,
        sum(n_approach) as n_approach,
        sum(s_approach) / sum(n_approach) as m_approach,
        sum(n_overall) as n_overall,
        sum(s_overall) / nullif(sum(n_overall), 0) as m_overall
    from cells
    where list_contains($groupings, 'site') and not single_site
    group by episode_id, site
),
per_episode_month as (
    -- the episode's means in each month: an episode with one therapist and one site has one
    -- cell per month already (its means are the cell's); only the others are grouped again
    select
        episode_id,
        month,
        client_id,
        ekey,
        multi,
        n_heard,
        s_heard / n_heard as m_heard,
        n_goals,
        s_goals / n_goals as m_goals,
        n_approach,
        s_approach / n_approach as m_approach,
        n_overall,
        s_overall / nullif(n_overall, 0) as m_overall
    from cells
    where list_contains($groupings, 'month') and single_therapist and single_site
    union all
    select
        episode_id,
        month,
        any_value(client_id) as client_id,
        any_value(ekey) as ekey,
        any_value(multi) as multi,
        sum(n_heard) as n_heard,
        sum(s_heard) / sum(n_heard) as m_heard,
        sum(n_goals) as n_goals,
        sum(s_goals) / sum(n_goals) as m_goals,
        sum(n_approach) as n_approach,
        sum(s_approach) / sum(n_approach) as m_approach,
        sum(n_overall) as n_overall,
        sum(s_overall) / nullif(sum(n_overall), 0) as m_overall
    from cells
    where list_contains($groupings, 'month') and not (single_therapist and single_site)
    group by episode_id, month
),
observations as (
    -- one row per unit and episode: the observations of every grouping
    select 'clinic' as grouping, 'clinic' as unit, 'all' as subgroup,
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode
    union all
    select 'program', program, 'all',
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode
    where list_contains($groupings, 'program')
    union all
    select 'age_band', age_band, 'all',
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode
    where list_contains($groupings, 'age_band')
    union all
    select 'gender', gender, 'all',
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode
    where list_contains($groupings, 'gender')
    union all
    select 'race_ethnicity', race_ethnicity, 'all',
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode
    where list_contains($groupings, 'race_ethnicity')
    union all
    select 'therapist', therapist, 'all',
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode_therapist
    where list_contains($groupings, 'therapist')
    union all
    select 'therapist/age_band', therapist, age_band,
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode_therapist
    where list_contains($groupings, 'therapist/age_band')
    union all
    select 'therapist/gender', therapist, gender,
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode_therapist
    where list_contains($groupings, 'therapist/gender')
    union all
    select 'therapist/race_ethnicity', therapist, race_ethnicity,
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode_therapist
    where list_contains($groupings, 'therapist/race_ethnicity')
    union all
    select 'site', site, 'all',
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode_site
    where list_contains($groupings, 'site')
    union all
    select 'month', strftime(month, '%Y-%m-%d'), 'all',
           client_id, multi, ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from per_episode_month
    where list_contains($groupings, 'month')
),
obs as (
    -- the unit as one integer key (hash of its three labels): grouping by it is much cheaper
    -- than by three strings; the labels are taken back once per unit
    select hash(grouping, unit, subgroup) as unit_key, grouping, unit, subgroup, client_id, multi,
           ekey,
           n_heard, m_heard, n_goals, m_goals, n_approach, m_approach, n_overall, m_overall
    from observations
    where unit is not null and subgroup is not null
),
stats as (
    select
        unit_key,
        any_value(grouping) as grouping,
        any_value(unit) as unit,
        any_value(subgroup) as subgroup,
        count(m_heard) as e_heard,
        sum(n_heard)::bigint as a_heard,
        avg(m_heard) as mean_heard,
        stddev_samp(m_heard) as sd_heard,
        count(m_goals) as e_goals,
        sum(n_goals)::bigint as a_goals,
        avg(m_goals) as mean_goals,
        stddev_samp(m_goals) as sd_goals,
        count(m_approach) as e_approach,
        sum(n_approach)::bigint as a_approach,
        avg(m_approach) as mean_approach,
        stddev_samp(m_approach) as sd_approach,
        count(m_overall) as e_overall,
        sum(n_overall)::bigint as a_overall,
        avg(m_overall) as mean_overall,
        stddev_samp(m_overall) as sd_overall,
        -- cell keys (alliance/noise.py): an episode carries its key (the administrations' key
        -- is derived from the episodes' in the view: noise.derived_key)
        coalesce(sum(ekey) filter (where m_heard is not null), 0)::bigint as ek_heard,
        coalesce(sum(ekey) filter (where m_goals is not null), 0)::bigint as ek_goals,
        coalesce(sum(ekey) filter (where m_approach is not null), 0)::bigint as ek_approach,
        coalesce(sum(ekey) filter (where m_overall is not null), 0)::bigint as ek_overall,
        -- clients with one episode: one row each in a unit
        count(*) filter (where not multi and n_heard > 0) as single_heard,
        count(*) filter (where not multi and n_goals > 0) as single_goals,
        count(*) filter (where not multi and n_approach > 0) as single_approach,
        count(*) filter (where not multi and n_overall > 0) as single_overall
    from obs
    group by unit_key
),
multi_clients as (
    -- clients with several episodes: distinct per unit and dimension in two steps (one row per
    -- unit and client, then count)
    select
        unit_key,
        count(*) filter (where h) as c_heard,
        count(*) filter (where g) as c_goals,
        count(*) filter (where a) as c_approach,
        count(*) filter (where o) as c_overall
    from (
        select
            unit_key,
            client_id,
            bool_or(n_heard > 0) as h,
            bool_or(n_goals > 0) as g,
            bool_or(n_approach > 0) as a,
            bool_or(n_overall > 0) as o
        from obs
        where multi
        group by unit_key, client_id
    )
    group by unit_key
),
clients as (
    select
        s.unit_key,
        s.single_heard + coalesce(m.c_heard, 0) as c_heard,
        s.single_goals + coalesce(m.c_goals, 0) as c_goals,
        s.single_approach + coalesce(m.c_approach, 0) as c_approach,
        s.single_overall + coalesce(m.c_overall, 0) as c_overall
    from stats as s
    left join multi_clients as m using (unit_key)
),
final as (
    -- unpivoted at the end: one row per unit and recorded dimension
    select
        s.grouping,
        s.unit,
        s.subgroup,
        d.dimension,
        case d.dimension
            when 'heard' then c.c_heard when 'goals' then c.c_goals
            when 'approach' then c.c_approach else c.c_overall
        end as n_clients,
        case d.dimension
            when 'heard' then s.e_heard when 'goals' then s.e_goals
            when 'approach' then s.e_approach else s.e_overall
        end as episodes,
        case d.dimension
            when 'heard' then s.a_heard when 'goals' then s.a_goals
            when 'approach' then s.a_approach else s.a_overall
        end as administrations,
        case d.dimension
            when 'heard' then s.mean_heard when 'goals' then s.mean_goals
            when 'approach' then s.mean_approach else s.mean_overall
        end as mean_score,
        case d.dimension
            when 'heard' then s.sd_heard when 'goals' then s.sd_goals
            when 'approach' then s.sd_approach else s.sd_overall
        end as sd_score,
        case d.dimension
            when 'heard' then s.ek_heard when 'goals' then s.ek_goals
            when 'approach' then s.ek_approach else s.ek_overall
        end as episodes_cellkey
    from stats as s
    join clients as c using (unit_key)
    cross join (values ('heard'), ('goals'), ('approach'), ('overall')) as d(dimension)
)
select * from final
where episodes > 0
order by grouping, unit, subgroup, dimension;
