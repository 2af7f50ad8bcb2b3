"""Data: import the clinic's own export, see what was imported, and how complete the data are.

File names, column names, and site, program and group names come from the imported files: they
are shown as plain text (st.text) or escaped (`markdown_safe`), never as markdown.
"""

import functools

import streamlit as st

from alliance import audit as audit_log
from alliance import faults, ingest, ui
from alliance.ingest import present
from alliance.views.common import markdown_safe

ui.frame_guard()


def _fault(exc: Exception, action: str) -> faults.Fault:
    """A failed preview or import as a plain sentence (never its data, never a class name);
    the server log has the cause."""
    if isinstance(exc, faults.FaultError):  # run_import: already a sentence, logged
        return exc.fault
    if isinstance(exc, OSError | MemoryError) or type(exc).__module__.startswith(
        ("duckdb", "_duckdb")
    ):
        fault = faults.write_fault(exc, path=ui.db_path(), action=action)
    else:
        fault = faults.unexpected(exc, action)
    return faults.record(fault, exc)


st.title("Data", anchor=False)
st.caption(
    "Import your clinic's export (one row per attended session, see the data dictionary below). "
    "Client and therapist identifiers are replaced by keyed pseudonyms, names and other "
    "identifiers are dropped, and nothing is written unless every row passes every rule."
)
if not ui.can("import"):  # enforced here as well as in the navigation
    st.error("Only directors can import data.")
    st.stop()

meta = ui.meta()
kind = meta.get("dataset_kind", "empty")
flash = st.session_state.pop("data_flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")

# --- import -------------------------------------------------------------------------------------
st.subheader("Import an export", anchor=False)
if kind == "demo":
    st.caption("The dashboard now shows the demo clinic. Importing your export replaces it.")
elif kind == "clinic":
    st.caption(
        f"The dashboard shows your clinic's data, through {meta.get('through_date', '?')}. "
        "A later export adds its new sessions and updates what changed; rows already imported "
        "change nothing."
    )

uploads = st.file_uploader(
    "Export file (CSV, Excel .xlsx or Parquet)",
    type=present.UPLOAD_TYPES,
    accept_multiple_files=True,
    max_upload_size=present.MAX_UPLOAD_MB,
    key=f"data_upload_{st.session_state.get('data_upload_round', 0)}",
    help=f"Up to {present.MAX_UPLOAD_MB} MB per file. Several files (e.g. one per site) are "
    "imported together, all or nothing.",
)
with st.expander("Options for this file"):
    c1, c2 = st.columns(2)
    date_format = c1.text_input(
        "Date format, if not YYYY-MM-DD",
        key="data_date_format",
        placeholder="%m/%d/%Y",
        help="A strptime pattern: %d day, %m month, %Y four-digit year, %b month name.",
    ).strip()
    sheet = c2.text_input(
        "Excel sheet (default: the first)", key="data_sheet", placeholder="Sessions"
    ).strip()

preview: ingest.ImportResult | None = None
if uploads:
    too_big = [f.name for f in uploads if f.size > present.MAX_UPLOAD_MB * 1024 * 1024]
    if too_big:
        st.error(markdown_safe(f"Larger than {present.MAX_UPLOAD_MB} MB: {', '.join(too_big)}."))
        st.stop()
    options = ingest.ImportOptions(
        date_format=date_format or None, sheet=sheet or None, dry_run=True
    )
    cache_key = (
        tuple((f.file_id, f.name, f.size) for f in uploads),
        options,
        ui.data_version(),
    )
    cached = st.session_state.get("data_preview")
    if cached and cached[0] == cache_key:
        preview = cached[1]
    else:
        bar = st.progress(0.0, text="Checking the file")
        try:
            with present.saved_uploads([(f.name, f.getvalue()) for f in uploads]) as inputs:
                preview = ingest.run_import(
                    inputs,
                    ui.db_path(),
                    options,
                    progress=lambda f, m: bar.progress(min(f, 1.0), text=m),
                    problem_limit=1000,
                )
        except (ingest.UsageError, ingest.SecretKeyError) as exc:
            bar.empty()
            st.error(markdown_safe(str(exc)), icon=":material/error:")
            st.stop()
        except Exception as exc:  # noqa: BLE001 (a full disk...: a sentence, never a box)
            bar.empty()
            st.error(markdown_safe(_fault(exc, "preview").text), icon=":material/error:")
            st.stop()
        bar.empty()
        st.session_state["data_preview"] = (cache_key, preview)

