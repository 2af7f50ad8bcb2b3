-- Mean score by session number for ended episodes finished in the period with >= 2
-- administrations of the measure, split into early-alliance terciles (cut points: the 1/3 and
-- 2/3 quantiles of early SRS over those episodes; a value equal to a cut point goes to the lower
-- tercile). Every earlier session of those episodes counts, even before the period; session
-- numbers from $max_session on are pooled (each episode's mean over them counts once). The
-- site and therapist filters apply to the episode (its first site, its main therapist), the
-- role's site restriction to every session. The exact cut points (quantile_disc: some
-- client's early SRS) decide membership and are never returned; the labels get the
-- interpolated quantiles (quantile_cont) rounded to whole SRS points, so that no label carries
-- one client's value (alliance/privacy.py, cut_point_labels).
--
-- Parameters:
--   $date_from: date, first day included (episode end date)
--   $date_to: date, first day excluded
--   $site: varchar or null, site filter (episode's first site)
--   $program: varchar or null, program filter
--   $therapist: varchar or null, therapist code filter (the episode's main therapist)
--   $age_band: varchar or null, age band filter
--   $gender: varchar or null, gender filter
--   $race: varchar or null, race/ethnicity filter
--   $allowed_sites: varchar[] or null, sites the signed-in role may see
--   $measure: varchar, outcome measure (ors, phq9, gad7)
--   $max_session: integer, session numbers at or above this are pooled ("12+")
-- Columns:
--   tercile: integer, 1 = lowest third of early SRS, 3 = highest
--   label_low: double, whole SRS points, the 1/3 quantile (interpolated and rounded: for the
--     labels only)
--   label_high: double, whole SRS points, the 2/3 quantile (likewise)
--   tercile_clients: integer, distinct clients of the tercile's episodes (every session number)
--   session_number: integer, session number within the episode (max_session = that and later)
--   n_clients: integer, distinct clients in the cell
--   episodes: integer, episodes with a score at that session number
--   mean_score: double, points, mean score of the measure (raw direction of the measure)
--   sd_score: double, points, SD of the score (n - 1)
--   episodes_cellkey: integer, cell key of episodes (alliance/noise.py)
with
episodes as (
    select
        episode_id,
        client_id,
        ekey,
        multi_episode_client as multi,
        early_srs
    from outcomes_in_view(
        $measure, $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_admin >= 2
      and early_srs is not null
),
cuts as (
    select
        quantile_disc(early_srs, [1 / 3, 2 / 3]) as q,
        list_transform(quantile_cont(early_srs, [1 / 3, 2 / 3]), lambda x: round(x)) as shown
    from episodes
),
banded as (
    select
        e.episode_id,
        e.client_id,
        e.ekey,
        e.multi,
        c.shown[1] as label_low,
        c.shown[2] as label_high,
        case
            when e.early_srs <= c.q[1] then 1
            when e.early_srs <= c.q[2] then 2
            else 3
        end as tercile
    from episodes as e
    cross join cuts as c
),
sessions as not materialized (
    -- all outcome administrations of those episodes, however early they began, with the
    -- episode's tercile and client, from the sessions of ended episodes ordered by end date
    -- (derive.sql, ended_sessions: only the period's episodes are read). Their sessions all lie
    -- before the period's end and carry the episode's program and demographics, so of the
    -- filters only the role's site restriction applies to them. Read twice below, never copied.
    select
        b.tercile,
        b.label_low,
        b.label_high,
        b.client_id,
        b.ekey,
        b.multi,
        s.episode_id,
        least(s.session_index, $max_session) as session_number,
        case $measure
            when 'ors' then s.ors
            when 'phq9' then s.phq9
            when 'gad7' then s.gad7
        end as score
    from ended_sessions as s
    join banded as b using (episode_id)
    where s.end_date >= $date_from
      and s.end_date < $date_to
      and ($allowed_sites is null or list_contains($allowed_sites, s.site))
),
per_episode as (
    -- each episode's mean score per session number: a session number below $max_session is one
    -- session (session_index numbers an episode's sessions 1, 2, ...: derive.sql), so only the
    -- pooled last number needs grouping by episode
    select
        tercile, session_number, episode_id, client_id, ekey, multi, label_low, label_high, score
    from sessions
    where score is not null
      and session_number < $max_session
    union all
    select
        tercile,
        session_number,
        episode_id,
        any_value(client_id) as client_id,
        any_value(ekey) as ekey,
        any_value(multi) as multi,
        any_value(label_low) as label_low,
        any_value(label_high) as label_high,
        avg(score) as score
    from sessions
    where score is not null
      and session_number = $max_session
    group by tercile, session_number, episode_id
),
per_unit as (
    select
        tercile,
        session_number,
        any_value(label_low) as label_low,
        any_value(label_high) as label_high,
        count(*) filter (where not multi) as single_clients,
        count(*) as episodes,
        avg(score) as mean_score,
        stddev_samp(score) as sd_score,
        coalesce(sum(ekey), 0)::bigint as episodes_cellkey
    from per_episode
    group by tercile, session_number
),
multi_clients as (
    select tercile, session_number, count(distinct client_id) as multi_clients
    from per_episode
    where multi
    group by tercile, session_number
),
tercile_clients as (
    select tercile, count(distinct client_id) as tercile_clients
    from banded
    group by tercile
),
final as (
    select
        tercile,
        label_low,
        label_high,
        tercile_clients,
        session_number::integer as session_number,
        single_clients + coalesce(multi_clients, 0) as n_clients,
        episodes,
        mean_score,
        sd_score,
        episodes_cellkey
    from per_unit
    left join multi_clients using (tercile, session_number)
    join tercile_clients using (tercile)
)
select * from final
order by tercile, session_number;
