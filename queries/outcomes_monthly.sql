-- Outcome rates by calendar month of the episode end date (last session): for one measure,
-- ended episodes with >= 2 administrations, how many improved or deteriorated reliably, and of
-- those starting in the clinical range how many recovered (and reliably recovered).
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
--   $measure: varchar, outcome measure (ors, phq9, gad7)
--   $reliable_change: double, points of improvement that count as reliable
--   $clinical_cutoff: double, clinical-range boundary of the measure
--   $higher_is_better: boolean, direction of the measure
-- Columns:
--   month: date, calendar month of the episode end date
--   n_clients: integer, distinct clients of the month's outcome episodes
--   outcome_n: integer, ended episodes with >= 2 administrations
--   reliable_improvement: integer, of outcome_n, improvement >= reliable change
--   reliable_deterioration: integer, of outcome_n, improvement <= -reliable change
--   clinical_clients: integer, distinct clients of the clinical_n episodes
--   clinical_n: integer, of outcome_n, in the clinical range at the first administration
--   recovered: integer, of clinical_n, out of the clinical range at the last administration
--   reliably_recovered: integer, of clinical_n, recovered and reliably improved
--   outcome_n_cellkey: integer, cell key of outcome_n (alliance/noise.py)
--   reliable_improvement_cellkey: integer, cell key of reliable_improvement (alliance/noise.py)
--   reliable_deterioration_cellkey: integer, cell key of reliable_deterioration (alliance/noise.py)
--   clinical_n_cellkey: integer, cell key of clinical_n (alliance/noise.py)
--   recovered_cellkey: integer, cell key of recovered (alliance/noise.py)
--   reliably_recovered_cellkey: integer, cell key of reliably_recovered (alliance/noise.py)
with
outcomes as (
    select
        end_month,
        client_id,
        ekey,
        round(first_score, 6) as first_score,
        round(last_score, 6) as last_score,
        round(improvement, 6) as improvement
    from outcomes_in_view(
        $measure, $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_admin >= 2
),
classified as (
    select
        *,
        improvement >= $reliable_change as reliably_improved,
        improvement <= -$reliable_change as reliably_deteriorated,
        case
            when $higher_is_better then first_score < $clinical_cutoff
            else first_score >= $clinical_cutoff
        end as clinical_at_start,
        case
            when $higher_is_better then last_score < $clinical_cutoff
            else last_score >= $clinical_cutoff
        end as clinical_at_end
    from outcomes
),
final as (
    select
        end_month as month,
        count(distinct client_id) as n_clients,
        count(*) as outcome_n,
        count(*) filter (where reliably_improved) as reliable_improvement,
        count(*) filter (where reliably_deteriorated) as reliable_deterioration,
        count(distinct client_id) filter (where clinical_at_start) as clinical_clients,
        count(*) filter (where clinical_at_start) as clinical_n,
        count(*) filter (where clinical_at_start and not clinical_at_end) as recovered,
        count(*) filter (
            where clinical_at_start and not clinical_at_end and reliably_improved
        ) as reliably_recovered,
        coalesce(sum(ekey), 0)::bigint as outcome_n_cellkey,
        coalesce(sum(ekey) filter (where reliably_improved), 0)::bigint as reliable_improvement_cellkey,
        coalesce(sum(ekey) filter (where reliably_deteriorated), 0)::bigint as reliable_deterioration_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start), 0)::bigint as clinical_n_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start and not clinical_at_end), 0)::bigint as recovered_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start and not clinical_at_end and reliably_improved), 0)::bigint as reliably_recovered_cellkey
    from classified
    group by end_month
)
select * from final
order by month;
