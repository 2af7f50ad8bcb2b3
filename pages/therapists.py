"""Therapists: do therapists differ more than chance would explain? (funnel plots, never ranked)

Selecting a therapist's dot in a funnel plot filters the whole dashboard to that therapist.
"""

import streamlit as st

from alliance import ui
from alliance.views import therapists

HANDLED = "therapists_selection_handled"  # the last selection acted on (chart key, code)


def filter_to(code: str) -> None:
    """Filter the whole dashboard to one therapist and rerun."""
    ui.set_filter("therapist", code)
    st.rerun()


ui.frame_guard()

ctx = ui.context()
view = ui.view("therapists", therapists.build, ctx)
st.title(view.title, anchor=False)
st.caption(view.question)
if view.notice:
    st.warning(view.notice, icon=":material/lock:")
else:
    if ctx.filters.therapist and not ctx.meeting_mode:
        st.button(
            "Show all therapists again (clear the therapist filter)",
            icon=":material/filter_alt_off:",
            on_click=ui.set_filter,
            args=("therapist", None),
        )
    ui.render_tiles(view, ctx)
    for panel in view.panels:
        event = ui.render_panel(panel, ctx)
        code = None if ctx.meeting_mode else therapists.selected_therapist(event)
        handled = st.session_state.get(HANDLED) == (panel.key, code)  # a stale selection
        if code and code != ctx.filters.therapist and not handled:
            st.session_state[HANDLED] = (panel.key, code)
            filter_to(code)
