-- Outcome headline figures for one measure over ended episodes finished in the period with at
-- least two administrations (metrics.md "Outcomes"): reliable improvement and deterioration,
-- recovery and reliable recovery counts, the pre-post effect size ingredients, and the
-- alliance-outcome correlation from sufficient statistics (DuckDB corr), so no rows leave the
-- database. Scores are rounded to 6 decimals before comparing with cutoffs, so an ORS change of
-- 8.2 - 3.2 (4.999999... in floating point) counts as the 5 points it is.
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
--   ended: integer, ended episodes finished in the period (any measure)
--   outcome_n: integer, of those, episodes with >= 2 administrations of the measure
--   n_clients: integer, distinct clients of the outcome_n episodes
--   reliable_improvement: integer, episodes with improvement >= reliable change
--   reliable_deterioration: integer, episodes with improvement <= -reliable change
--   clinical_n: integer, of outcome_n, in the clinical range at the first administration
--   clinical_clients: integer, distinct clients of the clinical_n episodes
--   recovered: integer, of clinical_n, out of the clinical range at the last administration
--   reliably_recovered: integer, of clinical_n, recovered and reliably improved
--   mean_improvement: double, points, mean improvement (positive = better)
--   sd_improvement: double, points, SD of improvement (n - 1)
--   sd_first: double, points, SD of the first administration (n - 1)
--   r_n: integer, episodes with both an early SRS and an improvement
--   r_clients: integer, distinct clients of the r_n episodes
--   r: double, Pearson r between early SRS and improvement (null when undefined)
--   ended_cellkey: integer, cell key of ended (alliance/noise.py)
--   outcome_n_cellkey: integer, cell key of outcome_n (alliance/noise.py)
--   reliable_improvement_cellkey: integer, cell key of reliable_improvement (alliance/noise.py)
--   reliable_deterioration_cellkey: integer, cell key of reliable_deterioration (alliance/noise.py)
--   clinical_n_cellkey: integer, cell key of clinical_n (alliance/noise.py)
--   recovered_cellkey: integer, cell key of recovered (alliance/noise.py)
--   reliably_recovered_cellkey: integer, cell key of reliably_recovered (alliance/noise.py)
--   r_n_cellkey: integer, cell key of r_n (alliance/noise.py)
with
ended as (
    select episode_id, ekey
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
),
outcomes as (
    select
        episode_id,
        client_id,
        ekey,
        early_srs,
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
ended_stats as (
    select
        count(*) as ended,
        coalesce(sum(ekey), 0)::bigint as ended_cellkey
    from ended
),
outcome_stats as (
    select
        count(*) as outcome_n,
        count(distinct client_id) as n_clients,
        count(*) filter (where reliably_improved) as reliable_improvement,
        count(*) filter (where reliably_deteriorated) as reliable_deterioration,
        count(*) filter (where clinical_at_start) as clinical_n,
        count(distinct client_id) filter (where clinical_at_start) as clinical_clients,
        count(*) filter (where clinical_at_start and not clinical_at_end) as recovered,
        count(*) filter (
            where clinical_at_start and not clinical_at_end and reliably_improved
        ) as reliably_recovered,
        avg(improvement) as mean_improvement,
        stddev_samp(improvement) as sd_improvement,
        stddev_samp(first_score) as sd_first,
        count(*) filter (where early_srs is not null) as r_n,
        count(distinct client_id) filter (where early_srs is not null) as r_clients,
        corr(early_srs, improvement) as r,
        coalesce(sum(ekey), 0)::bigint as outcome_n_cellkey,
        coalesce(sum(ekey) filter (where reliably_improved), 0)::bigint as reliable_improvement_cellkey,
        coalesce(sum(ekey) filter (where reliably_deteriorated), 0)::bigint as reliable_deterioration_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start), 0)::bigint as clinical_n_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start and not clinical_at_end), 0)::bigint as recovered_cellkey,
        coalesce(sum(ekey) filter (where clinical_at_start and not clinical_at_end and reliably_improved), 0)::bigint as reliably_recovered_cellkey,
        coalesce(sum(ekey) filter (where early_srs is not null), 0)::bigint as r_n_cellkey
    from classified
),
final as (
    select
        e.ended,
        o.outcome_n,
        o.n_clients,
        o.reliable_improvement,
        o.reliable_deterioration,
        o.clinical_n,
        o.clinical_clients,
        o.recovered,
        o.reliably_recovered,
        o.mean_improvement,
        o.sd_improvement,
        o.sd_first,
        o.r_n,
        o.r_clients,
        case when isfinite(o.r) then o.r end as r,
        e.ended_cellkey,
        o.outcome_n_cellkey,
        o.reliable_improvement_cellkey,
        o.reliable_deterioration_cellkey,
        o.clinical_n_cellkey,
        o.recovered_cellkey,
        o.reliably_recovered_cellkey,
        o.r_n_cellkey
    from ended_stats as e
    cross join outcome_stats as o
)
select * from final;
