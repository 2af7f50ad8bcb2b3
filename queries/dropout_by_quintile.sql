-- Dropout by early-SRS quintile: ended episodes finished in the period with an early SRS, cut at
-- the 20th, 40th, 60th and 80th percentiles of their early SRS. Episodes with the same early SRS
-- always share a group (many clients give the top score), so groups can differ in size and a
-- group can be empty when cut points coincide. The exact cut points (quantile_disc: some
-- client's early SRS) decide membership and are never returned; the group's labels get the
-- interpolated percentiles (quantile_cont) rounded to whole SRS points instead, so that no label
-- carries one client's value (alliance/privacy.py, cut_point_labels, shows them only between two
-- groups of at least k clients).
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
--   label_low: double, whole SRS points, the percentile below the group (interpolated and
--     rounded, for the label only; null for quintile 1)
--   label_high: double, whole SRS points, the percentile above the group (likewise; null for
--     quintile 5)
--   n_clients: integer, distinct clients of the episodes
--   episodes: integer, ended episodes in the group
--   dropouts: integer, of those, ended by dropout
--   dropout_rate: double, dropouts / episodes (0-1)
--   mean_early_srs: double, mean early SRS of the group (points)
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
--   dropouts_cellkey: integer, cell key of dropouts (alliance/noise.py)
with
e as (
    select
        client_id,
        ekey,
        dropout,
        early_srs
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where early_srs is not null
),
cuts as (
    select
        quantile_disc(early_srs, [0.2, 0.4, 0.6, 0.8]) as c,
        list_transform(quantile_cont(early_srs, [0.2, 0.4, 0.6, 0.8]), lambda x: round(x)) as shown
    from e
),
grouped as (
    select
        e.*,
        1 + (e.early_srs > cuts.c[1])::integer + (e.early_srs > cuts.c[2])::integer
          + (e.early_srs > cuts.c[3])::integer + (e.early_srs > cuts.c[4])::integer as quintile,
        cuts.shown as shown
    from e
    cross join cuts
),
final as (
    select
        quintile,
        case when quintile > 1 then any_value(shown)[quintile - 1] end as label_low,
        case when quintile < 5 then any_value(shown)[quintile] end as label_high,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        count(*) filter (where dropout) as dropouts,
        count(*) filter (where dropout) / count(*) as dropout_rate,
        avg(early_srs) as mean_early_srs,
        sum(ekey)::bigint as episodes_cellkey,
        coalesce(sum(ekey) filter (where dropout), 0)::bigint as dropouts_cellkey
    from grouped
    group by quintile
)
select * from final
order by quintile;
