-- When clients leave: ended episodes finished in the period with a dropout or a planned ending,
-- by the session number of their last session (= attended sessions in the episode, counting
-- those before the period), as a share of all endings of the same kind. Each session number
-- below $last_number has a bin; that one and later are pooled (e.g. '13+').
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
--   $last_number: integer, session numbers from this one on are pooled
-- Columns:
--   ending: varchar, 'dropout' or 'planned'
--   bin_order: integer, 1 .. last_number, the bin's position on the axis
--   last_session: varchar, session number of the last session ('1', '2', ..., e.g. '13+')
--   n_clients: integer, distinct clients of the episodes
--   episodes: integer, episodes of that ending whose last session is in the bin
--   share: double, episodes / all episodes of that ending (0-1)
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
with
e as (
    select
        client_id,
        ekey,
        end_reason as ending,
        n_sessions
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where end_reason in ('dropout', 'planned')
),
binned as (
    select
        client_id,
        ekey,
        ending,
        least(n_sessions, $last_number) as bin_order
    from e
),
final as (
    select
        ending,
        bin_order::integer as bin_order,
        case when bin_order = $last_number then bin_order::varchar || '+'
             else bin_order::varchar end as last_session,
        count(distinct client_id) as n_clients,
        count(*) as episodes,
        count(*) / sum(count(*)) over (partition by ending) as share,
        sum(ekey)::bigint as episodes_cellkey
    from binned
    group by ending, bin_order
)
select * from final
order by ending, bin_order;
