-- Derived facts, rebuilt from the base tables after every import or demo build.
-- They follow ../shared/metrics.md exactly; cutoffs that are settings (SRS cutoff, reliable
-- change, clinical range, rupture threshold) are NOT baked in here: queries take them as
-- parameters, so a clinic can change a setting without rebuilding.

-- One row per attended session, with its episode's attributes denormalized for fast filtering.
create or replace table session_facts as
with
sessions_in as (
    select * from sessions
),
episodes_in as (
    select
        e.episode_id,
        e.client_id,
        e.age_band,
        e.gender,
        e.race_ethnicity,
        e.end_reason,
        p.name as program,
        -- record keys of the cell-key perturbation (alliance/noise.py): the first 24 bits of
        -- an MD5 of the keyed pseudonym, fixed for as long as the pseudonyms are
        ('0x' || left(md5('cell-key:' || c.pseudonym), 6))::integer as ckey,
        ('0x' || left(md5('cell-key:' || e.pseudonym), 6))::integer as ekey
    from episodes as e
    join clients as c using (client_id)
    left join programs as p using (program_id)
),
ordered as (
    select
        s.*,
        row_number() over (
            partition by s.episode_id
            order by s.session_date, s.session_number nulls last, s.session_id
        ) as session_index
    from sessions_in as s
),
scored as (
    select
        o.*,
        -- SRS total: as given, else the sum of its four items (0-40)
        -- rounded to one decimal so sums of items compare exactly (no 33.49999...)
        round(coalesce(
            o.srs_total::double,
            o.srs_relationship::double + o.srs_goals + o.srs_approach + o.srs_overall
        ), 1) as srs,
        -- WAI-SR mean item score (1-5): items, else subscale sums
        coalesce(
            (o.wai_1 + o.wai_2 + o.wai_3 + o.wai_4 + o.wai_5 + o.wai_6
             + o.wai_7 + o.wai_8 + o.wai_9 + o.wai_10 + o.wai_11 + o.wai_12) / 12.0,
            (o.wai_task + o.wai_bond + o.wai_goal) / 12.0
        ) as wai,
        coalesce((o.wai_1 + o.wai_2 + o.wai_10 + o.wai_12) / 4.0, o.wai_task / 4.0) as wai_task_mean,
        coalesce((o.wai_3 + o.wai_5 + o.wai_7 + o.wai_9) / 4.0, o.wai_bond / 4.0) as wai_bond_mean,
        coalesce((o.wai_4 + o.wai_6 + o.wai_8 + o.wai_11) / 4.0, o.wai_goal / 4.0) as wai_goal_mean,
        round(coalesce(
            o.ors_total::double,
            o.ors_individual::double + o.ors_interpersonal + o.ors_social + o.ors_overall
        ), 1) as ors
    from ordered as o
),
final as (
    select
        s.session_id,
        s.episode_id,
        e.client_id,
        e.ckey,
        e.ekey,
        s.session_date,
        date_trunc('month', s.session_date)::date as month,
        s.session_index::smallint as session_index,
        st.name as site,
        e.program,
        t.code as therapist,
        e.age_band,
        e.gender,
        e.race_ethnicity,
        e.end_reason,
        s.srs,
        s.srs_relationship::double as srs_relationship,
        s.srs_goals::double as srs_goals,
        s.srs_approach::double as srs_approach,
        s.srs_overall::double as srs_overall,
        -- previous SRS administration of the same episode (for ruptures)
        lag(s.srs) over (
            partition by s.episode_id, s.srs is null order by s.session_index
        ) as prev_srs,
        s.wai,
        s.wai_task_mean,
        s.wai_bond_mean,
        s.wai_goal_mean,
        s.ors,
        s.phq9_total::double as phq9,
        s.gad7_total::double as gad7,
        -- for ruptures and repair (settings rupture_threshold, repair_window <= 6): the next
        -- six SRS totals of the same episode (null where the episode has fewer), and the items
        -- of the previous SRS administration; over all sessions of the episode, whatever site
        lead(s.srs, 1) over srs_order as next_srs_1,
        lead(s.srs, 2) over srs_order as next_srs_2,
        lead(s.srs, 3) over srs_order as next_srs_3,
        lead(s.srs, 4) over srs_order as next_srs_4,
        lead(s.srs, 5) over srs_order as next_srs_5,
        lead(s.srs, 6) over srs_order as next_srs_6,
        lag(s.srs_relationship::double) over srs_order as prev_srs_relationship,
        lag(s.srs_goals::double) over srs_order as prev_srs_goals,
        lag(s.srs_approach::double) over srs_order as prev_srs_approach,
        lag(s.srs_overall::double) over srs_order as prev_srs_overall
    from scored as s
    join episodes_in as e using (episode_id)
    join sites as st using (site_id)
    join therapists as t using (therapist_id)
    window srs_order as (partition by s.episode_id, s.srs is null order by s.session_index)
)
select * from final
order by session_date;

