-- Monthly dropout: ended episodes by calendar month of their end date (last session), with the
-- number that ended in dropout (client-unilateral ending).
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
-- Columns:
--   month: date, calendar month of the episode end date
--   n_clients: integer, distinct clients of the ended episodes
--   ended: integer, ended episodes
--   dropouts: integer, of those, ended by dropout
--   dropout_rate: double, dropouts / ended (0-1)
--   ended_cellkey: integer, cell key of ended (sum of its records' keys; alliance/noise.py)
--   dropouts_cellkey: integer, cell key of dropouts (sum of its records' keys; alliance/noise.py)
with
e as (
    select *
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
final as (
    select
        end_month as month,
        count(distinct client_id) as n_clients,
        count(*) as ended,
        count(*) filter (where dropout) as dropouts,
        count(*) filter (where dropout) / count(*) as dropout_rate,
        sum(ekey)::bigint as ended_cellkey,
        coalesce(sum(ekey) filter (where dropout), 0)::bigint as dropouts_cellkey
    from e
    group by end_month
)
select * from final
order by month;
