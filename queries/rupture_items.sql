-- Which part of the alliance drops at a rupture: for ruptures dated in the period where the SRS
-- items were recorded at both the rupture and the previous SRS administration, the drop of each
-- item (previous item score - item score at the rupture, points 0-10, positive = fell) and how
-- often each item fell the most (ties count for every tied item).
-- The previous administration's items come from session_facts (prev_srs_relationship ...),
-- like prev_srs over all of the episode's SRS administrations, whatever their site. Every
-- rupture counted has all four items at both administrations, so the clients and ruptures are
-- the same for each item: counted once, the items aggregated side by side and unpivoted at
-- the end.
--
-- Parameters:
--   $date_from: date, first day included (session date of the rupture)
--   $date_to: date, first day excluded
--   $site: varchar or null, site filter
--   $program: varchar or null, program filter
--   $therapist: varchar or null, therapist code filter
--   $age_band: varchar or null, age band filter
--   $gender: varchar or null, gender filter
--   $race: varchar or null, race/ethnicity filter
--   $allowed_sites: varchar[] or null, sites the signed-in role may see
--   $rupture_threshold: double, SRS drop (points) from the previous SRS that counts as a rupture
-- Columns:
--   dimension: varchar, 'heard' (relationship), 'goals' (goals and topics), 'approach'
--     (approach or method), 'overall'
--   n_clients: integer, distinct clients with such a rupture
--   ruptures: integer, ruptures with items at both administrations
--   mean_drop: double, mean item drop at the rupture (points, 0-10 scale)
--   sd_drop: double, SD of the item drop (points)
--   largest: integer, ruptures at which this item fell the most
--   ruptures_cellkey: integer, cell key of ruptures (alliance/noise.py)
--   largest_cellkey: integer, cell key of largest (alliance/noise.py)
with
drops as (
    -- the previous SRS administration's items are precomputed in session_facts
    -- (prev_srs_relationship ... prev_srs_overall, over the episode's SRS administrations)
    select
        client_id,
        ckey,
        prev_srs_relationship - srs_relationship as heard,
        prev_srs_goals - srs_goals as goals,
        prev_srs_approach - srs_approach as approach,
        prev_srs_overall - srs_overall as overall
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where srs is not null
      and round(prev_srs - srs, 4) >= $rupture_threshold
      and srs_relationship is not null and srs_goals is not null
      and srs_approach is not null and srs_overall is not null
      and prev_srs_relationship is not null and prev_srs_goals is not null
      and prev_srs_approach is not null and prev_srs_overall is not null
),
wide as (
    select
        count(distinct client_id) as n_clients,
        count(*) as ruptures,
        avg(columns(['heard', 'goals', 'approach', 'overall'])) as 'mean_\0',
        stddev_samp(columns(['heard', 'goals', 'approach', 'overall'])) as 'sd_\0',
        -- the item fell the most (ties count for every tied item)
        count_if(
            round(biggest - columns(['heard', 'goals', 'approach', 'overall']), 4) = 0
        )::bigint as 'largest_\0',
        -- the cell keys of the counts (alliance/noise.py): each rupture carries its client's key
        sum(ckey)::bigint as ruptures_cellkey,
        coalesce(sum(ckey) filter (where round(biggest - heard, 4) = 0), 0)::bigint
            as largest_heard_cellkey,
        coalesce(sum(ckey) filter (where round(biggest - goals, 4) = 0), 0)::bigint
            as largest_goals_cellkey,
        coalesce(sum(ckey) filter (where round(biggest - approach, 4) = 0), 0)::bigint
            as largest_approach_cellkey,
        coalesce(sum(ckey) filter (where round(biggest - overall, 4) = 0), 0)::bigint
            as largest_overall_cellkey
    from (select *, greatest(heard, goals, approach, overall) as biggest from drops)
),
final as (
    select
        d.dimension,
        w.n_clients,
        w.ruptures,
        case d.dimension
            when 'heard' then w.mean_heard when 'goals' then w.mean_goals
            when 'approach' then w.mean_approach else w.mean_overall
        end as mean_drop,
        case d.dimension
            when 'heard' then w.sd_heard when 'goals' then w.sd_goals
            when 'approach' then w.sd_approach else w.sd_overall
        end as sd_drop,
        case d.dimension
            when 'heard' then w.largest_heard when 'goals' then w.largest_goals
            when 'approach' then w.largest_approach else w.largest_overall
        end as largest,
        w.ruptures_cellkey,
        case d.dimension
            when 'heard' then w.largest_heard_cellkey when 'goals' then w.largest_goals_cellkey
            when 'approach' then w.largest_approach_cellkey else w.largest_overall_cellkey
        end as largest_cellkey
    from wide as w
    cross join (values ('heard'), ('goals'), ('approach'), ('overall')) as d(dimension)
    where w.ruptures > 0
)
select * from final
order by dimension;
