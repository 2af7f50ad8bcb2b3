"""Audit log: who exported or downloaded what, when, with which filters (directors only)."""

import streamlit as st

from alliance import audit, ui

ui.frame_guard()

st.title("Audit log", anchor=False)
st.caption(
    "Every chart download, data export, report pack, import and settings change, newest first. "
    "Entries hold the user, the role and the sites it covers, the filters in force and what was "
    "exported, never client data. Report packs built with the `report` command are here too, "
    "under the computer account that ran it."
)
if not ui.can("view_audit"):  # enforced here as well as in the navigation
    st.error("Only directors can see the audit log.")
    st.stop()
try:
    log = audit.read(ui.db_path())
except audit.AuditError as exc:
    st.error(
        f"The audit log cannot be opened just now ({exc}). Try again in a moment.",
        icon=":material/lock:",
    )
    st.stop()
if log.empty:
    st.info("Nothing has been exported or changed yet.", icon=":material/info:")
else:
    st.dataframe(
        audit.readable(log),
        hide_index=True,
        width="stretch",
        column_config={
            "logged_at": st.column_config.DatetimeColumn(
                "When (UTC)", format="YYYY-MM-DD HH:mm:ss"
            ),
            "user_name": "User",
            "role": "Role",
            "sites": st.column_config.TextColumn("Sites of the role"),
            "event": "What",
            "filters": st.column_config.TextColumn("Filters in force"),
            "details": st.column_config.TextColumn("Details (chart, format, file)"),
        },
    )
