-- The dashboard's global filters, defined once. Every named query in queries/ reads its rows
-- through one of these table macros, so a filter (or a role's site restriction) cannot be
-- forgotten in one query and applied in another.
-- p_from / p_to: first day included / first day excluded. Text filters: null = all.
-- p_allowed_sites: null = every site; else the list of sites the signed-in role may see.

-- The text filters and the role's sites, once: a row's attributes against the filter values
-- (null = all). Inlined by DuckDB into each table macro below.
create or replace macro matches_filters(
    site, program, therapist, age_band, gender, race_ethnicity,
    p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
) as
    (p_site is null or site = p_site)
    and (p_program is null or program = p_program)
    and (p_therapist is null or therapist = p_therapist)
    and (p_age_band is null or age_band = p_age_band)
    and (p_gender is null or gender = p_gender)
    and (p_race is null or race_ethnicity = p_race)
    and (p_allowed_sites is null or list_contains(p_allowed_sites, site));

create or replace macro sessions_in_view(
    p_from, p_to, p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
) as table
select *
from session_facts
where session_date >= p_from
  and session_date < p_to
  and matches_filters(
      site, program, therapist, age_band, gender, race_ethnicity,
      p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
  );

-- Ended episodes whose end date (last session) falls in the period: "finished in period".
create or replace macro ended_episodes_in_view(
    p_from, p_to, p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
) as table
select *
from episode_facts
where ended
  and end_date >= p_from
  and end_date < p_to
  and matches_filters(
      site, program, therapist, age_band, gender, race_ethnicity,
      p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
  );

-- Ended episodes finished in the period, one row per episode for the chosen outcome measure.
create or replace macro outcomes_in_view(
    p_measure, p_from, p_to, p_site, p_program, p_therapist, p_age_band, p_gender, p_race,
    p_allowed_sites
) as table
select *
from episode_outcomes
where measure = p_measure
  and ended
  and end_date >= p_from
  and end_date < p_to
  and matches_filters(
      site, program, therapist, age_band, gender, race_ethnicity,
      p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
  );

-- The per-episode-month item rollup (derive.sql, episode_month_items) under the same filters.
-- Periods are whole calendar months (p_from is a month's first day, p_to the first day after
-- the period), so filtering on `month` equals filtering the sessions on their dates.
create or replace macro episode_months_in_view(
    p_from, p_to, p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
) as table
select *
from episode_month_items
where month >= p_from
  and month < p_to
  and matches_filters(
      site, program, therapist, age_band, gender, race_ethnicity,
      p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
  );

-- The per-month SRS count rollup (derive.sql, srs_month_cells) under the same filters; whole
-- calendar months as above.
create or replace macro srs_months_in_view(
    p_from, p_to, p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
) as table
select *
from srs_month_cells
where month >= p_from
  and month < p_to
  and matches_filters(
      site, program, therapist, age_band, gender, race_ethnicity,
      p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
  );

-- An episode of the item rollups lies wholly in the period when it was seen by one therapist
-- at one site and all of its item months fall in the period: its period sums are then its
-- whole-life sums (derive.sql, episode_items), and every one of its cells passes the filters or
-- none does. The one definition for the macro below and the profile queries.
create or replace macro wholly_in_period(
    single_therapist, single_site, first_month, last_month, p_from, p_to
) as
    single_therapist and single_site and first_month >= p_from and last_month < p_to;

-- The count and sum of one alliance dimension in the item rollups for the chosen measure
-- (p_alliance 'srs' or 'wai'): SRS item sums are stored in exact integer tenths, WAI-SR
-- subscale sums as they are. WAI-SR has no 'overall' item: pass 0 and null for it.
create or replace macro item_count(p_alliance, n_srs, n_wai) as
    case when p_alliance = 'wai' then n_wai else n_srs end;

create or replace macro item_sum(p_alliance, s10_srs, s_wai) as
    case when p_alliance = 'wai' then s_wai else s10_srs / 10 end;

-- Episodes wholly in the period (above), with their whole-life item sums (derive.sql,
-- episode_items; one therapist and one site each), under the same filters.
create or replace macro whole_episode_items_in_view(
    p_from, p_to, p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
) as table
select *
from episode_items
where wholly_in_period(true, true, first_month, last_month, p_from, p_to)
  and matches_filters(
      site, program, therapist, age_band, gender, race_ethnicity,
      p_site, p_program, p_therapist, p_age_band, p_gender, p_race, p_allowed_sites
  );
