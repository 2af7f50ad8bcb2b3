-- Alliance drops ("ruptures", metrics.md): SRS administrations in view that have a previous SRS in
-- the same episode (that one may be dated before the period), and how many are at least
-- $rupture_threshold points below it. The difference is rounded to the SRS's one decimal so
-- that binary floating point cannot turn a 2.0-point drop into 1.9999.
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
--   $rupture_threshold: double, a drop of at least this many SRS points counts
-- Columns:
--   n_clients: integer, distinct clients with an SRS that has a previous SRS
--   with_previous: integer, SRS administrations with a previous SRS in the same episode
--   drops: integer, of those, at least rupture_threshold points below the previous SRS
--   drop_rate: double, drops / with_previous (0-1)
--   with_previous_cellkey: integer, cell key of with_previous (alliance/noise.py)
--   drops_cellkey: integer, cell key of drops (alliance/noise.py)
with
s as (
    select
        client_id,
        ckey,
        srs,
        prev_srs
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where srs is not null
      and prev_srs is not null
),
final as (
    select
        count(distinct client_id) as n_clients,
        count(*) as with_previous,
        count(*) filter (where round(prev_srs - srs, 1) >= $rupture_threshold) as drops,
        count(*) filter (where round(prev_srs - srs, 1) >= $rupture_threshold)
            / nullif(count(*), 0) as drop_rate,
        coalesce(sum(ckey), 0)::bigint as with_previous_cellkey,
        coalesce(sum(ckey) filter (where round(prev_srs - srs, 1) >= $rupture_threshold), 0)::bigint
            as drops_cellkey
    from s
)
select * from final;
