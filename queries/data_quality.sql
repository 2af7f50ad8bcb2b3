-- Data quality of the sessions in view (metrics.md "Data quality"): share of sessions with an
-- alliance score, with an outcome score, SRS at its ceiling, episodes lacking demographics, and
-- measures out of sequence (sessions whose source session number is not above every earlier
-- session's number in the same episode; episodes whose first outcome score is not at their
-- first session). One row per check.
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
-- Columns:
--   check_key: varchar, alliance | outcome | srs_ceiling | no_demographics | numbered_out_of_order | late_first_outcome
--   numerator: integer, sessions or episodes with the property
--   denominator: integer, sessions or episodes it is a share of
--   share: double, numerator / denominator (0-1)
--   n_clients: integer, distinct clients of the numerator
--   complement_clients: integer, distinct clients of the denominator without the property
--   cohort_clients: integer, distinct clients of the denominator
with
s as (
    select *
    from sessions_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
numbered as (
    select
        s.episode_id,
        s.client_id,
        s.session_index,
        b.session_number
    from s
    join sessions as b using (session_id)
    where b.session_number is not null
),
sequence as (
    select
        *,
        max(session_number) over (
            partition by episode_id
            order by session_index
            rows between unbounded preceding and 1 preceding
        ) as earlier_max
    from numbered
),
episodes as (
    select
        episode_id,
        any_value(client_id) as client_id,
        any_value(age_band) as age_band,
        any_value(gender) as gender,
        any_value(race_ethnicity) as race_ethnicity,
        min(session_index) as first_index,
        min(session_index) filter (
            where ors is not null or phq9 is not null or gad7 is not null
        ) as first_outcome_index
    from s
    group by episode_id
),
checks as (
    select
        'alliance' as check_key,
        count(*) filter (where srs is not null or wai is not null) as numerator,
        count(*) as denominator,
        count(distinct client_id) filter (where srs is not null or wai is not null) as n_clients,
        count(distinct client_id) filter (where srs is null and wai is null)
            as complement_clients,
        count(distinct client_id) as cohort_clients
    from s
    union all
    select
        'outcome',
        count(*) filter (where ors is not null or phq9 is not null or gad7 is not null),
        count(*),
        count(distinct client_id) filter (
            where ors is not null or phq9 is not null or gad7 is not null
        ),
        count(distinct client_id) filter (where ors is null and phq9 is null and gad7 is null),
        count(distinct client_id)
    from s
    union all
    select
        'srs_ceiling',
        count(*) filter (where srs = 40),
        count(srs),
        count(distinct client_id) filter (where srs = 40),
        count(distinct client_id) filter (where srs < 40),
        count(distinct client_id) filter (where srs is not null)
    from s
    union all
    select
        'no_demographics',
        count(*) filter (
            where age_band = 'unknown' or gender = 'unknown' or race_ethnicity = 'unknown'
        ),
        count(*),
        count(distinct client_id) filter (
            where age_band = 'unknown' or gender = 'unknown' or race_ethnicity = 'unknown'
        ),
        count(distinct client_id) filter (
            where age_band <> 'unknown' and gender <> 'unknown' and race_ethnicity <> 'unknown'
        ),
        count(distinct client_id)
    from episodes
    union all
    select
        'numbered_out_of_order',
        count(*) filter (where session_number <= earlier_max),
        count(*),
        count(distinct client_id) filter (where session_number <= earlier_max),
        count(distinct client_id) filter (
            where earlier_max is null or session_number > earlier_max
        ),
        count(distinct client_id)
    from sequence
    union all
    select
        'late_first_outcome',
        count(*) filter (where first_outcome_index > first_index),
        count(first_outcome_index),
        count(distinct client_id) filter (where first_outcome_index > first_index),
        count(distinct client_id) filter (where first_outcome_index = first_index),
        count(distinct client_id) filter (where first_outcome_index is not null)
    from episodes
),
final as (
    select
        check_key,
        numerator::integer as numerator,
        denominator::integer as denominator,
        numerator / nullif(denominator, 0) as share,
        n_clients::integer as n_clients,
        complement_clients::integer as complement_clients,
        cohort_clients::integer as cohort_clients
    from checks
)
select * from final
order by list_position(
    ['alliance', 'outcome', 'srs_ceiling', 'no_demographics', 'numbered_out_of_order',
     'late_first_outcome'],
    check_key
);
