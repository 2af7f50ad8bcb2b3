"""Alliance dashboard: the frame shared by every page.

Page config, the demo/data notice, the global filter sidebar and navigation; each page in
pages/ is a short script that reads the filters and lays out its view. The navigation below is
the one list of pages (order, titles, icons, sections).
"""

from pathlib import Path

import streamlit as st

from alliance import ui

HERE = Path(__file__).resolve().parent
NAVIGATION = {
    "Clinic": [
        ("overview", "Overview", ":material/dashboard:"),
    ],
    "Alliance": [
        ("alliance", "Alliance (trust)", ":material/handshake:"),
        ("profile", "Alliance profile", ":material/radar:"),
        ("ruptures", "Ruptures & repair", ":material/healing:"),
    ],
    "Dropout & outcomes": [
        ("dropout", "Dropout", ":material/logout:"),
        ("outcomes", "Outcomes", ":material/trending_up:"),
    ],
    "People": [
        ("therapists", "Therapists", ":material/groups:"),
        ("demographics", "Client demographics", ":material/diversity_3:"),
    ],
    "Reports & data": [
        ("reports", "Report pack", ":material/slideshow:"),
        ("data", "Data", ":material/upload_file:"),
        ("settings", "Settings", ":material/tune:"),
        ("audit", "Audit log", ":material/history:"),
    ],
}

# Streamlit's own table toolbar ("Download as CSV", copy) would export without an audit entry:
# off for every table. A browser learns the option when a run starts, so the process's first run
# sets it and starts again before drawing anything (.streamlit/config.toml may set it too).
if not st.get_option("client.disableDataExport"):
    st.set_option("client.disableDataExport", True)
    st.rerun()
st.set_page_config(
    page_title="Alliance dashboard",
    page_icon=":material/handshake:",
    layout="wide",
    initial_sidebar_state="expanded",
)
# a database that cannot be used, found at the start or by a page's query: one plain page
with ui.database_guard():
    ui.ensure_database()
    ui.sign_in()  # a roles file that cannot be applied (a supervisor without sites) stops here
    ui.require_visible_data()  # a role whose sites hold no data: a plain screen, no pages

    pages = {
        section: [
            st.Page(f"pages/{name}.py", title=title, icon=icon, default=name == "overview")
            for name, title, icon in entries
            if (HERE / "pages" / f"{name}.py").exists()  # pages appear once they exist
            and ui.page_allowed(name)  # role: Data and Audit log are for directors
        ]
        for section, entries in NAVIGATION.items()
    }
    page = st.navigation({section: items for section, items in pages.items() if items})
    ui.meeting_mode_toggle()
    ui.sidebar_filters(ui.filter_options())
    ui.banners()
    page.run()
ui.freeze_long_lived_objects()
