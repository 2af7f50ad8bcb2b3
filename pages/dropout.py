"""Dropout: how many clients leave early, when, and how is it linked to the early alliance?"""

from alliance import ui
from alliance.views import dropout

ui.frame_guard()

ctx = ui.context()
ui.render_view(ui.view("dropout", dropout.build, ctx), ctx)
