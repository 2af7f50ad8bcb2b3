-- Early alliance by therapist for the therapist funnel plot: ended episodes finished in the
-- period that have an early alliance score (mean of the first three SRS totals, or WAI-SR mean
-- item scores), by main therapist, with the within-therapist SD (for the pooled SD), plus one
-- clinic-wide row (the funnel's target and the cohort size).
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
--   $alliance: varchar, 'srs' (early SRS total, 0-40) or 'wai' (early WAI-SR mean item, 1-5)
-- Columns:
--   is_clinic: boolean, true for the one clinic-wide row (therapist null)
--   therapist: varchar, therapist code (null on the clinic-wide row)
--   n_clients: integer, distinct clients of the episodes
--   episodes: integer, ended episodes with an early alliance score
--   mean_early: double, mean early alliance (SRS points 0-40 or WAI-SR item mean 1-5)
--   sd_early: double, SD of early alliance over the episodes (same unit; null when 1 episode)
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
with
ended as (
    select
        *,
        case when $alliance = 'wai' then early_wai else early_srs end as early_alliance
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
scored as (
    select * from ended where early_alliance is not null
),
final as (
    select
        grouping(therapist) = 1 as is_clinic,
        therapist,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        avg(early_alliance) as mean_early,
        stddev_samp(early_alliance) as sd_early,
        coalesce(sum(ekey), 0)::bigint as episodes_cellkey
    from scored
    group by grouping sets ((therapist), ())
)
select * from final
order by is_clinic, therapist;
