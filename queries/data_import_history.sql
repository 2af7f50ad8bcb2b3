-- The history of imports, newest first: when, what kind of file, rows read and what they did,
-- and the file's SHA-256 fingerprint (never its name, which could identify someone).
--
-- Parameters:
-- Columns:
--   imported_at: timestamp, when the import was written (UTC)
--   file_format: varchar, csv, xlsx or parquet (joined with + for several files)
--   rows_read: integer, data rows in the file(s)
--   sessions_added: integer, new sessions
--   sessions_updated: integer, sessions whose site or scores changed
--   sessions_unchanged: integer, sessions already present with the same values
--   episodes_updated: integer, episodes whose program, demographics, age band or end reason changed
--   rows_rejected: integer, invalid rows left out (--skip-invalid only)
--   fingerprint: varchar, SHA-256 of the file bytes (first 16 hex digits per file)
with
log as (
    select * from import_log
),
final as (
    select
        imported_at,
        file_format,
        rows_read,
        sessions_added,
        sessions_updated,
        sessions_unchanged,
        episodes_updated,
        rows_rejected,
        array_to_string(
            list_transform(string_split(file_fingerprint, ','), lambda f: left(f, 16)), ', '
        ) as fingerprint
    from log
)
select * from final
order by imported_at desc;
