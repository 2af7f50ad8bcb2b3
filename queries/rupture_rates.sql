-- Ruptures and repair (metrics.md "Rupture" and "Repair"), counted for the whole clinic and per
-- calendar month, site and therapist (of the session at which the rupture happened), in one pass.
-- A rupture is an SRS administration dated in the period whose total is at least
-- $rupture_threshold points below the episode's previous SRS (session_facts.prev_srs, which skips
-- sessions without an SRS). It is repaired when one of the next $repair_window SRS
-- administrations of the episode is at or above that previous SRS; unrepaired when the window
-- has passed, or the episode has ended, without one; open otherwise (an ongoing episode whose
-- window is not over yet). The window is followed past the end of the period, through every SRS
-- administration of the episode the signed-in role may see.
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
        session_id,
        episode_id,
        client_id,
        month,
        site,
        therapist
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where srs is not null
),
episode_srs as (
    -- every SRS administration of the episodes in view, whatever its date
    select
        session_id,
        episode_id,
        session_index,
        srs,
        prev_srs,
        end_reason
    from sessions_in_view(
        date '0001-01-01', date '9999-12-31', null, null, null, null, null, null,
        $allowed_sites
    )
    where srs is not null
      and episode_id in (select episode_id from in_view)
),
windowed as (
    select
        *,
        max(srs) over next_srs as best_next,
        count(*) over next_srs as n_next
    from episode_srs
    window next_srs as (
        partition by episode_id
        order by session_index
        rows between 1 following and $repair_window following
    )
),
classified as (
    -- differences rounded to 1e-4 so that item sums (floating point) compare exactly
    select
        session_id,
        prev_srs,
        coalesce(round(prev_srs - srs, 4) >= $rupture_threshold, false) as rupture,
        case
            when not coalesce(round(prev_srs - srs, 4) >= $rupture_threshold, false) then null
            when round(best_next - prev_srs, 4) >= 0 then 'repaired'
            when n_next >= $repair_window or end_reason is not null then 'unrepaired'
            else 'open'
        end as fate
    from windowed
),
events as (
    select
        strftime(v.month, '%Y-%m-%d') as month,
        v.site,
        v.therapist,
        v.client_id,
        c.prev_srs,
        c.rupture,
        c.fate
    from in_view as v
    join classified as c using (session_id)
),
final as (
    -- grouping(): bit set = column not in the grouping set (month 4, site 2, therapist 1)
    select
        case grouping(month, site, therapist)
            when 7 then 'clinic'
            when 3 then 'month'
            when 5 then 'site'
            when 6 then 'therapist'
        end as grouping,
        case grouping(month, site, therapist)
            when 7 then 'clinic'
            when 3 then month
            when 5 then site
            when 6 then therapist
        end as unit,
        count(distinct client_id) filter (where prev_srs is not null) as n_clients,
        count(*) as administrations,
        count(*) filter (where prev_srs is not null) as with_previous,
        count(*) filter (where rupture) as ruptures,
        count(*) filter (where fate = 'repaired') as repaired,
        count(*) filter (where fate = 'unrepaired') as unrepaired,
        count(*) filter (where fate = 'open') as open,
        count(*) filter (where fate in ('repaired', 'unrepaired')) as fate_known,
        count(distinct client_id) filter (where fate in ('repaired', 'unrepaired'))
            as fate_clients,
        count(*) filter (where rupture)
            / nullif(count(*) filter (where prev_srs is not null), 0) as rupture_rate,
        count(*) filter (where fate = 'repaired')
            / nullif(count(*) filter (where fate in ('repaired', 'unrepaired')), 0)
            as repair_rate
    from events
    group by grouping sets ((), (month), (site), (therapist))
)
select * from final
order by grouping, unit;
