-- Which part of the alliance drops at a rupture: for ruptures dated in the period where the SRS
-- items were recorded at both the rupture and the previous SRS administration, the drop of each
-- item (previous item score - item score at the rupture, points 0-10, positive = fell) and how
-- often each item fell the most (ties count for every tied item).
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
with
in_view as (
    select
        session_id,
        client_id
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where srs is not null
),
episode_srs as (
    select
        session_id,
        episode_id,
        session_index,
        srs,
        prev_srs,
        srs_relationship,
        srs_goals,
        srs_approach,
        srs_overall
    from sessions_in_view(
        date '0001-01-01', date '9999-12-31', null, null, null, null, null, null,
        $allowed_sites
    )
    where srs is not null
      and episode_id in (
          select episode_id from sessions_in_view(
              $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
              $allowed_sites
          )
      )
),
lagged as (
    select
        *,
        lag(srs_relationship) over previous as prev_relationship,
        lag(srs_goals) over previous as prev_goals,
        lag(srs_approach) over previous as prev_approach,
        lag(srs_overall) over previous as prev_overall
    from episode_srs
    window previous as (partition by episode_id order by session_index)
),
drops as (
    select
        l.session_id,
        v.client_id,
        l.prev_relationship - l.srs_relationship as heard,
        l.prev_goals - l.srs_goals as goals,
        l.prev_approach - l.srs_approach as approach,
        l.prev_overall - l.srs_overall as overall
    from lagged as l
    join in_view as v using (session_id)
    where round(l.prev_srs - l.srs, 4) >= $rupture_threshold
      and l.srs_relationship is not null and l.srs_goals is not null
      and l.srs_approach is not null and l.srs_overall is not null
      and l.prev_relationship is not null and l.prev_goals is not null
      and l.prev_approach is not null and l.prev_overall is not null
),
long as (
    unpivot drops
    on heard, goals, approach, overall
    into name dimension value item_drop
),
ranked as (
    select
        *,
        max(item_drop) over (partition by session_id) as biggest
    from long
),
final as (
    select
        dimension,
        count(distinct client_id) as n_clients,
        count(*) as ruptures,
        avg(item_drop) as mean_drop,
        stddev_samp(item_drop) as sd_drop,
        count(*) filter (where round(biggest - item_drop, 4) = 0) as largest
    from ranked
    group by dimension
)
select * from final
order by dimension;
