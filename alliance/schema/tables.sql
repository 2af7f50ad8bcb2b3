-- Base tables: de-identified, pseudonymized data only.
-- No raw client or therapist identifier, name or date of birth is ever stored: identifiers are
-- keyed hashes (HMAC-SHA-256, see alliance/pseudonym.py), ages are stored as bands.

create table if not exists meta (
    key varchar primary key,       -- dataset_kind ('demo' | 'clinic'), data_version, built_at, ...
    value varchar not null
);

create table if not exists sites (
    site_id integer primary key,
    name varchar not null unique    -- clinic location as given by the clinic
);

create table if not exists programs (
    program_id integer primary key,
    name varchar not null unique    -- service line, e.g. 'Adult outpatient'
);

create table if not exists therapists (
    therapist_id integer primary key,
    pseudonym varchar not null unique,  -- HMAC-SHA-256 of the source clinician id (hex)
    code varchar not null unique        -- short stable display code, e.g. 'T-4F2A'
);

create table if not exists clients (
    client_id integer primary key,
    pseudonym varchar not null unique   -- HMAC-SHA-256 of the source client id (hex)
);

create table if not exists episodes (
    episode_id integer primary key,
    client_id integer not null,
    pseudonym varchar not null unique,  -- HMAC-SHA-256 of (client id, source episode id)
    program_id integer,
    age_band varchar not null default 'unknown',       -- at the episode's first session
    gender varchar not null default 'unknown',
    race_ethnicity varchar not null default 'unknown',
    end_reason varchar check (end_reason in ('planned', 'dropout', 'other'))  -- null = open
);

create table if not exists sessions (
    session_id bigint primary key,
    episode_id integer not null,
    therapist_id integer not null,
    site_id integer not null,
    session_date date not null,
    session_number smallint,            -- as given by the source system, if any
    -- SRS (Session Rating Scale), items 0-10, total 0-40
    srs_total decimal(3, 1),
    srs_relationship decimal(3, 1),
    srs_goals decimal(3, 1),
    srs_approach decimal(3, 1),
    srs_overall decimal(3, 1),
    -- WAI-SR items 1-5 (Task 1,2,10,12; Bond 3,5,7,9; Goal 4,6,8,11) or subscale sums 4-20
    wai_1 tinyint, wai_2 tinyint, wai_3 tinyint, wai_4 tinyint, wai_5 tinyint, wai_6 tinyint,
    wai_7 tinyint, wai_8 tinyint, wai_9 tinyint, wai_10 tinyint, wai_11 tinyint, wai_12 tinyint,
    wai_task tinyint,
    wai_bond tinyint,
    wai_goal tinyint,
    -- ORS (Outcome Rating Scale), items 0-10, total 0-40, higher = better
    ors_total decimal(3, 1),
    ors_individual decimal(3, 1),
    ors_interpersonal decimal(3, 1),
    ors_social decimal(3, 1),
    ors_overall decimal(3, 1),
    phq9_total tinyint,                 -- 0-27, higher = worse
    gad7_total tinyint                  -- 0-21, higher = worse
);

create table if not exists import_log (
    import_id integer primary key,
    imported_at timestamp not null,
    file_fingerprint varchar not null,  -- SHA-256 of the file's bytes (never its name)
    file_format varchar not null,
    rows_read integer not null,
    sessions_added integer not null,
    sessions_updated integer not null,
    sessions_unchanged integer not null,
    episodes_updated integer not null,
    rows_rejected integer not null
);
