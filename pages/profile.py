"""Alliance profile: which part of the alliance is weakest (feeling heard, goals, approach), and
for whom, including how well the approach fits clients of each background."""

from alliance import ui
from alliance.views import profile

ui.frame_guard()

ctx = ui.context()
ui.render_view(ui.view("profile", profile.build, ctx), ctx)
