-- Outcome change per ended episode for the case-mix adjusted therapist funnel and the
-- therapist share of outcome variance (ICC): one row per ended episode finished in the period
-- with >= 2 administrations of the chosen measure, with only the columns the regressions need.
-- No client identifier leaves the database: each row carries its therapist's client count and
-- the clinic's (for the privacy step).
--
-- Parameters:
--   $date_from: date, first day included (episode end date)
--   $date_to: date, first day excluded
--   $site: varchar or null, site filter
--   $program: varchar or null, program filter
--   $therapist: varchar or null, therapist code filter (the episode's main therapist)
--   $age_band: varchar or null, age band filter
--   $gender: varchar or null, gender filter
--   $race: varchar or null, race/ethnicity filter
--   $allowed_sites: varchar[] or null, sites the signed-in role may see
--   $measure: varchar, outcome measure (ors, phq9, gad7)
-- Columns:
--   therapist: varchar, the episode's main therapist (code)
--   therapist_clients: integer, distinct clients among that therapist's rows
--   clinic_clients: integer, distinct clients among all rows
--   improvement: double, change first -> last administration, positive = better (points)
--   intake: double, score at the first administration (points)
--   age_band: varchar, client age band at the episode's first session
--   program: varchar, program of the episode ('(missing)' when unknown)
--   therapist_episodes_cellkey: integer, cell key of the therapist's episodes (its rows; alliance/noise.py)
--   clinic_episodes_cellkey: integer, cell key of all episodes (all rows; alliance/noise.py)
with
outcomes as (
    select *
    from outcomes_in_view(
        $measure, $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_admin >= 2
),
clients as (
    -- distinct clients per therapist: an episode is one row, so a client with a single
    -- episode is one row (derive.sql, multi_episode_client); only the others are deduplicated
    select
        therapist,
        count(*) filter (where not multi_episode_client)
            + count(distinct client_id) filter (where multi_episode_client) as therapist_clients,
        coalesce(sum(ekey), 0)::bigint as therapist_episodes_cellkey
    from outcomes
    group by therapist
),
clinic as (
    select
        count(*) filter (where not multi_episode_client)
            + count(distinct client_id) filter (where multi_episode_client) as clinic_clients,
        coalesce(sum(ekey), 0)::bigint as clinic_episodes_cellkey
    from outcomes
),
final as (
    select
        o.therapist,
        c.therapist_clients,
        k.clinic_clients,
        o.improvement::double as improvement,
        o.first_score::double as intake,
        o.age_band,
        coalesce(o.program, '(missing)') as program,
        c.therapist_episodes_cellkey,
        k.clinic_episodes_cellkey
    from outcomes as o
    join clients as c on o.therapist is not distinct from c.therapist
    cross join clinic as k
)
select * from final
order by therapist;
