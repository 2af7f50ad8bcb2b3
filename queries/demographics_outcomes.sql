-- Outcomes by client group (age band, gender or race/ethnicity) for the chosen measure: ended
-- episodes finished in the period with >= 2 administrations, how many improved reliably, and of
-- those starting in the clinical range how many recovered, plus one clinic-wide row.
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
--   $dimension: varchar, grouping: 'age_band', 'gender' or 'race_ethnicity'
--   $measure: varchar, outcome measure (ors, phq9, gad7)
--   $reliable_change: double, points of improvement that count as reliable
--   $clinical_cutoff: double, clinical-range boundary of the measure
--   $higher_is_better: boolean, direction of the measure
-- Columns:
--   is_clinic: boolean, true for the one clinic-wide row (client_group null)
--   client_group: varchar, the group (value of the chosen dimension)
--   n_clients: integer, distinct clients of the episodes with >= 2 administrations
--   outcome_n: integer, ended episodes with >= 2 administrations
--   reliable_improvement: integer, of those, improvement >= reliable change
--   clinical_clients: integer, distinct clients of the episodes starting in the clinical range
--   clinical_n: integer, episodes starting in the clinical range
--   recovered: integer, of clinical_n, out of the clinical range at the last administration
--   outcome_n_cellkey: integer, cell key of outcome_n (alliance/noise.py)
--   reliable_improvement_cellkey: integer, cell key of reliable_improvement (alliance/noise.py)
--   clinical_n_cellkey: integer, cell key of clinical_n (alliance/noise.py)
--   recovered_cellkey: integer, cell key of recovered (alliance/noise.py)
with
outcomes as (
    select
        client_id,
        ekey,
        improvement,
        case when $higher_is_better then first_score < $clinical_cutoff
             else first_score >= $clinical_cutoff end as clinical_at_start,
        case when $higher_is_better then last_score < $clinical_cutoff
             else last_score >= $clinical_cutoff end as clinical_at_end,
        case $dimension
            when 'age_band' then age_band
            when 'gender' then gender
            when 'race_ethnicity' then race_ethnicity
        end as client_group
    from outcomes_in_view(
        $measure, $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_admin >= 2
),
final as (
    select
        grouping(client_group) = 1 as is_clinic,
        client_group,
        count(distinct client_id) as n_clients,
        count(*) as outcome_n,
        count(*) filter (where improvement >= $reliable_change) as reliable_improvement,
        count(distinct client_id) filter (where clinical_at_start) as clinical_clients,
        count(*) filter (where clinical_at_start) as clinical_n,
        count(*) filter (where clinical_at_start and not clinical_at_end) as recovered,
        coalesce(sum(ekey), 0)::bigint as outcome_n_cellkey,
        coalesce(sum(ekey) filter (where improvement >= $reliable_change), 0)::bigint as reliable_improvement_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start), 0)::bigint as clinical_n_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start and not clinical_at_end), 0)::bigint as recovered_cellkey
    from outcomes
    group by grouping sets ((client_group), ())
)
select * from final
order by is_clinic, client_group;
