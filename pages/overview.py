"""Overview: how strong is the alliance, who drops out, and do clients get better?"""

from alliance import ui
from alliance.views import overview

ui.frame_guard()

ctx = ui.context()
ui.render_view(ui.view("overview", overview.build, ctx), ctx)