-- One row per episode of care: dates, end, early alliance and first/last of each outcome.
create or replace table episode_facts as
with
s as (
    select * from session_facts
),
srs_ranked as (
    select
        episode_id,
        srs,
        row_number() over (partition by episode_id order by session_index) as srs_rank
    from s
    where srs is not null
),
early_srs as (
    -- mean SRS of the first three sessions that have an SRS (fewer if fewer)
    select episode_id, avg(srs) as early_srs, count(*) as early_srs_n
    from srs_ranked
    where srs_rank <= 3
    group by episode_id
),
wai_ranked as (
    select
        episode_id,
        wai,
        row_number() over (partition by episode_id order by session_index) as wai_rank
    from s
    where wai is not null
),
early_wai as (
    select episode_id, avg(wai) as early_wai
    from wai_ranked
    where wai_rank <= 3
    group by episode_id
),
therapist_sessions as (
    select episode_id, therapist, count(*) as n, min(session_index) as first_index
    from s
    group by episode_id, therapist
),
episode_therapist as (
    -- the episode's therapist: the one who held most of its sessions; on a tie, the one who
    -- held the earliest of them (deterministic, unlike mode(), whose ties DuckDB leaves open)
    select episode_id, first(therapist order by n desc, first_index) as therapist
    from therapist_sessions
    group by episode_id
),
per_episode as (
    select
        episode_id,
        any_value(client_id) as client_id,
        any_value(ckey) as ckey,
        any_value(ekey) as ekey,
        arg_min(site, session_index) as site,
        any_value(program) as program,
        any_value(age_band) as age_band,
        any_value(gender) as gender,
        any_value(race_ethnicity) as race_ethnicity,
        any_value(end_reason) as end_reason,
        min(session_date) as start_date,
        max(session_date) as end_date,
        count(*)::integer as n_sessions,
        count(srs)::integer as n_srs,
        -- one therapist / one site over the whole episode: its figures per therapist (site)
        -- are then its figures overall, which lets rollup queries skip a grouping
        count(distinct therapist) = 1 as single_therapist,
        count(distinct site) = 1 as single_site,
        -- the largest drop of an SRS total from the episode's previous SRS (points; the
        -- threshold is a setting, compared in the queries)
        max(round(prev_srs - srs, 1)) as max_srs_drop,
        arg_min(ors, session_index) filter (where ors is not null) as ors_first,
        arg_max(ors, session_index) filter (where ors is not null) as ors_last,
        count(ors)::integer as ors_n,
        arg_min(phq9, session_index) filter (where phq9 is not null) as phq9_first,
        arg_max(phq9, session_index) filter (where phq9 is not null) as phq9_last,
        count(phq9)::integer as phq9_n,
        arg_min(gad7, session_index) filter (where gad7 is not null) as gad7_first,
        arg_max(gad7, session_index) filter (where gad7 is not null) as gad7_last,
        count(gad7)::integer as gad7_n
    from s
    group by episode_id
),
final as (
    select
        p.episode_id,
        p.client_id,
        et.therapist,
        p.* exclude (episode_id, client_id),
        date_trunc('month', p.end_date)::date as end_month,
        p.end_reason is not null as ended,
        p.end_reason = 'dropout' as dropout,
        -- the client has more than one episode in the database: elsewhere, each episode row of
        -- a unit is a distinct client, so distinct clients = rows + distinct clients of these
        count(*) over (partition by p.client_id) > 1 as multi_episode_client,
        es.early_srs,
        ew.early_wai
    from per_episode as p
    join episode_therapist as et using (episode_id)
    left join early_srs as es using (episode_id)
    left join early_wai as ew using (episode_id)
)
select * from final
order by end_date;

