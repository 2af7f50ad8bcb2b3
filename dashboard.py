"""Alliance dashboard: the frame shared by every page.

Page config, the demo/data notice, the global filter sidebar and navigation; each page in
pages/ is a short script that reads the filters and lays out its view.
"""

import streamlit as st

from alliance import ui

st.set_page_config(
    page_title="Alliance dashboard",
    page_icon=":material/handshake:",
    layout="wide",
    initial_sidebar_state="expanded",
)

ui.ensure_database()

pages = {
    "Clinic": [
        st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    ],
}
page = st.navigation(pages)
ui.sidebar_filters(ui.filter_options())
ui.banners()
page.run()
