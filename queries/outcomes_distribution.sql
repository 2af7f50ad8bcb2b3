-- Distribution of improvement for one measure (positive = better), binned in the database:
-- ended episodes finished in the period with >= 2 administrations, improvement rounded to the
-- nearest multiple of the bin width, tails pooled in the end bins ($lowest_bin, $highest_bin:
-- e.g. every reliable deterioration in one bar, so a rare outcome is not split into cells too
-- small to show), and each bin split by reliable-change band so the bands are exact even where
-- a bin straddles a threshold.
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
--   $reliable_change: double, points of improvement that count as reliable
--   $bin_width: double, points, width of a bin (bins are centred on its multiples)
--   $lowest_bin: double, points, centre of the lowest bin (everything below is pooled in it)
--   $highest_bin: double, points, centre of the highest bin (everything above is pooled in it)
-- Columns:
--   bin: double, points, bin centre (the end bins hold everything beyond them)
--   band: varchar, 'reliable deterioration', 'no reliable change' or 'reliable improvement'
--   band_order: integer, 1 deterioration, 2 no reliable change, 3 improvement
--   n_clients: integer, distinct clients in the cell
--   episodes: integer, episodes in the cell
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
with
outcomes as (
    select
        client_id,
        ekey,
        round(improvement, 6) as improvement
    from outcomes_in_view(
        $measure, $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_admin >= 2
),
binned as (
    select
        client_id,
        ekey,
        least(
            greatest(round(improvement / $bin_width) * $bin_width, $lowest_bin),
            $highest_bin
        ) as bin,
        case
            when improvement <= -$reliable_change then 1
            when improvement >= $reliable_change then 3
            else 2
        end as band_order
    from outcomes
),
final as (
    select
        bin,
        case band_order
            when 1 then 'reliable deterioration'
            when 2 then 'no reliable change'
            else 'reliable improvement'
        end as band,
        band_order,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        coalesce(sum(ekey), 0)::bigint as episodes_cellkey
    from binned
    group by bin, band_order
)
select * from final
order by bin, band_order;
