-- Client counts behind the alliance-dropout statistics: ended episodes finished in the period
-- with an early SRS, by site and by whether they ended in dropout, plus the same over all sites
-- (site null). A statistic is shown only when both its dropout and its other episodes describe
-- at least k clients.
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
-- Columns:
--   site: varchar, the episode's site; null = all sites in view
--   dropout: boolean, ended by dropout
--   n_clients: integer, distinct clients
--   episodes: integer, ended episodes with an early SRS
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
with
e as (
    select
        site,
        client_id,
        ekey,
        dropout
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where early_srs is not null
),
final as (
    select
        site,
        dropout,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        sum(ekey)::bigint as episodes_cellkey
    from e
    group by grouping sets ((site, dropout), (dropout))
)
select * from final
order by site nulls first, dropout;