if preview is not None:
    c = preview.counts
    cols = st.columns(5)
    cols[0].metric("Rows read", f"{preview.rows_read:,}", border=True)
    if preview.problem_count:
        cols[1].metric("Problems", f"{preview.problem_count:,}", border=True)
        cols[2].metric(
            "Rows with problems",
            f"{preview.rows_rejected:,}",
            help="Rows that break a rule, and the rows of episodes whose rows disagree.",
            border=True,
        )
    else:
        cols[1].metric("Sessions to add", f"{c.get('sessions_added', 0):,}", border=True)
        cols[2].metric("Sessions to update", f"{c.get('sessions_updated', 0):,}", border=True)
        cols[3].metric("Already there", f"{c.get('sessions_unchanged', 0):,}", border=True)
        cols[4].metric(
            "Episodes",
            f"{preview.episodes:,}",
            help=f"{c.get('episodes_added', 0):,} new, {c.get('episodes_updated', 0):,} changed",
            border=True,
        )
    if preview.identifiers:
        st.caption(
            markdown_safe(
                "Dropped as identifiers (never stored): " + ", ".join(preview.identifiers) + "."
            )
        )
    if preview.ignored:
        st.caption(
            markdown_safe("Not in the contract, ignored: " + ", ".join(preview.ignored) + ".")
        )
    with st.expander("How each column is read"):
        st.dataframe(
            present.columns_table(preview),
            hide_index=True,
            width="stretch",
            column_config={"what happens": st.column_config.TextColumn(width="large")},
        )

    if preview.problem_count:
        more = preview.problem_count - len(preview.problems)
        st.error(
            f"{preview.problem_count:,} problem(s) found: nothing can be imported until they "
            "are fixed in the export. Rows are numbered as in a spreadsheet (the header is "
            "row 1); identifying values are shown as (hidden), and cells that may hold anything "
            "a person typed (a name, a date, a number, an address) as (withheld)."
            + (f" The first {len(preview.problems):,} are listed." if more > 0 else ""),
            icon=":material/error:",
        )
        problems = ingest.problems_frame(preview.problems)
        st.dataframe(
            problems,
            hide_index=True,
            width="stretch",
            height="auto" if len(problems) <= 10 else 380,
            column_config={
                "row": st.column_config.NumberColumn("row", format="%d", width="small"),
                "problem": st.column_config.TextColumn(width="large"),
            },
        )
        # a file the app writes: recorded in the audit log before it is delivered, or refused
        outcome = st.session_state.setdefault("problems_dl_outcome", audit_log.Outcome())
        entry = functools.partial(
            audit_log.record,
            ui.db_path(),
            **ui.audit_identity(),
            event="download_problems_csv",
            detail={"file": "import-problems.csv", "problems": len(problems), "filters": {}},
        )
        csv_bytes = problems.to_csv(index=False).encode()
        st.download_button(
            "Download the problem list (CSV)",
            data=audit_log.guarded(lambda: csv_bytes, entry, outcome),
            file_name="import-problems.csv",
            mime="text/csv",
            icon=":material/download:",
            key="problems_dl",
            on_click=ui.download_clicked,
            args=(outcome, "problems_dl_refused"),
        )
        refused = st.session_state.pop("problems_dl_refused", None)
        if refused:
            st.error(refused, icon=":material/lock:")
    elif preview.ok_once_confirmed:
        st.success(
            f"All {preview.rows_read:,} rows pass every rule: ready to import.",
            icon=":material/task_alt:",
        )
    else:
        st.error("The file holds no data rows.", icon=":material/error:")

    # site and program names: the clinic's own list (alliance/ingest/names.py)
    for col, found in preview.first_list.items():
        st.text(  # names from the data: plain text
            f"This import starts the clinic's list of {col}s: {', '.join(found)}. Later imports "
            "are checked against it."
        )
    accept_names = False
    if preview.new_names:
        st.warning(
            f"{len(preview.new_names):,} site or program name(s) in the file are not on the "
            "clinic's list. A person's name, a note or a typo typed into these columns would "
            "become a filter option and a chart label, so new names are added only when you "
            "confirm them. Otherwise correct the file at the rows shown.",
            icon=":material/warning:",
        )
        st.dataframe(
            ingest.problems_frame(preview.new_names),
            hide_index=True,
            width="stretch",
            column_config={"problem": st.column_config.TextColumn(width="large")},
        )
        accept_names = st.checkbox(
            "Add the new names to the clinic's list (they are real sites or programs)",
            key="data_accept_names",
        )

    confirmed = True
    if kind == "demo" and preview.ok_once_confirmed:
        confirmed = st.checkbox(
            "Replace the demo clinic with this data (the demo is removed; build it again any "
            "time with `python -m alliance demo`)",
            key="data_replace_demo",
        )
    importable = preview.ok_once_confirmed and (accept_names or not preview.needs_confirmation)
    if st.button(
        "Import",
        type="primary",
        icon=":material/upload:",
        disabled=not (importable and confirmed),
        key="data_import",
    ):
        bar = st.progress(0.0, text="Starting")
        try:
            with present.saved_uploads([(f.name, f.getvalue()) for f in uploads]) as inputs:
                result = ingest.run_import(
                    inputs,
                    ui.db_path(),
                    ingest.ImportOptions(
                        date_format=options.date_format,
                        sheet=options.sheet,
                        replace_demo=kind == "demo" and confirmed,
                        accept_new_names=accept_names,
                    ),
                    progress=lambda f, m: bar.progress(min(f, 1.0), text=m),
                )
        except (ingest.UsageError, ingest.SecretKeyError) as exc:
            st.error(markdown_safe(str(exc)), icon=":material/error:")
            st.stop()
        except Exception as exc:  # noqa: BLE001 (the database is unchanged: atomic writer)
            bar.empty()
            st.error(markdown_safe(_fault(exc, "import").text), icon=":material/error:")
            st.stop()
        if not result.ok:
            st.error(
                "The file changed since the preview and now has problems: nothing was imported."
            )
            st.stop()
        ui.audit(
            "import",
            {
                "fingerprints": [f.fingerprint[:16] for f in result.files],
                "formats": sorted({f.fmt for f in result.files}),
                "rows_read": result.rows_read,
                **{
                    k: v for k, v in result.counts.items() if k.startswith(("sessions", "episodes"))
                },
                "replaced_demo": result.replaced_demo,
                "names_added": sum(len(v) for v in result.names_added().values()),
            },
        )
        st.session_state["data_flash"] = (
            f"Imported {result.rows_read:,} rows: {result.counts['sessions_added']:,} sessions "
            f"added, {result.counts['sessions_updated']:,} updated, "
            f"{result.counts['sessions_unchanged']:,} unchanged. Every page now shows the new data."
        )
        st.session_state.pop("data_preview", None)
        # a fresh uploader (its file is imported)
        st.session_state["data_upload_round"] = st.session_state.get("data_upload_round", 0) + 1
        # drop the cached connection to the replaced file: DuckDB keeps one instance per path,
        # so the new file is opened only once no connection to the old one is left
        st.cache_resource.clear()
        st.rerun()

