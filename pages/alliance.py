"""Alliance (trust): how strong is the alliance, is it changing, does it build over sessions?"""

from alliance import ui
from alliance.views import alliance_page

ui.frame_guard()

ctx = ui.context()
ui.render_view(ui.view("alliance", alliance_page.build, ctx), ctx)
