"""Audit log: who exported or downloaded what, when, with which filters (directors only)."""

import streamlit as st

from alliance import audit, ui

ui.frame_guard()

st.title("Audit log", anchor=False)
st.caption(
    "Every chart download, data export, report pack, import and settings change, newest first. "
    "Entries hold the user, the filters in force and what was exported, never client data."
)
if not ui.can("view_audit"):  # enforced here as well as in the navigation
    st.error("Only directors can see the audit log.")
    st.stop()
log = audit.read(ui.db_path())
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
            "event": "What",
            "filters": st.column_config.TextColumn("Filters in force"),
            "details": st.column_config.TextColumn("Details (chart, format, file)"),
        },
    )
