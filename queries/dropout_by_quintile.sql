-- Dropout by early-SRS quintile: ended episodes finished in the period with an early SRS, cut at
-- the 20th, 40th, 60th and 80th percentiles of their early SRS. Episodes with the same early SRS
-- always share a group (many clients give the top score), so groups can differ in size and a
-- group can be empty when cut points coincide.
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
--   quintile: integer, 1 (lowest early SRS) .. 5 (highest)
--   cut_low: double, the group holds early SRS above this (null for quintile 1)
--   cut_high: double, ... and at most this (null for quintile 5)
--   n_clients: integer, distinct clients of the episodes
--   episodes: integer, ended episodes in the group
--   dropouts: integer, of those, ended by dropout
--   dropout_rate: double, dropouts / episodes (0-1)
--   mean_early_srs: double, mean early SRS of the group (points)
with
e as (
    select
        client_id,
        dropout,
        early_srs
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where early_srs is not null
),
cuts as (
    select quantile_disc(early_srs, [0.2, 0.4, 0.6, 0.8]) as c
    from e
),
grouped as (
    select
        e.*,
        1 + (e.early_srs > cuts.c[1])::integer + (e.early_srs > cuts.c[2])::integer
          + (e.early_srs > cuts.c[3])::integer + (e.early_srs > cuts.c[4])::integer as quintile,
        cuts.c as c
    from e
    cross join cuts
),
final as (
    select
        quintile,
        case when quintile > 1 then any_value(c)[quintile - 1] end as cut_low,
        case when quintile < 5 then any_value(c)[quintile] end as cut_high,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        count(*) filter (where dropout) as dropouts,
        count(*) filter (where dropout) / count(*) as dropout_rate,
        avg(early_srs) as mean_early_srs
    from grouped
    group by quintile
)
select * from final
order by quintile;
