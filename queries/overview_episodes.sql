-- Ended-episode headline figures ("finished in period"): ended episodes, dropouts, and for the
-- chosen outcome measure the reliable improvement, deterioration and recovery counts, plus the
-- alliance-outcome correlation ingredients (early SRS vs improvement).
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
--   ended: integer, ended episodes finished in the period
--   n_clients: integer, distinct clients of those episodes
--   dropouts: integer, ended episodes with end_reason dropout
--   dropout_rate: double, dropouts / ended (0-1)
--   ended_cellkey: integer, cell key of ended (sum of its records' keys; alliance/noise.py)
--   dropouts_cellkey: integer, cell key of dropouts (sum of its records' keys; alliance/noise.py)
--   outcome_n: integer, ended episodes with >= 2 administrations of the measure
--   outcome_clients: integer, distinct clients of those
--   reliable_improvement: integer, improvement >= reliable change
--   reliable_deterioration: integer, improvement <= -reliable change
--   clinical_n: integer, of outcome_n, in the clinical range at the first administration
--   recovered: integer, of clinical_n, out of the clinical range at the last administration
--   reliably_recovered: integer, recovered and reliably improved
--   r_n: integer, episodes with both early SRS and improvement
--   r: double, Pearson r between early SRS and improvement
--   outcome_n_cellkey: integer, cell key of outcome_n (sum of its records' keys; alliance/noise.py)
--   reliable_improvement_cellkey: integer, cell key of reliable_improvement (sum of its records' keys; alliance/noise.py)
--   reliable_deterioration_cellkey: integer, cell key of reliable_deterioration (sum of its records' keys; alliance/noise.py)
--   clinical_n_cellkey: integer, cell key of clinical_n (sum of its records' keys; alliance/noise.py)
--   recovered_cellkey: integer, cell key of recovered (sum of its records' keys; alliance/noise.py)
--   reliably_recovered_cellkey: integer, cell key of reliably_recovered (sum of its records' keys; alliance/noise.py)
--   r_n_cellkey: integer, cell key of r_n (sum of its records' keys; alliance/noise.py)
with
ended as (
    select *
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
outcomes as (
    select
        *,
        case when $higher_is_better then first_score < $clinical_cutoff
             else first_score >= $clinical_cutoff end as clinical_at_start,
        case when $higher_is_better then last_score < $clinical_cutoff
             else last_score >= $clinical_cutoff end as clinical_at_end
    from outcomes_in_view(
        $measure, $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where n_admin >= 2
),
ended_stats as (
    select
        count(*) as ended,
        count(distinct client_id) as n_clients,
        count(*) filter (where dropout) as dropouts,
        count(*) filter (where dropout) / nullif(count(*), 0) as dropout_rate,
        coalesce(sum(ekey), 0)::bigint as ended_cellkey,
        coalesce(sum(ekey) filter (where dropout), 0)::bigint as dropouts_cellkey
    from ended
),
outcome_stats as (
    select
        count(*) as outcome_n,
        count(distinct client_id) as outcome_clients,
        count(*) filter (where improvement >= $reliable_change) as reliable_improvement,
        count(*) filter (where improvement <= -$reliable_change) as reliable_deterioration,
        count(*) filter (where clinical_at_start) as clinical_n,
        count(*) filter (where clinical_at_start and not clinical_at_end) as recovered,
        count(*) filter (
            where clinical_at_start and not clinical_at_end and improvement >= $reliable_change
        ) as reliably_recovered,
        count(*) filter (where early_srs is not null) as r_n,
        corr(early_srs, improvement) as r,
        coalesce(sum(ekey), 0)::bigint as outcome_n_cellkey,
        coalesce(sum(ekey) filter (where improvement >= $reliable_change), 0)::bigint
            as reliable_improvement_cellkey,
        coalesce(sum(ekey) filter (where improvement <= -$reliable_change), 0)::bigint
            as reliable_deterioration_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start), 0)::bigint as clinical_n_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start and not clinical_at_end), 0)::bigint
            as recovered_cellkey,
        coalesce(sum(ekey) filter (
            where clinical_at_start and not clinical_at_end and improvement >= $reliable_change
        ), 0)::bigint as reliably_recovered_cellkey,
        coalesce(sum(ekey) filter (where early_srs is not null), 0)::bigint as r_n_cellkey
    from outcomes
),
final as (
    select * from ended_stats cross join outcome_stats
)
select * from final;
