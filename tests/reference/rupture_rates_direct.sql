-- Reference for tests/test_shortcuts.py: queries/rupture_rates.sql as it was before it read
-- the settings-independent counts from srs_month_cells (every count from one aggregation of the
-- sessions in view, session_facts).
-- Ruptures and repair (metrics.md "Rupture" and "Repair"), counted for the whole clinic and per
-- calendar month, site and therapist (of the session at which the rupture happened), in one pass.
-- A rupture is an SRS administration dated in the period whose total is at least
-- $rupture_threshold points below the episode's previous SRS (session_facts.prev_srs, which skips
-- sessions without an SRS). It is repaired when one of the next $repair_window SRS
-- administrations of the episode is at or above that previous SRS; unrepaired when the window
-- has passed, or the episode has ended, without one; open otherwise (an ongoing episode whose
-- window is not over yet). The window is followed past the end of the period, through every later
-- SRS administration of the episode (session_facts.next_srs_1..6, precomputed over all of the
-- episode's sessions like prev_srs: a later session at a site the role may not see still counts,
-- only through its SRS total). One scan of the sessions in view, no window function.
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
--   $detail: boolean, false = only the clinic row (e.g. the previous period's headline: cheaper)
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
with
in_view as (
    select
        month,
        site,
        therapist,
        client_id,
        srs,
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
),
events as (
    -- differences rounded to 1e-4 so that item sums (floating point) compare exactly
    select
        -- without detail the units collapse to one (null) value each: far fewer cells
        case when $detail then month end as month,
        case when $detail then site end as site,
        case when $detail then therapist end as therapist,
        client_id,
        prev_srs,
        coalesce(round(prev_srs - srs, 4) >= $rupture_threshold, false) as rupture,
        case
            when not coalesce(round(prev_srs - srs, 4) >= $rupture_threshold, false) then null
            when round(best_next - prev_srs, 4) >= 0 then 'repaired'
            when window_end is not null or end_reason is not null then 'unrepaired'
            else 'open'
        end as fate
    from in_view
),
cells as (
    -- one row per month, site, therapist and client first: the grouping sets below then
    -- count distinct clients over far fewer rows
    select
        month,
        site,
        therapist,
        client_id,
        count(*) as administrations,
        count(*) filter (where prev_srs is not null) as with_previous,
        count(*) filter (where rupture) as ruptures,
        count(*) filter (where fate = 'repaired') as repaired,
        count(*) filter (where fate = 'unrepaired') as unrepaired,
        count(*) filter (where fate = 'open') as open
    from events
    group by month, site, therapist, client_id
),
unit_clients as (
    -- distinct clients per unit in two steps (one row per unit and client, then count), much
    -- cheaper than count(distinct) under grouping sets
    select
        grouping(month, site, therapist) as g,
        month,
        site,
        therapist,
        bool_or(with_previous > 0) as has_previous,
        bool_or(repaired + unrepaired > 0) as has_fate
    from cells
    group by grouping sets ((client_id), (month, client_id), (site, client_id),
                            (therapist, client_id))
),
clients as (
    select
        g,
        month,
        site,
        therapist,
        count(*) filter (where has_previous) as n_clients,
        count(*) filter (where has_fate) as fate_clients
    from unit_clients
    group by g, month, site, therapist
),
sums as (
    select
        grouping(month, site, therapist) as g,
        month,
        site,
        therapist,
        sum(administrations)::bigint as administrations,
        sum(with_previous)::bigint as with_previous,
        sum(ruptures)::bigint as ruptures,
        sum(repaired)::bigint as repaired,
        sum(unrepaired)::bigint as unrepaired,
        sum(open)::bigint as open
    from cells
    group by grouping sets ((), (month), (site), (therapist))
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
        s.ruptures,
        s.repaired,
        s.unrepaired,
        s.open,
        s.repaired + s.unrepaired as fate_known,
        c.fate_clients,
        s.ruptures / nullif(s.with_previous, 0) as rupture_rate,
        s.repaired / nullif(s.repaired + s.unrepaired, 0) as repair_rate
    from sums as s
    join clients as c
      on s.g = c.g
     and s.month is not distinct from c.month
     and s.site is not distinct from c.site
     and s.therapist is not distinct from c.therapist
)
select * from final
where $detail or grouping = 'clinic'
order by grouping, unit;
