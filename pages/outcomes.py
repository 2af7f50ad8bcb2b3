"""Outcomes: do clients get better on the chosen measure, and does early alliance go with it?"""

from alliance import ui
from alliance.views import outcomes

ui.frame_guard()

ctx = ui.context()
ui.render_view(ui.view("outcomes", outcomes.build, ctx), ctx)
