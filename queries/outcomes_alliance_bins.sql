-- Early alliance against improvement: ended episodes finished in the period with >= 2
-- administrations of the measure and an early SRS, grouped by quantiles of early SRS (cut
-- points from the episodes in view; a value equal to a cut point goes to the lower group, so
-- tied scores such as the SRS ceiling of 40 stay together and a group may be empty), with the
-- mean and SD of improvement (positive = better) in each group. The exact cut points
-- (quantile_disc: some client's early SRS) decide membership and are never returned; the labels
-- get the interpolated quantiles (quantile_cont) rounded to whole SRS points, so that no label
-- carries one client's value (alliance/privacy.py, cut_point_labels).
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
--   $measure: varchar, outcome measure (ors, phq9, gad7)
--   $fractions: double[], quantile fractions of the cut points, e.g. [0.1, 0.2, ..., 0.9]
-- Columns:
--   bin: integer, group number from 1 (lowest early SRS)
--   label_low: double, whole SRS points, the quantile below the group (interpolated and
--     rounded, for the label only; null for the first)
--   label_high: double, whole SRS points, the quantile above the group (likewise; null for the
--     last)
--   n_clients: integer, distinct clients in the group
--   episodes: integer, episodes in the group
--   mean_early_srs: double, SRS points (0-40), mean early SRS of the group
--   mean_improvement: double, points, mean improvement (positive = better)
--   sd_improvement: double, points, SD of improvement (n - 1)
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
with
outcomes as (
    select
        client_id,
        ekey,
        early_srs,
        round(improvement, 6) as improvement
    from outcomes_in_view(
        $measure, $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_admin >= 2
      and early_srs is not null
),
cuts as (
    select
        quantile_disc(early_srs, $fractions) as q,
        list_transform(quantile_cont(early_srs, $fractions), lambda x: round(x)) as shown
    from outcomes
),
binned as (
    select
        o.*,
        c.shown,
        1 + len(list_filter(c.q, lambda x: x < o.early_srs)) as bin
    from outcomes as o
    cross join cuts as c
),
final as (
    select
        bin,
        any_value(shown[bin - 1]) as label_low,
        any_value(case when bin <= len(shown) then shown[bin] end) as label_high,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        avg(early_srs) as mean_early_srs,
        avg(improvement) as mean_improvement,
        stddev_samp(improvement) as sd_improvement,
        coalesce(sum(ekey), 0)::bigint as episodes_cellkey
    from binned
    group by bin
)
select * from final
order by bin;
