-- Session-level headline figures for the filtered view: sessions, clients, episodes active in
-- the period, mean SRS and the share of SRS administrations below the cutoff.
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
--   $srs_cutoff: double, SRS totals below this count as below cutoff
-- Columns:
--   sessions: integer, attended sessions dated in the period
--   n_clients: integer, distinct clients with a session in the period
--   active_episodes: integer, episodes with at least one session in the period
--   therapists: integer, distinct therapists with a session in the period
--   srs_n: integer, sessions with an SRS total
--   mean_srs: double, mean SRS total (0-40)
--   sd_srs: double, SD of SRS totals (points)
--   srs_below: integer, SRS totals below the cutoff
--   srs_below_rate: double, srs_below / srs_n (0-1)
--   sessions_cellkey: integer, cell key of sessions (sum of its records' keys; alliance/noise.py)
--   srs_n_cellkey: integer, cell key of srs_n (sum of its records' keys; alliance/noise.py)
--   srs_below_cellkey: integer, cell key of srs_below (sum of its records' keys; alliance/noise.py)
with
s as (
    select *
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
final as (
    select
        count(*) as sessions,
        count(distinct client_id) as n_clients,
        count(distinct episode_id) as active_episodes,
        count(distinct therapist) as therapists,
        count(srs) as srs_n,
        avg(srs) as mean_srs,
        stddev_samp(srs) as sd_srs,
        count(*) filter (where srs < $srs_cutoff) as srs_below,
        count(*) filter (where srs < $srs_cutoff) / nullif(count(srs), 0) as srs_below_rate,
        coalesce(sum(ckey), 0)::bigint as sessions_cellkey,
        coalesce(sum(ckey) filter (where srs is not null), 0)::bigint as srs_n_cellkey,
        coalesce(sum(ckey) filter (where srs < $srs_cutoff), 0)::bigint as srs_below_cellkey
    from s
)
select * from final;
