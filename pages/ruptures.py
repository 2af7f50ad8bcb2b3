"""Ruptures & repair: how often the alliance breaks down between sessions, how often it is
repaired, and what follows a repaired or an unrepaired rupture."""

from alliance import ui
from alliance.views import ruptures

ui.frame_guard()

ctx = ui.context()
ui.render_view(ui.view("ruptures", ruptures.build, ctx), ctx)
