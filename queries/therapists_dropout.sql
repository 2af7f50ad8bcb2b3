-- Dropout by therapist for the therapist funnel plot: ended episodes finished in the period by
-- each episode's main therapist, with their dropouts, plus one clinic-wide row (the funnel's
-- target and the cohort size).
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
-- Columns:
--   is_clinic: boolean, true for the one clinic-wide row (therapist null)
--   therapist: varchar, therapist code (null on the clinic-wide row)
--   n_clients: integer, distinct clients of the ended episodes
--   ended: integer, ended episodes finished in the period
--   dropouts: integer, of those, ended by dropout
--   dropout_rate: double, dropouts / ended (0-1)
--   ended_cellkey: integer, cell key of ended (alliance/noise.py)
--   dropouts_cellkey: integer, cell key of dropouts (alliance/noise.py)
with
ended as (
    select *
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
final as (
    select
        grouping(therapist) = 1 as is_clinic,
        therapist,
        count(distinct client_id) as n_clients,
        count(*) as ended,
        count(*) filter (where dropout) as dropouts,
        count(*) filter (where dropout) / count(*) as dropout_rate,
        coalesce(sum(ekey), 0)::bigint as ended_cellkey,
        coalesce(sum(ekey) filter (where dropout), 0)::bigint as dropouts_cellkey
    from ended
    group by grouping sets ((therapist), ())
)
select * from final
order by is_clinic, therapist;
