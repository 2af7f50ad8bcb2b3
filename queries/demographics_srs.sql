-- Session Rating Scale by client group (age band, gender or race/ethnicity): mean SRS total and
-- the share of SRS ratings below the cutoff, with client-level sums for intervals that allow
-- for several ratings coming from the same client (cluster = client within group), plus one
-- clinic-wide row.
--
-- Parameters:
--   $date_from: date, first day included (session date)
--   $date_to: date, first day excluded
--   $site: varchar or null, site filter
--   $program: varchar or null, program filter
--   $therapist: varchar or null, therapist code filter
--   $age_band: varchar or null, age band filter
--   $gender: varchar or null, gender filter
--   $race: varchar or null, race/ethnicity filter
--   $allowed_sites: varchar[] or null, sites the signed-in role may see
--   $dimension: varchar, grouping: 'age_band', 'gender' or 'race_ethnicity'
--   $srs_cutoff: double, SRS totals below this count as below cutoff
-- Columns:
--   is_clinic: boolean, true for the one clinic-wide row (client_group null)
--   client_group: varchar, the group (value of the chosen dimension)
--   n_clients: integer, distinct clients with an SRS rating in the period
--   clusters: integer, (client, group) pairs: the clusters of the interval
--   srs_n: integer, SRS ratings (sessions with an SRS total)
--   srs_sum: double, sum of SRS totals (points)
--   below: integer, SRS ratings below the cutoff
--   sum_y2: double, sum over clusters of (client's SRS sum)^2
--   sum_ym: double, sum over clusters of client's SRS sum x client's ratings
--   sum_m2: double, sum over clusters of (client's ratings)^2
--   sum_b2: double, sum over clusters of (client's ratings below cutoff)^2
--   sum_bm: double, sum over clusters of client's below-cutoff ratings x client's ratings
--   srs_n_cellkey: integer, cell key of srs_n (alliance/noise.py)
--   below_cellkey: integer, cell key of below (alliance/noise.py)
with
rated as (
    select
        client_id,
        ckey,
        srs,
        case $dimension
            when 'age_band' then age_band
            when 'gender' then gender
            when 'race_ethnicity' then race_ethnicity
        end as client_group
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where srs is not null
),
per_client as (
    select
        client_group,
        client_id,
        count(*)::double as m,
        sum(srs)::double as y,
        count(*) filter (where srs < $srs_cutoff)::double as b,
        sum(ckey) as mk,
        coalesce(sum(ckey) filter (where srs < $srs_cutoff), 0) as bk
    from rated
    group by client_group, client_id
),
final as (
    select
        grouping(client_group) = 1 as is_clinic,
        client_group,
        count(distinct client_id) as n_clients,
        count(*) as clusters,
        sum(m)::bigint as srs_n,
        sum(y) as srs_sum,
        sum(b)::bigint as below,
        sum(y * y) as sum_y2,
        sum(y * m) as sum_ym,
        sum(m * m) as sum_m2,
        sum(b * b) as sum_b2,
        sum(b * m) as sum_bm,
        coalesce(sum(mk), 0)::bigint as srs_n_cellkey,
        coalesce(sum(bk), 0)::bigint as below_cellkey
    from per_client
    group by grouping sets ((client_group), ())
)
select * from final
order by is_clinic, client_group;
