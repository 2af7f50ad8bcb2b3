-- What followed alliance drops: ended episodes finished in the period that have at least two SRS
-- administrations (so a drop was possible), split by whether any SRS of the episode was at least
-- $rupture_threshold points below the episode's previous SRS, with their dropouts.
-- Every session of the episode counts, also those dated before the period and those with another
-- therapist or at another site: the episode filters (site, therapist, ...) choose the episodes,
-- and only the role's site restriction applies to their sessions.
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
--   $rupture_threshold: double, a drop of at least this many SRS points counts
-- Columns:
--   had_drop: boolean, the episode had at least one drop
--   n_clients: integer, distinct clients of those episodes
--   episodes: integer, ended episodes with >= 2 SRS administrations
--   dropouts: integer, of those, ended by dropout
--   dropout_rate: double, dropouts / episodes (0-1)
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
--   dropouts_cellkey: integer, cell key of dropouts (alliance/noise.py)
with
ended as (
    select
        episode_id,
        client_id,
        ekey,
        dropout,
        max_srs_drop
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_srs >= 2
),
drops_all_sites as (
    -- without a site restriction every session of the episode counts: its largest drop is
    -- precomputed (derive.sql, episode_facts.max_srs_drop; ended episodes lie before $date_to)
    select
        episode_id,
        coalesce(max_srs_drop >= $rupture_threshold, false) as had_drop
    from ended
    where $allowed_sites is null
),
restricted as (
    -- with a role's site restriction only the sessions at its sites count (empty otherwise,
    -- and then the sessions are not read at all)
    select episode_id
    from ended
    where $allowed_sites is not null
),
episode_sessions as (
    -- all sessions up to the end of the period, only the role's site restriction applied
    select
        episode_id,
        srs,
        prev_srs
    from sessions_in_view(
        date '0001-01-01', $date_to, null, null, null, null, null, null, $allowed_sites
    )
    semi join restricted using (episode_id)
    where srs is not null
      and prev_srs is not null
),
drops as (
    select
        episode_id,
        bool_or(round(prev_srs - srs, 1) >= $rupture_threshold) as had_drop
    from episode_sessions
    group by episode_id
    union all
    select episode_id, had_drop
    from drops_all_sites
),
final as (
    select
        coalesce(d.had_drop, false) as had_drop,
        count(distinct e.client_id) as n_clients,
        count(*) as episodes,
        count(*) filter (where e.dropout) as dropouts,
        count(*) filter (where e.dropout) / count(*) as dropout_rate,
        sum(e.ekey)::bigint as episodes_cellkey,
        coalesce(sum(e.ekey) filter (where e.dropout), 0)::bigint as dropouts_cellkey
    from ended as e
    left join drops as d using (episode_id)
    group by all
)
select * from final
order by had_drop;
