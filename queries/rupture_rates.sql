-- Ruptures and repair (metrics.md "Rupture" and "Repair"), counted for the whole clinic and per
-- calendar month, site and therapist (of the session at which the rupture happened; those of
-- $groupings), in one pass.
-- A rupture is an SRS administration dated in the period whose total is at least
-- $rupture_threshold points below the episode's previous SRS (session_facts.prev_srs, which skips
-- sessions without an SRS). It is repaired when one of the next $repair_window SRS
-- administrations of the episode is at or above that previous SRS; unrepaired when the window
-- has passed, or the episode has ended, without one; open otherwise (an ongoing episode whose
-- window is not over yet). The window is followed past the end of the period, through every later
-- SRS administration of the episode (session_facts.next_srs_1..6, precomputed over all of the
-- episode's sessions like prev_srs: a later session at a site the role may not see still counts,
-- only through its SRS total). The counts that do not depend on the settings (administrations,
-- those with a previous SRS, their clients) come from the per-month rollup srs_month_cells; only
-- the ruptures themselves are read from the sessions in view. No window function.
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
--   $repair_window: integer, SRS administrations after a rupture in which it can be repaired
--     (1-6, the range the Settings page allows; session_facts holds the next six SRS)
--   $groupings: varchar[], the groupings to compute besides 'clinic' (always computed): any of
--     'month', 'site', 'therapist' (a page section asks only for what it shows; [] = the clinic
--     row alone, e.g. the previous period's headline)
-- Columns:
--   grouping: varchar, 'clinic', 'month', 'site' or 'therapist'
--   unit: varchar, 'clinic', the month (YYYY-MM-DD, first day), the site or the therapist code
--   n_clients: integer, distinct clients with an SRS administration that has a previous SRS
--   administrations: integer, SRS administrations in the period
--   with_previous: integer, of those, administrations with a previous SRS in the episode
--   ruptures: integer, ruptures (drop >= threshold from the previous SRS)
--   repaired: integer, ruptures repaired within the window
--   unrepaired: integer, ruptures whose window passed, or whose episode ended, without repair
--   open: integer, ruptures of ongoing episodes whose window is not over (left out of repair)
--   fate_known: integer, repaired + unrepaired (denominator of the repair rate)
--   fate_clients: integer, distinct clients with a rupture whose fate is known
--   rupture_rate: double, ruptures / with_previous (0-1; x 100 = ruptures per 100)
--   repair_rate: double, repaired / fate_known (0-1), null when no fate is known
--   administrations_cellkey: integer, cell key of administrations (alliance/noise.py)
--   with_previous_cellkey: integer, cell key of with_previous (alliance/noise.py)
--   ruptures_cellkey: integer, cell key of ruptures (alliance/noise.py)
--   repaired_cellkey: integer, cell key of repaired (alliance/noise.py)
--   unrepaired_cellkey: integer, cell key of unrepaired (alliance/noise.py)
--   open_cellkey: integer, cell key of open (alliance/noise.py)
--   fate_known_cellkey: integer, cell key of fate_known (alliance/noise.py)
with
cells as (
    -- SRS administrations and those with a previous SRS per month, site, therapist and client
    -- (derive.sql, srs_month_cells). A unit not asked for collapses to one (null) value, and
    -- so does its client column (the client within that unit): its grouping then forms one
    -- row instead of repeating the clinic's distinct count, and is left out of the result
    select
        case when list_contains($groupings, 'month') then month end as month,
        case when list_contains($groupings, 'site') then site end as site,
        case when list_contains($groupings, 'therapist') then therapist end as therapist,
        client_id,
        case when list_contains($groupings, 'month') then client_id end as month_client,
        case when list_contains($groupings, 'site') then client_id end as site_client,
        case when list_contains($groupings, 'therapist') then client_id end as therapist_client,
        n_srs,
        n_srs_prev,
        -- the cell keys of the counts (alliance/noise.py): each administration carries its
        -- client's key
        ckey::bigint * n_srs as srs_key,
        ckey::bigint * n_srs_prev as srs_prev_key
    from srs_months_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
ruptures as (
    -- the SRS administrations in the period that are ruptures (differences rounded to 1e-4 so
    -- that item sums, floating point, compare exactly), with their fate
    select
        case when list_contains($groupings, 'month') then month end as month,
        case when list_contains($groupings, 'site') then site end as site,
        case when list_contains($groupings, 'therapist') then therapist end as therapist,
        client_id,
        case when list_contains($groupings, 'month') then client_id end as month_client,
        case when list_contains($groupings, 'site') then client_id end as site_client,
        case when list_contains($groupings, 'therapist') then client_id end as therapist_client,
        ckey,
        case
            when round(best_next - prev_srs, 4) >= 0 then 'repaired'
            when window_end is not null or end_reason is not null then 'unrepaired'
            else 'open'
        end as fate
    from (
        select
            month,
            site,
            therapist,
            client_id,
            ckey,
            prev_srs,
            end_reason,
            -- the best of the next $repair_window SRS administrations of the episode, and the
            -- last of them (not null = the window has passed); session_facts holds the next six
            greatest(
                next_srs_1,
                case when $repair_window >= 2 then next_srs_2 end,
                case when $repair_window >= 3 then next_srs_3 end,
                case when $repair_window >= 4 then next_srs_4 end,
                case when $repair_window >= 5 then next_srs_5 end,
                case when $repair_window >= 6 then next_srs_6 end
            ) as best_next,
            case $repair_window
                when 1 then next_srs_1
                when 2 then next_srs_2
                when 3 then next_srs_3
                when 4 then next_srs_4
                when 5 then next_srs_5
                else next_srs_6
            end as window_end
        from sessions_in_view(
            $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
            $allowed_sites
        )
        where srs is not null
          and round(prev_srs - srs, 4) >= $rupture_threshold
    )
),
sums as (
    select
        grouping(month, site, therapist) as g,
        month,
        site,
        therapist,
        sum(n_srs)::bigint as administrations,
        sum(n_srs_prev)::bigint as with_previous,
        sum(srs_key)::bigint as administrations_cellkey,
        sum(srs_prev_key)::bigint as with_previous_cellkey
    from cells
    group by grouping sets ((), (month), (site), (therapist))
),
rupture_sums as (
    select
        grouping(month, site, therapist) as g,
        month,
        site,
        therapist,
        count(*) as ruptures,
        count(*) filter (where fate = 'repaired') as repaired,
        count(*) filter (where fate = 'unrepaired') as unrepaired,
        count(*) filter (where fate = 'open') as open,
        sum(ckey)::bigint as ruptures_cellkey,
        coalesce(sum(ckey) filter (where fate = 'repaired'), 0)::bigint as repaired_cellkey,
        coalesce(sum(ckey) filter (where fate = 'unrepaired'), 0)::bigint as unrepaired_cellkey,
        coalesce(sum(ckey) filter (where fate = 'open'), 0)::bigint as open_cellkey,
        coalesce(sum(ckey) filter (where fate <> 'open'), 0)::bigint as fate_known_cellkey
    from ruptures
    group by grouping sets ((), (month), (site), (therapist))
),
unit_clients as (
    -- distinct clients per unit in two steps (one row per unit and client, then count), much
    -- cheaper than count(distinct) under grouping sets
    select
        grouping(month, site, therapist) as g,
        month,
        site,
        therapist,
        bool_or(n_srs_prev > 0) as has_previous
    from cells
    group by grouping sets ((client_id), (month, month_client), (site, site_client),
                            (therapist, therapist_client))
),
clients as (
    select g, month, site, therapist, count(*) filter (where has_previous) as n_clients
    from unit_clients
    group by g, month, site, therapist
),
fate_clients as (
    -- distinct clients with a rupture whose fate is known, per unit (two steps as above)
    select g, month, site, therapist, count(*) as fate_clients
    from (
        select grouping(month, site, therapist) as g, month, site, therapist
        from ruptures
        where fate <> 'open'
        group by grouping sets ((client_id), (month, month_client), (site, site_client),
                                (therapist, therapist_client))
    )
    group by g, month, site, therapist
),
final as (
    -- grouping(): bit set = column not in the grouping set (month 4, site 2, therapist 1)
    select
        case s.g
            when 7 then 'clinic'
            when 3 then 'month'
            when 5 then 'site'
            when 6 then 'therapist'
        end as grouping,
        case s.g
            when 7 then 'clinic'
            when 3 then strftime(s.month, '%Y-%m-%d')
            when 5 then s.site
            when 6 then s.therapist
        end as unit,
        c.n_clients,
        s.administrations,
        s.with_previous,
        coalesce(r.ruptures, 0) as ruptures,
        coalesce(r.repaired, 0) as repaired,
        coalesce(r.unrepaired, 0) as unrepaired,
        coalesce(r.open, 0) as open,
        coalesce(r.repaired + r.unrepaired, 0) as fate_known,
        coalesce(f.fate_clients, 0) as fate_clients,
        coalesce(r.ruptures, 0) / nullif(s.with_previous, 0) as rupture_rate,
        r.repaired / nullif(r.repaired + r.unrepaired, 0) as repair_rate,
        s.administrations_cellkey,
        s.with_previous_cellkey,
        coalesce(r.ruptures_cellkey, 0)::bigint as ruptures_cellkey,
        coalesce(r.repaired_cellkey, 0)::bigint as repaired_cellkey,
        coalesce(r.unrepaired_cellkey, 0)::bigint as unrepaired_cellkey,
        coalesce(r.open_cellkey, 0)::bigint as open_cellkey,
        coalesce(r.fate_known_cellkey, 0)::bigint as fate_known_cellkey
    from sums as s
    join clients as c
      on s.g = c.g
     and s.month is not distinct from c.month
     and s.site is not distinct from c.site
     and s.therapist is not distinct from c.therapist
    left join rupture_sums as r
      on s.g = r.g
     and s.month is not distinct from r.month
     and s.site is not distinct from r.site
     and s.therapist is not distinct from r.therapist
    left join fate_clients as f
      on s.g = f.g
     and s.month is not distinct from f.month
     and s.site is not distinct from f.site
     and s.therapist is not distinct from f.therapist
)
select * from final
where grouping = 'clinic' or list_contains($groupings, grouping)
order by grouping, unit;
