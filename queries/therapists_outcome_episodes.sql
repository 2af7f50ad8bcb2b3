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
with
outcomes as (
    select *
    from outcomes_in_view(
        $measure, $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_admin >= 2
),
final as (
    select
        therapist,
        count(distinct client_id) over (partition by therapist) as therapist_clients,
        count(distinct client_id) over () as clinic_clients,
        improvement::double as improvement,
        first_score::double as intake,
        age_band,
        coalesce(program, '(missing)') as program
    from outcomes
)
select * from final
order by therapist;
