-- Ended episodes finished in the period with an early SRS, grouped by (site, exact early SRS):
-- the sufficient statistics of every alliance-dropout statistic (Cohen's d, point-biserial r,
-- logistic regression). Used inside the app only (never shown): a few thousand rows at most,
-- however many episodes. Grouping loses nothing: an SRS total has one decimal, so the early SRS
-- (the mean of 1, 2 or 3 totals) is a whole multiple of 1/60 and round(early_srs * 60) / 60
-- recovers it exactly; at most 2,401 values per site.
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
-- Columns:
--   site: varchar, the episode's site (its first session's)
--   early_srs: double, early SRS (mean SRS total of the first three rated sessions, 0-40)
--   episodes: integer, ended episodes with this site and early SRS
--   dropouts: integer, of those, ended by dropout
with
e as (
    select
        site,
        round(early_srs * 60) as early_srs_60,
        dropout
    from ended_episodes_in_view(
        $date_from, $date_to, $site, $program, $therapist, $age_band, $gender, $race,
        $allowed_sites
    )
    where early_srs is not null
),
final as (
    select
        site,
        early_srs_60 / 60 as early_srs,
        count(*) as episodes,
        count(*) filter (where dropout) as dropouts
    from e
    group by site, early_srs_60
)
select * from final
order by site, early_srs;
