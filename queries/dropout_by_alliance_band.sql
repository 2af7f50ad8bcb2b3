-- Dropout by early-alliance band: ended episodes finished in the period with an early SRS, below
-- the SRS cutoff vs at or above it.
--
-- Parameters:
--   $date_from: date, first day included (episode end date)
--   $date_to: date, first day excluded
--   $site: varchar or null, site filter (the episode's site at its first session)
--   $program: varchar or null, program filter
--   $therapist: varchar or null, therapist code filter (the episode's main therapist)
--   $age_band: varchar or null, age band filter
--   $gender: varchar or null, gender filter
--   $race: varchar or null, race/ethnicity filter
--   $allowed_sites: varchar[] or null, sites the signed-in role may see
--   $srs_cutoff: double, an early SRS below this is "below cutoff"
-- Columns:
--   band: varchar, 'below' or 'at_or_above' the cutoff
--   n_clients: integer, distinct clients of the episodes
--   episodes: integer, ended episodes with an early SRS in the band
--   dropouts: integer, of those, ended by dropout
--   dropout_rate: double, dropouts / episodes (0-1)
--   mean_early_srs: double, mean early SRS of the band (points)
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
--   dropouts_cellkey: integer, cell key of dropouts (alliance/noise.py)
with
e as (
    select
        client_id,
        ekey,
        dropout,
        early_srs,
        case when early_srs < $srs_cutoff then 'below' else 'at_or_above' end as band
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where early_srs is not null
),
final as (
    select
        band,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        count(*) filter (where dropout) as dropouts,
        count(*) filter (where dropout) / count(*) as dropout_rate,
        avg(early_srs) as mean_early_srs,
        sum(ekey)::bigint as episodes_cellkey,
        coalesce(sum(ekey) filter (where dropout), 0)::bigint as dropouts_cellkey
    from e
    group by band
)
select * from final
order by band desc;
