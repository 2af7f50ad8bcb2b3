"""Ruptures & repair: how often the alliance breaks down between sessions, how often it is
repaired, and what follows a repaired or an unrepaired rupture.

One section at a time (over time; sites and therapists; what drops and what follows), kept in
the address (?show=Over+time): a filter change computes and draws only the section in view.
"""

from alliance import ui
from alliance.views import ruptures

ui.frame_guard()

ui.render_sections("ruptures", ruptures, ui.context())