# --- history ------------------------------------------------------------------------------------
st.subheader("Imports so far", anchor=False)
history = present.import_history(ui.connection())
if history.empty:
    st.caption(
        "No imports yet." if kind != "demo" else "No imports yet: the demo clinic is generated."
    )
else:
    st.dataframe(
        history,
        hide_index=True,
        width="stretch",
        column_config={
            "imported_at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm"),
            "file_format": "Format",
            "rows_read": st.column_config.NumberColumn("Rows read", format="localized"),
            "sessions_added": st.column_config.NumberColumn("Added", format="localized"),
            "sessions_updated": st.column_config.NumberColumn("Updated", format="localized"),
            "sessions_unchanged": st.column_config.NumberColumn("Unchanged", format="localized"),
            "episodes_updated": st.column_config.NumberColumn(
                "Episodes updated", format="localized"
            ),
            "rows_rejected": st.column_config.NumberColumn("Rows rejected", format="localized"),
            "fingerprint": st.column_config.TextColumn(
                "File fingerprint (SHA-256)",
                help="Identifies the exact file without its name: the same file gives the "
                "same fingerprint.",
            ),
        },
    )

# --- data quality -------------------------------------------------------------------------------
st.subheader("Data quality", anchor=False)
ctx = ui.context()
st.text(f"Sessions and episodes in view: {ctx.filters.describe()}.")  # names from the data
quality, notice = present.data_quality(ctx)
if notice:
    st.info(markdown_safe(notice), icon=":material/lock:")
else:
    cols = st.columns(3)
    for i, row in enumerate(quality.itertuples(index=False)):
        check = present.QUALITY_CHECKS[row.check_key]
        if row.suppressed:
            value, n_text = ctx.policy.label, f"of {row.denominator:,} {check.of}"
        elif row.share is None or row.share != row.share:
            value, n_text = "–", f"no {check.of}"
        else:
            value = f"{row.share:.1%}"
            n_text = f"{int(row.numerator):,} of {row.denominator:,} {check.of}"
        col = cols[i % 3]
        col.metric(check.label, value, help=check.help, border=True)
        col.caption(n_text)

# --- template and dictionary --------------------------------------------------------------------
st.subheader("Template and data dictionary", anchor=False)
c1, c2, _ = st.columns([1, 1, 2])
c1.download_button(
    "Blank template (CSV)",
    data=ingest.template_csv(),
    file_name="alliance-import-template.csv",
    mime="text/csv",
    icon=":material/download:",
    on_click="ignore",
)
c2.download_button(
    "Data dictionary (CSV)",
    data=ingest.data_dictionary_csv(),
    file_name="alliance-data-dictionary.csv",
    mime="text/csv",
    icon=":material/download:",
    on_click="ignore",
)
with st.expander("Data dictionary"):
    st.dataframe(ingest.data_dictionary(), hide_index=True, width="stretch")