-- One row per (ended or open) episode and outcome measure, improvement oriented so that
-- positive = better for every measure (ORS last - first; PHQ-9 and GAD-7 first - last).
create or replace table episode_outcomes as
with
e as (
    select * from episode_facts
),
long as (
    -- rounded: scores have one decimal, and 8.2 - 3.2 must be 5.0 (not 4.9999...) so that
    -- reliable change (>= 5) is decided exactly
    select episode_id, 'ors' as measure, ors_first as first_score, ors_last as last_score,
           ors_n as n_admin, round(ors_last - ors_first, 1) as improvement
    from e where ors_n > 0
    union all
    select episode_id, 'phq9', phq9_first, phq9_last, phq9_n, phq9_first - phq9_last
    from e where phq9_n > 0
    union all
    select episode_id, 'gad7', gad7_first, gad7_last, gad7_n, gad7_first - gad7_last
    from e where gad7_n > 0
),
final as (
    select
        l.measure,
        e.*,
        l.first_score,
        l.last_score,
        l.n_admin,
        l.improvement
    from long as l
    join e using (episode_id)
)
select * from final
order by measure, end_date;

-- Rollup for the alliance-profile page: per episode, therapist, site and calendar month, the
-- count and sum of each recorded SRS item and WAI-SR subscale mean. The dashboard's periods are
-- whole calendar months, so a period filter on `month` selects exactly the sessions a filter on
-- session_date would, and every figure computed from these cells equals the one computed from
-- the sessions (tests/test_rollups.py compares them). Sums are exact: SRS items are stored as
-- integer tenths, WAI-SR subscale means are multiples of 1/4 (exact in binary floating point).
create or replace table episode_month_items as
with
s as (
    select * from session_facts
    where coalesce(
        srs_relationship, srs_goals, srs_approach, srs_overall,
        wai_bond_mean, wai_goal_mean, wai_task_mean
    ) is not null
),
e as (
    select episode_id, multi_episode_client, single_therapist, single_site
    from episode_facts
),
final as (
    select
        month,
        episode_id,
        therapist,
        site,
        any_value(client_id) as client_id,
        any_value(program) as program,
        any_value(age_band) as age_band,
        any_value(gender) as gender,
        any_value(race_ethnicity) as race_ethnicity,
        any_value(e.multi_episode_client) as multi_episode_client,
        any_value(e.single_therapist) as single_therapist,
        any_value(e.single_site) as single_site,
        count(srs_relationship)::integer as n_srs_heard,
        sum(round(srs_relationship * 10)::integer)::bigint as s10_srs_heard,
        count(srs_goals)::integer as n_srs_goals,
        sum(round(srs_goals * 10)::integer)::bigint as s10_srs_goals,
        count(srs_approach)::integer as n_srs_approach,
        sum(round(srs_approach * 10)::integer)::bigint as s10_srs_approach,
        count(srs_overall)::integer as n_srs_overall,
        sum(round(srs_overall * 10)::integer)::bigint as s10_srs_overall,
        count(wai_bond_mean)::integer as n_wai_heard,
        sum(wai_bond_mean) as s_wai_heard,
        count(wai_goal_mean)::integer as n_wai_goals,
        sum(wai_goal_mean) as s_wai_goals,
        count(wai_task_mean)::integer as n_wai_approach,
        sum(wai_task_mean) as s_wai_approach,
        -- record keys of the client and the episode (alliance/noise.py, cell keys)
        any_value(ckey) as ckey,
        any_value(ekey) as ekey
    from s
    join e using (episode_id)
    group by month, episode_id, therapist, site
)
select
    *,
    -- the first and last month of the episode's item cells: the episode lies wholly inside a
    -- period when both do (the profile then reads its whole-life sums from episode_items)
    min(month) over (partition by episode_id) as first_month,
    max(month) over (partition by episode_id) as last_month
