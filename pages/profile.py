"""Alliance profile: which part of the alliance is weakest (feeling heard, goals, approach), and
for whom, including how well the approach fits clients of each background.

One section at a time (sites, programs and months; therapists; client background), kept in the
address (?show=Therapists): a filter change computes and draws only the section in view.
"""

from alliance import ui
from alliance.views import profile

ui.frame_guard()

ui.render_sections("profile", profile, ui.context())
