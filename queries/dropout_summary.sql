-- Dropout headline figures for ended episodes finished in the period: how many ended, how many by
-- dropout, how many have an early SRS (the population of every alliance-dropout statistic), the
-- clients behind each group (for the privacy rule) and the median session number of the last
-- session for dropout and for planned endings.
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
--   ended: integer, ended episodes finished in the period
--   n_clients: integer, distinct clients of those episodes
--   dropouts: integer, ended by dropout
--   dropout_rate: double, dropouts / ended (0-1)
--   with_early_srs: integer, ended episodes with an early SRS
--   early_clients: integer, distinct clients of those
--   early_dropouts: integer, of those, ended by dropout
--   early_dropout_clients: integer, distinct clients of the dropout episodes with an early SRS
--   early_other_clients: integer, distinct clients of the other ended episodes with an early SRS
--   planned: integer, episodes with a planned ending
--   planned_clients: integer, distinct clients of those
--   dropout_clients: integer, distinct clients of the dropout episodes
--   median_last_dropout: double, median number of attended sessions of dropout episodes
--   median_last_planned: double, median number of attended sessions of planned endings
--   ended_cellkey: integer, cell key of ended (alliance/noise.py)
--   dropouts_cellkey: integer, cell key of dropouts (alliance/noise.py)
--   with_early_srs_cellkey: integer, cell key of with_early_srs (alliance/noise.py)
--   early_dropouts_cellkey: integer, cell key of early_dropouts (alliance/noise.py)
--   planned_cellkey: integer, cell key of planned (alliance/noise.py)
with
e as (
    select
        client_id,
        ekey,
        dropout,
        end_reason,
        early_srs,
        n_sessions
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
final as (
    select
        count(*) as ended,
        count(distinct client_id) as n_clients,
        count(*) filter (where dropout) as dropouts,
        count(*) filter (where dropout) / nullif(count(*), 0) as dropout_rate,
        count(early_srs) as with_early_srs,
        count(distinct client_id) filter (where early_srs is not null) as early_clients,
        count(*) filter (where early_srs is not null and dropout) as early_dropouts,
        count(distinct client_id) filter (
            where early_srs is not null and dropout
        ) as early_dropout_clients,
        count(distinct client_id) filter (
            where early_srs is not null and not dropout
        ) as early_other_clients,
        count(*) filter (where end_reason = 'planned') as planned,
        count(distinct client_id) filter (where end_reason = 'planned') as planned_clients,
        count(distinct client_id) filter (where dropout) as dropout_clients,
        median(n_sessions) filter (where dropout) as median_last_dropout,
        median(n_sessions) filter (where end_reason = 'planned') as median_last_planned,
        coalesce(sum(ekey), 0)::bigint as ended_cellkey,
        coalesce(sum(ekey) filter (where dropout), 0)::bigint as dropouts_cellkey,
        coalesce(sum(ekey) filter (where early_srs is not null), 0)::bigint as with_early_srs_cellkey,
        coalesce(sum(ekey) filter (where early_srs is not null and dropout), 0)::bigint
            as early_dropouts_cellkey,
        coalesce(sum(ekey) filter (where end_reason = 'planned'), 0)::bigint as planned_cellkey
    from e
)
select * from final;
