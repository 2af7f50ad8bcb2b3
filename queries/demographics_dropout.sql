-- Dropout by client group (age band, gender or race/ethnicity) and site: ended episodes
-- finished in the period and their dropouts for every group x site cell, every group over all
-- sites, and the clinic as a whole.
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
--   $dimension: varchar, grouping: 'age_band', 'gender' or 'race_ethnicity'
-- Columns:
--   level: varchar, 'cell' (group x site), 'group' (group, all sites) or 'clinic'
--   client_group: varchar, the group (null on the clinic row)
--   site: varchar, the episode's site (first session; null on group and clinic rows)
--   n_clients: integer, distinct clients of the ended episodes
--   ended: integer, ended episodes finished in the period
--   dropouts: integer, of those, ended by dropout
--   dropout_rate: double, dropouts / ended (0-1)
--   ended_cellkey: integer, cell key of ended (alliance/noise.py)
--   dropouts_cellkey: integer, cell key of dropouts (alliance/noise.py)
with
ended as (
    select
        client_id,
        ekey,
        site,
        dropout,
        case $dimension
            when 'age_band' then age_band
            when 'gender' then gender
            when 'race_ethnicity' then race_ethnicity
        end as client_group
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
final as (
    select
        case
            when grouping(client_group) = 1 then 'clinic'
            when grouping(site) = 1 then 'group'
            else 'cell'
        end as level,
        client_group,
        site,
        count(distinct client_id) as n_clients,
        count(*) as ended,
        count(*) filter (where dropout) as dropouts,
        count(*) filter (where dropout) / count(*) as dropout_rate,
        coalesce(sum(ekey), 0)::bigint as ended_cellkey,
        coalesce(sum(ekey) filter (where dropout), 0)::bigint as dropouts_cellkey
    from ended
    group by grouping sets ((client_group, site), (client_group), ())
)
select * from final
order by level, client_group, site;
