-- The distinct clients behind each month of the Ruptures page's monthly charts, as lists of
-- client ids, for the complementary privacy rule only (never shown): a client seen in several
-- months counts once in the union of the withheld months (alliance/privacy.py, clients_col).
-- previous_clients are the clients counted in rupture_rates' n_clients for the month (an SRS
-- administration with a previous SRS in the episode, from the rollup srs_month_cells);
-- fate_clients those counted in its fate_clients (a rupture in the month whose fate is known:
-- repaired, or unrepaired because the window passed or the episode ended), by the same rules
-- as queries/rupture_rates.sql. Run only when a month is withheld.
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
--   $rupture_threshold: double, SRS drop (points) from the previous SRS that counts as a rupture
--   $repair_window: integer, SRS administrations after a rupture in which it can be repaired
-- Columns:
--   month: varchar, the month (YYYY-MM-DD, first day), as rupture_rates' unit
--   previous_clients: integer[], distinct client ids with an SRS that has a previous SRS
--   fate_clients: integer[], distinct client ids with a rupture whose fate is known (may be [])
with
previous as (
    select month, client_id
    from srs_months_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    group by month, client_id
    having bool_or(n_srs_prev > 0)
),
fates as (
    select
        month,
        client_id,
        round(
            greatest(
                next_srs_1,
                case when $repair_window >= 2 then next_srs_2 end,
                case when $repair_window >= 3 then next_srs_3 end,
                case when $repair_window >= 4 then next_srs_4 end,
                case when $repair_window >= 5 then next_srs_5 end,
                case when $repair_window >= 6 then next_srs_6 end
            ) - prev_srs,
            4
        ) >= 0
        or end_reason is not null
        or (case $repair_window
            when 1 then next_srs_1
            when 2 then next_srs_2
            when 3 then next_srs_3
            when 4 then next_srs_4
            when 5 then next_srs_5
            else next_srs_6
        end) is not null as known
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where srs is not null
      and round(prev_srs - srs, 4) >= $rupture_threshold
),
fate_clients as (
    select month, client_id
    from fates
    where known
    group by month, client_id
),
per_month as (
    select
        coalesce(p.month, f.month) as month,
        coalesce(p.ids, []::integer[]) as previous_clients,
        coalesce(f.ids, []::integer[]) as fate_clients
    from (
        select month, list(client_id order by client_id) as ids from previous group by month
    ) as p
    full join (
        select month, list(client_id order by client_id) as ids from fate_clients group by month
    ) as f
      on p.month = f.month
)
select strftime(month, '%Y-%m-%d') as month, previous_clients, fate_clients
from per_month
order by month;
