-- Alliance headline figures for the sessions in view: SRS administrations, their mean and SD and
-- how many are below the SRS cutoff; WAI-SR administrations and their mean item score.
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
--   srs_n: integer, sessions with an SRS total
--   srs_clients: integer, distinct clients with an SRS total
--   mean_srs: double, mean SRS total (points, 0-40)
--   sd_srs: double, SD of SRS totals (points)
--   srs_below: integer, SRS totals below the cutoff
--   wai_n: integer, sessions with a WAI-SR score
--   wai_clients: integer, distinct clients with a WAI-SR score
--   mean_wai: double, mean WAI-SR mean item score (1-5)
--   sd_wai: double, SD of WAI-SR mean item scores
--   sessions_cellkey: integer, cell key of sessions (alliance/noise.py)
--   srs_n_cellkey: integer, cell key of srs_n (alliance/noise.py)
--   srs_below_cellkey: integer, cell key of srs_below (alliance/noise.py)
--   wai_n_cellkey: integer, cell key of wai_n (alliance/noise.py)
with
s as not materialized (
    -- read twice below (the ratings and the clients): scanning the sessions twice is cheaper
    -- than copying millions of them once
    select
        client_id,
        ckey,
        srs,
        wai
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
ratings as (
    select
        count(*) as sessions,
        count(srs) as srs_n,
        avg(srs) as mean_srs,
        stddev_samp(srs) as sd_srs,
        count(*) filter (where srs < $srs_cutoff) as srs_below,
        count(wai) as wai_n,
        avg(wai) as mean_wai,
        stddev_samp(wai) as sd_wai,
        coalesce(sum(ckey), 0)::bigint as sessions_cellkey,
        coalesce(sum(ckey) filter (where srs is not null), 0)::bigint as srs_n_cellkey,
        coalesce(sum(ckey) filter (where srs < $srs_cutoff), 0)::bigint as srs_below_cellkey,
        coalesce(sum(ckey) filter (where wai is not null), 0)::bigint as wai_n_cellkey
    from s
),
per_client as (
    -- one row per client first: several filtered count(distinct) over millions of sessions
    -- cost about five times as much
    select
        client_id,
        bool_or(srs is not null) as has_srs,
        bool_or(wai is not null) as has_wai
    from s
    group by client_id
),
clients as (
    select
        count(*) as n_clients,
        count(*) filter (where has_srs) as srs_clients,
        count(*) filter (where has_wai) as wai_clients
    from per_client
),
final as (
    select
        r.sessions,
        c.n_clients,
        r.srs_n,
        c.srs_clients,
        r.mean_srs,
        r.sd_srs,
        r.srs_below,
        r.wai_n,
        c.wai_clients,
        r.mean_wai,
        r.sd_wai,
        r.sessions_cellkey,
        r.srs_n_cellkey,
        r.srs_below_cellkey,
        r.wai_n_cellkey
    from ratings as r
    cross join clients as c
)
select * from final;
