-- Distribution of the chosen alliance score over the sessions in view, binned in the database
-- so no single rating leaves it: bins of $bin_width from $bin_floor up to the top of the
-- scale, every score below $bin_floor pooled into one bin (few ratings are that low, and alone
-- they would describe too few clients to show), and the top score (SRS 40, WAI-SR 5) as a bin of
-- its own because many clients give it (the ceiling effect).
--
-- Parameters:
--   $date_from: date, first day included
--   $date_to: date, first day excluded
--   $site: varchar or null, site filter
--   $program: varchar or null, program filter
--   $therapist: varchar or null, therapist code filter
--   $age_band: varchar or null, age band filter
--   $gender: varchar or null, gender filter
--   $race: varchar or null, race/ethnicity filter
--   $allowed_sites: varchar[] or null, sites the signed-in role may see
--   $alliance: varchar, 'srs' (total 0-40) or 'wai' (WAI-SR mean item 1-5)
--   $bin_floor: double, lower edge of the lowest regular bin; scores below are pooled
--   $bin_width: double, width of a regular bin (points)
--   $scale_max: double, top of the scale (40 for SRS, 5 for WAI-SR), a bin of its own
-- Columns:
--   bin_low: double, lower edge of the bin (included); null for the pooled low bin
--   bin_high: double, upper edge of the bin (excluded); equals bin_low for the top-score bin
--   n_clients: integer, distinct clients with a rating in the bin
--   n: integer, ratings in the bin
--   share: double, n / all ratings in view (0-1)
--   n_cellkey: integer, cell key of n (alliance/noise.py)
with
s as (
    select
        client_id,
        ckey,
        case when $alliance = 'wai' then wai else srs end as score
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
binned as (
    -- the bin as a small integer: -1 = below $bin_floor, k = the k-th regular bin, and one past
    -- the last regular bin = the top score
    select
        client_id,
        ckey,
        case
            when score < $bin_floor then -1
            when score >= $scale_max then ceil(($scale_max - $bin_floor) / $bin_width)
            else floor((score - $bin_floor) / $bin_width)
        end::integer as bin
    from s
    where score is not null
),
per_client as (
    -- clients per bin in two steps (bin x client, then bin), by the bin's number: cheaper than
    -- count(distinct) or grouping by the bin's two edges and the client
    select
        bin,
        client_id,
        count(*) as n,
        sum(ckey) as n_cellkey
    from binned
    group by bin, client_id
),
per_bin as (
    select
        bin,
        count(*) as n_clients,
        sum(n)::bigint as n,
        sum(n_cellkey)::bigint as n_cellkey
    from per_client
    group by all
),
final as (
    select
        case
            when bin = -1 then null
            when bin >= ceil(($scale_max - $bin_floor) / $bin_width) then $scale_max
            else $bin_floor + bin * $bin_width
        end as bin_low,
        case
            when bin = -1 then $bin_floor
            when bin >= ceil(($scale_max - $bin_floor) / $bin_width) then $scale_max
            else $bin_floor + (bin + 1) * $bin_width
        end as bin_high,
        n_clients,
        n,
        n / sum(n) over () as share,
        n_cellkey
    from per_bin
)
select * from final
order by bin_high, bin_low nulls first;
