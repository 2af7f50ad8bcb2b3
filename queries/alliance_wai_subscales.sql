-- WAI-SR subscales (Task, Bond, Goal: mean of their 4 items, 1-5) and the mean item score of the
-- whole scale, averaged over episodes: each episode counts once, with the mean of its WAI-SR
-- administrations in the period, so clients rated more often do not weigh more and the SD
-- reflects differences between episodes (an interval from it allows for repeated ratings).
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
-- Columns:
--   subscale: varchar, 'task', 'bond', 'goal' or 'total' (mean item score of all 12 items)
--   n_clients: integer, distinct clients with a WAI-SR administration
--   episodes: integer, episodes with a WAI-SR administration
--   administrations: integer, WAI-SR administrations
--   mean_score: double, mean over episodes of the episode's mean score (1-5)
--   sd_score: double, SD of the episode means
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
--   administrations_cellkey: integer, cell key of administrations (alliance/noise.py)
with
s as (
    select
        episode_id,
        client_id,
        ckey,
        ekey,
        wai,
        wai_task_mean,
        wai_bond_mean,
        wai_goal_mean
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where wai is not null
),
per_episode as (
    select
        episode_id,
        any_value(client_id) as client_id,
        any_value(ekey) as ekey,
        count(*) as administrations,
        sum(ckey) as administrations_key,
        avg(wai) as total,
        avg(wai_task_mean) as task,
        avg(wai_bond_mean) as bond,
        avg(wai_goal_mean) as goal
    from s
    group by episode_id
),
long as (
    unpivot per_episode
    on task, bond, goal, total
    into name subscale value score
),
final as (
    select
        subscale,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        sum(administrations) as administrations,
        avg(score) as mean_score,
        stddev_samp(score) as sd_score,
        sum(ekey)::bigint as episodes_cellkey,
        sum(administrations_key)::bigint as administrations_cellkey
    from long
    group by subscale
)
select * from final
order by list_position(['task', 'bond', 'goal', 'total'], subscale);
