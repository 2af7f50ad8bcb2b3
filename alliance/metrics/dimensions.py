"""The alliance dimensions (metrics.md "Alliance dimensions"): their keys, in order, and their
names, read by the numbers of the Alliance profile and Ruptures & repair pages and by the charts
that show them (alliance.charts.dimensions gives each its colour)."""

from __future__ import annotations

DIMENSIONS = ("heard", "goals", "approach", "overall")
LABELS = {
    "heard": "Felt heard and respected",
    "goals": "Worked on what I wanted",
    "approach": "Approach fit me",
    "overall": "Overall",
}
