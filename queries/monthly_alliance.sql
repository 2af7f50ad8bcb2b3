-- Monthly alliance: for each calendar month of session dates, the mean and SD of the chosen
-- alliance score and the share of SRS totals below the cutoff.
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
--   $alliance: varchar, 'srs' (total 0-40) or 'wai' (WAI-SR mean item 1-5)
--   $srs_cutoff: double, SRS totals below this count as below cutoff
-- Columns:
--   month: date, calendar month (first day)
--   n_clients: integer, distinct clients with a scored session in the month
--   n: integer, sessions with the alliance score
--   mean_score: double, mean alliance score (SRS points or WAI-SR mean item)
--   sd_score: double, SD of the score within the month
--   below: integer, SRS totals below the cutoff (SRS only)
--   below_rate: double, below / n (SRS only, 0-1)
--   n_cellkey: integer, cell key of n (sum of its records' keys; alliance/noise.py)
--   below_cellkey: integer, cell key of below (sum of its records' keys; alliance/noise.py)
with
s as (
    select
        month,
        client_id,
        ckey,
        case when $alliance = 'wai' then wai else srs end as score,
        srs
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
final as (
    select
        month,
        count(distinct client_id) as n_clients,
        count(*) as n,
        avg(score) as mean_score,
        stddev_samp(score) as sd_score,
        count(*) filter (where srs < $srs_cutoff) as below,
        count(*) filter (where srs < $srs_cutoff) / nullif(count(srs), 0) as below_rate,
        sum(ckey)::bigint as n_cellkey,
        coalesce(sum(ckey) filter (where srs < $srs_cutoff), 0)::bigint as below_cellkey
    from s
    where score is not null
    group by month
)
select * from final
order by month;