from final
order by month;

-- The whole-life item sums of each episode seen by one therapist at one site (most episodes):
-- its cells above summed over all months. For a period that contains all of such an episode's
-- months, its per-period means are these (every cell passes the filters or none does: program,
-- demographics, therapist and site are the same in all of them), so the profile reads one row
-- here instead of grouping its monthly cells again (tests/test_rollups.py compares the results
-- with the session-level computation).
create or replace table episode_items as
select
    episode_id,
    any_value(client_id) as client_id,
    any_value(therapist) as therapist,
    any_value(site) as site,
    any_value(program) as program,
    any_value(age_band) as age_band,
    any_value(gender) as gender,
    any_value(race_ethnicity) as race_ethnicity,
    any_value(multi_episode_client) as multi_episode_client,
    min(month) as first_month,
    max(month) as last_month,
    sum(n_srs_heard)::integer as n_srs_heard,
    sum(s10_srs_heard)::bigint as s10_srs_heard,
    sum(n_srs_goals)::integer as n_srs_goals,
    sum(s10_srs_goals)::bigint as s10_srs_goals,
    sum(n_srs_approach)::integer as n_srs_approach,
    sum(s10_srs_approach)::bigint as s10_srs_approach,
    sum(n_srs_overall)::integer as n_srs_overall,
    sum(s10_srs_overall)::bigint as s10_srs_overall,
    sum(n_wai_heard)::integer as n_wai_heard,
    sum(s_wai_heard) as s_wai_heard,
    sum(n_wai_goals)::integer as n_wai_goals,
    sum(s_wai_goals) as s_wai_goals,
    sum(n_wai_approach)::integer as n_wai_approach,
    sum(s_wai_approach) as s_wai_approach,
    any_value(ckey) as ckey,
    any_value(ekey) as ekey
from episode_month_items
where single_therapist and single_site
group by episode_id
order by last_month;

-- Rollup for the ruptures page: per calendar month, site, therapist and client (and the
-- episode's program and demographics, the filters) the SRS administrations and those with a
-- previous SRS in the episode. These counts do not depend on the rupture settings, so the page
-- reads them here and takes only the ruptures themselves from the sessions
-- (tests/test_shortcuts.py compares rupture_rates with its version that counts everything from
-- the sessions).
create or replace table srs_month_cells as
select
    month,
    site,
    therapist,
    client_id,
    program,
    age_band,
    gender,
    race_ethnicity,
    count(*)::integer as n_srs,
    count(prev_srs)::integer as n_srs_prev,
    -- the client's record key (alliance/noise.py): a cell key is sum(ckey * n_srs)
    any_value(ckey) as ckey
from session_facts
where srs is not null
group by month, site, therapist, client_id, program, age_band, gender, race_ethnicity
order by month;

-- The sessions of ended episodes, ordered by the episode's end date: the views that follow
-- episodes finished in the period through all of their sessions (outcome trajectories, what
-- followed ruptures) read only those episodes' sessions from here instead of every session
-- before the period's end. Columns as in session_facts (tests/test_shortcuts.py compares the
-- queries with their versions that read session_facts).
create or replace table ended_sessions as
with
e as (
    select episode_id, end_date
    from episode_facts
    where ended
),
s as (
    select
        episode_id,
        site,
        session_index,
        srs,
        prev_srs,
        next_srs_1,
        next_srs_2,
        next_srs_3,
        next_srs_4,
        next_srs_5,
        next_srs_6,
        ors,
        phq9,
        gad7
    from session_facts
),
final as (
    select e.end_date, s.*
    from e
    join s using (episode_id)
)
select * from final
order by end_date;
