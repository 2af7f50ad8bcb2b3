"""Alliance profile: which part of the alliance is weakest (feeling heard, goals, approach), and
for whom, including how well the approach fits clients of each background.

The page shows one section at a time (sites, programs and months; therapists; client
background): a filter change computes and draws only the section in view. The choice is kept in
the address (?show=Therapists), so a link opens the same section.
"""

import functools

import streamlit as st

from alliance import ui
from alliance.views import profile

ui.frame_guard()

ctx = ui.context()
by_label = {label: key for key, label in profile.sections(ctx).items()}
head = st.container()  # title and tiles: drawn above the section picker once the view is built
picker = st.empty()
# the address holds the label as shown (?show=Therapists): a link opens the same section, and
# one naming a section this role may not see opens the first
chosen = picker.segmented_control(
    "Show",
    list(by_label),
    default=profile.SECTIONS["where"],
    required=True,
    key="show",
    bind="query-params",
)
section = by_label.get(chosen, "where")
view = ui.view(f"profile:{section}", functools.partial(profile.build, section=section), ctx)
with head:
    ui.render_head(view, ctx)
if view.notice:
    picker.empty()  # nothing to choose between
else:
    for panel in view.panels:
        ui.render_panel(panel, ctx)
