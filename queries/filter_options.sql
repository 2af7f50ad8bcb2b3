-- What the global filters can choose from: every site, program, therapist code and demographic
-- value present in the data, and the first and last month with sessions.
--
-- Parameters:
--   $allowed_sites: varchar[] or null, sites the signed-in role may see (null = all)
-- Columns:
--   dimension: varchar, filter field (site, program, therapist, age_band, gender, race_ethnicity, month)
--   value: varchar, an option (for month: the first and the last month, YYYY-MM-DD)
with
visible as (
    select *
    from session_facts
    where $allowed_sites is null or list_contains($allowed_sites, site)
),
options as (
    select distinct 'site' as dimension, site as value from visible
    union all
    select distinct 'program', program from visible where program is not null
    union all
    select distinct 'therapist', therapist from visible
    union all
    select distinct 'age_band', age_band from visible
    union all
    select distinct 'gender', gender from visible
    union all
    select distinct 'race_ethnicity', race_ethnicity from visible
    union all
    select 'month', min(month)::varchar from visible
    union all
    select 'month', max(month)::varchar from visible
),
final as (
    select dimension, value
    from options
    where value is not null
)
select * from final
order by dimension, value;
