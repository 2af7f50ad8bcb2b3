"""Client demographics (equity): do alliance, dropout and outcomes differ between client groups?"""

import functools

import streamlit as st

from alliance import ui
from alliance.views import demographics

ui.frame_guard()

ctx = ui.context()
st.title(demographics.TITLE, anchor=False)
st.caption(demographics.QUESTION)
dimension = st.radio(
    "Compare clients by",
    list(demographics.DIMENSIONS),
    format_func=demographics.DIMENSIONS.get,
    horizontal=True,
    key="demo_dimension",
)
view = ui.view(
    f"demographics:{dimension}", functools.partial(demographics.build, dimension=dimension), ctx
)
if view.notice:
    st.warning(view.notice, icon=":material/lock:")
else:
    st.caption(demographics.EQUITY_NOTE)
    for panel in view.panels:
        ui.render_panel(panel, ctx)
